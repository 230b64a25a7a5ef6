"""What `wfbatch run` says when it stops and starts again (issue 30): a bad key once, not twice; a
rerun that names the batch it resumed and what is left; Ctrl-C that says how to go on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.deadlines import patience
from tests.test_run_cli import wfbatch
from wfbatch.sim import RunningSimulator, SimOptions


def _wireflow(sim: RunningSimulator, key: str) -> dict[str, str]:
    return {"WFBATCH_PROVIDER": "wireflow", "WFBATCH_WIREFLOW__BASE_URL": sim.base_url,
            "WFBATCH_WIREFLOW__API_KEY": key, "WFBATCH_WIREFLOW__WORKFLOW_ID": "wf_demo"}


def test_a_bad_key_is_said_once_and_a_rerun_says_what_it_resumed(tmp_path: Path) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red fox\na blue fox\n")
    home = tmp_path / "home"
    with RunningSimulator(SimOptions(provider="wireflow", latency=(0.05, 0.1))) as sim:
        first = wfbatch(home, "run", str(prompts), env=_wireflow(sim, "wrong"))
        assert first.returncode == 3, first.stderr
        assert first.stderr.count("authentication failed") == 1, first.stderr
        again = wfbatch(home, "run", str(prompts), env=_wireflow(sim, "wrong"))
    assert again.returncode == 3
    assert "resumed batch " in again.stderr and "(p): 2 jobs left" in again.stderr
    assert "resumed" not in first.stderr


def test_ctrl_c_says_the_same_command_resumes_the_rest(tmp_path: Path) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"fox {i}\n" for i in range(5)))
    home = tmp_path / "home"
    with RunningSimulator(SimOptions(provider="wireflow", latency=(30.0, 30.0))) as sim:
        env = {**os.environ, "WFBATCH_HOME": str(home), **_wireflow(sim, "sk-test")}
        process = subprocess.Popen([sys.executable, "-m", "wfbatch", "run", str(prompts)], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # Interrupt once a start has reached the simulator: the run is under way.
            deadline = time.monotonic() + patience(20.0)
            while not sim.state.stats()["executions_created"] and time.monotonic() < deadline:
                time.sleep(0.05)
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=patience(30.0))
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 3
    assert "interrupted: the same command again resumes the rest" in stderr
    assert "stopped before the work was finished" not in stderr
