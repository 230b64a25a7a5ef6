"""`wfbatch run` with a delivery bucket it cannot reach, or no credentials for it: the run ends
within `[delivery] wait_at_exit`, exits 3 and names the uploads left, in the summary and in --json.
The images themselves are made and kept; the uploads go at the next start."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from tests.daemon_harness import clean_env, jsonl

NO_AWS_FILES = {
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed: connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _run(tmp_path: Path, env: dict[str, str], *flags: str) -> subprocess.CompletedProcess[str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    prompts = tmp_path / "two.jsonl"
    prompts.write_text(jsonl("a red fox", "a blue cat"))
    base = {
        "WFBATCH_PROVIDER": "local",
        "WFBATCH_DELIVERY__URL": "s3://shots/run/",
        "WFBATCH_DELIVERY__REGION": "us-east-1",
        "WFBATCH_DELIVERY__WAIT_AT_EXIT": "2",
        "WFBATCH_DELIVERY__BACKOFF_INITIAL": "0.1",
        "WFBATCH_DELIVERY__BACKOFF_MAX": "0.3",
        "WFBATCH_DELIVERY__TIMEOUT": "2",
        **NO_AWS_FILES,
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "wfbatch", "run", str(prompts), "--home", str(tmp_path / "home"), *flags],
        capture_output=True, text=True, env=clean_env(base), timeout=180,  # a bound, not a measure
    )


def test_an_unreachable_bucket_ends_the_run_with_exit_3_naming_the_uploads(tmp_path: Path) -> None:
    env = {
        "WFBATCH_DELIVERY__ENDPOINT_URL": f"http://127.0.0.1:{_closed_port()}",
        "AWS_ACCESS_KEY_ID": "AKIAFAKEFAKEFAKE0000",
        "AWS_SECRET_ACCESS_KEY": "fake-secret-for-a-closed-port",
    }
    ran = _run(tmp_path, env, "--json")
    assert ran.returncode == 3, ran.stderr
    summary = json.loads(ran.stdout)
    assert summary["done"] == 2 and summary["queued"] == 0
    uploads = summary["uploads"]
    assert uploads["pending"] + uploads["held"] >= 2 and uploads["done"] == 0
    assert summary["stop_reason"]["code"] == "uploads_left"
    assert "upload" in summary["stop_reason"]["message"] and "next start" in summary["stop_reason"]["message"]
    assert "fake-secret" not in ran.stdout + ran.stderr


def test_no_credentials_hold_the_uploads_and_the_summary_says_so(tmp_path: Path) -> None:
    ran = _run(tmp_path, {"WFBATCH_DELIVERY__ENDPOINT_URL": f"http://127.0.0.1:{_closed_port()}"})
    assert ran.returncode == 3, ran.stderr
    assert "held" in ran.stdout
    assert "stopped with work left:" in ran.stderr and "held" in ran.stderr
    as_json = _run(tmp_path / "again", {"WFBATCH_DELIVERY__ENDPOINT_URL": "http://127.0.0.1:9"}, "--json")
    summary = json.loads(as_json.stdout)
    assert summary["uploads"]["held"] >= 2, summary["uploads"]
    assert summary["uploads"]["held_reasons"], summary["uploads"]
