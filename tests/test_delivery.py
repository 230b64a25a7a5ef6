"""Delivery to an S3-compatible bucket: a real daemon uploading to moto's server on loopback."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import DaemonProcess, running_daemon
from tests.s3_harness import FAKE_SECRET, S3Server, s3_server
from tests.trickle_harness import trickling_server
from wfbatch.core.parsing import PromptFileError, parse_prompt_bytes
from wfbatch.core.targets import BucketRule, TargetPolicy
from wfbatch.outputs import read_manifest
from wfbatch.settings import DeliverySettings


@pytest.fixture
def s3() -> Any:
    with s3_server() as server:
        yield server


def spec(name: str, count: int, **extra: Any) -> str:
    prompts = [{"prompt": f"a lamp number {i}", "width": 32, "height": 32} for i in range(count)]
    return json.dumps({"name": name, "prompts": prompts, **extra})


def only_batch(daemon: DaemonProcess) -> dict[str, Any]:
    batches = daemon.status()["batches"]
    assert len(batches) == 1
    batch: dict[str, Any] = batches[0]
    return batch


def local_files(batch_dir: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(batch_dir)): path.read_bytes()
        for path in batch_dir.rglob("*.png")
        if path.name != "contact-sheet.png"
    }


def wait_for_object(
    daemon: DaemonProcess, s3: S3Server, bucket: str, key: str, timeout: float = 20
) -> None:
    daemon.wait_until(lambda: key in s3.objects(bucket), timeout, f"{key} in the bucket")


def test_ten_images_and_the_manifest_land_under_the_prefix(s3: S3Server) -> None:
    s3.create_bucket("shots")
    env = s3.env("s3://shots/out/{name}/{batch}/")
    with running_daemon(env=env) as daemon:
        daemon.drop("lamps.json", spec("Lamps", 10))
        daemon.wait_for_jobs(lambda jobs: jobs["done"] == 10)
        batch = only_batch(daemon)
        prefix = f"out/lamps/{batch['id']}/"
        wait_for_object(daemon, s3, "shots", prefix + "manifest.json")
        batch_dir = Path(batch["output_dir"])
        objects = s3.objects("shots")
        images = {
            key.removeprefix(prefix): data for key, data in objects.items() if key.endswith(".png")
        }
        assert len(images) == 10
        assert images == local_files(batch_dir)  # same paths under the prefix, same bytes
        assert all(
            key.startswith(prefix + "pending-review/") for key in objects if key.endswith(".png")
        )
        # The uploaded manifest lists every image as delivered, with its URL and ETag.
        remote = json.loads(objects[prefix + "manifest.json"])
        delivered = [entry["delivered"] for entry in remote["entries"]]
        assert all(
            d is not None and d["url"] == f"s3://shots/{prefix}{e['file']}" and d["etag"]
            for d, e in zip(delivered, remote["entries"], strict=True)
        )
        daemon.wait_until(
            lambda: all(e.delivered for e in read_manifest(batch_dir).entries), 10, "manifest"
        )
        status = daemon.status()
        assert status["delivery"]["done"] == 11 and status["delivery"]["pending"] == 0
        shown = daemon.get(f"/v1/jobs/{remote['entries'][0]['job_id']}")
        assert shown["delivery"]["state"] == "done" and shown["delivery"]["url"].startswith(
            "s3://shots/"
        )
        assert "delivered" in daemon.cli("show", remote["entries"][0]["job_id"]).output
        daemon.stop()
        # Credentials come from the AWS chain and go nowhere else.
        stored = b"".join(path.read_bytes() for path in daemon.home.glob("wfbatch.db*"))
        for text in (
            daemon.log(),
            stored.decode(errors="replace"),
            (batch_dir / "manifest.json").read_text(),
        ):
            assert FAKE_SECRET not in text


def test_kill_9_during_uploads_loses_nothing_and_duplicates_nothing(s3: S3Server) -> None:
    s3.create_bucket("crash")
    env = s3.env("s3://crash/{batch}/", WFBATCH_DELIVERY__MAX_CONCURRENT="1")
    s3.relay.delay = 0.25  # every upload takes a while: the kill lands among them
    with running_daemon(env=env) as daemon:
        daemon.drop("lamps.json", spec("lamps", 10))
        daemon.wait_until(lambda: len(s3.objects("crash")) >= 2, 30, "some uploads")
        daemon.kill()
        assert len(s3.objects("crash")) < 10, (
            "the kill came after every upload: slow the relay down"
        )
        s3.relay.delay = 0.0
        daemon.start()
        daemon.wait_for_jobs(lambda jobs: jobs["done"] == 10)
        batch = only_batch(daemon)
        prefix = f"{batch['id']}/"
        wait_for_object(daemon, s3, "crash", prefix + "manifest.json")
        batch_dir = Path(batch["output_dir"])
        local = local_files(batch_dir)
        assert len(local) == 10  # nothing lost locally
        objects = s3.objects("crash")
        # Every object once, at its one key: the batch's ten images and its manifest, nothing else.
        assert sorted(objects) == sorted(
            [prefix + path for path in local] + [prefix + "manifest.json"]
        )
        assert {
            key.removeprefix(prefix): data for key, data in objects.items() if key.endswith(".png")
        } == local


def test_a_bucket_down_for_a_while_only_delays_uploads(s3: S3Server) -> None:
    s3.create_bucket("later")
    s3.relay.down()  # connection refused
    with running_daemon(env=s3.env("s3://later/")) as daemon:
        daemon.drop("lamps.json", spec("lamps", 3))
        daemon.wait_for_jobs(lambda jobs: jobs["done"] == 3)
        waiting = daemon.wait_until(
            # Three images and, the batch being finished, its manifest.
            lambda: (lambda d: d if d["pending"] == 4 and d["done"] == 0 else None)(
                daemon.status()["delivery"]
            ),
            10,
            "uploads waiting",
        )
        assert waiting["held"] == 0
        job = daemon.get("/v1/jobs", state="done")["items"][0]
        detail = daemon.get(f"/v1/jobs/{job['id']}")
        assert detail["state"] == "done" and detail["delivery"]["state"] == "pending"
        assert detail["delivery"]["error"]  # the connection error, shown
        s3.relay.up()  # back, on the same port
        wait_for_object(daemon, s3, "later", "manifest.json")
        assert daemon.status()["jobs"]["done"] == 3
        assert len([key for key in s3.objects("later") if key.endswith(".png")]) == 3


def test_sigterm_does_not_wait_for_an_upload_stuck_on_a_trickling_bucket(s3: S3Server) -> None:
    s3.create_bucket("slow")
    with trickling_server() as slow:
        env = {**s3.env("s3://slow/{batch}/"), "WFBATCH_DELIVERY__ENDPOINT_URL": slow.url}
        with running_daemon(env=env) as daemon:
            daemon.drop("lamps.json", spec("lamps", 1))
            slow.wait_for_requests(1)  # the upload's answer now comes one byte at a time
            daemon.stop(timeout=20)  # a deadline to wait, not a measure
            assert daemon.returncode == 0, daemon.log()  # it exited by itself, not by SIGKILL
            # The upload was left pending: the next start, with a bucket that answers, does it.
            daemon.env = s3.env("s3://slow/{batch}/")
            daemon.start()
            prefix = f"{only_batch(daemon)['id']}/"
            wait_for_object(daemon, s3, "slow", prefix + "manifest.json")
            assert [key for key in s3.objects("slow") if key.endswith(".png")]


def test_an_upload_past_its_deadline_is_tried_again(s3: S3Server) -> None:
    with trickling_server() as slow:
        env = {
            **s3.env("s3://slow/{batch}/"),
            "WFBATCH_DELIVERY__ENDPOINT_URL": slow.url,
            "WFBATCH_DELIVERY__DEADLINE": "1",
        }
        with running_daemon(env=env) as daemon:
            daemon.drop("lamps.json", spec("lamps", 1))
            first, second = slow.wait_for_requests(2)[:2]
            assert first.method == second.method == "PUT" and first.path == second.path
            slow.trickle = False  # from now on the "bucket" answers at once
            daemon.wait_until(
                lambda: daemon.status()["delivery"]["done"] == 2, 20, "the image and the manifest"
            )


def test_a_missing_bucket_holds_the_delivery_not_the_job(s3: S3Server) -> None:
    with running_daemon(env=s3.env("s3://no-such-bucket/x/")) as daemon:
        daemon.drop("lamps.json", spec("lamps", 2))
        daemon.wait_for_jobs(lambda jobs: jobs["done"] == 2)
        held = daemon.wait_until(
            lambda: (lambda d: d if d["held"] >= 2 else None)(daemon.status()["delivery"]),  # + the manifest
            10,
            "held",
        )
        assert any("NoSuchBucket" in reason for reason in held["held_reasons"])
        assert daemon.status()["jobs"]["done"] == 2
        assert "held" in daemon.cli("status").output
        batch_dir = Path(only_batch(daemon)["output_dir"])
        assert len(local_files(batch_dir)) == 2
        # Held until the configuration changes (or a restart): the bucket now exists, so a restart
        # delivers everything. The batch spec's own override also wins over the HOME's.
        s3.create_bucket("no-such-bucket")
        daemon.stop()
        daemon.start()
        wait_for_object(daemon, s3, "no-such-bucket", "x/manifest.json")


def test_a_held_delivery_is_tried_again_by_itself_once_the_bucket_exists(s3: S3Server) -> None:
    # No SIGHUP, no restart: the bucket is created outside wfbatch and the held deliveries notice.
    env = {**s3.env("s3://made-later/x/"), "WFBATCH_DELIVERY__HELD_RETRY_SECONDS": "1"}
    with running_daemon(env=env) as daemon:
        daemon.drop("lamps.json", spec("lamps", 2))
        daemon.wait_for_jobs(lambda jobs: jobs["done"] == 2)
        daemon.wait_until(lambda: daemon.status()["delivery"]["held"] >= 1, 10, "held")
        s3.create_bucket("made-later")
        wait_for_object(daemon, s3, "made-later", "x/manifest.json")
        assert len([key for key in s3.objects("made-later") if key.endswith(".png")]) == 2
        assert daemon.status()["delivery"]["held"] == 0


def test_review_moves_or_deletes_the_object_and_a_spec_overrides_the_home(s3: S3Server) -> None:
    s3.create_bucket("reviewed")
    # The HOME's bucket; the batch's own spec says otherwise, to a bucket the HOME allows.
    env = s3.env("s3://elsewhere/", WFBATCH_DELIVERY__ALLOWED_BUCKETS='["reviewed/r/"]')
    with running_daemon(env=env) as daemon:
        daemon.drop("lamps.json", spec("lamps", 3, delivery={"url": "s3://reviewed/r/"}))
        daemon.wait_for_jobs(lambda jobs: jobs["done"] == 3)
        wait_for_object(daemon, s3, "reviewed", "r/manifest.json")
        jobs = sorted(daemon.get("/v1/jobs", state="done")["items"], key=lambda j: j["index"])
        daemon.post(
            "/v1/review", {"job_ids": [jobs[0]["id"]], "decision": "approve"}
        ).raise_for_status()
        daemon.post(
            "/v1/review", {"job_ids": [jobs[1]["id"]], "decision": "reject"}
        ).raise_for_status()
        name = Path(jobs[0]["file"]).name
        daemon.wait_until(
            lambda: (
                {f"r/approved/{name}"} <= set(s3.objects("reviewed"))
                and f"r/{jobs[0]['file']}" not in s3.objects("reviewed")
                and f"r/{jobs[1]['file']}" not in s3.objects("reviewed")
            ),
            15,
            "moved and deleted",
        )
        remote = daemon.wait_until(
            lambda: (lambda m: m if m["entries"][0]["review"] == "approved" else None)(
                json.loads(s3.objects("reviewed")["r/manifest.json"])
            ),
            15,
            "the manifest uploaded again",
        )
        assert remote["entries"][0]["delivered"]["url"] == f"s3://reviewed/r/approved/{name}"


def test_upload_approved_sends_only_approved_images(s3: S3Server) -> None:
    s3.create_bucket("approved-only")
    env = s3.env(
        "s3://approved-only/",
        WFBATCH_DELIVERY__UPLOAD="approved",
        WFBATCH_DELIVERY__PRESIGN_SECONDS="600",
    )
    with running_daemon(env=env) as daemon:
        daemon.drop("lamps.json", spec("lamps", 2))
        daemon.wait_for_jobs(lambda jobs: jobs["done"] == 2)
        wait_for_object(daemon, s3, "approved-only", "manifest.json")
        assert not [key for key in s3.objects("approved-only") if key.endswith(".png")]
        job = daemon.get("/v1/jobs", state="done")["items"][0]
        daemon.post(
            "/v1/review", {"job_ids": [job["id"]], "decision": "approve"}
        ).raise_for_status()
        key = f"approved/{Path(job['file']).name}"
        wait_for_object(daemon, s3, "approved-only", key)
        detail = daemon.wait_until(
            lambda: (lambda d: d if d["delivery"] and d["delivery"]["state"] == "done" else None)(
                daemon.get(f"/v1/jobs/{job['id']}")
            ),
            10,
            "delivered",
        )
        assert "X-Amz-Signature" in detail["delivery"]["presigned_url"]
        assert FAKE_SECRET not in detail["delivery"]["presigned_url"]


# -- configuration and the batch spec ------------------------------------------------------------


def test_a_spec_delivery_override_is_checked_where_it_is_written() -> None:
    good = parse_prompt_bytes(
        spec("x", 1, delivery={"url": "s3://b/{date}/", "upload": "approved"}).encode(),
        "x.json",
        targets=TargetPolicy(buckets=BucketRule(allowed=("b",))),
    )
    assert good.delivery == {"url": "s3://b/{date}/", "upload": "approved"}
    for bad, expected in (
        ({"delivery": {"url": "https://b/"}}, "delivery: url: expected s3://bucket/prefix/"),
        ({"delivery": {"url": "s3://b/{month}/"}}, "unknown placeholder {month}"),
        ({"delivery": {"uplod": "all"}}, "did you mean 'upload'"),
        (
            {"notify": {"command": "rm -rf ~"}},
            "notify: command: set in the HOME's configuration only",
        ),
        ({"notify": {"webhook_secret": "whsec_x"}}, "never stored with a batch"),
    ):
        with pytest.raises(PromptFileError) as raised:
            parse_prompt_bytes(spec("x", 1, **bad).encode(), "x.json")
        report = raised.value.report()
        assert expected in report and "x.json:1:" in report, report


def test_delivery_settings_refuse_a_bad_url() -> None:
    with pytest.raises(ValueError, match="without a bucket"):
        DeliverySettings(url="s3:///prefix/")
    assert DeliverySettings(url="s3://b/p").url == "s3://b/p"


def test_the_database_stores_no_secret_in_the_delivery_tables(tmp_path: Path) -> None:
    # Migration 7 adds no column that could hold a credential.
    from wfbatch.store.schema import MIGRATIONS, step_text

    db = sqlite3.connect(tmp_path / "x.db")
    for step in MIGRATIONS:
        db.executescript(step_text(step, "sqlite"))
    columns = {
        row[1]
        for table in ("deliveries", "notifications")
        for row in db.execute(f"PRAGMA table_info({table})")
    }
    assert not {
        name for name in columns if "secret" in name or "key_id" in name or "credential" in name
    }
