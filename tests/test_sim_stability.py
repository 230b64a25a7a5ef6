"""`wfbatch sim --provider stability` driven with plain httpx over loopback: multipart validation,
aspect ratios, moderation and filter markers, credits and top-up, the 150/10 s window and lockout."""

from __future__ import annotations

import io
from typing import Any

import httpx
from PIL import Image

from tests.conftest_sim import TEST_KEY
from wfbatch.sim import RunningSimulator, SimOptions

AUTH = {"Authorization": f"Bearer {TEST_KEY}", "Accept": "image/*"}


def sim(**overrides: Any) -> RunningSimulator:
    values: dict[str, Any] = {"provider": "stability", "latency": (0.0, 0.0), "api_key": TEST_KEY}
    values.update(overrides)
    return RunningSimulator(SimOptions(**values))


def generate(client: httpx.Client, endpoint: str = "core", **fields: str) -> httpx.Response:
    form = {"prompt": "a lighthouse", **fields}
    return client.post(
        f"/v2beta/stable-image/generate/{endpoint}", files={k: (None, v) for k, v in form.items()}
    )


def test_images_come_at_stabilitys_size_for_the_ratio_and_forms_are_validated() -> None:
    with sim() as running, httpx.Client(base_url=running.base_url, headers=AUTH) as client:
        answer = generate(client, aspect_ratio="16:9", output_format="jpeg", seed="5")
        assert answer.status_code == 200 and answer.headers["finish-reason"] == "SUCCESS"
        assert answer.headers["content-type"] == "image/jpeg" and answer.headers["seed"] == "5"
        with Image.open(io.BytesIO(answer.content)) as image:
            assert image.size == (1344, 768)
        bad = generate(client, "sd3", output_format="webp")
        assert bad.status_code == 400 and bad.json()["name"] == "invalid_parameters"
        assert generate(client, aspect_ratio="7:3").status_code == 400
        not_multipart = client.post("/v2beta/stable-image/generate/core", data={"prompt": "x"})
        assert not_multipart.status_code == 400


def test_markers_credits_and_top_up() -> None:
    with (
        sim(moderation_marker="NOPE", filter_marker="BLUR", credits=6.0) as running,
        httpx.Client(base_url=running.base_url, headers=AUTH) as client,
    ):
        refused = generate(client, prompt="NOPE here")
        assert refused.status_code == 403 and refused.json()["name"] == "content_moderation"
        filtered = generate(client, prompt="BLUR here")
        assert filtered.status_code == 200 and filtered.headers["finish-reason"] == "CONTENT_FILTERED"
        assert generate(client).status_code == 200
        broke = generate(client)
        assert broke.status_code == 402 and broke.json()["name"] == "payment_required"
        assert client.get("/v1/user/balance").json() == {"credits": 0}
        httpx.post(f"{running.root_url}/_sim/topup", json={"amount": 3}).raise_for_status()
        assert generate(client).status_code == 200
        stats = running.state.stats()["stability"]
    assert stats["moderation_blocked"] == 1 and stats["filtered"] == 1 and stats["charged"] == 9.0


def test_the_window_then_the_lockout_counts_requests_during_it() -> None:
    with sim(rpm=2, lockout=60.0) as running, httpx.Client(base_url=running.base_url, headers=AUTH) as client:
        assert [generate(client).status_code for _ in range(4)] == [200, 200, 429, 429]
        stats = running.state.stats()["stability"]
        assert "retry-after" not in {k.lower() for k in generate(client).headers}
    assert stats["lockouts"] == 1 and stats["requests_during_lockout"] == 1
