"""The Stability AI provider (providers.md §4): exact multipart forms and error names through
httpx.MockTransport, then the real provider, engine and `wfbatch run` against `wfbatch sim
--provider stability` over loopback."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image as PILImage
from pydantic import SecretStr

from tests.conftest_sim import TEST_KEY, CountingGate
from wfbatch.core.models import ImageFormat, JobSpec
from wfbatch.core.parsing import parse_prompt_bytes
from wfbatch.core.states import JobState
from wfbatch.engine.intake.ingest import ingest
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.home import HomeLayout
from wfbatch.outputs import read_manifest
from wfbatch.providers.base import Finished
from wfbatch.providers.errors import OutOfCredits, PaidRejection, Permanent, RateLimited
from wfbatch.providers.stability.client import StabilityConfigError, StabilityProvider
from wfbatch.providers.stability.rules import PIXEL_SIZES, aspect_ratio_for, validate_stability_entry
from wfbatch.providers.stability.settings import StabilitySettings
from wfbatch.providers.validation import spec_problems
from wfbatch.settings import load_settings
from wfbatch.sim import RunningSimulator, SimOptions
from wfbatch.sim.stability.routes import RATIOS, parse_multipart
from wfbatch.store import Reuse, Store

PNG = PILImage.new("RGB", (8, 8)).tobytes()
REFUSE = "FORBIDDEN-SUBJECT"
BLUR = "BLURRED-SUBJECT"


def png_bytes(size: tuple[int, int] = (16, 16)) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", size, (10, 20, 30)).save(out, format="PNG")
    return out.getvalue()


def spec(**overrides: Any) -> JobSpec:
    values: dict[str, Any] = {
        "provider": "stability",
        "prompt": "a lighthouse at dusk",
        "negative_prompt": None,
        "model": None,
        "width": 1024,
        "height": 1024,
        "seed": 1234,
        "variant": 0,
    }
    values.update(overrides)
    return JobSpec(**values)


def settings(**overrides: Any) -> StabilitySettings:
    values: dict[str, Any] = {"api_key": SecretStr(TEST_KEY), "base_url": "https://api.stability.example"}
    values.update(overrides)
    return StabilitySettings(**values)


class Recorder:
    def __init__(self, status: int = 200, body: Any = None, headers: dict[str, str] | None = None) -> None:
        self.status, self.body = status, body
        self.headers = {"x-request-id": "req_abc", **(headers or {})}
        self.sent: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        if self.status == 200 and self.body is None:
            return httpx.Response(
                200, content=png_bytes(), headers={"content-type": "image/png", **self.headers}
            )
        return httpx.Response(self.status, json=self.body, headers=self.headers)

    def form(self, index: int = 0) -> dict[str, str]:
        request = self.sent[index]
        fields = parse_multipart(request.headers["content-type"], request.read())
        assert fields is not None
        return fields


def provider_with(recorder: Recorder, **overrides: Any) -> StabilityProvider:
    return StabilityProvider(settings(**overrides), CountingGate(), transport=httpx.MockTransport(recorder))


# -- what is sent ---------------------------------------------------------------------------------


async def test_core_form_is_multipart_with_the_entry_mapped() -> None:
    recorder = Recorder(headers={"finish-reason": "SUCCESS", "seed": "1234"})
    provider = provider_with(recorder)
    job = spec(width=1344, height=768, negative_prompt="blurry", params={"style_preset": "cinematic"})
    outcome = await provider.submit(job, "k")
    await provider.aclose()
    assert isinstance(outcome, Finished) and outcome.images[0].media_type == "image/png"
    request = recorder.sent[0]
    assert str(request.url) == "https://api.stability.example/v2beta/stable-image/generate/core"
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert request.headers["accept"] == "image/*"
    assert request.headers["authorization"] == f"Bearer {TEST_KEY}"
    assert recorder.form() == {
        "prompt": "a lighthouse at dusk",
        "output_format": "png",
        "aspect_ratio": "16:9",
        "seed": "1234",
        "negative_prompt": "blurry",
        "style_preset": "cinematic",
    }
    assert outcome.credits_used == 3.0 and outcome.metadata["aspect_ratio"] == "16:9"


async def test_sd3_models_go_to_the_sd3_endpoint_with_model_and_png_for_webp() -> None:
    recorder = Recorder()
    provider = provider_with(recorder, model="sd3.5-large")
    await provider.submit(spec(format=ImageFormat.WEBP, params={"cfg_scale": 5}), "k")
    await provider.aclose()
    assert recorder.sent[0].url.path == "/v2beta/stable-image/generate/sd3"
    form = recorder.form()
    assert form["model"] == "sd3.5-large" and form["mode"] == "text-to-image"
    assert form["output_format"] == "png"  # sd3 makes no webp: asked for png, converted when written
    assert form["cfg_scale"] == "5"


def test_sizes_map_to_aspect_ratios_only_when_the_entry_allows() -> None:
    assert aspect_ratio_for(1920, 1080, {}) == ("16:9", None)  # exactly 16:9
    assert aspect_ratio_for(832, 1216, {}) == ("2:3", None)  # Stability's own 2:3 size
    ratio, problem = aspect_ratio_for(1000, 700, {})
    assert ratio is None and problem is not None and 'params.fit = "aspect_ratio"' in problem
    assert aspect_ratio_for(1000, 700, {"fit": "aspect_ratio"}) == ("3:2", None)
    assert aspect_ratio_for(1000, 700, {"aspect_ratio": "5:4"}) == ("5:4", None)
    assert validate_stability_entry("sd3.5-large", 1024, 1024, "png", 1, "x", {"output_format": "webp"})
    assert validate_stability_entry("dalle", 1024, 1024, "png", 1, "x", {})[0].startswith("no model")
    assert spec_problems(spec(width=1000, height=700))  # the parse-time hook knows Stability
    assert not spec_problems(spec(width=1000, height=700, params={"fit": "aspect_ratio"}))


def test_parse_time_refusal_names_the_line(tmp_path: Path) -> None:
    lines = tmp_path / "s.jsonl"
    lines.write_text(
        '{"prompt": "fine", "provider": "stability"}\n'
        '{"prompt": "odd", "provider": "stability", "width": 1000, "height": 700}\n'
    )
    key = {"WFBATCH_STABILITY__API_KEY": "sk-never-sent"}
    env = {**os.environ, "WFBATCH_HOME": str(tmp_path / "home"), **key}
    result = subprocess.run(
        [sys.executable, "-m", "wfbatch", "run", str(lines)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2
    assert "s.jsonl:2: stability: cannot make 1000x700" in result.stderr
    assert "s.jsonl:1" not in result.stderr


def test_needs_a_key() -> None:
    with pytest.raises(StabilityConfigError, match="WFBATCH_STABILITY__API_KEY"):
        StabilityProvider(StabilitySettings(), CountingGate())


# -- what comes back ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "name", "expected"),
    [
        (403, "content_moderation", Permanent),
        (402, "payment_required", OutOfCredits),
        (403, "payment_required", OutOfCredits),  # one client sees it on a 403
        (400, "invalid_parameters", Permanent),
    ],
)
async def test_error_names(status: int, name: str, expected: type[Exception]) -> None:
    body = {"id": "e1", "name": name, "errors": ["the provider's own words"]}
    provider = provider_with(Recorder(status, body))
    with pytest.raises(expected, match="the provider's own words") as caught:
        await provider.submit(spec(), "k")
    await provider.aclose()
    assert type(caught.value) is expected


async def test_a_429_without_retry_after_locks_out_for_the_lockout() -> None:
    now = [100.0]
    recorder = Recorder(
        429, {"id": "e", "name": "rate_limit_exceeded", "errors": ["timed out for 60 seconds"]}
    )
    provider = StabilityProvider(
        settings(), CountingGate(), transport=httpx.MockTransport(recorder), monotonic=lambda: now[0]
    )
    with pytest.raises(RateLimited) as caught:
        await provider.submit(spec(), "k1")
    assert caught.value.retry_after == 60.0
    now[0] += 59.0
    with pytest.raises(RateLimited) as again:
        await provider.submit(spec(), "k2")  # nothing is sent during the lockout
    assert len(recorder.sent) == 1 and again.value.retry_after == pytest.approx(1.0)
    now[0] += 1.5
    with pytest.raises(RateLimited):
        await provider.submit(spec(), "k3")
    assert len(recorder.sent) == 2
    await provider.aclose()
    told = provider_with(Recorder(429, {"name": "rate_limit_exceeded"}, {"retry-after": "7"}))
    with pytest.raises(RateLimited) as caught:
        await told.submit(spec(), "k")
    await told.aclose()
    assert caught.value.retry_after == 7.0


async def test_content_filtered_is_a_paid_rejection_carrying_the_image() -> None:
    provider = provider_with(Recorder(headers={"finish-reason": "CONTENT_FILTERED"}))
    with pytest.raises(PaidRejection) as caught:
        await provider.submit(spec(), "k")
    await provider.aclose()
    assert caught.value.image.data.startswith(b"\x89PNG") and caught.value.credits_used == 3.0


async def test_a_json_answer_is_read_too() -> None:
    import base64

    body = {"image": base64.b64encode(png_bytes()).decode(), "finish_reason": "SUCCESS", "seed": 9}
    provider = provider_with(Recorder(200, body, {"content-type": "application/json; type=image/png"}))
    outcome = await provider.submit(spec(), "k")
    await provider.aclose()
    assert isinstance(outcome, Finished) and outcome.metadata["seed"] == "9"


# -- over loopback --------------------------------------------------------------------------------


def stability_sim(**overrides: Any) -> RunningSimulator:
    values: dict[str, Any] = {"provider": "stability", "latency": (0.0, 0.0), "seed": 7, "api_key": TEST_KEY}
    values.update(overrides)
    return RunningSimulator(SimOptions(**values))


async def run_batch(
    store: Store,
    layout: HomeLayout,
    home: Path,
    sim: RunningSimulator,
    lines: list[dict[str, Any]],
    **section: Any,
) -> tuple[list[Any], Path]:
    raw = "\n".join(json.dumps({"provider": "stability", **line}) for line in lines).encode()
    config = load_settings(
        home,
        stability={"api_key": TEST_KEY, "base_url": sim.base_url, "backoff_initial": 0.05, **section},
    )
    ingested = await ingest(
        store, layout, parse_prompt_bytes(raw, "s.jsonl"), raw, "stability", reuse=Reuse.NEVER
    )
    engine = Engine(store, config, layout, batch_ids=[ingested.batch.id])
    await engine.run_until_idle()
    await engine.shutdown()
    return await store.jobs.list_jobs(batch_id=ingested.batch.id, limit=100), Path(ingested.batch.output_dir)


async def test_twelve_prompts_one_refused_over_loopback(store: Store, layout: HomeLayout, home: Path) -> None:
    sizes = [PIXEL_SIZES["1:1"], PIXEL_SIZES["16:9"], PIXEL_SIZES["2:3"]]
    lines = [
        {
            "prompt": f"{'a ' + REFUSE if i == 5 else 'a lighthouse'} number {i}",
            "width": w,
            "height": h,
            "seed": i + 1,
        }
        for i, (w, h) in enumerate(sizes[i % 3] for i in range(12))
    ]
    with stability_sim(moderation_marker=REFUSE) as sim:
        jobs, folder = await run_batch(store, layout, home, sim, lines, max_in_flight=4)
        stats = sim.state.stats()["stability"]
    done = [job for job in jobs if job.state is JobState.DONE]
    failed = [job for job in jobs if job.state is JobState.FAILED]
    assert (len(done), len(failed)) == (11, 1)
    assert failed[0].attempts == 1 and failed[0].error_message is not None
    assert "content moderation" in failed[0].error_message and "not charged" in failed[0].error_message
    for job in done:
        assert job.file is not None and job.credits == 3.0
        with PILImage.open(folder / job.file) as image:
            assert image.size == (job.spec.width, job.spec.height)
    assert all(count == 1 for count in stats["generations_by_prompt"].values())
    assert stats["generations"] == 11


async def test_content_filtered_is_kept_in_rejected_and_charged(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    lines = [{"prompt": "a harbour"}, {"prompt": f"a {BLUR}"}]
    with stability_sim(filter_marker=BLUR) as sim:
        jobs, folder = await run_batch(store, layout, home, sim, lines)
    by_prompt = {job.spec.prompt: job for job in jobs}
    filtered = by_prompt[f"a {BLUR}"]
    assert filtered.state is JobState.FAILED and filtered.credits == 3.0
    assert filtered.error_message is not None and "CONTENT_FILTERED" in filtered.error_message
    kept = list((folder / "rejected").iterdir())
    assert len(kept) == 1 and kept[0].name in filtered.error_message
    assert by_prompt["a harbour"].state is JobState.DONE
    engine_manifest = None
    for _ in range(1):
        engine_manifest = read_manifest(folder)
    assert engine_manifest is not None
    entry = next(e for e in engine_manifest.entries if BLUR in e.prompt)
    assert entry.credits == 3.0 and entry.error is not None and "rejected/" in (entry.error.message or "")


async def test_the_lockout_is_obeyed_over_loopback(store: Store, layout: HomeLayout, home: Path) -> None:
    # The simulator allows 2 requests per 5 s and locks out for 1 s after a 429; the engine is told a
    # looser limit, so its third request meets the 429 (however slow the machine: the window is long)
    # and it must then send nothing until the lockout has passed.
    lines = [{"prompt": f"a lighthouse {i}"} for i in range(3)]
    with stability_sim(rpm=2, stability_window=5.0, lockout=1.0) as sim:
        jobs, _ = await run_batch(
            store, layout, home, sim, lines, max_in_flight=1, requests_per_minute=100, lockout_seconds=1.0
        )
        stats = sim.state.stats()["stability"]
    assert all(job.state is JobState.DONE for job in jobs)
    assert stats["lockouts"] >= 1
    assert stats["requests_during_lockout"] == 0


def test_out_of_credits_exits_3_then_top_up_and_rerun_finishes(tmp_path: Path) -> None:
    lines = tmp_path / "eight.jsonl"
    lines.write_text(
        "".join(json.dumps({"prompt": f"a lighthouse {i}", "provider": "stability"}) + "\n" for i in range(8))
    )
    home = tmp_path / "home"
    with stability_sim(credits=15.0) as sim:  # core costs 3: five images
        env = {
            **os.environ,
            "WFBATCH_HOME": str(home),
            "WFBATCH_STABILITY__API_KEY": TEST_KEY,
            "WFBATCH_STABILITY__BASE_URL": sim.base_url,
            "WFBATCH_STABILITY__MAX_IN_FLIGHT": "1",
        }
        command = [sys.executable, "-m", "wfbatch", "run", str(lines), "--json"]
        first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
        assert first.returncode == 3, first.stderr
        out = json.loads(first.stdout)
        assert out["done"] == 5 and out["queued"] == 3
        assert "credits" in out["stop_reason"]["message"]
        httpx.post(f"{sim.root_url}/_sim/topup", json={"amount": 9}).raise_for_status()
        second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
        assert second.returncode == 0, second.stderr
        stats = sim.state.stats()["stability"]
    assert stats["generations"] == 8 and stats["balance"] == 0
    assert TEST_KEY not in first.stdout + first.stderr + second.stdout + second.stderr


async def test_balance_over_loopback() -> None:
    with stability_sim(credits=42.5) as sim:
        provider = StabilityProvider(settings(base_url=sim.base_url), CountingGate())
        assert await provider.balance() == 42.5
        await provider.aclose()


def test_the_simulator_and_the_rules_agree_on_sizes() -> None:
    assert RATIOS == PIXEL_SIZES
