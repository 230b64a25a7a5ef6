"""The simulator's OpenAI Batch API (providers.md §6) driven with plain httpx over loopback, its
clock moved by the test: upload, create, the status clock, shuffled output, the error file,
expiry, rejected input, list pagination, cancel and the stats."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import jsonschema

from tests.conftest_sim import TEST_KEY
from tests.openai_images_schema import IMAGES_RESPONSE
from wfbatch.sim import RunningSimulator, SimOptions

AUTH = {"Authorization": f"Bearer {TEST_KEY}"}
STEP = 10.0


class ManualClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@contextmanager
def running(clock: ManualClock, **overrides: Any) -> Iterator[tuple[RunningSimulator, httpx.Client]]:
    options: dict[str, Any] = {
        "provider": "openai",
        "latency": (0.0, 0.0),
        "seed": 7,
        "api_key": TEST_KEY,
        "batch_step": STEP,
    }
    options.update(overrides)
    sim = RunningSimulator(SimOptions(**options), clock=clock)
    with sim, httpx.Client(base_url=sim.base_url, headers=AUTH, timeout=10.0) as client:
        yield sim, client


def jsonl(count: int, refuse: set[int] | None = None) -> bytes:
    lines = []
    for i in range(count):
        prompt = f"{'forbidden ' if refuse and i in refuse else ''}shot {i}"
        body = {"model": "gpt-image-1", "prompt": prompt, "n": 1, "size": "1024x1024", "quality": "low"}
        lines.append(
            {"custom_id": f"job-{i}", "method": "POST", "url": "/v1/images/generations", "body": body}
        )
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def start(client: httpx.Client, content: bytes, tag: str = "t1") -> dict[str, Any]:
    uploaded = client.post(
        "/files", files={"file": (f"{tag}.jsonl", content, "application/jsonl")}, data={"purpose": "batch"}
    )
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["purpose"] == "batch" and uploaded.json()["bytes"] == len(content)
    created = client.post(
        "/batches",
        json={
            "input_file_id": uploaded.json()["id"],
            "endpoint": "/v1/images/generations",
            "completion_window": "24h",
            "metadata": {"wfbatch_tag": tag},
        },
    )
    assert created.status_code == 200, created.text
    batch: dict[str, Any] = created.json()
    return batch


def lines_of(client: httpx.Client, file_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/files/{file_id}/content")
    assert response.status_code == 200
    return [json.loads(line) for line in response.text.splitlines()]


def test_a_batch_walks_its_statuses_and_delivers_shuffled_lines() -> None:
    clock = ManualClock()
    with running(clock) as (sim, client):
        batch = start(client, jsonl(12))
        assert batch["status"] == "validating" and batch["metadata"] == {"wfbatch_tag": "t1"}
        seen = []
        for _ in range(4):
            seen.append(client.get(f"/batches/{batch['id']}").json()["status"])
            clock.now += STEP
        assert seen == ["validating", "in_progress", "finalizing", "completed"]
        done = client.get(f"/batches/{batch['id']}").json()
        assert done["request_counts"] == {"total": 12, "completed": 12, "failed": 0}
        assert done["error_file_id"] == ""  # a clean batch: "" rather than null (§6.2)
        output = lines_of(client, done["output_file_id"])
        stats = sim.state.stats()
    ids = [line["custom_id"] for line in output]
    assert sorted(ids) == sorted(f"job-{i}" for i in range(12)) and ids != sorted(
        ids, key=lambda c: int(c[4:])
    )
    for line in output:
        assert line["error"] is None and line["id"].startswith("batch_req_")
        assert line["response"]["status_code"] == 200 and line["response"]["request_id"].startswith("req_")
        jsonschema.validate(line["response"]["body"], IMAGES_RESPONSE)
    assert stats["batch"]["uploads"] == 1 and stats["batch"]["batches_created"] == 1
    assert stats["openai"]["generations"] == 12


def test_refused_lines_go_to_the_error_file_and_all_refused_means_no_output() -> None:
    clock = ManualClock()
    with running(clock, moderation_marker="forbidden") as (_sim, client):
        some = start(client, jsonl(4, refuse={1}), "some")
        every = start(client, jsonl(2, refuse={0, 1}), "every")
        clock.now += 3 * STEP
        some = client.get(f"/batches/{some['id']}").json()
        every = client.get(f"/batches/{every['id']}").json()
        errors = lines_of(client, some["error_file_id"])
        assert every["status"] == "completed" and every["output_file_id"] is None
        assert len(lines_of(client, every["error_file_id"])) == 2
    assert some["request_counts"] == {"total": 4, "completed": 3, "failed": 1}
    (refused,) = errors
    assert refused["custom_id"] == "job-1" and refused["response"]["status_code"] == 400
    assert refused["response"]["body"]["error"]["code"] == "moderation_blocked"


def test_an_expiring_batch_delivers_what_it_finished() -> None:
    clock = ManualClock()
    with running(clock, batch_expire_after=3) as (_sim, client):
        batch = start(client, jsonl(5))
        clock.now += 3 * STEP
        batch = client.get(f"/batches/{batch['id']}").json()
        output = lines_of(client, batch["output_file_id"])
        errors = lines_of(client, batch["error_file_id"])
    assert batch["status"] == "expired" and len(output) == 3 and len(errors) == 2
    for line in errors:
        assert line["response"] is None and line["error"]["code"] == "batch_expired"


def test_rejected_input_fails_the_batch_with_errors() -> None:
    clock = ManualClock()
    with running(clock, batch_fail_input=True) as (_sim, client):
        batch = start(client, jsonl(2))
        clock.now += STEP
        batch = client.get(f"/batches/{batch['id']}").json()
    assert batch["status"] == "failed" and batch["output_file_id"] is None
    assert batch["errors"]["data"][0]["line"] == 1


def test_list_pages_newest_first_and_cancel() -> None:
    clock = ManualClock()
    with running(clock) as (sim, client):
        made = []
        for i in range(3):
            made.append(start(client, jsonl(1), f"tag{i}")["id"])
            clock.now += 1
        first = client.get("/batches", params={"limit": 2}).json()
        second = client.get("/batches", params={"limit": 2, "after": first["last_id"]}).json()
        files = client.get("/files", params={"purpose": "batch"}).json()
        canceled = client.post(f"/batches/{made[0]}/cancel").json()
        again = client.post(f"/batches/{made[0]}/cancel")
        stats = sim.state.stats()
    assert [b["id"] for b in first["data"]] == made[:0:-1] and first["has_more"] is True
    assert [b["id"] for b in second["data"]] == made[:1] and second["has_more"] is False
    assert [f["filename"] for f in files["data"]] == ["tag2.jsonl", "tag1.jsonl", "tag0.jsonl"]
    assert canceled["status"] == "cancelled" and canceled["request_counts"]["completed"] == 0
    assert again.status_code == 409
    assert stats["batch"]["cancels"] == 1 and stats["batch"]["batches_created"] == 3


def test_bad_input_and_no_key_are_refused() -> None:
    clock = ManualClock()
    with running(clock) as (_sim, client):
        no_purpose = client.post("/files", files={"file": ("x.jsonl", b"{}\n", "application/jsonl")})
        no_file = client.post(
            "/batches",
            json={
                "input_file_id": "file-nope",
                "endpoint": "/v1/images/generations",
                "completion_window": "24h",
            },
        )
        anonymous = httpx.get(f"{_sim.base_url}/batches", timeout=5)
    assert no_purpose.status_code == 400 and no_purpose.json()["error"]["param"] == "purpose"
    assert no_file.status_code == 400 and no_file.json()["error"]["param"] == "input_file_id"
    assert anonymous.status_code == 401


def test_a_cancel_delivers_the_lines_that_ran_before_it() -> None:
    """Lines run in input order through in_progress: a cancel halfway keeps (and bills) the half that
    ran, and lists the rest as `batch_cancelled` in the error file (§6.1)."""
    clock = ManualClock()
    with running(clock) as (sim, client):
        batch = start(client, jsonl(6))
        clock.now += 1.55 * STEP  # in_progress, a little over half of it gone
        assert client.get(f"/batches/{batch['id']}").json()["status"] == "in_progress"
        canceled = client.post(f"/batches/{batch['id']}/cancel").json()
        output = lines_of(client, canceled["output_file_id"])
        errors = lines_of(client, canceled["error_file_id"])
        stats = sim.state.stats()
    assert canceled["status"] == "cancelled"
    assert canceled["request_counts"] == {"total": 6, "completed": 3, "failed": 0}
    assert sorted(line["custom_id"] for line in output) == ["job-0", "job-1", "job-2"]
    assert sorted(line["custom_id"] for line in errors) == ["job-3", "job-4", "job-5"]
    for line in errors:
        assert line["response"] is None and line["error"]["code"] == "batch_cancelled"
    assert stats["openai"]["generations"] == 3


def test_spoiled_lines_are_paid_answers_without_a_readable_image() -> None:
    clock = ManualClock()
    content = (
        jsonl(5)
        .replace(b"shot 1", b"garbled shot 1")
        .replace(b"shot 2", b"empty shot 2")
        .replace(b"shot 3", b"broken shot 3")
        .replace(b"shot 4", b"unlucky shot 4")
    )
    markers = {
        "batch_not_image_marker": "garbled",
        "batch_no_image_marker": "empty",
        "batch_broken_image_marker": "broken",
        "batch_server_error_marker": "unlucky",
    }
    with running(clock, **markers) as (sim, client):
        batch = start(client, content)
        clock.now += 3 * STEP
        batch = client.get(f"/batches/{batch['id']}").json()
        output = {line["custom_id"]: line for line in lines_of(client, batch["output_file_id"])}
        (failed,) = lines_of(client, batch["error_file_id"])
        stats = sim.state.stats()
    assert batch["request_counts"] == {"total": 5, "completed": 4, "failed": 1}
    assert stats["openai"]["generations"] == 4  # made, so paid; the 500 line made nothing
    for line in output.values():
        assert line["response"]["status_code"] == 200 and line["error"] is None
        jsonschema.validate(line["response"]["body"], IMAGES_RESPONSE)
    assert output["job-2"]["response"]["body"]["data"] == []
    (garbled,) = output["job-1"]["response"]["body"]["data"]
    assert not base64.b64decode(garbled["b64_json"]).startswith(b"\x89PNG")
    (broken,) = output["job-3"]["response"]["body"]["data"]
    assert b"junk" in base64.b64decode(broken["b64_json"])
    assert base64.b64decode(output["job-0"]["response"]["body"]["data"][0]["b64_json"]).startswith(b"\x89PNG")
    assert failed["custom_id"] == "job-4" and failed["response"]["status_code"] == 500
    assert failed["response"]["body"]["error"]["type"] == "server_error"


def test_a_cut_line_is_counted_but_unreadable() -> None:
    clock = ManualClock()
    with running(clock, batch_cut_line_marker="cut") as (sim, client):
        batch = start(client, jsonl(2).replace(b"shot 1", b"cut shot 1"))
        clock.now += 3 * STEP
        batch = client.get(f"/batches/{batch['id']}").json()
        raw = client.get(f"/files/{batch['output_file_id']}/content").text.splitlines()
        stats = sim.state.stats()
    assert batch["request_counts"] == {"total": 2, "completed": 2, "failed": 0}
    assert stats["openai"]["generations"] == 2 and len(raw) == 2
    readable = []
    for line in raw:
        try:
            readable.append(json.loads(line)["custom_id"])
        except ValueError:
            assert "_cut" not in line
    assert readable == ["job-0"]
