"""`wfbatch sim` for Stability and ComfyUI from the command line: every simulator option has a flag
(lockout, window, filter marker, checkpoints, legacy), the startup lines say what to export, and
`--servers N` runs N independent ComfyUI servers. Real subprocesses, stopped with SIGINT."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from click.testing import CliRunner

from wfbatch.cli.sim_cmd import sim_command
from wfbatch.providers.comfyui.graph import builtin_graph


@contextmanager
def sim_process(*flags: str) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """`wfbatch sim FLAGS --port 0`, its two startup lines; SIGINT and the rest of stdout on exit."""
    code = "from wfbatch.cli.sim_cmd import sim_command; sim_command()"
    args = [sys.executable, "-c", code, *flags, "--port", "0", "--latency", "0"]
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    try:
        assert process.stdout is not None
        yield process, [process.stdout.readline(), process.stdout.readline()]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)


def exported(line: str) -> dict[str, str]:
    words = shlex.split(line)
    assert words[0] == "export"
    return dict(word.split("=", 1) for word in words[1:])


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=10)
    assert process.returncode == 0
    return out


def test_two_legacy_comfyui_servers_with_their_own_checkpoints() -> None:
    flags = ("--provider", "comfyui", "--servers", "2", "--legacy", "--checkpoints", "mine.safetensors")
    with sim_process(*flags) as (process, (title, export)):
        assert title.startswith("ComfyUI simulator at http://127.0.0.1:") and "2 servers" in title
        env = exported(export)
        assert env["WFBATCH_PROVIDER"] == "comfyui"
        urls = json.loads(env["WFBATCH_COMFYUI__BASE_URL"])
        assert len(set(urls)) == 2
        ids = []
        for url in urls:
            refused = httpx.post(f"{url}/prompt", json={"prompt": builtin_graph("other.safetensors")})
            assert refused.status_code == 400 and isinstance(refused.json()["error"], str)  # legacy
            sent = httpx.post(
                f"{url}/prompt", json={"prompt": builtin_graph("mine.safetensors"), "prompt_id": "ours"}
            )
            assert sent.status_code == 200
            ids.append(sent.json()["prompt_id"])
        assert "ours" not in ids and len(set(ids)) == 2  # ignored, and each server has its own queue
        assert "stopped: 4 requests, 2 executions" in stop(process)


def test_stability_lockout_window_and_filter_marker_flags() -> None:
    flags = ("--provider", "stability", "--rpm", "1", "--stability-window", "100", "--lockout", "300",
             "--filter-marker", "BLUR")
    with sim_process(*flags) as (process, (title, export)):
        assert "1 requests/100s, 300s lockout after a 429" in title and "CONTENT_FILTERED for 'BLUR'" in title
        env = exported(export)
        assert env["WFBATCH_PROVIDER"] == "stability" and env["WFBATCH_STABILITY__API_KEY"] == "sk-test"
        headers = {"Authorization": f"Bearer {env['WFBATCH_STABILITY__API_KEY']}", "Accept": "image/*"}
        with httpx.Client(base_url=env["WFBATCH_STABILITY__BASE_URL"], headers=headers) as client:

            def generate(prompt: str) -> httpx.Response:
                return client.post("/v2beta/stable-image/generate/core", files={"prompt": (None, prompt)})

            filtered = generate("a BLUR lighthouse")
            assert filtered.status_code == 200 and filtered.headers["finish-reason"] == "CONTENT_FILTERED"
            assert generate("x").status_code == 429  # the window of 1 is spent: locked out now
        assert "stopped: 2 requests, 1 images, 1 rate-limited" in stop(process)


def test_servers_is_refused_for_other_providers_and_checkpoints_must_name_one() -> None:
    result = CliRunner().invoke(sim_command, ["--provider", "fal", "--servers", "2"])
    assert result.exit_code == 2 and "--servers is for --provider comfyui" in result.output
    result = CliRunner().invoke(sim_command, ["--provider", "comfyui", "--checkpoints", " , "])
    assert result.exit_code == 2 and "expected checkpoint file names" in result.output
