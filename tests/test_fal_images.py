"""fal with pictures in, over loopback: a CSV of 10 product photos x 3 backgrounds is 30 jobs,
each request carrying its row's photo (small ones inline as data URIs, large ones uploaded to
fal's storage once and referenced by URL, the upload remembered in the store, also across runs);
a rerun is 30 cache hits."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from PIL import Image as PILImage

from tests.test_fal import fal_config, fal_sim
from wfbatch.core.states import JobState
from wfbatch.engine.intake.acceptance import check_prompts
from wfbatch.engine.intake.ingest import ingest
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.home import HomeLayout
from wfbatch.providers.uploads import DATA_URI_MAX_BYTES
from wfbatch.settings import Settings
from wfbatch.store import Reuse, Store

BACKGROUNDS = ("oak", "marble", "slate")


def photos(folder: Path) -> dict[str, str]:
    """Ten photos: three small (inline), seven of noise too big to inline (uploaded); name -> sha256."""
    folder.mkdir(parents=True)
    found = {}
    for i in range(10):
        size = (48, 48) if i < 3 else (400, 400)
        image = PILImage.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
        path = folder / f"p{i}.png"
        image.save(path)
        assert (path.stat().st_size <= DATA_URI_MAX_BYTES) == (i < 3)
        found[f"photos/p{i}.png"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


async def run_csv(store: Store, layout: HomeLayout, settings: Settings, raw: bytes, folder: Path) -> str:
    checked = check_prompts(raw, "shots.csv", settings, prompt_dir=folder)
    batch = (
        await ingest(store, layout, checked.parsed, raw, "fal", reuse=Reuse.NEVER, expanded=checked.expanded)
    ).batch
    engine = Engine(store, settings, layout, batch_ids=[batch.id])
    await engine.run_until_idle()
    await engine.shutdown()
    return batch.id


async def test_ten_photos_by_three_backgrounds_upload_each_photo_at_most_once(
    store: Store, layout: HomeLayout, home: Path, tmp_path: Path
) -> None:
    work = tmp_path / "shoot"
    hashes = photos(work / "photos")
    rows = ["prompt,image,strength"]
    rows += [f"product {i} on {bg},photos/p{i}.png,0.8" for i in range(10) for bg in BACKGROUNDS]
    raw = ("\n".join(rows) + "\n").encode()
    with fal_sim() as sim:
        settings = fal_config(home, sim, storage_url=sim.base_url, model="fal-ai/flux/dev/image-to-image")
        first = await run_csv(store, layout, settings, raw, work)
        stats = sim.state.stats()["fal"]
        second = await run_csv(store, layout, settings, raw, work)
        after = sim.state.stats()["fal"]
        base_url = sim.base_url

    jobs = await store.jobs.jobs_for_batch(first)
    assert len(jobs) == 30 and all(job.state is JobState.DONE for job in jobs)
    assert stats["executions"] == 30
    received = stats["received_images"]
    assert len(received) == 30 and all(item["field"] == "image_url" for item in received)
    # Each request carried its row's photo: the multiset of hashes received is each photo 3 times.
    expected = sorted(digest for digest in hashes.values() for _ in BACKGROUNDS)
    assert sorted(item["sha256"] for item in received) == expected
    assert sum(item["as"] == "data_uri" for item in received) == 9
    uploaded = [item["sha256"] for item in stats["uploads"]]
    large = {hashes[f"photos/p{i}.png"] for i in range(3, 10)}
    assert sorted(uploaded) == sorted(large)  # each large photo once, the small ones never
    for job in jobs:
        picture = job.spec.input_of("image")
        assert picture is not None and job.spec.strength == 0.8

    rerun = await store.jobs.jobs_for_batch(second)
    assert len(rerun) == 30 and all(job.cache_hit and job.state is JobState.DONE for job in rerun)
    assert after["executions"] == 30 and len(after["uploads"]) == len(uploaded)
    remembered = [await store.cache.upload_of("fal", "default", sha) for sha in sorted(large)]
    assert all(found is not None and found[0].startswith(base_url) for found in remembered)


async def test_a_recorded_upload_is_reused_by_the_next_run_without_uploading(
    store: Store, layout: HomeLayout, home: Path, tmp_path: Path
) -> None:
    work = tmp_path / "shoot"
    hashes = photos(work / "photos")
    raw = b"prompt,image,strength\nproduct 5 on oak,photos/p5.png,0.7\n"
    with fal_sim() as sim:
        settings = fal_config(home, sim, storage_url=sim.base_url, model="fal-ai/flux/dev/image-to-image")
        await run_csv(store, layout, settings, raw, work)
        # Another prompt with the same photo: not a cache hit, a new request, the same upload.
        await run_csv(store, layout, settings, raw.replace(b"oak", b"granite"), work)
        stats = sim.state.stats()["fal"]
    assert stats["executions"] == 2
    assert [item["sha256"] for item in stats["uploads"]] == [hashes["photos/p5.png"]]
    assert [item["sha256"] for item in stats["received_images"]] == [hashes["photos/p5.png"]] * 2
