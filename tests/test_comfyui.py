"""The ComfyUI provider (providers.md §7): graph filling and exact /prompt bodies through
httpx.MockTransport, then the real provider, engine and a real daemon (killed with -9, ComfyUI
restarted) against `wfbatch sim --provider comfyui` over loopback."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image as PILImage

from tests.conftest_sim import CountingGate
from tests.daemon_harness import jsonl, running_daemon
from wfbatch.core.models import JobSpec
from wfbatch.core.parsing import parse_prompt_bytes
from wfbatch.core.states import JobState
from wfbatch.engine.intake.ingest import ingest
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.home import HomeLayout
from wfbatch.providers.base import Pending, Submitted
from wfbatch.providers.comfyui.answers import prompt_id_for, refusal_message
from wfbatch.providers.comfyui.client import ComfyUIProvider
from wfbatch.providers.comfyui.graph import GraphError, Placement, Target, builtin_graph
from wfbatch.providers.comfyui.settings import ComfyUISettings
from wfbatch.providers.errors import Permanent
from wfbatch.settings import load_settings
from wfbatch.sim import RunningSimulator, SimOptions
from wfbatch.store import Reuse, Store

FAIL = "BROKEN-NODE"


def spec(**overrides: Any) -> JobSpec:
    values: dict[str, Any] = {
        "provider": "comfyui",
        "prompt": "a lighthouse at dusk",
        "negative_prompt": "blurry",
        "model": None,
        "width": 512,
        "height": 384,
        "seed": 1234,
        "variant": 0,
    }
    values.update(overrides)
    return JobSpec(**values)


# -- the graph ------------------------------------------------------------------------------------


def test_the_builtin_graph_is_located_by_structure() -> None:
    placement = Placement.locate(builtin_graph("x.safetensors"), {})
    assert {k: str(v) for k, v in placement.targets.items()} == {
        "prompt": "6.text",
        "negative": "7.text",
        "seed": "3.seed",
        "width": "5.width",
        "height": "5.height",
    }
    filled = placement.fill(
        builtin_graph("x"), {"prompt": "p", "negative": "n", "seed": 7, "width": 64, "height": 72}, "pre"
    )
    assert filled["6"]["inputs"]["text"] == "p" and filled["3"]["inputs"]["seed"] == 7
    assert filled["9"]["inputs"]["filename_prefix"] == "pre"


def test_ambiguous_or_ui_graphs_say_what_to_set(tmp_path: Path) -> None:
    graph = builtin_graph("x")
    graph["10"] = json.loads(json.dumps(graph["3"]))
    with pytest.raises(GraphError, match=r"several samplers \(3, 10\); set inputs\.prompt"):
        Placement.locate(graph, {})
    explicit = {
        "prompt": "6.text",
        "negative": "7.text",
        "seed": "3.seed",
        "width": "5.width",
        "height": "5.height",
    }
    assert Placement.locate(graph, explicit).targets["seed"] == Target("3", "seed")
    ui = tmp_path / "ui.json"
    ui.write_text(json.dumps({"nodes": [], "links": []}))
    with pytest.raises(GraphError, match="Save \\(API Format\\)"):
        ComfyUIProvider(ComfyUISettings(workflow=ui), CountingGate())


def test_a_primitive_fed_seed_is_set_on_the_primitive() -> None:
    graph = builtin_graph("x")
    graph["20"] = {"class_type": "PrimitiveNode", "inputs": {"value": 1}}
    graph["3"]["inputs"]["seed"] = ["20", 0]
    assert Placement.locate(graph, {}).targets["seed"] == Target("20", "value")


WORKFLOWS = Path(__file__).parent / "comfyui_workflows"
"""API-format exports shaped like ComfyUI's own examples (trimmed): Flux dev with
SamplerCustomAdvanced, Flux through a KSampler with a zeroed negative, SDXL base + refiner."""
VALUES = {"prompt": "p", "negative": "", "seed": 7, "width": 640, "height": 512}


def workflow(name: str) -> dict[str, Any]:
    graph: dict[str, Any] = json.loads((WORKFLOWS / f"{name}.json").read_text())
    return graph


def test_a_flux_custom_sampler_workflow_is_located_through_guider_noise_and_sd3_latent() -> None:
    graph = workflow("flux_dev_custom_sampler")
    placement = Placement.locate(graph, {})
    assert {k: str(v) for k, v in placement.targets.items()} == {
        "prompt": "6.text",
        "seed": "25.noise_seed",
        "width": "27.width",
        "height": "27.height",
    }
    assert not placement.needs_negative  # BasicGuider: no negative conditioning at all
    filled = placement.fill(graph, VALUES, "pre")
    assert filled["6"]["inputs"]["text"] == "p" and filled["25"]["inputs"]["noise_seed"] == 7
    assert (filled["27"]["inputs"]["width"], filled["27"]["inputs"]["height"]) == (640, 512)
    assert filled["9"]["inputs"]["filename_prefix"] == "pre"


def test_a_zeroed_negative_of_the_positive_encoder_does_not_overwrite_the_prompt() -> None:
    graph = workflow("flux_ksampler_zeroed_negative")
    placement = Placement.locate(graph, {})
    assert "negative" not in placement.targets and not placement.needs_negative
    filled = placement.fill(graph, VALUES, "pre")
    assert filled["6"]["inputs"]["text"] == "p"  # was overwritten by the (empty) negative
    assert filled["31"]["inputs"]["seed"] == 7 and filled["27"]["inputs"]["width"] == 640


def test_sdxl_base_and_refiner_is_ambiguous_and_says_what_to_set() -> None:
    graph = workflow("sdxl_base_refiner")
    with pytest.raises(GraphError, match=r"several samplers \(10, 11\); set inputs\.prompt"):
        Placement.locate(graph, {})
    explicit = {"prompt": "6.text_g", "negative": "7.text_g", "seed": "10.noise_seed"}
    explicit |= {"width": "5.width", "height": "5.height"}
    assert Placement.locate(graph, explicit).targets["seed"] == Target("10", "noise_seed")


def test_every_text_of_a_multi_text_encoder_gets_the_prompt() -> None:
    graph = workflow("sdxl_base_refiner")
    for refiner_node in ("11", "12", "15", "16"):
        del graph[refiner_node]
    graph["17"]["inputs"] = {"samples": ["10", 0], "vae": ["4", 2]}
    placement = Placement.locate(graph, {})
    filled = placement.fill(graph, {**VALUES, "negative": "n"}, "pre")
    assert (filled["6"]["inputs"]["text_g"], filled["6"]["inputs"]["text_l"]) == ("p", "p")
    assert (filled["7"]["inputs"]["text_g"], filled["7"]["inputs"]["text_l"]) == ("n", "n")
    flux = builtin_graph("x")
    flux["6"] = {"class_type": "CLIPTextEncodeFlux", "inputs": {"clip_l": "", "t5xxl": "", "guidance": 3.5}}
    filled = Placement.locate(flux, {}).fill(flux, VALUES, "pre")
    assert (filled["6"]["inputs"]["clip_l"], filled["6"]["inputs"]["t5xxl"]) == ("p", "p")


async def test_a_negative_prompt_for_a_workflow_without_one_is_refused_before_sending() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    settings = ComfyUISettings(workflow=WORKFLOWS / "flux_dev_custom_sampler.json")
    provider = ComfyUIProvider(settings, CountingGate(), transport=httpx.MockTransport(handler))
    try:
        with pytest.raises(Permanent, match="no negative prompt of its own"):
            await provider.submit(spec(negative_prompt="blurry"), "key-1")
        assert sent == []
    finally:
        await provider.aclose()


def test_max_in_flight_keeps_one_queued_per_server() -> None:
    assert ComfyUISettings().max_in_flight == 2
    assert ComfyUISettings(base_url=["http://a:1", "http://b:2"], runs_at_once=2).max_in_flight == 6


# -- what is sent ---------------------------------------------------------------------------------


async def test_a_resend_is_looked_for_first_then_sends_the_filled_graph_with_a_derived_prompt_id() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if request.url.path == "/queue":
            return httpx.Response(200, json={"queue_running": [], "queue_pending": []})
        if request.url.path.startswith("/history/"):
            return httpx.Response(200, json={})
        if request.url.path == "/view":
            return httpx.Response(404)
        body = json.loads(request.content)
        return httpx.Response(200, json={"prompt_id": body["prompt_id"], "number": 1, "node_errors": {}})

    provider = ComfyUIProvider(
        ComfyUISettings(base_url="http://gpu:8188"), CountingGate(), transport=httpx.MockTransport(handler)
    )
    assert await provider.reconcile(spec(), "key-1", None) is None  # a re-send: nobody has it
    outcome = await provider.submit(spec(), "key-1")
    await provider.aclose()
    assert [r.url.path for r in sent] == ["/queue", f"/history/{prompt_id_for('key-1')}", "/view", "/prompt"]
    assert isinstance(outcome, Submitted) and outcome.remote_id == prompt_id_for("key-1")
    assert outcome.handle["server"] == "http://gpu:8188"
    body = json.loads(sent[-1].content)
    assert body["prompt_id"] == prompt_id_for("key-1") == prompt_id_for("key-1")
    graph = body["prompt"]
    assert graph["6"]["inputs"]["text"] == "a lighthouse at dusk" and graph["7"]["inputs"]["text"] == "blurry"
    assert graph["3"]["inputs"]["seed"] == 1234
    assert (graph["5"]["inputs"]["width"], graph["5"]["inputs"]["height"]) == (512, 384)
    assert graph["9"]["inputs"]["filename_prefix"] == f"wfbatch_{prompt_id_for('key-1')}"
    assert "origin" not in sent[-1].headers


def test_refusals_carry_comfyuis_message_for_the_node() -> None:
    body = {
        "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation"},
        "node_errors": {
            "4": {
                "class_type": "CheckpointLoaderSimple",
                "errors": [{"message": "Value not in list", "details": "ckpt_name: 'x'"}],
            }
        },
    }
    assert refusal_message(body, 400) == (
        "Prompt outputs failed validation; node 4 (CheckpointLoaderSimple): Value not in list: ckpt_name: 'x'"
    )
    assert refusal_message({"error": "old style text", "node_errors": {}}, 400) == "old style text"


# -- over loopback --------------------------------------------------------------------------------


def comfy_sim(**overrides: Any) -> RunningSimulator:
    values: dict[str, Any] = {"provider": "comfyui", "latency": (0.02, 0.05), "seed": 7}
    values.update(overrides)
    return RunningSimulator(SimOptions(**values))


def section(sim: RunningSimulator, **overrides: Any) -> dict[str, Any]:
    return {
        "base_url": sim.base_url,
        "poll_initial": 0.05,
        "poll_max": 0.1,
        "backoff_initial": 0.05,
        **overrides,
    }


async def run_batch(
    store: Store, layout: HomeLayout, home: Path, comfy: dict[str, Any], lines: list[dict[str, Any]]
) -> tuple[list[Any], Path]:
    raw = "\n".join(json.dumps({"provider": "comfyui", **line}) for line in lines).encode()
    config = load_settings(home, comfyui=comfy)
    ingested = await ingest(
        store, layout, parse_prompt_bytes(raw, "c.jsonl"), raw, "comfyui", reuse=Reuse.NEVER
    )
    engine = Engine(store, config, layout, batch_ids=[ingested.batch.id])
    await engine.run_until_idle()
    await engine.shutdown()
    return await store.jobs.list_jobs(batch_id=ingested.batch.id, limit=100), Path(ingested.batch.output_dir)


async def test_twelve_prompts_one_failing_over_loopback(store: Store, layout: HomeLayout, home: Path) -> None:
    sizes = [(512, 512), (768, 512), (512, 640)]
    lines = [
        {
            "prompt": f"{FAIL if i == 4 else 'a lighthouse'} {i}",
            "width": sizes[i % 3][0],
            "height": sizes[i % 3][1],
            "seed": 100 + i,
        }
        for i in range(12)
    ]
    with comfy_sim(fail_marker=FAIL) as sim:
        jobs, folder = await run_batch(store, layout, home, section(sim), lines)
        server = sim.state.book
        graphs = dict(server.graphs)
        executions = dict(server.executions_by_prompt_id)
    done = [job for job in jobs if job.state is JobState.DONE]
    failed = [job for job in jobs if job.state is JobState.FAILED]
    assert (len(done), len(failed)) == (11, 1)
    assert (
        failed[0].error_message is not None and "simulated failure in the sampler" in failed[0].error_message
    )
    # The failure names the prompt as ComfyUI knows it: its prompt_id is the request id.
    assert failed[0].error_request_id is not None
    assert failed[0].error_request_id in executions and failed[0].error_request_id in failed[0].error_message
    for job in done:
        assert job.file is not None
        with PILImage.open(folder / job.file) as image:
            assert image.size == (job.spec.width, job.spec.height)
        graph = graphs[job.remote_id]
        assert (
            graph["6"]["inputs"]["text"] == job.spec.prompt and graph["3"]["inputs"]["seed"] == job.spec.seed
        )
    assert set(executions.values()) == {1} and len(executions) == 12


async def test_a_graph_comfyui_refuses_fails_the_job_with_its_message(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    with comfy_sim() as sim:
        jobs, _ = await run_batch(
            store,
            layout,
            home,
            section(sim, checkpoint="missing.safetensors"),
            [{"prompt": "x", "width": 512, "height": 512}],
        )
    assert jobs[0].state is JobState.FAILED and jobs[0].attempts == 1
    assert "node 4 (CheckpointLoaderSimple): Value not in list" in (jobs[0].error_message or "")


async def test_a_comfyui_restart_is_reconciled_and_resent_with_the_same_id() -> None:
    with comfy_sim(latency=(5.0, 5.0)) as sim:
        provider = ComfyUIProvider(ComfyUISettings(**section(sim)), CountingGate())
        first = await provider.submit(spec(prompt="first"), "k1")
        second = await provider.submit(spec(prompt="second"), "k2")
        assert isinstance(first, Submitted) and isinstance(second, Submitted)
        again = await provider.submit(spec(prompt="second"), "k2")  # a re-send after a crash: found queued
        assert isinstance(again, Submitted) and again.remote_id == second.remote_id
        assert sim.state.book.executions_by_prompt_id[second.remote_id] == 0
        sim.state.book.restart()  # what /_sim/restart does
        polled = await provider.poll(second.handle)
        assert isinstance(polled, Pending) and "re-sent" in polled.status
        queued = sim.state.book.queue_snapshot()
        ids = [item[1] for item in queued["queue_running"] + queued["queue_pending"]]
        assert ids == [second.remote_id]
        await provider.aclose()


async def test_an_old_server_that_ignores_prompt_id_is_followed_by_its_own(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    with comfy_sim(legacy_comfyui=True) as sim:
        jobs, _ = await run_batch(
            store,
            layout,
            home,
            section(sim),
            [{"prompt": f"p{i}", "width": 512, "height": 512} for i in range(3)],
        )
        executions = dict(sim.state.book.executions_by_prompt_id)
    assert all(job.state is JobState.DONE for job in jobs)
    assert sorted(executions.values()) == [1, 1, 1]


async def test_an_old_server_is_reconciled_by_its_own_id_so_a_failed_prompt_is_not_run_again() -> None:
    # An old server ignores our prompt_id; after a wfbatch crash the prompt is found in /queue by our
    # id in extra_data, and the job must go on under the server's id: its history (and its failure)
    # is only under that one, and under ours the prompt would look lost and run a second time.
    with comfy_sim(legacy_comfyui=True, latency=(0.3, 0.3), fail_marker=FAIL) as sim:
        before = ComfyUIProvider(ComfyUISettings(**section(sim)), CountingGate())
        await before.submit(spec(prompt="ahead"), "k1")
        first = await before.submit(spec(prompt=f"{FAIL} behind"), "k2")
        await before.aclose()
        after = ComfyUIProvider(ComfyUISettings(**section(sim)), CountingGate())  # the crash
        again = await after.reconcile(spec(prompt=f"{FAIL} behind"), "k2", None)
        assert isinstance(first, Submitted) and isinstance(again, Submitted)
        assert again.remote_id == first.remote_id != prompt_id_for("k2")
        with pytest.raises(Permanent, match="failed"):
            for _ in range(100):  # bounded: the prompt runs 0.3 s behind another
                await after.poll(again.handle)
                await asyncio.sleep(0.05)
        await after.aclose()
        assert sim.state.book.executions_by_text[f"{FAIL} behind"] == 1


async def test_a_first_send_asks_nothing_before_the_prompt() -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.path)
        body = json.loads(request.content)
        return httpx.Response(200, json={"prompt_id": body["prompt_id"], "number": 1, "node_errors": {}})

    provider = ComfyUIProvider(
        ComfyUISettings(base_url="http://gpu:8188"), CountingGate(), transport=httpx.MockTransport(handler)
    )
    await provider.submit(spec(), "key-1")
    await provider.aclose()
    assert sent == ["/prompt"]


async def test_a_resend_while_a_server_is_silent_waits_for_it_instead_of_sending_elsewhere() -> None:
    # wfbatch crashed with the start on the wire; now one GPU does not answer. It may hold the
    # prompt in its queue: sending it to the other would run it twice once the first comes back.
    sent: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append((request.url.host, request.url.path))
        if request.url.host == "gpu-a":
            raise httpx.ConnectError("connection refused", request=request)
        if request.url.path == "/queue":
            return httpx.Response(200, json={"queue_running": [], "queue_pending": []})
        if request.url.path.startswith("/history/"):
            return httpx.Response(200, json={})
        return httpx.Response(404)

    settings = ComfyUISettings(base_url=["http://gpu-a:8188", "http://gpu-b:8188"], max_attempts=1)
    provider = ComfyUIProvider(settings, CountingGate(), transport=httpx.MockTransport(handler))
    adopted = await provider.reconcile(spec(), "key-1", None)
    assert isinstance(adopted, Submitted) and adopted.handle["server"] == "http://gpu-a:8188"
    waiting = await provider.poll(adopted.handle)
    await provider.aclose()
    assert isinstance(waiting, Pending) and "unreachable" in (waiting.status or "")
    assert ("gpu-b", "/prompt") not in sent and ("gpu-a", "/prompt") not in sent


async def test_two_servers_share_the_jobs(store: Store, layout: HomeLayout, home: Path) -> None:
    with comfy_sim() as one, comfy_sim() as two:
        comfy = {**section(one), "base_url": [one.base_url, two.base_url]}
        jobs, _ = await run_batch(
            store, layout, home, comfy, [{"prompt": f"p{i}", "width": 512, "height": 512} for i in range(6)]
        )
        counts = [sum(s.state.book.executions_by_prompt_id.values()) for s in (one, two)]
        urls = {one.base_url, two.base_url}
    assert all(job.state is JobState.DONE for job in jobs)
    assert sum(counts) == 6 and min(counts) >= 1
    assert {job.handle["server"] for job in jobs if job.handle} == urls


def test_kill_9_three_times_and_a_comfyui_restart_run_nothing_twice() -> None:
    total = 12
    with comfy_sim(latency=(0.15, 0.3)) as sim:
        env = {
            "WFBATCH_PROVIDER": "comfyui",
            "WFBATCH_COMFYUI__BASE_URL": sim.base_url,
            "WFBATCH_COMFYUI__POLL_INITIAL": "0.1",
            "WFBATCH_COMFYUI__POLL_MAX": "0.2",
            "WFBATCH_COMFYUI__BACKOFF_INITIAL": "0.1",
            "WFBATCH_INBOX__STABLE_SECONDS": "0.2",
        }
        with running_daemon(env=env) as daemon:
            daemon.drop("c.jsonl", jsonl(*(f"shot {i}" for i in range(total)), size=512))
            server = sim.state.book

            def executed() -> int:
                return sum(server.executions_by_prompt_id.values())

            for crash in range(3):
                daemon.wait_until(lambda c=crash: executed() >= 2 + 3 * c, 20, "executions")
                daemon.kill()
                if crash == 1:
                    httpx.post(f"{sim.root_url}/_sim/restart").raise_for_status()
                daemon.start()
            daemon.wait_for_jobs(lambda jobs: jobs["done"] == total, timeout=40)
        counts = dict(server.executions_by_prompt_id)
        cut_off = server.cut_off  # read after the restart settled: `running` before it may be stale
    twice = [pid for pid, n in counts.items() if n > 1]
    assert len(counts) == total
    assert twice in ([], cut_off), counts
