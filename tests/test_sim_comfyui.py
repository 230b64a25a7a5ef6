"""`wfbatch sim --provider comfyui` driven with plain httpx over loopback: /prompt with node_errors,
/queue, /history, /view, /interrupt, and `/_sim/restart` forgetting queue and history."""

from __future__ import annotations

import time
from typing import Any

import httpx

from wfbatch.sim import RunningSimulator, SimOptions
from wfbatch.sim.comfyui_server import KNOWN_NODES


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
        assert sim.state.comfyui.graphs["my-id"]["6"]["inputs"]["text"] == "hello"
        client.post("/_sim/restart").raise_for_status()
        assert client.get("/history/my-id").json() == {}  # forgotten, but the file stays
        assert client.get("/view", params=image).status_code == 200
        assert client.get("/queue").json() == {"queue_running": [], "queue_pending": []}
        assert client.post("/interrupt", json={}).status_code == 200
        assert sim.state.stats()["comfyui"]["executions_by_prompt_id"] == {"my-id": 1}


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
