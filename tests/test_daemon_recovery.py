"""Stopping and crashing a real daemon mid-batch: SIGTERM within 10 s, kill -9 and restart, with the
local provider and against the Wireflow simulator (one execution per job, by its own count)."""

from __future__ import annotations

import json
import signal
import stat
from pathlib import Path
from typing import Any

from tests.conftest_sim import TEST_KEY, fast_options
from tests.daemon_harness import DaemonProcess, jsonl, running_daemon
from wfbatch.sim import RunningSimulator, SimOptions

SLOW_LOCAL = {
    "WFBATCH_LOCAL__LATENCY_MIN": "0.8",
    "WFBATCH_LOCAL__LATENCY_MAX": "1.5",
    "WFBATCH_LOCAL__MAX_IN_FLIGHT": "3",
}


def _manifest_complete(daemon: DaemonProcess, total: int) -> bool:
    manifests = list((daemon.home / "output").glob("*/manifest.json"))
    if len(manifests) != 1:
        return False
    data = json.loads(manifests[0].read_text())
    entries = data["entries"]
    if len(entries) != total or any(e["status"] != "done" for e in entries):
        return False
    return all((manifests[0].parent / e["file"]).is_file() for e in entries)


def test_sigterm_exits_within_10_s_and_the_next_start_finishes_the_work() -> None:
    with running_daemon(env=SLOW_LOCAL) as daemon:
        daemon.drop("term.jsonl", jsonl(*(f"term {i}" for i in range(6))))
        daemon.wait_for_jobs(lambda jobs: jobs["submitting"] + jobs["running"] > 0)
        daemon.stop()
        # 0, not -9: it exited by itself, within the daemon's own stop bounds (ENGINE_STOP_TIMEOUT
        # and the server's); a stopwatch here would time the load of the machine as well.
        assert daemon.returncode == 0, daemon.log()
        assert not daemon.socket.exists()
        daemon.start()
        jobs = daemon.wait_for_jobs(lambda jobs: jobs["done"] == 6, timeout=20)
        assert sum(jobs.values()) == 6
        daemon.wait_until(lambda: _manifest_complete(daemon, 6), 10, "a complete manifest")


def test_kill_9_mid_batch_then_restart_finishes_every_job() -> None:
    with running_daemon(env=SLOW_LOCAL) as daemon:
        daemon.drop("crash.jsonl", jsonl(*(f"crash {i}" for i in range(6))))
        daemon.wait_for_jobs(lambda jobs: jobs["submitting"] > 0)
        daemon.kill()
        assert daemon.socket.exists()  # stale: the next start must replace it
        daemon.start()
        assert stat.S_IMODE(daemon.socket.stat().st_mode) == 0o600
        daemon.wait_for_jobs(lambda jobs: jobs["done"] == 6, timeout=20)
        daemon.wait_until(lambda: _manifest_complete(daemon, 6), 10, "a complete manifest")


def _sim_env(sim: RunningSimulator) -> dict[str, str]:
    return {
        "WFBATCH_PROVIDER": "wireflow",
        "WFBATCH_WIREFLOW__API_KEY": TEST_KEY,
        "WFBATCH_WIREFLOW__BASE_URL": sim.base_url,
        "WFBATCH_WIREFLOW__WORKFLOW_ID": "wf_demo",
        "WFBATCH_WIREFLOW__PLAN": "enterprise",
        "WFBATCH_WIREFLOW__REQUESTS_PER_MINUTE": "10000",
        "WFBATCH_WIREFLOW__EXECUTIONS_PER_MINUTE": "10000",
        "WFBATCH_WIREFLOW__DAILY_EXECUTIONS": "100000",
        "WFBATCH_WIREFLOW__MAX_IN_FLIGHT": "4",
        "WFBATCH_WIREFLOW__POLL_INITIAL": "0.2",
        "WFBATCH_WIREFLOW__POLL_MAX": "0.4",
        "WFBATCH_INBOX__STABLE_SECONDS": "0.3",
    }


def test_kill_9_during_a_simulator_batch_loses_nothing_and_starts_nothing_twice() -> None:
    total = 10
    with (
        RunningSimulator(fast_options(latency=(0.6, 1.2))) as sim,
        running_daemon(env=_sim_env(sim)) as daemon,
    ):
        daemon.drop("sim.jsonl", jsonl(*(f"simulated {i}" for i in range(total))))

        def stats() -> dict[str, Any]:
            return sim.state.stats()

        # Crash 1: executions started, none finished. Crash 2: some finished, others in flight.
        daemon.wait_until(lambda: stats()["executions_created"] >= 2, 15, "the first executions")
        daemon.kill()
        daemon.start()
        daemon.wait_for_jobs(lambda jobs: 3 <= jobs["done"] < total and jobs["running"] > 0, timeout=20)
        daemon.process.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        daemon.process.wait(5)  # type: ignore[union-attr]
        daemon.start()
        daemon.wait_for_jobs(lambda jobs: jobs["done"] == total, timeout=30)
        final = stats()
        assert final["executions_created"] == total, final
        assert set(final["executions_by_key"].values()) == {1}, final["executions_by_key"]
        daemon.wait_until(lambda: _manifest_complete(daemon, total), 10, "a complete manifest")
        assert TEST_KEY not in daemon.log()


def test_sighup_reloads_limits_and_logs_the_change() -> None:
    with running_daemon(env={"WFBATCH_LOCAL__LATENCY_MAX": "0.05"}) as daemon:
        daemon.drop("hup.jsonl", jsonl("make the limiter exist"))
        daemon.wait_for_jobs(lambda jobs: jobs["done"] == 1)
        Path(daemon.home / "wfbatch.toml").write_text("[local]\nmax_in_flight = 7\n")
        daemon.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        daemon.wait_until(lambda: daemon.status()["providers"]["local"]["max_in_flight"] == 7, 5, "new limit")
        assert "max_in_flight 2 → 7" in daemon.log()


def test_kill_9_during_an_openai_batch_pays_for_no_answered_image_twice() -> None:
    """OpenAI has no idempotency: an image it answered is in cache/ and recorded before anything
    else, so a crash after the answer never pays for it again. Only a start that was on the wire
    when the process died can be paid twice — and that job says so."""
    total = 12
    options = SimOptions(provider="openai", latency=(0.3, 0.6), seed=5, api_key="sk-openai-crash-test")
    with RunningSimulator(options) as sim:
        env = {
            "WFBATCH_PROVIDER": "openai",
            "WFBATCH_OPENAI__BASE_URL": sim.base_url,
            "WFBATCH_OPENAI__API_KEY": "sk-openai-crash-test",
            "WFBATCH_OPENAI__MAX_IN_FLIGHT": "4",
        }
        with running_daemon(env=env) as daemon:
            prompts = [{"prompt": f"crash shot {i}", "width": 1024, "height": 1024} for i in range(total)]
            daemon.drop("shots.jsonl", "".join(json.dumps(p) + "\n" for p in prompts))

            def generated() -> int:
                return int(sim.state.stats()["openai"]["generations"])

            for at_least in (2, 6, 9):
                daemon.wait_until(lambda n=at_least: generated() >= n, 20, f"{at_least} generations")
                daemon.kill()
                daemon.start()
            daemon.wait_for_jobs(lambda jobs: jobs["done"] == total, timeout=40)
            by_prompt = sim.state.stats()["openai"]["generations_by_prompt"]
            flagged = {
                detail["prompt"]
                for job in daemon.get("/v1/jobs", limit=100)["items"]
                if (detail := daemon.get(f"/v1/jobs/{job['id']}"))["possible_duplicate_charge"]
            }
    assert sum(1 for count in by_prompt.values() if count >= 1) == total
    paid_twice = {prompt for prompt, count in by_prompt.items() if count > 1}
    assert paid_twice <= flagged, (paid_twice, flagged)
