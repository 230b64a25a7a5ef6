"""`wfbatch sim --provider comfyui` driven with plain httpx over loopback: /prompt with node_errors,
/queue, /history, /view, /interrupt, and `/_sim/restart` forgetting queue and history."""

from __future__ import annotations

import asyncio
import json
import struct
import time
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from tests.deadlines import patience
from wfbatch.sim import RunningSimulator, SimOptions
from wfbatch.sim.comfyui.server import KNOWN_NODES


def graph(checkpoint: str = "sd_xl_base_1.0.safetensors") -> dict[str, Any]:
    return {
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 9,
                "positive": ["6", 0],
                "negative": ["6", 0],
                "latent_image": ["5", 0],
                "model": ["4", 0],
            },
        },
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 48, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "hello", "clip": ["4", 1]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "t", "images": ["3", 0]}},
    }


def test_prompt_history_view_and_restart() -> None:
    with (
        RunningSimulator(SimOptions(provider="comfyui", latency=(0.0, 0.0))) as sim,
        httpx.Client(base_url=sim.base_url) as client,
    ):
        refused = client.post("/prompt", json={"prompt": graph("nope.ckpt")})
        assert refused.status_code == 400 and "4" in refused.json()["node_errors"]
        assert (
            client.post("/prompt", json={"prompt": {"1": {"inputs": {}}}}).json()["error"]["type"]
            == "invalid_prompt"
        )
        ok = client.post("/api/prompt", json={"prompt": graph(), "prompt_id": "my-id"}).json()
        assert ok["prompt_id"] == "my-id" and ok["node_errors"] == {}
        entry: dict[str, Any] = {}
        for _ in range(100):
            entry = client.get("/history/my-id").json()
            if entry:
                break
            time.sleep(0.01)
        image = entry["my-id"]["outputs"]["9"]["images"][0]
        assert image == {"filename": "t_00001_.png", "subfolder": "", "type": "output"}
        assert client.get("/view", params=image).content.startswith(b"\x89PNG")
        assert client.get("/view", params={"filename": "../x"}).status_code == 400
        assert sim.state.book.graphs["my-id"]["6"]["inputs"]["text"] == "hello"
        client.post("/_sim/restart").raise_for_status()
        assert client.get("/history/my-id").json() == {}  # forgotten, but the file stays
        assert client.get("/view", params=image).status_code == 200
        assert client.get("/queue").json() == {"queue_running": [], "queue_pending": []}
        assert client.post("/interrupt", json={}).status_code == 200
        assert sim.state.stats()["comfyui"]["executions_by_prompt_id"] == {"my-id": 1}


def test_interrupt_with_a_prompt_id_stops_only_that_prompt_when_it_runs() -> None:
    with (
        RunningSimulator(SimOptions(provider="comfyui", latency=(30.0, 30.0))) as sim,
        httpx.Client(base_url=sim.base_url) as client,
    ):
        client.post("/prompt", json={"prompt": graph(), "prompt_id": "running"}).raise_for_status()
        client.post("/prompt", json={"prompt": graph(), "prompt_id": "waiting"}).raise_for_status()
        assert client.post("/interrupt", json={"prompt_id": "waiting"}).status_code == 200
        assert client.get("/queue").json()["queue_running"][0][1] == "running"  # not hit
        assert client.post("/interrupt", json={"prompt_id": "running"}).status_code == 200
        status = client.get("/history/running").json()["running"]["status"]
        assert status["messages"][-1][0] == "execution_interrupted"
        assert client.get("/queue").json()["queue_running"][0][1] == "waiting"
        client.post("/interrupt", content=b"").raise_for_status()  # no body: whatever runs
        assert client.get("/history/waiting").json() != {}
        assert sim.state.stats()["comfyui"]["interrupted"] == 2


def test_a_legacy_server_ignores_prompt_id_and_sends_error_as_text() -> None:
    with (
        RunningSimulator(SimOptions(provider="comfyui", latency=(0.0, 0.0), legacy_comfyui=True)) as sim,
        httpx.Client(base_url=sim.base_url) as client,
    ):
        assert (
            client.post("/prompt", json={"prompt": graph(), "prompt_id": "mine"}).json()["prompt_id"]
            != "mine"
        )
        assert isinstance(client.post("/prompt", json={"prompt": {}}).json()["error"], str)
    assert "SaveImage" in KNOWN_NODES


# -- /ws (providers.md §7.5) ----------------------------------------------------------------------


def ws_root(sim: RunningSimulator) -> str:
    return sim.root_url.replace("http://", "ws://", 1)


async def frames_until_end(socket: ClientConnection, prompt_id: str) -> list[str | bytes]:
    """Every frame up to the prompt's `executing` with node null (bounded: a silent socket ends it)."""
    frames: list[str | bytes] = []
    for _ in range(500):
        try:
            frame = await asyncio.wait_for(socket.recv(), patience(5))
        except TimeoutError:
            break
        frames.append(frame)
        message = json.loads(frame) if isinstance(frame, str) else {}
        data = message.get("data", {})
        ended = message.get("type") == "executing" and data.get("node") is None
        if ended and data.get("prompt_id") == prompt_id:
            break
    return frames


def texts(frames: list[str | bytes]) -> list[tuple[str, dict[str, Any]]]:
    return [(m["type"], m["data"]) for m in (json.loads(f) for f in frames if isinstance(f, str))]


async def test_ws_sends_a_prompts_events_only_to_its_client_with_steps_and_previews() -> None:
    with RunningSimulator(SimOptions(provider="comfyui", latency=(0.6, 0.6))) as sim:
        async with (
            connect(f"{ws_root(sim)}/ws?clientId=mine", proxy=None) as mine,
            connect(f"{ws_root(sim)}/api/ws?clientId=other", proxy=None) as other,
            httpx.AsyncClient(base_url=sim.base_url) as client,
        ):
            sent = graph()
            sent["3"]["inputs"]["steps"] = 10
            body = {"prompt": sent, "prompt_id": "p1", "client_id": "mine"}
            assert (await client.post("/prompt", json=body)).status_code == 200
            frames = await frames_until_end(mine, "p1")
            # Without a client_id only executing/progress go to every socket (§7.5).
            await client.post("/prompt", json={"prompt": graph(), "prompt_id": "p2"})
            heard = texts(await frames_until_end(other, "p2"))
    told = texts(frames)
    kinds = [kind for kind, _ in told]
    assert kinds[0] == "status" and told[0][1]["sid"] == "mine"
    assert kinds.index("execution_start") < kinds.index("progress") < kinds.index("execution_success")
    assert kinds[-3:] == ["executed", "execution_success", "executing"] and told[-1][1]["node"] is None
    steps = [data["value"] for kind, data in told if kind == "progress"]
    assert steps == sorted(steps) and set(steps) <= set(range(1, 11)) and len(steps) >= 3
    told_steps = [data for kind, data in told if kind == "progress"]
    assert all(d["max"] == 10 and d["node"] == "3" and d["prompt_id"] == "p1" for d in told_steps)
    previews = [f for f in frames if isinstance(f, bytes)]
    assert previews and all(struct.unpack(">II", f[:8]) == (1, 1) for f in previews)
    # The other socket heard nothing of p1, and of p2 (sent without client_id) only its steps.
    assert all(data.get("prompt_id") != "p1" for _, data in heard)
    assert {kind for kind, data in heard if data.get("prompt_id") == "p2"} == {"executing", "progress"}


async def test_ws_refuses_a_foreign_origin_and_is_absent_when_turned_off() -> None:
    with RunningSimulator(SimOptions(provider="comfyui", latency=(0.0, 0.0))) as sim:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"{ws_root(sim)}/ws", proxy=None, origin=Origin("http://evil.example")):
                pass
        assert refused.value.response.status_code == 403
        same = Origin(sim.root_url)
        async with connect(f"{ws_root(sim)}/ws", proxy=None, origin=same) as socket:
            assert json.loads(await asyncio.wait_for(socket.recv(), patience(5)))["type"] == "status"
    without = SimOptions(provider="comfyui", comfyui_ws=False)
    with RunningSimulator(without) as sim, pytest.raises(InvalidStatus):
        async with connect(f"{ws_root(sim)}/ws?clientId=x", proxy=None):
            pass


async def test_a_restart_drops_the_sockets() -> None:
    with RunningSimulator(SimOptions(provider="comfyui", latency=(0.0, 0.0))) as sim:
        async with connect(f"{ws_root(sim)}/ws?clientId=x", proxy=None) as socket:
            await asyncio.wait_for(socket.recv(), patience(5))  # status
            sim.state.book.restart()
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(socket.recv(), patience(5))
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
