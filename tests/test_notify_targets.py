"""A real daemon and real receivers on loopback: a dropped file's webhook gets the HOME's signature only
where the HOME allows it (wfbatch.core.targets), and a redirect is never followed."""

from __future__ import annotations

import base64
import json
from typing import Any

from standardwebhooks.webhooks import Webhook

from tests.daemon_harness import DaemonProcess, running_daemon
from tests.recorder import recorder

SECRET = "whsec_" + base64.b64encode(b"wfbatch-targets-test-key-32byte").decode()


def spec(name: str, **extra: Any) -> str:
    prompts = [{"prompt": f"a kite number {i}", "width": 32, "height": 32} for i in range(2)]
    return json.dumps({"name": name, "prompts": prompts, **extra}, indent=1)


def error_report(daemon: DaemonProcess, name: str) -> str:
    report = daemon.home / "rejected" / f"{name}.error.txt"
    daemon.wait_until(report.exists, 20, f"{name} rejected")
    return report.read_text()


def test_a_dropped_webhook_the_home_did_not_allow_gets_nothing() -> None:
    with recorder() as home_hook, recorder() as stranger:
        env = {"WFBATCH_NOTIFY__WEBHOOK_URL": home_hook.url, "WFBATCH_NOTIFY__WEBHOOK_SECRET": SECRET}
        with running_daemon(env=env) as daemon:
            evil = spec("evil", notify={"webhook_url": stranger.url})
            daemon.drop("evil.json", evil)
            report = error_report(daemon, "evil.json")
            line = next(n for n, text in enumerate(evil.splitlines(), 1) if "webhook_url" in text)
            assert f"\nevil.json:{line}:" in report, report
            refused = f"127.0.0.1:{stranger.port} (a loopback address) is not allowed"
            assert f"notify.webhook_url: {refused}" in report
            assert (daemon.home / "rejected" / "evil.json").exists()
            # `wfbatch submit` (the user's own hand, over the socket) follows the same rules.
            handed = daemon.home / "handed.json"
            handed.write_text(evil)
            submitted = daemon.cli("submit", str(handed))
            assert submitted.exit_code == 2 and f"handed.json:{line}:" in submitted.output
            assert "[notify] allowed_webhooks" in submitted.output
            # The next file goes through the same daemon: once the HOME's own hook has heard of it,
            # every notification the daemon was going to send is out.
            daemon.drop("good.json", spec("good"))
            daemon.wait_until(lambda: home_hook.messages("batch.finished"), 20, "batch.finished")
            assert len(daemon.status()["batches"]) == 1
    assert stranger.requests == []
    ((headers, body),) = [(r.headers, r.body) for r in home_hook.requests]
    Webhook(SECRET).verify(body, headers)


def test_a_webhook_the_home_allowed_gets_a_signed_request() -> None:
    with recorder() as allowed:
        env = {
            "WFBATCH_NOTIFY__ALLOWED_WEBHOOKS": json.dumps([f"127.0.0.1:{allowed.port}"]),
            "WFBATCH_NOTIFY__WEBHOOK_SECRET": SECRET,
        }
        with running_daemon(env=env) as daemon:
            daemon.drop("kites.json", spec("kites", notify={"webhook_url": allowed.url}))
            daemon.wait_until(lambda: allowed.messages("batch.finished"), 20, "batch.finished")
    (request,) = allowed.requests
    Webhook(SECRET).verify(request.body, request.headers)
    assert json.loads(request.body)["name"] == "kites"


def test_an_allowed_name_that_resolves_to_loopback_is_refused_when_sent() -> None:
    # `localhost` is a name: the allow-list takes it, and the address it resolves to is refused.
    with recorder() as hook:
        env = {
            "WFBATCH_NOTIFY__ALLOWED_WEBHOOKS": json.dumps([f"localhost:{hook.port}"]),
            "WFBATCH_NOTIFY__WEBHOOK_SECRET": SECRET,
        }
        with running_daemon(env=env) as daemon:
            url = f"http://localhost:{hook.port}/hook"
            daemon.drop("kites.json", spec("kites", notify={"webhook_url": url}))
            daemon.wait_for_jobs(lambda jobs: jobs["done"] == 2)
            daemon.wait_until(
                lambda: "given up: refused: localhost resolves to" in daemon.log(), 20, "the refusal"
            )
            assert "a loopback address" in daemon.log() and url not in daemon.log()
    assert hook.requests == []


def test_a_webhook_redirect_is_not_followed() -> None:
    with recorder() as target, recorder() as redirector:
        redirector.status, redirector.location = 307, target.url
        env = {"WFBATCH_NOTIFY__WEBHOOK_URL": redirector.url, "WFBATCH_NOTIFY__WEBHOOK_SECRET": SECRET}
        with running_daemon(env=env) as daemon:
            daemon.drop("kites.json", spec("kites"))
            daemon.wait_until(lambda: "given up: refused: HTTP 307" in daemon.log(), 20, "the 307 given up")
    assert len(redirector.requests) == 1 and target.requests == []
