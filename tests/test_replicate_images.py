"""Replicate with pictures in, over loopback: a small picture inline as a data URI, a large one
uploaded once through the files API and passed as its URL by every job that names it."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from PIL import Image as PILImage

from tests.test_drafts import replicate_config, replicate_sim
from wfbatch.core.states import JobState
from wfbatch.engine.intake.acceptance import check_prompts
from wfbatch.engine.intake.ingest import ingest
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.home import HomeLayout
from wfbatch.store import Reuse, Store


async def test_a_large_picture_is_uploaded_once_and_a_small_one_sent_inline(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    inputs = home / "inputs"
    inputs.mkdir()
    PILImage.frombytes("RGB", (400, 400), os.urandom(400 * 400 * 3)).save(inputs / "big.png")
    PILImage.new("RGB", (64, 64), "red").save(inputs / "small.png")
    big = hashlib.sha256((inputs / "big.png").read_bytes()).hexdigest()
    small = hashlib.sha256((inputs / "small.png").read_bytes()).hexdigest()
    lines = [{"prompt": f"the chair, take {i}", "image": "big.png", "strength": 0.7} for i in range(4)]
    lines.append({"prompt": "the cup", "image": "small.png", "strength": 0.5})
    raw = "\n".join(json.dumps({"provider": "replicate", **line}) for line in lines).encode()
    with replicate_sim() as sim:
        settings = replicate_config(home, sim)
        checked = check_prompts(raw, "r.jsonl", settings)
        expanded = checked.expanded
        ingested = await ingest(
            store, layout, checked.parsed, raw, "replicate", reuse=Reuse.NEVER, expanded=expanded
        )
        batch = ingested.batch
        engine = Engine(store, settings, layout, batch_ids=[batch.id])
        await engine.run_until_idle()
        await engine.shutdown()
        stats = sim.state.stats()["replicate"]
    jobs = await store.jobs.jobs_for_batch(batch.id)
    assert [job.state for job in jobs] == [JobState.DONE] * 5
    assert [item["sha256"] for item in stats["uploads"]] == [big]
    received = sorted((item["sha256"], item["as"]) for item in stats["received_images"])
    assert received == sorted([(big, "url")] * 4 + [(small, "data_uri")])
    found = await store.cache.upload_of("replicate", "default", big)
    assert found is not None and "/files/" in found[0]
