"""The Replicate simulator (`wfbatch sim --provider replicate`, providers.md §3) driven with plain
httpx over loopback: the prediction object, lifecycle, retention (`data_removed`), list paging,
problem+json errors, 402 and 429 with retry-after."""

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

AUTH = {"Authorization": f"Bearer {TEST_KEY}"}
MODEL = "/models/black-forest-labs/flux-schnell/predictions"


class ManualClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@contextmanager
def running(clock: ManualClock, **overrides: Any) -> Iterator[tuple[RunningSimulator, httpx.Client]]:
    values: dict[str, Any] = {"provider": "replicate", "latency": (1.0, 1.0), "seed": 3, "api_key": TEST_KEY}
    values.update(overrides)
    sim = RunningSimulator(SimOptions(**values), clock=clock)
    with sim, httpx.Client(base_url=sim.base_url, headers=AUTH, timeout=10.0) as client:
        yield sim, client


def create(client: httpx.Client, prompt: str = "a lighthouse", **extra: Any) -> httpx.Response:
    return client.post(
        MODEL, json={"input": {"prompt": prompt, "aspect_ratio": "16:9", "megapixels": "0.25", **extra}}
    )


def test_lifecycle_output_and_retention() -> None:
    clock = ManualClock()
    with running(clock, retention=60) as (sim, client):
        created = create(client, seed=9)
        assert created.status_code == 201
        prediction = created.json()
        assert prediction["status"] == "starting" and prediction["output"] is None
        assert prediction["input"]["seed"] == 9 and prediction["model"] == "black-forest-labs/flux-schnell"
        clock.now += 0.5
        assert client.get(prediction["urls"]["get"]).json()["status"] == "processing"
        clock.now += 0.5
        done = client.get(prediction["urls"]["get"]).json()
        assert done["status"] == "succeeded" and done["completed_at"] and not done["data_removed"]
        image = httpx.get(done["output"][0])
        assert Image.open(io.BytesIO(image.content)).size == (672, 384)  # 16:9 at 0.25 MP
        clock.now += 60
        removed = client.get(prediction["urls"]["get"]).json()
        assert removed["data_removed"] is True and removed["output"] is None and removed["input"] == {}
        assert httpx.get(done["output"][0]).status_code == 404
        assert sim.state.stats()["replicate"]["expired_downloads"] == 1


def test_errors_are_problem_json_with_billing_and_throttling() -> None:
    clock = ManualClock()
    with running(clock, quota=1, rpm=2, window=30, moderation_marker="NSFWX") as (sim, client):
        unauth = client.post(MODEL, json={"input": {"prompt": "x"}}, headers={"Authorization": "Bearer nope"})
        assert unauth.status_code == 401 and unauth.headers["content-type"] == "application/problem+json"
        assert unauth.json()["title"] == "Unauthenticated"
        failing = create(client, "an NSFWX prompt").json()
        assert create(client, "b").status_code == 402  # the running prediction holds the credit
        throttled = create(client, "c")
        assert throttled.status_code == 429 and throttled.headers["retry-after"] == "30"
        assert "~30s" in throttled.json()["detail"]
        clock.now += 30
        failed = client.get(failing["urls"]["get"]).json()
        assert failed["status"] == "failed" and "NSFW" in failed["error"]
        invalid = client.post(MODEL, json={"input": {"prompt": "x", "aspect_ratio": "7:3"}})
        assert invalid.status_code == 422 and invalid.json()["title"] == "Input validation failed"
        stats = sim.state.stats()["replicate"]
        assert (stats["billing_refusals"], stats["rate_limited"], stats["moderation_blocked"]) == (1, 1, 1)


def test_list_pages_newest_first_and_cancel_and_versions() -> None:
    clock = ManualClock()
    with running(clock, page_size=2) as (_sim, client):
        ids = [create(client, f"p{i}").json()["id"] for i in range(3)]
        first = client.get("/predictions").json()
        assert [p["id"] for p in first["results"]] == ids[:0:-1] and first["previous"] is None
        second = httpx.get(first["next"], headers=AUTH).json()
        assert [p["id"] for p in second["results"]] == ids[:1] and second["next"] is None
        canceled = client.post(f"/predictions/{ids[0]}/cancel").json()
        assert canceled["status"] == "canceled"
        versioned = client.post(
            "/predictions",
            json={"version": "owner/model:abc123", "input": {"prompt": "x", "width": 64, "height": 64}},
        )
        assert versioned.status_code == 201 and versioned.json()["version"] == "abc123"
        held = client.post(MODEL, json={"input": {"prompt": "w"}}, headers={"Prefer": "wait=5"})
        assert held.headers["preference-applied"] == "wait=5"
