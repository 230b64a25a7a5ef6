"""A provider that refuses a job's picture (unsafe, a mask that does not match, one it cannot
load) fails the job with the provider's own message: a permanent failure, never retried as
transient. Each provider's documented refusal shape, through its client; and one end to end."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image as PILImage

from tests.conftest_sim import TEST_KEY
from tests.test_fal import provider_with as fal_provider
from tests.test_fal import spec as fal_spec
from tests.test_openai import Recorder as OpenAIRecorder
from tests.test_openai import openai_sim, submit_with
from tests.test_openai import spec as openai_spec
from tests.test_replicate import provider_with as replicate_provider
from tests.test_replicate import spec as replicate_spec
from tests.test_stability import Recorder as StabilityRecorder
from tests.test_stability import provider_with as stability_provider
from tests.test_stability import spec as stability_spec
from wfbatch.core.models import InputImage, JobSpec
from wfbatch.core.states import JobState
from wfbatch.engine.intake.acceptance import check_prompts
from wfbatch.engine.intake.ingest import ingest
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.home import HomeLayout
from wfbatch.providers.errors import Permanent
from wfbatch.settings import load_settings
from wfbatch.store import Reuse, Store


def picture(tmp_path: Path) -> InputImage:
    path = tmp_path / "in.png"
    PILImage.new("RGB", (96, 96), "red").save(path)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    return InputImage("image", "in.png", str(path), digest, len(data), 96, 96, "image/png")


def with_picture(spec: JobSpec, tmp_path: Path, **extra: Any) -> JobSpec:
    return replace(spec, inputs=(picture(tmp_path),), **extra)


async def test_openai_refusing_a_mask_is_permanent_with_its_message(tmp_path: Path) -> None:
    body = {
        "error": {
            "message": "Invalid mask: the mask and the image must be the same size.",
            "type": "invalid_request_error",
            "param": "mask",
            "code": "invalid_image",
        }
    }
    with pytest.raises(Permanent, match="the mask and the image must be the same size") as caught:
        await submit_with(OpenAIRecorder(400, body), with_picture(openai_spec(), tmp_path))
    assert caught.value.status == 400


async def test_stability_refusing_an_image_is_permanent_with_its_message(tmp_path: Path) -> None:
    body = {"id": "e1", "name": "invalid_file", "errors": ["image: the image could not be processed"]}
    provider = stability_provider(StabilityRecorder(400, body))
    try:
        with pytest.raises(Permanent, match="the image could not be processed") as caught:
            await provider.submit(with_picture(stability_spec(model="ultra"), tmp_path, strength=0.5), "k")
    finally:
        await provider.aclose()
    assert caught.value.status == 400


async def test_fal_refusing_an_image_is_permanent_with_its_message(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        too_small = "Image is too small (min 256 px)"
        detail = [{"loc": ["body", "image_url"], "msg": too_small, "type": "image_too_small"}]
        return httpx.Response(422, json={"detail": detail})

    provider = fal_provider(refuse)
    try:
        with pytest.raises(Permanent, match=r"image_too_small.*Image is too small") as caught:
            await provider.submit(with_picture(fal_spec(), tmp_path, strength=0.9), "k")
    finally:
        await provider.aclose()
    assert caught.value.status == 422


async def test_replicate_refusing_an_image_is_permanent_with_its_message(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        detail = "- input.image: cannot identify image file"
        body = {"title": "Input validation failed", "detail": detail, "status": 422}
        return httpx.Response(422, json=body, headers={"content-type": "application/problem+json"})

    provider = replicate_provider(refuse)
    try:
        with pytest.raises(Permanent, match="cannot identify image file") as caught:
            await provider.submit(with_picture(replicate_spec(), tmp_path, strength=0.6), "k")
    finally:
        await provider.aclose()
    assert caught.value.status == 422


async def test_an_edit_refused_as_unsafe_fails_the_job_at_once(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    (home / "inputs").mkdir()
    PILImage.new("RGB", (64, 64), "red").save(home / "inputs" / "a.png")
    lines = [
        {"prompt": "a FORBIDDEN-SUBJECT edit", "image": "a.png"},
        {"prompt": "a fine edit", "image": "a.png"},
    ]
    shared = {"provider": "openai", "params": {"quality": "low"}}
    raw = "\n".join(json.dumps({**line, **shared}) for line in lines)
    with openai_sim(moderation_marker="FORBIDDEN-SUBJECT") as sim:
        section = {"api_key": TEST_KEY, "base_url": sim.base_url, "backoff_initial": 0.02}
        settings = load_settings(home, provider="openai", openai=section)
        checked = check_prompts(raw.encode(), "e.jsonl", settings)
        expanded = checked.expanded
        ingested = await ingest(
            store, layout, checked.parsed, raw.encode(), "openai", reuse=Reuse.NEVER, expanded=expanded
        )
        engine = Engine(store, settings, layout, batch_ids=[ingested.batch.id])
        await engine.run_until_idle()
        await engine.shutdown()
    refused, fine = await store.jobs.jobs_for_batch(ingested.batch.id)
    assert fine.state is JobState.DONE
    assert refused.state is JobState.FAILED and refused.attempts == 1
    assert refused.error_status == 400 and refused.error_message is not None
    assert "rejected by the safety system" in refused.error_message
