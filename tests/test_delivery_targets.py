"""A real daemon uploading to moto's S3 on loopback: a dropped file's `delivery.endpoint_url` (null
too: AWS itself) and `delivery.url`'s bucket get requests signed with the HOME's credentials only
where the HOME allows them (wfbatch.core.targets)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.daemon_harness import DaemonProcess, running_daemon
from tests.recorder import recorder
from tests.s3_harness import FAKE_KEY_ID, S3Server, s3_server


@pytest.fixture
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


def spec(name: str, **extra: Any) -> str:
    prompts = [{"prompt": f"a lamp number {i}", "width": 32, "height": 32} for i in range(2)]
    return json.dumps({"name": name, "prompts": prompts, **extra}, indent=1)


def error_report(daemon: DaemonProcess, name: str) -> str:
    report = daemon.home / "rejected" / f"{name}.error.txt"
    daemon.wait_until(report.exists, 20, f"{name} rejected")
    return report.read_text()


def wait_for_object(daemon: DaemonProcess, s3: S3Server, bucket: str, key: str) -> None:
    daemon.wait_until(lambda: key in s3.objects(bucket), 20, f"{key} in the bucket")


def test_a_dropped_endpoint_the_home_did_not_allow_gets_nothing(s3: S3Server) -> None:
    s3.create_bucket("tgt-dropped")
    with recorder() as dropper, running_daemon(env=s3.env("s3://tgt-dropped/x/")) as daemon:
        endpoint = f"http://127.0.0.1:{dropper.port}"
        evil = spec("evil", delivery={"url": "s3://tgt-dropped/evil/", "endpoint_url": endpoint})
        daemon.drop("evil.json", evil)
        report = error_report(daemon, "evil.json")
        line = next(n for n, text in enumerate(evil.splitlines(), 1) if "endpoint_url" in text)
        assert f"\nevil.json:{line}:" in report and "delivery.endpoint_url:" in report, report
        assert "[delivery] allowed_endpoints" in report
        # A good file after it: once its manifest is up, the daemon has uploaded all it ever will.
        daemon.drop("good.json", spec("good"))
        wait_for_object(daemon, s3, "tgt-dropped", "x/manifest.json")
    assert dropper.requests == []


def test_an_endpoint_the_home_allowed_gets_the_uploads(s3: S3Server) -> None:
    s3.create_bucket("allowed")
    with recorder() as homes_other:
        env = {
            **s3.env("s3://allowed/x/"),
            # The HOME's own endpoint is another server; the batch names the allowed one.
            "WFBATCH_DELIVERY__ENDPOINT_URL": f"http://127.0.0.1:{homes_other.port}",
            "WFBATCH_DELIVERY__ALLOWED_ENDPOINTS": json.dumps([s3.endpoint.removeprefix("http://")]),
        }
        with running_daemon(env=env) as daemon:
            daemon.drop("lamps.json", spec("lamps", delivery={"endpoint_url": s3.endpoint}))
            wait_for_object(daemon, s3, "allowed", "x/manifest.json")
            assert len([key for key in s3.objects("allowed") if key.endswith(".png")]) == 2
    assert homes_other.requests == []


def test_an_allowed_endpoint_name_that_resolves_to_loopback_is_held(s3: S3Server) -> None:
    s3.create_bucket("held")
    port = s3.relay.port
    allowed = json.dumps([f"localhost:{port}"])
    env = {**s3.env("s3://held/x/"), "WFBATCH_DELIVERY__ALLOWED_ENDPOINTS": allowed}
    with running_daemon(env=env) as daemon:
        daemon.drop("lamps.json", spec("lamps", delivery={"endpoint_url": f"http://localhost:{port}"}))
        daemon.wait_for_jobs(lambda jobs: jobs["done"] == 2)
        held = daemon.wait_until(
            lambda: (lambda d: d if d["held"] >= 2 else None)(daemon.status()["delivery"]), 20, "held"
        )
        assert any("localhost resolves to 127.0.0.1" in reason for reason in held["held_reasons"]), held
        assert daemon.status()["jobs"]["done"] == 2  # the images stay done
        assert FAKE_KEY_ID not in daemon.log()
    assert s3.objects("held") == {}


def line_of(text: str, needle: str) -> int:
    return next(number for number, line in enumerate(text.splitlines(), 1) if needle in line)


def held_with(daemon: DaemonProcess, count: int) -> Any:
    return daemon.wait_until(
        lambda: (lambda d: d if d["held"] >= count else None)(daemon.status()["delivery"]), 20, "held"
    )


def test_a_dropped_bucket_outside_the_allow_list_gets_nothing(s3: S3Server) -> None:
    # "open" stands for someone else's world-writable bucket at the HOME's endpoint.
    s3.create_bucket("tgt-own")
    s3.create_bucket("open")
    env = s3.env("s3://tgt-own/x/", WFBATCH_DELIVERY__ALLOWED_BUCKETS='["open/team-a/"]')
    with running_daemon(env=env) as daemon:
        evil = spec("evil", delivery={"url": "s3://open/loot/"})
        daemon.drop("evil.json", evil)
        report = error_report(daemon, "evil.json")
        assert f"\nevil.json:{line_of(evil, 'open/loot')}:" in report, report
        assert "delivery.url: s3://open/loot/ is not allowed" in report
        assert "[delivery] allowed_buckets" in report
        # The prefix the HOME allows in that bucket, and the HOME's own bucket, get their uploads.
        daemon.drop("team.json", spec("team", delivery={"url": "s3://open/team-a/{name}/"}))
        daemon.drop("good.json", spec("good"))
        wait_for_object(daemon, s3, "open", "team-a/team/manifest.json")
        wait_for_object(daemon, s3, "tgt-own", "x/manifest.json")
        assert FAKE_KEY_ID not in daemon.log()
    assert all(key.startswith("team-a/team/") for key in s3.objects("open")), s3.objects("open")


def test_a_bucket_no_longer_allowed_is_held_at_send_time(s3: S3Server) -> None:
    s3.create_bucket("later-refused")
    env = s3.env("s3://tgt-later/x/", WFBATCH_DELIVERY__ALLOWED_BUCKETS='["later-refused"]')
    s3.relay.down()  # the uploads wait (tried again) while the HOME changes its mind
    with running_daemon(env=env) as daemon:
        daemon.drop("lamps.json", spec("lamps", delivery={"url": "s3://later-refused/lamps/"}))
        daemon.wait_for_jobs(lambda jobs: jobs["done"] == 2)
        daemon.stop()
        daemon.env.pop("WFBATCH_DELIVERY__ALLOWED_BUCKETS")
        s3.relay.up()
        daemon.start()
        held = held_with(daemon, 2)
        refused = "s3://later-refused/lamps/ is not allowed"
        assert all(refused in reason for reason in held["held_reasons"]), held
        assert daemon.status()["jobs"]["done"] == 2  # the images stay done
    assert s3.objects("later-refused") == {}


def test_aws_itself_is_refused_when_the_home_uses_another_endpoint(s3: S3Server) -> None:
    s3.create_bucket("tgt-null")
    # boto3 sends "no endpoint" requests to AWS_ENDPOINT_URL_S3: here, a recorder standing for AWS.
    with recorder() as aws:
        env = s3.env("s3://tgt-null/x/", AWS_ENDPOINT_URL_S3=f"http://127.0.0.1:{aws.port}")
        with running_daemon(env=env) as daemon:
            evil = spec("evil", delivery={"endpoint_url": None})
            daemon.drop("evil.json", evil)
            report = error_report(daemon, "evil.json")
            assert f"\nevil.json:{line_of(evil, 'endpoint_url')}:" in report, report
            assert "delivery.endpoint_url: null (AWS's own endpoint) is not allowed" in report
            daemon.drop("good.json", spec("good"))
            wait_for_object(daemon, s3, "tgt-null", "x/manifest.json")
    assert aws.requests == []


def test_aws_itself_listed_as_aws_gets_the_uploads(s3: S3Server) -> None:
    s3.create_bucket("aws-shots")  # its own name: moto's buckets outlive a test
    host, port = s3.moto.get_host_and_port()
    with recorder() as homes_own:
        env = {
            **s3.env("s3://aws-shots/x/"),
            "WFBATCH_DELIVERY__ENDPOINT_URL": f"http://127.0.0.1:{homes_own.port}",
            "WFBATCH_DELIVERY__ALLOWED_ENDPOINTS": '["aws"]',
            "AWS_ENDPOINT_URL_S3": f"http://{host}:{port}",  # "AWS" is moto here
        }
        with running_daemon(env=env) as daemon:
            daemon.drop("lamps.json", spec("lamps", delivery={"endpoint_url": None}))
            wait_for_object(daemon, s3, "aws-shots", "x/manifest.json")
            assert len([key for key in s3.objects("aws-shots") if key.endswith(".png")]) == 2
    assert homes_own.requests == []
