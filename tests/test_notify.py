"""Notifications from a real daemon: signed webhooks to a receiver on loopback, and a command."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest_sim import fast_options
from tests.daemon_harness import running_daemon
from tests.s3_harness import FAKE_SECRET, s3_server
from tests.trickle_harness import trickling_server
from wfbatch.settings import NotifySettings
from wfbatch.sim import RunningSimulator

SECRET = "whsec_" + base64.b64encode(b"wfbatch-webhook-test-key-32bytes").decode()


class Receiver:
    """An HTTP server on loopback that records every POST and answers from `statuses` (then 200)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def messages(self, kind: str | None = None) -> list[dict[str, Any]]:
        found = [json.loads(body) for _, body in self.requests]
        return [m for m in found if kind is None or m["type"] == kind]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    thread = threading.Thread(target=hook.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        hook.server.shutdown()
        hook.server.server_close()


def spec(name: str, count: int, size: int = 32, **extra: Any) -> str:
    prompts = [
        {"prompt": f"a kite number {i}", "width": size, "height": size} for i in range(count)
    ]
    return json.dumps({"name": name, "prompts": prompts, **extra})


def test_one_signed_batch_finished_per_batch_with_counts_and_locations(receiver: Receiver) -> None:
    receiver.statuses = [503]  # the first try fails: retried, same message id
    with s3_server() as s3:
        s3.create_bucket("kites")
        env = {
            **s3.env("s3://kites/{batch}/"),
            "WFBATCH_NOTIFY__WEBHOOK_URL": receiver.url,
            "WFBATCH_NOTIFY__WEBHOOK_SECRET": SECRET,
            "WFBATCH_NOTIFY__BACKOFF_INITIAL": "0.1",
        }
        with running_daemon(env=env) as daemon:
            daemon.drop("kites.json", spec("kites", 3))
            daemon.wait_for_jobs(lambda jobs: jobs["done"] == 3)
            daemon.wait_until(
                lambda: len(receiver.messages("batch.finished")) == 2, 20, "batch.finished"
            )
            batch = daemon.status()["batches"][0]
            # Sent once the uploads were through: the manifest is in the bucket by then.
            assert f"{batch['id']}/manifest.json" in s3.objects("kites")
            daemon.stop()
    finished = [(h, b) for h, b in receiver.requests if json.loads(b)["type"] == "batch.finished"]
    assert len(finished) == 2  # the 503, then the one that got through
    (first_headers, _), (headers, body) = finished
    assert first_headers["webhook-id"] == headers["webhook-id"]
    Webhook(SECRET).verify(
        body, headers
    )  # Standard Webhooks: v1,<base64 HMAC> over id.timestamp.body
    message = json.loads(body)
    assert message["batch_id"] == batch["id"] and message["name"] == "kites"
    assert message["counts"] == {"done": 3}
    assert message["output_dir"] == batch["output_dir"]
    assert message["delivery"]["url"] == f"s3://kites/{batch['id']}/"
    assert message["delivery"]["done"] == 4 and message["delivery"]["pending"] == 0
    for _, raw in receiver.requests:
        assert FAKE_SECRET.encode() not in raw and SECRET.encode() not in raw


def test_a_budget_stop_sends_batch_held_with_the_reason(receiver: Receiver) -> None:
    with RunningSimulator(fast_options(cost=1, credits=100)) as sim:
        env = {
            "WFBATCH_PROVIDER": "wireflow",
            "WFBATCH_WIREFLOW__BASE_URL": sim.base_url,
            "WFBATCH_WIREFLOW__API_KEY": "sk-notify-test",
            "WFBATCH_WIREFLOW__WORKFLOW_ID": "wf_demo",
            "WFBATCH_WIREFLOW__PLAN": "enterprise",
            "WFBATCH_WIREFLOW__POLL_INITIAL": "0.05",
            "WFBATCH_WIREFLOW__POLL_MAX": "0.2",
            "WFBATCH_NOTIFY__WEBHOOK_URL": receiver.url,
        }
        with running_daemon(env=env) as daemon:
            daemon.drop("kites.json", spec("kites", 4, size=64, budget=2))
            held = daemon.wait_until(lambda: receiver.messages("batch.held"), 20, "batch.held")
            daemon.stop()
    assert len(held) == 1
    assert "budget" in held[0]["reason"] and held[0]["counts"]["done"] == 2
    assert "webhook-signature" not in receiver.requests[0][0]  # no secret configured: unsigned
    assert not receiver.messages("batch.finished")
    assert b"sk-notify-test" not in b"".join(body for _, body in receiver.requests)


def test_the_command_gets_the_facts_and_no_secrets(tmp_path: Path, receiver: Receiver) -> None:
    out = tmp_path / "env.txt"
    env = {
        "WFBATCH_NOTIFY__COMMAND": f"env > {out}; exit 3",  # a failing command is logged, not fatal
        "WFBATCH_NOTIFY__WEBHOOK_SECRET": SECRET,
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET,
    }
    with running_daemon(env=env) as daemon:
        daemon.drop("kites.json", spec("kites", 2))
        daemon.wait_until(out.exists, 20, "the command to run")
        daemon.wait_until(
            lambda: "notify command exited with 3" in daemon.log(), 10, "the failure logged"
        )
        assert daemon.returncode is None
    facts = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    assert facts["WFBATCH_EVENT"] == "batch.finished" and facts["WFBATCH_BATCH_NAME"] == "kites"
    assert facts["WFBATCH_DONE"] == "2"
    text = out.read_text()
    assert FAKE_SECRET not in text and SECRET not in text


def test_a_command_still_running_at_sigterm_is_stopped_with_the_daemon(tmp_path: Path) -> None:
    pid_file = tmp_path / "command.pid"
    env = {
        "WFBATCH_NOTIFY__COMMAND": (
            f"echo $$ > {pid_file}.part && mv {pid_file}.part {pid_file} && exec sleep 600"
        ),
        "WFBATCH_NOTIFY__TIMEOUT": "600",
    }
    with running_daemon(env=env) as daemon:
        daemon.drop("kites.json", spec("kites", 1))
        daemon.wait_until(pid_file.exists, 20, "the command to start")
        pid = int(pid_file.read_text())
        daemon.stop(timeout=20)
        assert daemon.returncode == 0, daemon.log()
    try:
        assert not _running(pid), "the notify command outlived the daemon"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for a parent to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_failed_jobs_are_told_in_batches(receiver: Receiver) -> None:
    env = {
        "WFBATCH_LOCAL__PERMANENT_FAIL_MARKER": "FAILME",
        "WFBATCH_NOTIFY__WEBHOOK_URL": receiver.url,
        "WFBATCH_NOTIFY__JOB_FAILED": "true",
        "WFBATCH_NOTIFY__JOB_FAILED_INTERVAL": "0.5",
    }
    prompts = [f"FAILME {i}" for i in range(4)] + ["a fine kite"]
    with running_daemon(env=env) as daemon:
        daemon.drop(
            "kites.json", json.dumps({"prompts": prompts, "defaults": {"width": 32, "height": 32}})
        )
        daemon.wait_until(lambda: receiver.messages("batch.finished"), 20, "batch.finished")
        daemon.wait_until(
            lambda: sum(m["failed_jobs"] for m in receiver.messages("job.failed")) == 4,
            10,
            "failures",
        )
    failed = receiver.messages("job.failed")
    assert len(failed) <= 4
    assert all("FAILME" in job["prompt"] for m in failed for job in m["jobs"])


def test_a_trickling_receiver_delays_no_other_receiver_and_no_shutdown(receiver: Receiver) -> None:
    with trickling_server() as slow:
        env = {
            "WFBATCH_NOTIFY__WEBHOOK_URL": slow.url + "/hook",
            "WFBATCH_NOTIFY__TIMEOUT": "600",  # the lanes alone keep the other receiver going
            # The dropped file names its own receiver: the HOME allows it by address.
            "WFBATCH_NOTIFY__ALLOWED_WEBHOOKS": json.dumps([urlsplit(receiver.url).netloc]),
        }
        with running_daemon(env=env) as daemon:
            daemon.drop("slow.json", spec("slow", 1))
            slow.wait_for_requests(1)  # its answer now comes one byte at a time, for ever
            fast = {"webhook_url": receiver.url}
            daemon.drop("fast.json", spec("fast", 1, notify=fast))
            told = daemon.wait_until(lambda: receiver.messages("batch.finished"), 20, "the other receiver")
            assert told[0]["name"] == "fast"
            daemon.stop(timeout=20)  # a deadline to wait, not a measure
            assert daemon.returncode == 0, daemon.log()  # it exited by itself, not by SIGKILL
        assert len(slow.requests) == 1


def test_a_trickled_answer_is_cut_at_the_deadline_and_sent_again() -> None:
    with trickling_server() as slow:
        env = {
            "WFBATCH_NOTIFY__WEBHOOK_URL": slow.url + "/hook",
            "WFBATCH_NOTIFY__TIMEOUT": "1",
            "WFBATCH_NOTIFY__BACKOFF_INITIAL": "0.1",
            "WFBATCH_NOTIFY__BACKOFF_MAX": "0.2",
        }
        with running_daemon(env=env) as daemon:
            daemon.drop("kites.json", spec("kites", 1))
            first, second = slow.wait_for_requests(2)[:2]  # the first try was given up on
            assert first.headers["webhook-id"] == second.headers["webhook-id"]
            slow.trickle = False
            slow.wait_for_answered(1)
            daemon.wait_until(lambda: _notifications(daemon.home)[0][0] == "sent", 10, "recorded")
            daemon.stop()
            (state, attempts, error), *others = _notifications(daemon.home)
    assert state == "sent" and attempts >= 1 and error is None and not others


def _notifications(home: Path) -> list[tuple[str, int, str | None]]:
    with contextlib.closing(sqlite3.connect(home / "wfbatch.db")) as db:
        return db.execute("SELECT state, attempts, error FROM notifications").fetchall()


def test_a_webhook_secret_must_be_standard_webhooks_base64() -> None:
    with pytest.raises(ValueError, match="too short"):
        NotifySettings(webhook_secret="whsec_c2hvcnQ=")
    assert NotifySettings(webhook_secret=SECRET).webhook_secret is not None
    assert SECRET not in repr(NotifySettings(webhook_secret=SECRET))


def _charging_wireflow(sim: RunningSimulator, **extra: str) -> dict[str, str]:
    return {
        "WFBATCH_PROVIDER": "wireflow",
        "WFBATCH_WIREFLOW__BASE_URL": sim.base_url,
        "WFBATCH_WIREFLOW__API_KEY": "sk-alert-test",
        "WFBATCH_WIREFLOW__WORKFLOW_ID": "wf_demo",
        "WFBATCH_WIREFLOW__PLAN": "enterprise",
        "WFBATCH_WIREFLOW__POLL_INITIAL": "0.05",
        "WFBATCH_WIREFLOW__POLL_MAX": "0.2",
        **extra,
    }


def test_a_batch_budget_alert_is_sent_once_before_the_budget_is_spent(receiver: Receiver) -> None:
    with RunningSimulator(fast_options(cost=1, credits=100)) as sim:
        # The batch names its own receiver (allowed by the HOME) and its own alert share.
        allowed = json.dumps([urlsplit(receiver.url).netloc])
        env = _charging_wireflow(sim, WFBATCH_NOTIFY__ALLOWED_WEBHOOKS=allowed)
        with running_daemon(env=env) as daemon:
            notify = {"webhook_url": receiver.url}
            daemon.drop("kites.json", spec("kites", 4, budget=4, budget_alert=0.5, notify=notify))
            daemon.wait_until(lambda: receiver.messages("batch.finished"), 30, "batch.finished")
            daemon.stop()
    alerts = receiver.messages("budget.alert")
    assert len(alerts) == 1, alerts  # once, although every later reservation is past 50 % too
    alert = alerts[0]
    assert alert["scope"] == "batch" and alert["limit"] == 4 and 2 <= alert["spent"] <= 4
    assert "budget" in alert["reason"] and "alert at 50%" in alert["reason"]
    assert [m["type"] for m in receiver.messages()].index("budget.alert") == 0  # before the end
    assert not receiver.messages("batch.held")  # an alert is not a hold: all four were made


def test_a_daily_cap_alert_from_the_home_default_comes_before_the_hold(receiver: Receiver) -> None:
    with RunningSimulator(fast_options(cost=1, credits=100)) as sim:
        env = _charging_wireflow(
            sim,
            WFBATCH_WIREFLOW__DAILY_CREDIT_CAP="5",
            WFBATCH_WIREFLOW__MAX_IN_FLIGHT="1",
            WFBATCH_NOTIFY__WEBHOOK_URL=receiver.url,
            WFBATCH_NOTIFY__BUDGET_ALERT="0.8",
        )
        with running_daemon(env=env) as daemon:
            daemon.drop("kites.json", spec("kites", 7, budget=100))
            daemon.wait_until(lambda: receiver.messages("batch.held"), 30, "batch.held")
            daemon.stop()
    kinds = [m["type"] for m in receiver.messages()]
    assert kinds.count("budget.alert") == 1 and kinds.index("budget.alert") < kinds.index("batch.held")
    alert = receiver.messages("budget.alert")[0]
    # One job in flight at a time: the alert goes with the reservation that reaches 4 of 5.
    assert (alert["scope"], alert["spent"], alert["limit"]) == ("daily", 4, 5)
    assert "wireflow's daily credit cap 80%" in alert["reason"]
