"""ComfyUI with pictures in, over loopback: each distinct picture is uploaded once per server
(`/upload/image`), then referenced by name in the workflow's `LoadImage`; a workflow without one
refuses a job that carries a picture, before anything is sent."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage

from tests.test_comfyui import comfy_sim, section
from wfbatch.core.states import JobState
from wfbatch.engine.intake.acceptance import check_prompts
from wfbatch.engine.intake.ingest import ingest
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.home import HomeLayout
from wfbatch.outputs import read_manifest
from wfbatch.providers.comfyui.graph import GraphError, Placement
from wfbatch.settings import load_settings
from wfbatch.store import Reuse, Store

IMG2IMG: dict[str, Any] = {
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 0, "steps": 4, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 0.6,
            "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["11", 0],
        },
    },
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["8", 0]}},
    "10": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
    "11": {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}},
}


def test_the_load_image_node_is_where_the_picture_goes() -> None:
    placement = Placement.locate(IMG2IMG, {})
    assert placement.takes_image and str(placement.targets["image"]) == "10.image"
    assert "width" not in placement.targets  # no empty latent: the picture sets the size
    two = {**IMG2IMG, "12": {"class_type": "LoadImage", "inputs": {"image": "b.png"}}}
    with pytest.raises(GraphError, match="several LoadImage nodes"):
        Placement.locate(two, {})
    assert str(Placement.locate(two, {"image": "12.image"}).targets["image"]) == "12.image"


async def test_a_picture_is_uploaded_once_then_referenced_by_name(
    store: Store, layout: HomeLayout, home: Path, tmp_path: Path
) -> None:
    workflow = tmp_path / "img2img.json"
    workflow.write_text(json.dumps(IMG2IMG))
    inputs = home / "inputs"
    inputs.mkdir()
    PILImage.new("RGB", (320, 240), "tan").save(inputs / "chair.png")
    PILImage.new("RGB", (240, 320), "teal").save(inputs / "lamp.png")
    lines = [{"prompt": f"the chair in room {i}", "image": "chair.png", "seed": i} for i in range(4)]
    lines.append({"prompt": "the lamp", "image": "lamp.png", "seed": 9})
    raw = "\n".join(json.dumps({"provider": "comfyui", **line}) for line in lines).encode()
    with comfy_sim() as sim:
        config = load_settings(home, comfyui=section(sim, workflow=str(workflow)))
        checked = check_prompts(raw, "rooms.jsonl", config)
        expanded = checked.expanded
        batch = (
            await ingest(store, layout, checked.parsed, raw, "comfyui", reuse=Reuse.NEVER, expanded=expanded)
        ).batch
        engine = Engine(store, config, layout, batch_ids=[batch.id])
        await engine.run_until_idle()
        await engine.shutdown()
        server = sim.state.book
        uploads = list(server.uploads)
        graphs = dict(server.graphs)
    jobs = await store.jobs.jobs_for_batch(batch.id)
    assert [job.state for job in jobs] == [JobState.DONE] * 5
    chair = hashlib.sha256((inputs / "chair.png").read_bytes()).hexdigest()
    lamp = hashlib.sha256((inputs / "lamp.png").read_bytes()).hexdigest()
    assert sorted(item["sha256"] for item in uploads) == sorted([chair, lamp])  # once each
    names = {item["sha256"]: item["name"] for item in uploads}
    for job in jobs:
        picture = job.spec.input_of("image")
        assert picture is not None
        assert graphs[job.remote_id]["10"]["inputs"]["image"] == names[picture.sha256]
    await engine.writer.write_batch_files(batch.id)
    manifest = read_manifest(Path(batch.output_dir))
    assert {entry.inputs[0].source for entry in manifest.entries} == {"chair.png", "lamp.png"}


async def test_a_workflow_without_load_image_refuses_a_picture(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    (home / "inputs").mkdir()
    PILImage.new("RGB", (64, 64), "red").save(home / "inputs" / "a.png")
    raw = json.dumps({"provider": "comfyui", "prompt": "p", "image": "a.png"}).encode()
    with comfy_sim() as sim:
        config = load_settings(home, comfyui=section(sim))
        checked = check_prompts(raw, "a.jsonl", config)
        expanded = checked.expanded
        batch = (
            await ingest(store, layout, checked.parsed, raw, "comfyui", reuse=Reuse.NEVER, expanded=expanded)
        ).batch
        engine = Engine(store, config, layout, batch_ids=[batch.id])
        await engine.run_until_idle()
        await engine.shutdown()
        executions = sim.state.book.stats()["executions"]
    [job] = await store.jobs.jobs_for_batch(batch.id)
    assert job.state is JobState.FAILED and job.attempts <= 1
    assert job.error_message is not None and "no picture input (a LoadImage node)" in job.error_message
    assert executions == 0
