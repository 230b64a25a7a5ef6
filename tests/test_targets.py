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
from wfbatch.core.targets import BucketRule, TargetPolicy
from wfbatch.engine.intake.acceptance import check_prompts
from wfbatch.engine.outbox.targets import Pinned, delivery_problem, pin, target_policy
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
    settings = home_settings(
        tmp_path, notify={"allowed_webhooks": ["hooks.example.com"]}, delivery={"allowed_buckets": ["b"]}
    )
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
        delivery={"allowed_endpoints": ["https://minio.example.net:9000/"], "allowed_buckets": ["b"]},
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
    targets = TargetPolicy(buckets=BucketRule(allowed=("b",)))
    parsed = parse_prompt_bytes(text.encode(), "x.json", targets=targets)
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
        check_prompts(text.encode(), "two.json", home_settings(tmp_path, delivery={"allowed_buckets": ["b"]}))
    lines = raised.value.report().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"two.json:{line_of(text, 'webhook_url')}:")
    assert lines[1].startswith(f"two.json:{line_of(text, 'endpoint_url')}:")
    assert "fd00::9:9000 (a private address)" in lines[1]


def test_an_ipv6_entry_names_its_address(tmp_path: Path) -> None:
    settings = home_settings(
        tmp_path, delivery={"allowed_endpoints": ["[fd00::9]:9000"], "allowed_buckets": ["b"]}
    )
    delivery = {"url": "s3://b/", "endpoint_url": "http://[fd00::9]:9000"}
    checked = check_prompts(spec_text(delivery=delivery).encode(), "v6.json", settings)
    assert checked.parsed.delivery == delivery


# -- the bucket, and AWS's own endpoint ----------------------------------------------------------


def test_a_bucket_the_home_did_not_allow_refuses_the_file_at_its_line(tmp_path: Path) -> None:
    settings = home_settings(tmp_path, delivery={"url": "s3://home/shots/"})
    text = spec_text(delivery={"upload": "all", "url": "s3://world-writable/loot/"})
    with pytest.raises(PromptFileError) as raised:
        check_prompts(text.encode(), "evil.json", settings)
    report = raised.value.report()
    assert report.count("\n") == 1, report
    assert report.startswith(f"evil.json:{line_of(text, 'world-writable')}:"), report
    assert "delivery.url: s3://world-writable/loot/ is not allowed" in report
    assert "[delivery] allowed_buckets (wfbatch.toml; it is empty now)" in report


def test_the_homes_own_bucket_and_the_allowed_ones_are_accepted(tmp_path: Path) -> None:
    settings = home_settings(
        tmp_path,
        delivery={"url": "s3://home/shots/{date}/", "allowed_buckets": ["shared", "team/a/", "s3://media/x"]},
    )
    for url in (
        "s3://home/",  # the HOME's own bucket: any prefix in it
        "s3://home/elsewhere/{name}/",
        "s3://shared/",
        "s3://shared/any/{batch}/",
        "s3://team/a/",
        "s3://team/a/{name}/",
        "s3://media/x/{date}/",  # "bucket/x" is the prefix x/
    ):
        checked = check_prompts(spec_text(delivery={"url": url}).encode(), "ok.json", settings)
        assert checked.parsed.delivery == {"url": url}


@pytest.mark.parametrize(
    "url",
    [
        "s3://team/",  # the entry is team/a/
        "s3://team/ab/",  # a prefix ends at a path segment
        "s3://team/a{name}/",  # a placeholder may extend the segment before it
        "s3://team/{name}/a/",
        "s3://team/a/../b/",
        "s3://team/a/./",
        "s3://team.evil/a/",
        "s3://Team/a/",
        "s3://home2/",
    ],
)
def test_a_bucket_entry_does_not_stretch(tmp_path: Path, url: str) -> None:
    settings = home_settings(tmp_path, delivery={"url": "s3://home/", "allowed_buckets": ["team/a/"]})
    with pytest.raises(PromptFileError, match=r"delivery\.url: "):
        check_prompts(spec_text(delivery={"url": url}).encode(), "x.json", settings)


@pytest.mark.parametrize("entry", ["", "*", "team/*/", "team/{name}/", "team/../x/", "bad bucket", "b?x=1"])
def test_a_bad_bucket_entry_is_a_configuration_error(tmp_path: Path, entry: str) -> None:
    with pytest.raises(SettingsError, match=r"delivery\.allowed_buckets"):
        home_settings(tmp_path, delivery={"allowed_buckets": [entry]})


def test_aws_itself_is_a_target_like_any_other(tmp_path: Path) -> None:
    text = spec_text(delivery={"endpoint_url": None})
    minio = {"endpoint_url": "https://minio.example.net:9000"}
    with pytest.raises(PromptFileError) as raised:
        check_prompts(text.encode(), "aws.json", home_settings(tmp_path, delivery=minio))
    report = raised.value.report()
    assert report.startswith(f"aws.json:{line_of(text, 'endpoint_url')}:"), report
    assert "delivery.endpoint_url: null (AWS's own endpoint) is not allowed" in report
    assert '"aws" in [delivery] allowed_endpoints' in report
    # Allowed when the HOME itself uses AWS, or lists "aws".
    for delivery in ({}, {**minio, "allowed_endpoints": ["aws"]}, {**minio, "allowed_endpoints": ["AWS"]}):
        checked = check_prompts(text.encode(), "aws.json", home_settings(tmp_path, delivery=delivery))
        assert checked.parsed.delivery == {"endpoint_url": None}


def test_the_aws_entry_allows_no_url(tmp_path: Path) -> None:
    # A host named "aws" may well resolve, through a search domain, to a machine on the LAN.
    settings = home_settings(tmp_path, delivery={"allowed_endpoints": ["aws"]})
    with pytest.raises(PromptFileError, match=r"delivery\.endpoint_url: aws:80 is not allowed"):
        check_prompts(spec_text(delivery={"endpoint_url": "http://aws"}).encode(), "x.json", settings)


async def test_the_bucket_and_aws_itself_are_checked_again_at_send_time(tmp_path: Path) -> None:
    # Accepted under an older configuration (or before these checks existed), in the store now.
    settings = home_settings(tmp_path, delivery={"url": "s3://home/", "endpoint_url": "http://10.0.0.5:9000"})
    resolve = resolving({})
    refused = await delivery_problem("s3://open/x/", "http://10.0.0.5:9000", settings, resolve)
    assert refused is not None and refused.startswith("refused: s3://open/x/ is not allowed")
    refused = await delivery_problem("s3://home/x/", None, settings, resolve)
    assert refused is not None and refused.startswith("refused: null (AWS's own endpoint)")
    assert await delivery_problem("s3://home/{date}/", "http://10.0.0.5:9000", settings, resolve) is None


def test_dot_segments_leave_no_bucket_even_the_homes_own(tmp_path: Path) -> None:
    # A server that normalises the path would take "/home/../other/key" to the bucket "other".
    settings = home_settings(tmp_path, delivery={"url": "s3://home/"})
    with pytest.raises(PromptFileError, match=r"delivery\.url: a prefix with '\.' or '\.\.' segments"):
        check_prompts(spec_text(delivery={"url": "s3://home/../other/"}).encode(), "x.json", settings)
