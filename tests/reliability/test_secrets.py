"""Secrets: with a recognisable API key configured, nothing under HOME (database, WAL, manifests,
images, logs, error files), the daemon's log, the API's answers (status, batches, jobs, job detail
with attempts, metrics, health, the event stream), `wfbatch config` or a TUI screen dump holds it."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import pytest
from click.testing import CliRunner

from tests.daemon_harness import DaemonProcess, jsonl, running_daemon
from tests.deadlines import patience
from tests.reliability.support import SOAK, wireflow_env
from wfbatch.cli.main import main as cli_main
from wfbatch.client.client import DaemonClient
from wfbatch.sim import RunningSimulator, SimOptions

CANARY = "sk-CANARY-5f1e9b27c4d08a36"
NEEDLES = (CANARY.encode(), CANARY.removeprefix("sk-").encode())


def leaks(data: bytes | str) -> bool:
    raw = data.encode(errors="replace") if isinstance(data, str) else data
    return any(needle in raw for needle in NEEDLES)


def api_answers(daemon: DaemonProcess) -> dict[str, str]:
    answers: dict[str, str] = {}
    with daemon.http() as http:
        for path in (
            "/v1/health",
            "/v1/status",
            "/v1/batches",
            "/v1/jobs?limit=100",
            "/v1/metrics",
            "/v1/jobs?state=failed",
        ):
            answers[path] = http.get(path).text
        for job in http.get("/v1/jobs", params={"limit": 100}).json()["items"]:
            answers[f"/v1/jobs/{job['id']}"] = http.get(f"/v1/jobs/{job['id']}").text
        for batch in http.get("/v1/batches").json()["items"]:
            answers[f"/v1/batches/{batch['id']}"] = http.get(f"/v1/batches/{batch['id']}").text
        # The event stream: read what a late drop produces, for at most 3 s.
        collected = b""
        with http.stream("GET", "/v1/events", timeout=httpx.Timeout(5, read=1.5)) as stream:
            daemon.drop("late.jsonl", jsonl("a late prompt", "FAILME late"))
            deadline = time.monotonic() + 3
            with contextlib.suppress(httpx.ReadTimeout):  # quiet for 1.5 s: nothing more to come
                for chunk in stream.iter_raw():
                    collected += chunk
                    if time.monotonic() > deadline:
                        break
        answers["/v1/events"] = collected.decode(errors="replace")
    return answers


async def tui_screen(daemon: DaemonProcess) -> str:
    from wfbatch.tui import WfbatchApp

    app = WfbatchApp(DaemonClient(daemon.socket), close_client=True, graphics=False)
    async with app.run_test(size=(140, 45)) as pilot:
        deadline = time.monotonic() + patience(20)
        while not (
            app.current_mode == "main" and app.main_screen.status is not None and app.main_screen.jobs.loaded
        ):
            assert time.monotonic() < deadline, "the TUI did not attach"
            await asyncio.sleep(0.05)
        await pilot.pause()
        screens = [app.export_screenshot()]
        await pilot.press("question_mark")
        await pilot.pause()
        screens.append(app.export_screenshot())
        return "\n".join(screens)


@pytest.mark.timeout(120)
def test_the_api_key_appears_nowhere(capsys: pytest.CaptureFixture[str]) -> None:
    options = SimOptions(
        latency=(0.05, 0.2),
        seed=9,
        rpm=100_000,
        epm=100_000,
        daily=1_000_000,
        api_key=CANARY,
        fail_marker="FAILME",
    )
    with RunningSimulator(options) as sim:
        env = {**wireflow_env(sim.base_url, CANARY), "WFBATCH_LOG_LEVEL": "debug"}
        with running_daemon(env=env) as daemon:
            daemon.drop("shots.jsonl", jsonl("a red bicycle", "a teapot", "FAILME please", "a fox"))
            daemon.drop("broken.jsonl", '{"prompt": "ok"}\n{"prompt": \n')
            daemon.wait_for_jobs(lambda jobs: jobs["done"] + jobs["failed"] == 4, timeout=30)
            answers = api_answers(daemon)
            daemon.wait_for_jobs(lambda jobs: jobs["done"] + jobs["failed"] == 6, timeout=30)
            screen = asyncio.run(tui_screen(daemon))
            config = (
                CliRunner()
                .invoke(
                    cli_main,
                    ["config"],
                    env={"WFBATCH_HOME": str(daemon.home), **env},
                    catch_exceptions=False,
                )
                .output
            )
            daemon.stop()
            files = {p: p.read_bytes() for p in daemon.home.rglob("*") if p.is_file()}
            log = daemon.log()

    assert any(p.name.endswith(".error.txt") for p in files) and any(p.name == "manifest.json" for p in files)
    assert '"failed"' in answers["/v1/status"] or "failed" in answers["/v1/status"]
    leaked: list[object] = [p for p, data in files.items() if leaks(data)]
    leaked += [path for path, body in answers.items() if leaks(body)]
    leaked += [
        what
        for what, text in (("daemon log", log), ("TUI screen", screen), ("wfbatch config", config))
        if leaks(text)
    ]
    assert not leaked, f"the API key appears in: {leaked}"
    assert "**********" in config
    if SOAK:
        with capsys.disabled():
            print(
                f"\n[secrets] files checked={len(files)} api answers={len(answers)} log bytes={len(log)}"
                f" tui screens=2 leaks=0"
            )
