"""The fal.ai queue simulator (`wfbatch sim --provider fal`, providers.md §2) driven with plain httpx
over loopback: submit and its URLs, IN_QUEUE with queue positions under the concurrency limit,
results and their images, the 422 content_policy_violation, the 403 locked account, cancel, 429s
and stats."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from PIL import Image

from tests.conftest_sim import TEST_KEY
from wfbatch.sim import RunningSimulator, SimOptions

AUTH = {"Authorization": f"Key {TEST_KEY}"}


class ManualClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextmanager
def running(clock: ManualClock, **overrides: Any) -> Iterator[tuple[RunningSimulator, httpx.Client]]:
    values: dict[str, Any] = {"provider": "fal", "latency": (1.0, 1.0), "seed": 3, "api_key": TEST_KEY}
    values.update(overrides)
    sim = RunningSimulator(SimOptions(**values), clock=clock)
    with sim, httpx.Client(base_url=sim.base_url, headers=AUTH, timeout=10.0) as client:
        yield sim, client


def submit(client: httpx.Client, prompt: str = "a lighthouse", **extra: Any) -> httpx.Response:
    body = {"prompt": prompt, "image_size": {"width": 96, "height": 64}, "seed": 5, **extra}
    return client.post("/fal-ai/flux/schnell", json=body)


def test_queue_positions_progress_result_and_image() -> None:
    clock = ManualClock()
    with running(clock, concurrency=2) as (sim, client):
        answers = [submit(client, f"p{i}") for i in range(3)]
        assert [a.status_code for a in answers] == [200] * 3
        first = answers[0].json()
        assert first["request_id"] == answers[0].headers["x-fal-request-id"]
        # Under owner/name, never the subpath (providers.md §2.1).
        assert first["status_url"] == f"{sim.base_url}/fal-ai/flux/requests/{first['request_id']}/status"
        third = httpx.get(answers[2].json()["status_url"], headers=AUTH).json()
        assert (third["status"], third["queue_position"]) == ("IN_QUEUE", 0)
        running_now = httpx.get(first["status_url"], headers=AUTH).json()
        assert running_now["status"] == "IN_PROGRESS" and running_now["logs"] is None
        assert httpx.get(first["response_url"], headers=AUTH).status_code == 400  # not done yet
        clock.advance(1.0)
        assert httpx.get(answers[2].json()["status_url"], headers=AUTH).json()["status"] == "IN_PROGRESS"
        done = httpx.get(first["status_url"], headers=AUTH).json()
        assert done["status"] == "COMPLETED" and "error" not in done
        result = httpx.get(first["response_url"], headers=AUTH).json()
        assert result["seed"] == 5 and result["prompt"] == "p0"
        image = httpx.get(result["images"][0]["url"])
        assert image.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(image.content)).size == (96, 64)
        stats = httpx.get(f"{sim.root_url}/_sim/stats").json()["fal"]
        assert stats["peak_in_progress"] == 2 and stats["max_in_queue"] == 1
        assert stats["executions_by_prompt"] == {"p0": 1, "p1": 1, "p2": 1}


def test_moderation_is_a_422_on_the_result_and_credit_locks_the_account() -> None:
    clock = ManualClock()
    with running(clock, moderation_marker="FORBIDDEN", quota=1) as (sim, client):
        refused = submit(client, "a FORBIDDEN thing").json()
        assert submit(client, "held").status_code == 403  # the running request holds the credit
        clock.advance(5)
        paid = submit(client, "fine").json()  # the refusal was not charged
        clock.advance(5)
        status = httpx.get(refused["status_url"], headers=AUTH).json()
        assert (status["status"], status["error_type"]) == ("COMPLETED", "content_policy_violation")
        result = httpx.get(refused["response_url"], headers=AUTH)
        assert result.status_code == 422
        assert result.json()["detail"][0]["type"] == "content_policy_violation"
        assert httpx.get(paid["response_url"], headers=AUTH).status_code == 200
        locked = submit(client, "one more")
        assert locked.status_code == 403 and "Exhausted balance" in locked.json()["detail"]
        assert httpx.post(f"{sim.root_url}/_sim/topup", json={"amount": 1}).json()["balance"] == 1
        assert submit(client, "one more").status_code == 200
        stats = httpx.get(f"{sim.root_url}/_sim/stats").json()["fal"]
        assert (stats["locked_refusals"], stats["moderation_blocked"], stats["completed"]) == (2, 1, 1)


def test_cancel_answers_each_documented_status() -> None:
    clock = ManualClock()
    with running(clock, concurrency=1) as (sim, client):
        active, waiting = submit(client, "a").json(), submit(client, "b").json()
        assert httpx.put(waiting["cancel_url"], headers=AUTH).json() == {"status": "OK"}
        cancel = httpx.put(active["cancel_url"], headers=AUTH)
        assert (cancel.status_code, cancel.json()["status"]) == (202, "CANCELLATION_REQUESTED")
        again = httpx.put(active["cancel_url"], headers=AUTH)
        assert (again.status_code, again.json()["status"]) == (400, "ALREADY_COMPLETED")
        missing = httpx.put(active["cancel_url"].replace(active["request_id"], "nope"), headers=AUTH)
        assert (missing.status_code, missing.json()["status"]) == (404, "NOT_FOUND")
        assert httpx.get(f"{sim.root_url}/_sim/stats").json()["fal"]["canceled"] == 2


def test_auth_validation_rate_limit_and_early_retries() -> None:
    clock = ManualClock()
    with running(clock, rpm=2, window=10) as (sim, client):  # the 422 counts too
        assert (
            client.post(
                "/fal-ai/flux/schnell", json={"prompt": "x"}, headers={"Authorization": "Key no"}
            ).status_code
            == 401
        )
        invalid = client.post("/fal-ai/flux/schnell", json={"image_size": "square"})
        assert invalid.status_code == 422 and invalid.json()["detail"][0]["loc"] == ["body", "prompt"]
        assert submit(client).status_code == 200
        limited = submit(client)
        assert limited.status_code == 429 and limited.headers["retry-after"] == "10"
        submit(client)  # inside the announced window: an early retry
        clock.advance(10)
        assert submit(client).status_code == 200
        stats = httpx.get(f"{sim.root_url}/_sim/stats").json()["fal"]
        assert stats["early_retries"] == 1 and stats["rate_limited"] == 2
