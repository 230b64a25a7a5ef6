"""Stability masks: an entry's `image` + `mask` goes to `POST /v2beta/stable-image/edit/inpaint`, over
loopback against the simulator (the bytes compared by hash in its books); the parse-time checks
(mask size, what inpaint takes); and a mask the provider refuses fails the job at once."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image as PILImage

from tests.conftest_sim import TEST_KEY
from tests.test_stability import stability_sim
from wfbatch.core.parsing import PromptFileError
from wfbatch.core.states import JobState
from wfbatch.engine.intake.acceptance import check_prompts
from wfbatch.engine.intake.ingest import ingest
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.engine.planning.plan import make_plan
from wfbatch.home import HomeLayout
from wfbatch.settings import Settings, load_settings
from wfbatch.sim.stability.book import StabilityBook
from wfbatch.store import Reuse, Store

INPAINT_CREDITS = 3.0  # wfbatch/providers/stability/prices.py (assumed: the public pricing page)


def config(home: Path, base_url: str = "http://127.0.0.1:9", **section: Any) -> Settings:
    values = {"api_key": TEST_KEY, "base_url": base_url, "backoff_initial": 0.02, "max_in_flight": 4}
    values.update(section)
    return load_settings(home, provider="stability", stability=values)


def save(path: Path, size: tuple[int, int], color: str | tuple[int, ...], mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.new(mode, size, color).save(path, format="PNG")
    return path


def mask_of(path: Path, size: tuple[int, int], box: tuple[int, int, int, int]) -> Path:
    """Black (keep) with a white box (repaint), as Stability reads a mask."""
    image = PILImage.new("L", size, 0)
    image.paste(255, box)
    image.save(path, format="PNG")
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_two_masked_entries_send_two_inpaints_carrying_exactly_their_bytes(
    store: Store, layout: HomeLayout, home: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "shots"
    shoe = save(folder / "shoe.png", (320, 256), "navy")
    bag = save(folder / "bag.png", (256, 256), "olive")
    sole = mask_of(folder / "sole.png", (320, 256), (0, 200, 320, 256))
    strap = mask_of(folder / "strap.png", (256, 256), (100, 0, 156, 256))
    lines = [
        {"prompt": "a red sole", "image": "shoe.png", "mask": "sole.png", "params": {"grow_mask": 8}},
        {"prompt": "a leather strap", "image": "bag.png", "mask": "strap.png", "seed": 42},
    ]
    raw = "\n".join(json.dumps({"provider": "stability", **line}) for line in lines).encode()
    with stability_sim() as sim:
        settings = config(home, sim.base_url)
        checked = check_prompts(raw, "masks.jsonl", settings, prompt_dir=folder)
        plan = await make_plan(store, settings, [checked.parsed])
        assert plan.estimated_credits == pytest.approx(2 * INPAINT_CREDITS)
        batch = (
            await ingest(
                store, layout, checked.parsed, raw, "stability", reuse=Reuse.NEVER, expanded=checked.expanded
            )
        ).batch
        engine = Engine(store, settings, layout, batch_ids=[batch.id])
        await engine.run_until_idle()
        await engine.shutdown()
        stats = sim.state.stats()
        forms = sim.state.book_as(StabilityBook).forms

    book = stats["stability"]
    assert stats["requests"]["by_route"].get("inpaint") == 2
    assert book["inpaints"] == 2 and book["generations"] == 0 and book["invalid"] == 0
    received = sorted((item["endpoint"], item["field"], item["sha256"]) for item in book["received_images"])
    assert received == sorted(
        [
            ("edit/inpaint", "image", sha(shoe)),
            ("edit/inpaint", "mask", sha(sole)),
            ("edit/inpaint", "image", sha(bag)),
            ("edit/inpaint", "mask", sha(strap)),
        ]
    )
    by_prompt = {form["prompt"]: form for form in forms}
    assert by_prompt["a red sole"]["grow_mask"] == "8"
    assert by_prompt["a leather strap"]["seed"] == "42"
    assert all("strength" not in form and "model" not in form for form in forms)
    assert book["charged"] == 2 * INPAINT_CREDITS

    jobs = await store.jobs.jobs_for_batch(batch.id)
    assert [job.state for job in jobs] == [JobState.DONE, JobState.DONE]
    assert [job.credits for job in jobs] == [INPAINT_CREDITS, INPAINT_CREDITS]
    assert round(await store.ledger.batch_exposure(batch.id), 6) == 2 * INPAINT_CREDITS
    sizes = []
    for job in jobs:
        assert job.file is not None
        with PILImage.open(Path(batch.output_dir) / job.file) as made:
            sizes.append(made.size)
    assert sizes == [(320, 256), (256, 256)]  # inpaint keeps the input's size


def test_a_mask_of_another_size_is_a_parse_error_naming_the_line_and_both_sizes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    folder = tmp_path / "shots"
    save(folder / "shoe.png", (320, 256), "navy")
    PILImage.new("RGB", (320, 256), "navy").save(folder / "photo.jpg", format="JPEG")
    save(folder / "cutout.png", (320, 256), (0, 0, 0, 0), mode="RGBA")
    mask_of(folder / "sole.png", (320, 256), (0, 200, 320, 256))
    mask_of(folder / "small.png", (160, 128), (0, 100, 160, 128))
    (folder / "notes.png").write_text("not a picture")
    raw = "\n".join(
        json.dumps({"provider": "stability", **line})
        for line in [
            {"prompt": "fine", "image": "shoe.png", "mask": "sole.png"},
            {"prompt": "wrong size", "image": "shoe.png", "mask": "small.png"},
            {"prompt": "alpha", "image": "cutout.png", "params": {"mode": "inpaint"}},
            {"prompt": "no alpha", "image": "photo.jpg", "params": {"mode": "inpaint"}},
            {"prompt": "grow", "image": "shoe.png", "mask": "sole.png", "params": {"grow_mask": 101}},
            {"prompt": "strength", "image": "shoe.png", "mask": "sole.png", "strength": 0.5},
            {"prompt": "not an image", "image": "shoe.png", "mask": "notes.png"},
            {"prompt": "no image", "mask": "sole.png"},
        ]
    )
    with pytest.raises(PromptFileError) as caught:
        check_prompts(raw.encode(), "masks.jsonl", config(home), prompt_dir=folder)
    report = caught.value.report()
    assert "masks.jsonl:1:" not in report and "masks.jsonl:3:" not in report
    assert (
        "masks.jsonl:2: stability: the mask small.png is 160x128 but the image shoe.png is 320x256:"
        " they must be the same size"
    ) in report
    assert "masks.jsonl:4: stability: photo.jpg: without a mask, inpaint repaints" in report
    assert "masks.jsonl:5: stability: params.grow_mask must be a whole number from 0 to 100" in report
    assert "masks.jsonl:6: stability: stability's edit/inpaint takes no strength" in report
    assert "masks.jsonl:7:" in report and "notes.png" in report
    assert "masks.jsonl:8:" in report and "needs an image" in report
    assert not (home / "wfbatch.db").exists()  # nothing enqueued


async def test_a_mask_the_provider_refuses_fails_the_job_with_its_message_never_retried(
    store: Store, layout: HomeLayout, home: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "shots"
    save(folder / "shoe.png", (320, 256), "navy")
    mask_of(folder / "small.png", (160, 128), (0, 100, 160, 128))
    save(folder / "bag.png", (256, 256), "olive")
    mask_of(folder / "strap.png", (256, 256), (100, 0, 156, 256))
    lines = [
        {"prompt": "wrong mask", "image": "shoe.png", "mask": "shoe.png"},
        {"prompt": "fine", "image": "bag.png", "mask": "strap.png"},
    ]
    raw = "\n".join(json.dumps({"provider": "stability", **line}) for line in lines).encode()
    with stability_sim() as sim:
        settings = config(home, sim.base_url)
        checked = check_prompts(raw, "masks.jsonl", settings, prompt_dir=folder)
        # Line 1 passed with a mask of the image's size; its mask is swapped for a smaller picture,
        # keeping the recorded size, as a job accepted by an older check (or sent to a server
        # stricter than its docs) would reach Stability.
        small = folder / "small.png"
        swapped = {"source": "small.png", "location": str(small), "sha256": sha(small)}
        first = checked.expanded[0]
        inputs = tuple(replace(i, **swapped) if i.role == "mask" else i for i in first.spec.inputs)
        expanded = [first._replace(spec=replace(first.spec, inputs=inputs)), *checked.expanded[1:]]
        ingested = await ingest(
            store, layout, checked.parsed, raw, "stability", reuse=Reuse.NEVER, expanded=expanded
        )
        engine = Engine(store, settings, layout, batch_ids=[ingested.batch.id])
        await engine.run_until_idle()
        await engine.shutdown()
        stats = sim.state.stats()

    refused, done = await store.jobs.jobs_for_batch(ingested.batch.id)
    assert done.state is JobState.DONE
    assert refused.state is JobState.FAILED and refused.attempts == 1
    assert refused.error_status == 400 and refused.error_message is not None
    assert "mask: must be the same size as the image (320x256), not 160x128" in refused.error_message
    assert stats["requests"]["by_route"].get("inpaint") == 2  # one each: the refusal was not retried
    assert stats["stability"]["invalid"] == 1 and stats["stability"]["charged"] == INPAINT_CREDITS


def test_the_simulator_refuses_what_inpaint_would() -> None:
    def png(size: tuple[int, int], mode: str = "RGB") -> bytes:
        out = io.BytesIO()
        PILImage.new(mode, size, 0).save(out, format="PNG")
        return out.getvalue()

    auth = {"authorization": f"Bearer {TEST_KEY}", "accept": "image/*"}
    url = "/v2beta/stable-image/edit/inpaint"
    square = png((128, 128))
    with stability_sim() as sim, httpx.Client(base_url=sim.base_url, headers=auth) as client:

        def post(data: dict[str, str], **files: bytes) -> httpx.Response:
            parts = {name: (f"{name}.png", body, "image/png") for name, body in files.items()}
            return client.post(url, data=data, files=parts or {"none": ("", b"", "")})

        cases = [
            (post({"prompt": "p"}), "image: required"),
            (post({}, image=square, mask=square), "prompt"),
            (post({"prompt": "p"}, image=square, mask=png((64, 128))), "mask: must be the same size"),
            (post({"prompt": "p"}, image=square), "mask: required when the image has no alpha"),
            (post({"prompt": "p", "grow_mask": "101"}, image=square, mask=square), "grow"),
            (post({"prompt": "p"}, image=square, mask=b"hello"), "mask: could not be decoded"),
            (post({"prompt": "p"}, image=png((32, 32)), mask=png((32, 32))), "at least 64"),
        ]
        for answer, expected in cases:
            assert answer.status_code == 400, (expected, answer.text)
            assert expected in answer.json()["errors"][0]
        alpha = post({"prompt": "p"}, image=png((128, 128), "RGBA"))
        assert alpha.status_code == 200 and alpha.headers["finish-reason"] == "SUCCESS"
        as_json = client.post(
            url,
            data={"prompt": "p", "output_format": "webp"},
            files={"image": ("i.png", png((128, 128)), "image/png"), "mask": ("m.png", png((128, 128)))},
            headers={"accept": "application/json"},
        )
        assert as_json.status_code == 200 and as_json.json()["finish_reason"] == "SUCCESS"
        book = sim.state.stats()["stability"]
    assert book["charged"] == 2 * INPAINT_CREDITS and book["inpaints"] == 2 and book["invalid"] == len(cases)
    assert [item["field"] for item in book["received_images"]] == ["image", "image", "mask"]
