"""The Wireflow simulator over real HTTP on loopback: routes, shapes, limits, credits,
idempotency, faults and stats."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.conftest_sim import fast_options
from tests.deadlines import patience
from wfbatch.cli.sim_cmd import sim_command
from wfbatch.sim import AsyncRunningSimulator, RunningSimulator, SimOptions
from wfbatch.sim.fal.options import FalOptions
from wfbatch.sim.wireflow.options import WireflowOptions, window_limits

AUTH = {"Authorization": "Bearer sk-test"}


class SimClock:
    """The simulator's time, moved by the test: its windows slide by `advance`, not by the wall
    clock of a machine that may be busy."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextmanager
def running(
    clock: SimClock | None = None, **overrides: Any
) -> Iterator[tuple[RunningSimulator, httpx.Client]]:
    with (
        RunningSimulator(fast_options(**overrides), clock=clock or time.time) as sim,
        httpx.Client(base_url=sim.base_url, headers=AUTH, timeout=5.0) as client,
    ):
        yield sim, client


def execute_body(prompt: str = "a red fox") -> dict[str, Any]:
    node = {"id": "n1", "data": {"label": "Text to Image", "params": {"prompt": prompt, "seed": 3}}}
    return {"nodes": [node], "edges": []}


def wait_for(client: httpx.Client, exec_id: str, timeout: float = patience(5.0)) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(f"/workflows/executions/{exec_id}/poll").json()
        if body["status"] != "RUNNING":
            return body
        time.sleep(0.03)
    raise AssertionError(f"{exec_id} still running after {timeout}s")


def test_workflow_routes_and_headers() -> None:
    with running() as (sim, client):
        graph = client.get("/workflows/wf_demo")
        assert graph.status_code == 200
        nodes = {n["id"]: n for n in graph.json()["data"]["nodes"]}
        assert nodes["n1"]["data"]["params"]["prompt"]
        for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "X-Request-Id"):
            assert name in graph.headers
        assert int(graph.headers["X-RateLimit-Reset"]) >= int(time.time())

        schema = client.get("/workflows/wf_demo/run").json()["data"]
        assert [i["nodeId"] for i in schema["inputs"]] == ["node-prompt", "node-seed"]

        missing = client.get("/workflows/nope")
        assert missing.status_code == 404
        assert missing.json() == {"error": "Workflow not found"}
        assert missing.headers["X-Request-Id"].startswith("req_")

        check = httpx.get(f"{sim.base_url}/workflow/wh_demo/trigger")  # no key needed
        assert check.status_code == 200
        assert check.json()["isActive"] is True
        assert client.get("/no/such/route").status_code == 404


def test_auth_messages() -> None:
    with running(api_key="sk-only-this") as (sim, _client):

        def message(headers: dict[str, str]) -> str:
            response = httpx.get(f"{sim.base_url}/developer/usage", headers=headers)
            assert response.status_code == 401
            assert "X-Request-Id" in response.headers
            return str(response.json()["error"])

        assert message({}) == "Missing Authorization header"
        assert message({"Authorization": "Token abc"}) == "Invalid API key format. Expected: Bearer sk-..."
        assert message({"Authorization": "Bearer sk-other"}) == "Invalid API key"
        assert message({"Authorization": "Bearer sk-expired-1"}) == "API key has expired"
        ok = httpx.get(f"{sim.base_url}/developer/usage", headers={"Authorization": "Bearer sk-only-this"})
        assert ok.status_code == 200


def test_execute_poll_and_images() -> None:
    with running(credits=5, cost=2) as (sim, client):
        started = client.post("/workflows/wf_demo/execute", json=execute_body("a red fox"))
        assert started.status_code == 201
        run = started.json()["executionRuns"][0]
        assert run["status"] == "RUNNING"
        assert started.headers["Location"].endswith(f"/workflows/executions/{run['id']}/poll")
        assert client.get(f"/workflows/executions/{run['id']}/poll").json()["status"] == "RUNNING"
        assert sim.state.stats()["credits"]["held"] == 2

        done = wait_for(client, run["id"])
        assert done["status"] == "COMPLETED"
        url = done["nodeResults"]["nodeRuns"][0]["output"]["images"][0]["url"]
        assert done["nodeStates"][0]["outputUrl"] == url == done["finalOutput"]["url"]
        assert done["creditsUsed"] == 2
        assert sim.state.stats()["credits"] == {"balance": 3, "held": 0, "charged": 2, "unlimited": False}

        redirect = httpx.get(url)
        assert redirect.status_code == 302
        image = httpx.get(url, follow_redirects=True)
        assert image.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(image.content)).format == "PNG"

        other = client.post("/workflows/wf_demo/execute", json=execute_body("a blue fox")).json()
        other_done = wait_for(client, other["executionRuns"][0]["id"])
        other_image = httpx.get(other_done["finalOutput"]["url"], follow_redirects=True)
        assert other_image.content != image.content

        details = client.get(f"/workflows/executions/{run['id']}").json()["data"]
        assert details["status"] == "COMPLETED" and details["creditsUsed"] == 2
        assert client.get("/workflows/executions/exec_nope/poll").status_code == 404


def test_execute_validation() -> None:
    with running() as (_, client):
        cases = [
            ({"nodes": []}, "Missing required fields: edges"),
            ({"nodes": [], "edges": []}, "At least one node must be provided"),
            ({"nodes": [{"data": {}}], "edges": []}, "All nodes must have an id"),
        ]
        for body, message in cases:
            response = client.post("/workflows/wf_demo/execute", json=body)
            assert (response.status_code, response.json()["error"]) == (400, message)


def test_run_and_trigger() -> None:
    with running() as (sim, client):
        run = client.post("/workflows/wf_demo/run", json={"inputs": {"node-prompt": "a cat", "node-seed": 5}})
        assert run.status_code == 202
        data = run.json()["data"]
        assert data["status"] == "running"
        assert sim.state.book.executions[data["executionId"]].seed == 5
        bad = client.post("/workflows/wf_demo/run", json={"inputs": {"node-seed": 5}})
        assert bad.status_code == 400 and "node-prompt" in bad.json()["error"]

        trigger = httpx.post(f"{sim.base_url}/workflow/wh_demo/trigger", json={"prompt": "a dog", "seed": 9})
        assert trigger.status_code == 202
        body = trigger.json()
        assert body["status"] == "queued" and body["message"] == "Workflow execution queued successfully"
        assert sim.state.book.executions[body["executionId"]].prompt == "a dog"
        # The workflow id is accepted as a webhook id too.
        assert httpx.post(f"{sim.base_url}/workflow/wf_demo/trigger", json={}).status_code == 202
        assert wait_for(client, body["executionId"])["status"] == "COMPLETED"


def test_failed_execution_releases_credits() -> None:
    with running(fail_rate=1.0, credits=3) as (sim, client):
        exec_id = client.post("/workflows/wf_demo/execute", json=execute_body()).json()["executionRuns"][0][
            "id"
        ]
        body = wait_for(client, exec_id)
        assert body["status"] == "FAILED"
        assert "moderation" in body["nodeStates"][0]["error"] or "Upstream" in body["nodeStates"][0]["error"]
        assert body["error"].startswith("Node n1 (Text to Image) failed")
        assert "finalOutput" not in body
        assert sim.state.stats()["credits"] == {"balance": 3, "held": 0, "charged": 0, "unlimited": False}


def _max_in_any_window(times: list[float], span: float) -> int:
    return max((sum(1 for u in times if t <= u < t + span) for t in times), default=0)


def test_execution_window_is_sliding() -> None:
    window, limit = 0.6, 3
    clock = SimClock()
    with running(clock, window=window, epm=limit) as (sim, client):
        statuses: list[int] = []
        refusals: list[httpx.Response] = []
        for _ in range(80):  # 1.6 s of the simulator's time, a start every 0.02 s
            response = client.post("/workflows/wf_demo/execute", json=execute_body())
            statuses.append(response.status_code)
            if response.status_code == 429:
                refusals.append(response)
            clock.advance(0.02)
        accepted = sim.state.book.accepted_starts
        assert statuses.count(201) == len(accepted) >= 2 * limit  # the window slid on
        assert _max_in_any_window(accepted, window) <= limit
        assert refusals and sim.state.stats()["rate_limited"] == len(refusals)
        refusal = refusals[0]
        assert refusal.json()["error"] == "Too many workflow executions. Please try again later."
        assert 1 <= int(refusal.headers["Retry-After"]) <= 1  # ceil of < 0.6 s
        assert refusal.json()["retryAfter"] >= int(clock.now) - 2  # an epoch timestamp
        assert refusal.headers["X-RateLimit-Remaining"] == "0"


def test_request_window_counts_other_calls_only() -> None:
    clock = SimClock()
    with running(clock, window=0.5, rpm=4, epm=100) as (sim, client):
        codes = [client.get("/developer/usage").status_code for _ in range(6)]
        assert codes == [200] * 4 + [429] * 2
        # Starts are counted against executions/min, not requests/min.
        assert client.post("/workflows/wf_demo/execute", json=execute_body()).status_code == 201
        # /_sim/* is never limited.
        assert httpx.get(f"{sim.root_url}/_sim/stats").status_code == 200
        clock.advance(0.55)
        assert client.get("/developer/usage").status_code == 200


def test_daily_cap() -> None:
    with running(daily=2) as (_, client):
        codes = [client.post("/workflows/wf_demo/execute", json=execute_body()).status_code for _ in range(3)]
        assert codes == [201, 201, 429]
        refusal = client.post("/workflows/wf_demo/run", json={"inputs": {"node-prompt": "x"}})
        assert refusal.status_code == 429 and "Daily" in refusal.json()["error"]


def test_insufficient_credits_402() -> None:
    with running(credits=2, cost=1, latency=(30, 30)) as (sim, client):
        for _ in range(2):  # both hold a credit while running
            assert client.post("/workflows/wf_demo/execute", json=execute_body()).status_code == 201
        refusal = client.post("/workflows/wf_demo/execute", json=execute_body())
        assert refusal.status_code == 402
        assert refusal.json() == {
            "error": "Insufficient credits. Required: 1, Available: 0",
            "insufficientCredits": True,
            "requiredCredits": 1,
            "availableCredits": 0,
            "breakdown": [{"nodeId": "n1", "nodeLabel": "Text to Image", "credits": 1}],
        }
        assert httpx.post(f"{sim.root_url}/_sim/credits", json={"amount": 1}).json()["balance"] == 3
        assert client.post("/workflows/wf_demo/execute", json=execute_body()).status_code == 201


def test_object_error_style() -> None:
    with running(error_style="object", credits=0) as (_, client):
        body = client.post("/workflows/wf_demo/execute", json=execute_body()).json()
        assert body["error"]["type"] == "insufficient_credits_error"
        assert body["error"]["message"].startswith("Insufficient credits")
        assert body["requiredCredits"] == 1
        missing = client.get("/workflows/nope").json()
        assert missing["error"]["message"] == "Workflow not found"


def test_idempotent_replay_and_conflict() -> None:
    with running() as (sim, client):
        key = {"Idempotency-Key": "job-1"}
        first = client.post("/workflows/wf_demo/execute", json=execute_body(), headers=key)
        # Same JSON, different key order and spacing: still the same request.
        same = httpx.Client(
            base_url=sim.base_url, headers={**AUTH, **key, "Content-Type": "application/json"}
        )
        with same:
            raw = '{"edges": [], "nodes": [{"data": {"params": {"seed": 3, "prompt": "a red fox"}, "label": "Text to Image"}, "id": "n1"}]}'  # noqa: E501
            again = same.post("/workflows/wf_demo/execute", content=raw)
        assert again.status_code == 201
        assert again.json() == first.json()
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.headers["Location"] == first.headers["Location"]
        assert again.headers["X-Request-Id"] != first.headers["X-Request-Id"]
        assert "Idempotent-Replayed" not in first.headers

        conflict = client.post("/workflows/wf_demo/execute", json=execute_body("something else"), headers=key)
        assert conflict.status_code == 409

        stats = sim.state.stats()
        assert stats["executions_created"] == 1
        assert stats["executions_by_key"] == {"job-1": 1}
        assert stats["replays"] == 1 and stats["conflicts"] == 1


def test_replay_does_not_use_an_execution_slot() -> None:
    with running(window=60, epm=1) as (_, client):
        key = {"Idempotency-Key": "job-2"}
        assert client.post("/workflows/wf_demo/execute", json=execute_body(), headers=key).status_code == 201
        assert client.post("/workflows/wf_demo/execute", json=execute_body(), headers=key).status_code == 201
        assert client.post("/workflows/wf_demo/execute", json=execute_body()).status_code == 429


def test_stats_report() -> None:
    with running(latency=(5, 5)) as (sim, client):
        for _ in range(3):
            client.post("/workflows/wf_demo/execute", json=execute_body())
        client.get("/developer/usage")
        stats = httpx.get(f"{sim.root_url}/_sim/stats").json()
        assert stats["requests"] == {"total": 4, "by_route": {"execute": 3, "usage": 1}}
        assert stats["executions_created"] == 3
        assert stats["peak_concurrency"] == 3
        assert stats["rate_limited"] == 0 and stats["replays"] == 0
        assert stats["credits"]["held"] == 3
        assert stats["faults_injected"] == {}


def _fault_outcomes(seed: int) -> tuple[list[str], dict[str, int]]:
    outcomes: list[str] = []
    with running(error_rate=0.3, faults=("5xx", "malformed"), seed=seed) as (sim, client):
        for _ in range(150):
            response = client.get("/developer/usage")
            if response.status_code >= 500:
                outcomes.append(str(response.status_code))
            else:
                try:
                    response.json()
                    outcomes.append("ok")
                except ValueError:
                    outcomes.append("malformed")
        return outcomes, sim.state.stats()["faults_injected"]


def test_faults_at_the_configured_rate_and_seeded() -> None:
    outcomes, injected = _fault_outcomes(seed=11)
    faults = [o for o in outcomes if o != "ok"]
    assert 0.18 <= len(faults) / len(outcomes) <= 0.42
    assert sum(injected.values()) == len(faults)
    assert set(injected) <= {"500", "502", "503", "malformed"} and "malformed" in injected
    assert _fault_outcomes(seed=11)[0] == outcomes  # same seed, same faults in the same places


def test_reset_fault_drops_the_connection() -> None:
    with running() as (sim, client):
        sim.state.queue_fault("reset", route="usage")
        with pytest.raises(httpx.TransportError):
            client.get("/developer/usage")
        assert client.get("/developer/usage").status_code == 200
        assert sim.state.stats()["faults_injected"] == {"reset": 1}


def test_lost_answer_still_creates_the_execution() -> None:
    with running() as (sim, client):
        key = {"Idempotency-Key": "job-lost"}
        httpx.post(f"{sim.root_url}/_sim/faults", json={"kind": "lost_5xx", "route": "execute"})
        lost = client.post("/workflows/wf_demo/execute", json=execute_body(), headers=key)
        assert lost.status_code == 502
        assert sim.state.stats()["executions_created"] == 1
        sim.state.queue_fault("lost_reset", route="execute")
        with pytest.raises(httpx.TransportError):
            client.post("/workflows/wf_demo/execute", json=execute_body(), headers={"Idempotency-Key": "k2"})
        replay = client.post("/workflows/wf_demo/execute", json=execute_body(), headers=key)
        assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
        stats = sim.state.stats()
        assert stats["executions_by_key"] == {"job-lost": 1, "k2": 1}
        assert stats["faults_injected"] == {"lost_5xx": 1, "lost_reset": 1}


def test_slow_fault_outlasts_the_client_timeout() -> None:
    with running(slow_seconds=1.0) as (sim, client):
        sim.state.queue_fault("slow")
        # A ReadTimeout, not an answer: the client gave up while the stalled request still
        # waited (no stopwatch: on a loaded machine it would time the load as well).
        with pytest.raises(httpx.ReadTimeout):
            client.get("/developer/usage", timeout=0.3)
    # Leaving the `with` stopped the server promptly despite the stalled request.


def test_cdn_faults() -> None:
    with running(cdn_error_rate=1.0) as (_, client):
        exec_id = client.post("/workflows/wf_demo/execute", json=execute_body()).json()["executionRuns"][0][
            "id"
        ]
        url = wait_for(client, exec_id)["finalOutput"]["url"]
        response = httpx.get(url, follow_redirects=True)
        assert response.status_code == 503 or not response.content.startswith(b"\x89PNG")


async def test_async_simulator() -> None:
    async with (
        AsyncRunningSimulator(fast_options()) as sim,
        httpx.AsyncClient(base_url=sim.base_url, headers=AUTH) as client,
    ):
        response = await client.post("/workflows/wf_demo/execute", json=execute_body())
        assert response.status_code == 201


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="latency"):
        SimOptions(latency=(2, 1))
    with pytest.raises(ValueError, match="unknown fault"):
        SimOptions(faults=("gremlins",))
    assert window_limits(SimOptions(plan="pro")).requests == 60
    assert window_limits(SimOptions(plan="enterprise")).daily is None
    assert window_limits(SimOptions(plan="enterprise", daily=5)).daily == 5


def test_a_providers_own_options_are_its_packages() -> None:
    """Made flat, kept apart: a keyword that is not a shared field goes to the provider's own
    options, checked there; `replace` works the same way."""
    fal = SimOptions(provider="fal", quota=3, concurrency=4)
    assert fal.quota == 3 and fal.own == FalOptions(concurrency=4)
    assert replace(fal, concurrency=6, seed=2).own == FalOptions(concurrency=6)
    assert SimOptions().provider == "wireflow" and isinstance(SimOptions().own, WireflowOptions)
    with pytest.raises(ValueError, match="concurrency"):
        SimOptions(provider="fal", concurrency=0)
    with pytest.raises(TypeError, match="has no option plan"):
        SimOptions(provider="fal", plan="pro")
    with pytest.raises(ValueError, match="unknown provider"):
        SimOptions(provider="nope")
    with pytest.raises(TypeError, match="WireflowOptions asked of options for"):
        WireflowOptions.of(fal)


def test_cli_refuses_remote_hosts() -> None:
    result = CliRunner().invoke(sim_command, ["--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "--allow-remote" in result.output
    result = CliRunner().invoke(sim_command, ["--latency", "3,1"])
    assert result.exit_code == 2 and "MIN,MAX" in result.output


def test_cli_serves_until_interrupted() -> None:
    code = "from wfbatch.cli.sim_cmd import sim_command; sim_command()"
    args = [sys.executable, "-c", code, "--port", "0", "--latency", "0.1,0.2", "--window", "2"]
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("Wireflow simulator at http://127.0.0.1:")
        base_url = line.split()[3]
        assert httpx.get(f"{base_url}/workflows/wf_demo", headers=AUTH).status_code == 200
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=10)
        assert "stopped: 1 requests" in out
        assert process.returncode == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
