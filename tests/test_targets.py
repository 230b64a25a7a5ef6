"""A dropped file is data: the webhook and bucket endpoint a batch spec names must be allowed by the
HOME, at parse time (the whole file refused, at the line) and again at send time (the addresses the
name resolves to then). No public host is ever contacted: names resolve through a resolver seam."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.recorder import recorder
from wfbatch.core.parsing import PromptFileError, parse_prompt_bytes
from wfbatch.engine.acceptance import check_prompts
from wfbatch.engine.targets import Pinned, pin, target_policy
from wfbatch.settings import Settings, SettingsError, load_settings


def spec_text(**extra: Any) -> str:
    return json.dumps({"name": "x", "prompts": ["a kite"], **extra}, indent=1)


def line_of(text: str, needle: str) -> int:
    return next(number for number, line in enumerate(text.splitlines(), 1) if needle in line)


def home_settings(tmp_path: Path, **sections: Any) -> Settings:
    return load_settings(tmp_path, provider="local", **sections)


HOSTILE = [
    ("notify", "webhook_url", "http://169.254.169.254/latest/meta-data/", "a link-local address"),
    ("notify", "webhook_url", "http://127.0.0.1:8080/admin/shutdown", "a loopback address"),
    ("notify", "webhook_url", "https://redirector.test/to/metadata", "redirector.test:443"),
    ("notify", "webhook_url", "http://[fe80::1]/", "a link-local address"),
    ("notify", "webhook_url", "http://10.1.2.3/", "a private address"),
    ("notify", "webhook_url", "http://[::ffff:127.0.0.1]/", "a loopback address"),
    ("notify", "webhook_url", "http://0.0.0.0:9000/", "an unspecified address"),
    ("notify", "webhook_url", "http://hooks.example.com@127.0.0.1/", "user:password@"),
    ("delivery", "endpoint_url", "http://s3.dropper.test:9000", "s3.dropper.test:9000"),
]


@pytest.mark.parametrize(("section", "field", "url", "named"), HOSTILE)
def test_a_hostile_target_refuses_the_whole_file_at_its_line(
    tmp_path: Path, section: str, field: str, url: str, named: str
) -> None:
    override = {"url": "s3://b/", field: url} if section == "delivery" else {field: url}
    text = spec_text(**{section: override})
    settings = home_settings(tmp_path, notify={"allowed_webhooks": ["hooks.example.com"]})
    with pytest.raises(PromptFileError) as raised:
        check_prompts(text.encode(), "evil.json", settings)
    report = raised.value.report()
    assert report.count("\n") == 1, report  # one clear line
    assert report.startswith(f"evil.json:{line_of(text, field)}:"), report
    assert f"{section}.{field}:" in report and named in report, report
    assert "/latest/meta-data" not in report and "/admin" not in report  # a URL's path may hold a token


def test_the_parser_alone_allows_no_per_batch_target() -> None:
    text = spec_text(notify={"webhook_url": "https://hooks.example.com/x"})
    with pytest.raises(PromptFileError, match="allowed_webhooks"):
        parse_prompt_bytes(text.encode(), "x.json")


def test_targets_on_the_allow_list_or_the_homes_own_are_accepted(tmp_path: Path) -> None:
    settings = home_settings(
        tmp_path,
        notify={
            "webhook_url": "http://127.0.0.1:7000/home-hook",
            "allowed_webhooks": ["hooks.example.com", "https://chat.example.org/wf/", "10.0.0.5:8080"],
        },
        delivery={"allowed_endpoints": ["https://minio.example.net:9000/"]},
    )
    for notify, delivery in (
        ({"webhook_url": "https://hooks.example.com/any/path"}, None),
        ({"webhook_url": "http://hooks.example.com/"}, None),  # a host entry: either scheme
        ({"webhook_url": "https://chat.example.org/wf/batch-7"}, None),
        ({"webhook_url": "http://10.0.0.5:8080/x"}, None),  # a private address the HOME names itself
        ({"webhook_url": "http://127.0.0.1:7000/home-hook"}, None),  # the HOME's own, loopback or not
        (None, {"url": "s3://b/", "endpoint_url": "https://minio.example.net:9000"}),
    ):
        extra = {"notify": notify} if notify else {"delivery": delivery}
        checked = check_prompts(spec_text(**extra).encode(), "ok.json", settings)
        assert checked.parsed.notify == notify and checked.parsed.delivery == delivery


@pytest.mark.parametrize(
    "url",
    [
        "https://chat.example.org/wfx",  # a prefix ends at a path segment
        "https://chat.example.org/wf/../admin",
        "http://chat.example.org/wf/a",  # a URL prefix keeps its scheme
        "https://chat.example.org:8443/wf/a",  # ... and its port
        "https://chat.example.org.evil.test/wf/a",
        "http://10.0.0.5/x",  # the entry names port 8080
    ],
)
def test_an_allow_list_entry_does_not_stretch(tmp_path: Path, url: str) -> None:
    settings = home_settings(
        tmp_path, notify={"allowed_webhooks": ["https://chat.example.org/wf/", "10.0.0.5:8080"]}
    )
    with pytest.raises(PromptFileError, match=r"notify\.webhook_url"):
        check_prompts(spec_text(notify={"webhook_url": url}).encode(), "x.json", settings)


@pytest.mark.parametrize(
    "entry", ["*.example.com", "https://h.example/?q=1", "h.example/path", "ftp://h/", ""]
)
def test_a_bad_allow_list_entry_is_a_configuration_error(tmp_path: Path, entry: str) -> None:
    with pytest.raises(SettingsError, match=r"notify\.allowed_webhooks"):
        home_settings(tmp_path, notify={"allowed_webhooks": [entry]})


def test_a_staged_spec_keeps_its_delivery_and_notify() -> None:
    text = spec_text(
        draft={"width": 64}, final={"width": 256}, delivery={"url": "s3://b/"}, notify={"job_failed": True}
    )
    parsed = parse_prompt_bytes(text.encode(), "x.json")
    assert parsed.stages is not None
    assert parsed.delivery == {"url": "s3://b/"} and parsed.notify == {"job_failed": True}


# -- send time ---------------------------------------------------------------------------------


def resolving(answers: dict[str, list[str]]) -> Any:
    async def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise OSError(f"unknown name {host}")
        return answers[host]

    return resolve


async def test_an_allowed_name_that_resolves_to_loopback_is_refused_at_send_time(tmp_path: Path) -> None:
    settings = home_settings(tmp_path, notify={"allowed_webhooks": ["hooks.test", "mixed.test"]})
    rule = target_policy(settings).webhooks
    resolve = resolving({"hooks.test": ["127.0.0.1"], "mixed.test": ["93.184.215.14", "169.254.169.254"]})
    refused = await pin("http://hooks.test:8080/x", rule, resolve)
    assert isinstance(refused, str) and refused.startswith("refused: hooks.test resolves to 127.0.0.1")
    assert "allow_private_addresses" in refused
    refused = await pin("https://mixed.test/x", rule, resolve)
    assert isinstance(refused, str) and "169.254.169.254, a link-local address" in refused
    # A name that does not resolve is not refused for good: tried again later.
    other = target_policy(home_settings(tmp_path, notify={"allowed_webhooks": ["hooks.test.other"]}))
    unresolved = await pin("https://hooks.test.other/x", other.webhooks, resolve)
    assert isinstance(unresolved, str) and unresolved.startswith("cannot resolve hooks.test.other")


async def test_the_allow_list_is_applied_again_at_send_time(tmp_path: Path) -> None:
    # A batch accepted under an older configuration (or before allow-lists existed) is in the store.
    rule = target_policy(home_settings(tmp_path)).webhooks
    refused = await pin("https://hooks.example.com/x", rule, resolving({}))
    assert isinstance(refused, str) and refused.startswith("refused: hooks.example.com:443 is not allowed")


async def test_the_homes_own_target_is_sent_as_configured_without_a_lookup(tmp_path: Path) -> None:
    settings = home_settings(tmp_path, notify={"webhook_url": "http://localhost:7000/hook"})
    assert await pin("http://localhost:7000/hook", target_policy(settings).webhooks, resolving({})) == Pinned(
        "http://localhost:7000/hook"
    )


async def test_an_explicitly_allowed_private_name_gets_the_request_at_the_checked_address(
    tmp_path: Path,
) -> None:
    with recorder() as hook:
        settings = home_settings(
            tmp_path, notify={"allowed_webhooks": ["hooks.test"], "allow_private_addresses": True}
        )
        url = f"http://hooks.test:{hook.port}/hook?k=1"
        target = await pin(url, target_policy(settings).webhooks, resolving({"hooks.test": ["127.0.0.1"]}))
        assert isinstance(target, Pinned)
        # The request goes to the address that was checked, not to a second lookup of the name.
        assert target.url == f"http://127.0.0.1:{hook.port}/hook?k=1"
        async with httpx.AsyncClient(follow_redirects=False) as http:
            response = await http.post(
                target.url, content=b"{}", headers=target.headers, extensions=target.extensions
            )
        assert response.status_code == 200
    (request,) = hook.requests
    assert request.headers["host"] == f"hooks.test:{hook.port}" and request.path == "/hook?k=1"


async def test_https_keeps_the_name_for_the_certificate(tmp_path: Path) -> None:
    settings = home_settings(
        tmp_path, notify={"allowed_webhooks": ["hooks.test"], "allow_private_addresses": True}
    )
    target = await pin(
        "https://hooks.test/x", target_policy(settings).webhooks, resolving({"hooks.test": ["10.9.8.7"]})
    )
    assert target == Pinned("https://10.9.8.7/x", {"host": "hooks.test"}, {"sni_hostname": "hooks.test"})


def test_every_refused_target_of_a_file_is_named_at_its_own_line(tmp_path: Path) -> None:
    text = spec_text(
        notify={"job_failed": True, "webhook_url": "http://169.254.169.254/"},
        delivery={"url": "s3://b/", "endpoint_url": "http://[fd00::9]:9000"},
    )
    with pytest.raises(PromptFileError) as raised:
        check_prompts(text.encode(), "two.json", home_settings(tmp_path))
    lines = raised.value.report().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"two.json:{line_of(text, 'webhook_url')}:")
    assert lines[1].startswith(f"two.json:{line_of(text, 'endpoint_url')}:")
    assert "fd00::9:9000 (a private address)" in lines[1]


def test_an_ipv6_entry_names_its_address(tmp_path: Path) -> None:
    settings = home_settings(tmp_path, delivery={"allowed_endpoints": ["[fd00::9]:9000"]})
    delivery = {"url": "s3://b/", "endpoint_url": "http://[fd00::9]:9000"}
    checked = check_prompts(spec_text(delivery=delivery).encode(), "v6.json", settings)
    assert checked.parsed.delivery == delivery
