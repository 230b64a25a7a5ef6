"""Stability with pictures in, over loopback against its simulator: finals upscaled from the
approved drafts (the bytes compared by hash in the simulator's books), image-to-image from an
entry's picture, the creative upscaler's asynchronous result, and the simulator's strictness."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image as PILImage

from tests.conftest_sim import TEST_KEY
from tests.test_stability import stability_sim
from wfbatch.core.states import JobState, ReviewStatus
from wfbatch.engine.intake.acceptance import check_prompts
from wfbatch.engine.intake.control import Control
from wfbatch.engine.intake.ingest import ingest
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.engine.planning.plan import make_plan
from wfbatch.home import HomeLayout
from wfbatch.outputs import read_manifest
from wfbatch.settings import Settings, load_settings
from wfbatch.sim.stability.book import StabilityBook
from wfbatch.store import Reuse, Store

DRAFT_CREDITS, UPSCALE_CREDITS = 3.0, 2.0  # core; upscale/fast (providers.md §4.5, §12.2)


def config(home: Path, base_url: str, **section: Any) -> Settings:
    values = {"api_key": TEST_KEY, "base_url": base_url, "backoff_initial": 0.05, "max_in_flight": 4}
    values.update(section)
    return load_settings(home, provider="stability", stability=values)


def size_of(data: bytes) -> tuple[int, int]:
    with PILImage.open(io.BytesIO(data)) as image:
        return image.size


async def test_approving_five_of_twenty_drafts_upscales_exactly_those_drafts(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    raw = json.dumps(
        {
            "name": "shoes",
            # JPEG: a 16-megapixel upscale is encoded in a fraction of a PNG's time (busy CI machines).
            "defaults": {"format": "jpeg"},
            "prompts": [f"a red shoe, take {i}" for i in range(20)],
            "draft": {"model": "core", "width": 512, "height": 512},
            "final": {"width": 1024, "height": 1024, "from_draft": "upscale"},
        }
    ).encode()
    with stability_sim() as sim:
        settings = config(home, sim.base_url)
        checked = check_prompts(raw, "shoes.json", settings)
        assert {job.final.operation for job in checked.expanded if job.final} == {"upscale"}
        plan = await make_plan(store, settings, [checked.parsed], approve_rate=0.25)
        assert plan.estimated_credits == pytest.approx(20 * DRAFT_CREDITS + 5 * UPSCALE_CREDITS)
        batch = (
            await ingest(
                store, layout, checked.parsed, raw, "stability", reuse=Reuse.NEVER, expanded=checked.expanded
            )
        ).batch
        engine = Engine(store, settings, layout, batch_ids=[batch.id])
        await engine.run_until_idle()
        drafts = await store.jobs.jobs_for_batch(batch.id)
        assert [job.state for job in drafts] == [JobState.DONE] * 20
        chosen = [job.id for job in drafts[:5]]
        # The drafts' original bytes, as the cache holds them (what the upscaler must receive).
        originals: dict[int, str] = {}
        for job in drafts[:5]:
            found = await store.cache.get(job.cache_key)
            assert found is not None
            originals[job.id] = found[0]
        result = await Control(engine).review(chosen, ReviewStatus.APPROVED)
        assert "5 finals queued" in result.message
        await Engine(store, settings, layout, batch_ids=[batch.id]).run_until_idle()
        stats = sim.state.stats()["stability"]

    received = stats["received_images"]
    assert [item["endpoint"] for item in received] == ["upscale/fast"] * 5
    assert sorted(item["sha256"] for item in received) == sorted(originals.values())
    assert stats["upscales"] == {"fast": 5}
    assert stats["generations"] == 20
    assert stats["charged"] == 20 * DRAFT_CREDITS + 5 * UPSCALE_CREDITS

    jobs = await store.jobs.jobs_for_batch(batch.id)
    finals = [job for job in jobs if job.stage == "final"]
    assert len(finals) == 5 and all(job.state is JobState.DONE for job in finals)
    output = Path(batch.output_dir)
    by_id = {job.id: job for job in jobs}
    for final in finals:
        assert final.draft_of in originals
        assert final.spec.operation == "upscale"
        assert final.spec.inputs[0].sha256 == originals[final.draft_of]
        assert final.credits == UPSCALE_CREDITS
        assert final.file is not None
        draft_size = size_of((output / by_id[final.draft_of].file).read_bytes())  # type: ignore[operator]
        assert size_of((output / final.file).read_bytes()) == (draft_size[0] * 4, draft_size[1] * 4)
    ledger = round(await store.ledger.batch_exposure(batch.id), 6)
    assert ledger == 20 * DRAFT_CREDITS + 5 * UPSCALE_CREDITS

    await engine.writer.write_batch_files(batch.id)
    manifest = {entry.job_id: entry for entry in read_manifest(output).entries}
    for final in finals:
        entry = manifest[str(final.id)]
        assert entry.final_mode == "upscale"
        assert [(i.role, i.source, i.sha256) for i in entry.inputs] == [
            ("image", f"draft:{final.draft_of}", originals[final.draft_of])  # type: ignore[index]
        ]


async def test_an_entry_picture_goes_to_image_to_image_with_its_strength(
    store: Store, layout: HomeLayout, home: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "shots"
    folder.mkdir()
    photo = folder / "shoe.png"
    PILImage.new("RGB", (640, 480), "navy").save(photo)
    lines = [
        {"prompt": "the shoe on oak", "image": "shoe.png", "strength": 0.6, "model": "sd3.5-large"},
        {"prompt": "the shoe on marble", "image": "shoe.png", "strength": 0.4, "model": "ultra"},
    ]
    raw = "\n".join(json.dumps({"provider": "stability", **line}) for line in lines).encode()
    with stability_sim() as sim:
        settings = config(home, sim.base_url)
        checked = check_prompts(raw, "shots.jsonl", settings, prompt_dir=folder)
        batch = (
            await ingest(
                store, layout, checked.parsed, raw, "stability", reuse=Reuse.NEVER, expanded=checked.expanded
            )
        ).batch
        engine = Engine(store, settings, layout, batch_ids=[batch.id])
        await engine.run_until_idle()
        await engine.shutdown()
        stats = sim.state.stats()["stability"]
        forms = sim.state.book_as(StabilityBook).forms
    jobs = await store.jobs.jobs_for_batch(batch.id)
    assert [job.state for job in jobs] == [JobState.DONE, JobState.DONE]
    digest = hashlib.sha256(photo.read_bytes()).hexdigest()
    assert sorted((item["endpoint"], item["sha256"]) for item in stats["received_images"]) == [
        ("generate/sd3", digest),
        ("generate/ultra", digest),
    ]
    by_strength = {form["strength"]: form for form in forms}
    assert by_strength["0.6"]["mode"] == "image-to-image" and "aspect_ratio" not in by_strength["0.6"]
    assert "mode" not in by_strength["0.4"]
    assert [job.credits for job in jobs] == [6.5, 8.0]


def test_the_simulator_refuses_what_stability_would() -> None:
    png = io.BytesIO()
    PILImage.new("RGB", (2000, 2000), "red").save(png, format="PNG")
    small = io.BytesIO()
    PILImage.new("RGB", (256, 256), "red").save(small, format="PNG")
    auth = {"authorization": f"Bearer {TEST_KEY}", "accept": "image/*"}
    with stability_sim() as sim, httpx.Client(base_url=sim.base_url, headers=auth) as client:
        url = "/v2beta/stable-image"

        def post(path: str, data: dict[str, str], image: bytes | None) -> httpx.Response:
            files = {"image": ("x.png", image, "image/png")} if image is not None else {"none": ("", b"", "")}
            return client.post(f"{url}/{path}", data=data, files=files)

        too_big = post("upscale/fast", {}, png.getvalue())
        assert too_big.status_code == 400 and "1536" in too_big.json()["errors"][0]
        no_prompt = post("upscale/conservative", {}, small.getvalue())
        assert no_prompt.status_code == 400 and "prompt" in no_prompt.json()["errors"][0]
        not_image = post("upscale/fast", {}, b"hello")
        assert not_image.status_code == 400 and "decoded" in not_image.json()["errors"][0]
        core = post("generate/core", {"prompt": "p", "strength": "0.5"}, small.getvalue())
        assert core.status_code == 400 and "core" in core.json()["errors"][0]
        no_strength = post("generate/ultra", {"prompt": "p"}, small.getvalue())
        assert no_strength.status_code == 400 and "strength" in no_strength.json()["errors"][0]
        started = post("upscale/creative", {"prompt": "p"}, small.getvalue())
        assert started.status_code == 200 and len(started.json()["id"]) == 64
        result_id = started.json()["id"]
        unknown = client.get(f"/v2beta/results/{'0' * 64}")
        assert unknown.status_code == 404
        stranger = client.get(f"/v2beta/results/{result_id}", headers={"authorization": "Bearer sk-other"})
        assert stranger.status_code in (401, 404)
        done = client.get(f"/v2beta/results/{result_id}", headers={"accept": "image/*"})
        assert done.status_code == 200 and size_of(done.content) == (2048, 2048)
        stats = sim.state.stats()["stability"]
    assert stats["charged"] == 60.0 and stats["upscales"] == {"creative": 1}


async def test_a_creative_upscale_is_polled_until_its_result_is_there(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    raw = json.dumps(
        {
            "prompts": ["a lamp"],
            "draft": {"model": "core"},
            "final": {"from_draft": "upscale", "params": {"upscaler": "creative", "creativity": 0.3}},
            "auto_approve": "all",
        }
    ).encode()
    with stability_sim(latency=(0.05, 0.05)) as sim:
        settings = config(home, sim.base_url, poll_initial=0.02, poll_max=0.05)
        checked = check_prompts(raw, "lamp.json", settings)
        batch = (
            await ingest(
                store, layout, checked.parsed, raw, "stability", reuse=Reuse.NEVER, expanded=checked.expanded
            )
        ).batch
        engine = Engine(store, settings, layout, batch_ids=[batch.id])
        await engine.run_until_idle()
        await engine.shutdown()
        stats = sim.state.stats()["stability"]
    jobs = await store.jobs.jobs_for_batch(batch.id)
    final = next(job for job in jobs if job.stage == "final")
    assert final.state is JobState.DONE and final.credits == 60.0
    assert stats["upscales"] == {"creative": 1} and stats["charged"] == 3.0 + 60.0
    assert final.file is not None
    assert size_of((Path(batch.output_dir) / final.file).read_bytes()) == (2048, 2048)


async def test_a_refined_final_sends_the_draft_through_image_to_image(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    raw = json.dumps(
        {
            "prompts": ["a teapot"],
            "draft": {"model": "core"},
            "final": {"model": "sd3.5-large", "from_draft": "refine", "strength": 0.4},
            "auto_approve": "all",
        }
    ).encode()
    with stability_sim() as sim:
        settings = config(home, sim.base_url)
        checked = check_prompts(raw, "tea.json", settings)
        ingested = await ingest(
            store, layout, checked.parsed, raw, "stability", reuse=Reuse.NEVER, expanded=checked.expanded
        )
        batch = ingested.batch
        engine = Engine(store, settings, layout, batch_ids=[batch.id])
        await engine.run_until_idle()
        await engine.shutdown()
        stats = sim.state.stats()["stability"]
        forms = sim.state.book_as(StabilityBook).forms
    draft, final = await store.jobs.jobs_for_batch(batch.id)
    found = await store.cache.get(draft.cache_key)
    assert found is not None and final.state is JobState.DONE
    assert [(item["endpoint"], item["sha256"]) for item in stats["received_images"]] == [
        ("generate/sd3", found[0])
    ]
    assert forms[-1]["mode"] == "image-to-image" and forms[-1]["strength"] == "0.4"
    assert final.credits == 6.5 and stats["charged"] == 3.0 + 6.5
