"""OpenAI with pictures in: finals refined from the approved drafts through `/images/edits`
(multipart, every request valid against the transcribed `CreateImageEditRequest`), the drafts'
bytes compared by hash in the simulator's books; the simulator's strictness about edits."""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from PIL import Image as PILImage

from tests.conftest_sim import TEST_KEY, CountingGate
from tests.openai_images_schema import CREATE_IMAGE_EDIT_REQUEST
from tests.test_openai import PNG, Recorder, openai_sim, settings
from wfbatch.core.models import InputImage, JobSpec
from wfbatch.core.parsing import PromptFileError
from wfbatch.core.states import JobState, ReviewStatus
from wfbatch.engine.intake.acceptance import check_prompts
from wfbatch.engine.intake.control import Control
from wfbatch.engine.intake.ingest import ingest
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.home import HomeLayout
from wfbatch.outputs import read_manifest
from wfbatch.providers.openai.client import OpenAIProvider
from wfbatch.settings import load_settings
from wfbatch.store import Reuse, Store

_NUMBERS = ("n", "output_compression", "partial_images")


def form_of(request: httpx.Request) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    """A recorded multipart request as (text fields as JSON values, [(file part name, bytes)])."""
    parser = email.parser.BytesParser(policy=email.policy.HTTP)
    content_type = request.headers["content-type"].encode()
    message = parser.parsebytes(b"Content-Type: " + content_type + b"\r\n\r\n" + request.content)
    fields: dict[str, Any] = {}
    files: list[tuple[str, bytes]] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(name, str) and isinstance(payload, bytes)
        if part.get_filename() is not None:
            files.append((name, payload))
        else:
            text = payload.decode()
            fields[name] = int(text) if name in _NUMBERS else (text == "true" if name == "stream" else text)
    return fields, files


def as_schema_document(fields: dict[str, Any], files: list[tuple[str, bytes]]) -> dict[str, Any]:
    document = dict(fields)
    images = [name for name, _ in files if name in ("image", "image[]")]
    if images:
        document["image"] = images[0] if images == ["image"] else images
    if any(name == "mask" for name, _ in files):
        document["mask"] = "mask"
    return document


def picture_file(path: Path, size: tuple[int, int], color: str, mode: str = "RGB") -> InputImage:
    PILImage.new(mode, size, color).save(path, format="PNG")
    data = path.read_bytes()
    return InputImage(
        role="image",
        source=path.name,
        location=str(path),
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        width=size[0],
        height=size[1],
        media_type="image/png",
    )


async def test_an_edit_is_multipart_valid_against_the_published_schema(tmp_path: Path) -> None:
    photo = picture_file(tmp_path / "a.png", (64, 64), "red")
    second = picture_file(tmp_path / "b.png", (32, 32), "blue")
    mask = picture_file(tmp_path / "m.png", (64, 64), (0, 0, 0, 0), mode="RGBA")  # type: ignore[arg-type]
    recorder = Recorder(body={"created": 1, "data": [{"b64_json": PNG}]})
    spec = JobSpec(
        provider="openai", prompt="the shoe on oak", negative_prompt=None, model="gpt-image-1", width=1024,
        height=1024, seed=1, variant=0, params={"quality": "low", "input_fidelity": "high"},
        inputs=(photo, replace(mask, role="mask"), replace(second, role="images")),
        strength=0.4,
    )
    provider = OpenAIProvider(settings(), CountingGate(), transport=httpx.MockTransport(recorder))
    try:
        await provider.submit(spec, "k")
    finally:
        await provider.aclose()
    [sent] = recorder.sent
    assert sent.url.path.endswith("/images/edits")
    fields, files = form_of(sent)
    jsonschema.validate(as_schema_document(fields, files), CREATE_IMAGE_EDIT_REQUEST)
    assert fields["input_fidelity"] == "high" and "strength" not in fields and fields["n"] == 1
    assert [name for name, _ in files] == ["image[]", "image[]", "mask"]
    sent_hashes = [hashlib.sha256(data).hexdigest() for _, data in files]
    assert sent_hashes == [photo.sha256, second.sha256, mask.sha256]


async def test_approving_two_drafts_refines_exactly_those_through_edits(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    raw = json.dumps(
        {
            "prompts": [f"a blue lamp, take {i}" for i in range(6)],
            "draft": {"model": "gpt-image-1-mini", "params": {"quality": "low"}},
            "final": {"model": "gpt-image-1", "params": {"quality": "high"}},
        }
    ).encode()
    with openai_sim() as sim:
        section = {"api_key": TEST_KEY, "base_url": sim.base_url, "max_in_flight": 4, "backoff_initial": 0.05}
        config = load_settings(home, provider="openai", openai=section)
        checked = check_prompts(raw, "lamps.json", config)
        # refine: OpenAI's default (it has no upscaler)
        assert {job.final.operation for job in checked.expanded if job.final} == {"refine"}
        expanded = checked.expanded
        batch = (
            await ingest(store, layout, checked.parsed, raw, "openai", reuse=Reuse.NEVER, expanded=expanded)
        ).batch
        engine = Engine(store, config, layout, batch_ids=[batch.id])
        await engine.run_until_idle()
        drafts = await store.jobs.jobs_for_batch(batch.id)
        assert [job.state for job in drafts] == [JobState.DONE] * 6
        chosen = drafts[:2]
        originals = {}
        for job in chosen:
            found = await store.cache.get(job.cache_key)
            assert found is not None
            originals[job.id] = found[0]
        await Control(engine).review([job.id for job in chosen], ReviewStatus.APPROVED)
        await Engine(store, config, layout, batch_ids=[batch.id]).run_until_idle()
        stats = sim.state.stats()["openai"]
    received = stats["received_images"]
    assert [(item["endpoint"], item["field"]) for item in received] == [("images/edits", "image")] * 2
    assert sorted(item["sha256"] for item in received) == sorted(originals.values())
    assert stats["generations"] == 8 and stats["invalid_requests"] == 0
    finals = [job for job in await store.jobs.jobs_for_batch(batch.id) if job.stage == "final"]
    assert len(finals) == 2 and all(job.state is JobState.DONE for job in finals)
    await engine.writer.write_batch_files(batch.id)
    manifest = {entry.job_id: entry for entry in read_manifest(Path(batch.output_dir)).entries}
    for final in finals:
        entry = manifest[str(final.id)]
        assert entry.final_mode == "refine" and entry.model == "gpt-image-1"
        assert entry.inputs[0].sha256 == originals[final.draft_of]  # type: ignore[index]


@pytest.mark.parametrize(
    ("fields", "files", "message"),
    [
        ({"prompt": "p"}, [], "Missing required parameter: 'image'"),
        ({"prompt": "p", "model": "dall-e-3"}, ["image"], "Invalid model dall-e-3"),
        ({"prompt": "p", "moderation": "low"}, ["image"], "argument supplied: moderation"),
        ({"prompt": "p", "input_fidelity": "max"}, ["image"], "Supported values are: 'high' and 'low'"),
        ({"prompt": "p"}, ["image", "big-mask"], "the mask and the image must be the same size"),
        ({"prompt": "p"}, ["not-an-image"], "Invalid image file"),
    ],
)
def test_the_simulator_refuses_bad_edits(fields: dict[str, str], files: list[str], message: str) -> None:
    def png(size: tuple[int, int]) -> bytes:
        out = io.BytesIO()
        PILImage.new("RGBA", size, "red").save(out, format="PNG")
        return out.getvalue()

    parts = {
        "image": ("image", ("a.png", png((64, 64)), "image/png")),
        "big-mask": ("mask", ("m.png", png((128, 128)), "image/png")),
        "not-an-image": ("image", ("a.png", b"hello", "image/png")),
    }
    multipart = [(name, (None, value)) for name, value in fields.items()] + [parts[key] for key in files]
    with openai_sim() as sim, httpx.Client(base_url=sim.base_url) as client:
        answer = client.post(
            "/images/edits", files=multipart, headers={"authorization": f"Bearer {TEST_KEY}"}
        )
        stats = sim.state.stats()["openai"]
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["error"]["message"]
    assert stats["generations"] == 0 and stats["received_images"] == []


def test_an_upscale_from_the_draft_on_openai_is_refused_at_parse_time(home: Path) -> None:
    raw = json.dumps({"prompts": ["a lamp"], "final": {"from_draft": "upscale"}}).encode()
    config = load_settings(home, provider="openai", openai={"api_key": TEST_KEY})
    with pytest.raises(PromptFileError) as caught:
        check_prompts(raw, "u.json", config)
    assert "final: openai: openai has no upscaler" in caught.value.report()
