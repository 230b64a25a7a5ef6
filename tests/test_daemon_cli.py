"""Every remote CLI command and the API behind it, against one real daemon subprocess."""

from __future__ import annotations

import asyncio
import json
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import DaemonProcess, clean_env, jsonl, running_daemon, short_tmpdir
from tests.deadlines import patience
from wfbatch.core.states import JobState
from wfbatch.protocol import BatchEvent, EngineEvent, Event, JobEvent

MARKER = "FAILME"
ENV = {
    "WFBATCH_LOCAL__LATENCY_MIN": "0.05",
    "WFBATCH_LOCAL__LATENCY_MAX": "0.1",
    "WFBATCH_LOCAL__PERMANENT_FAIL_MARKER": MARKER,
    "WFBATCH_INBOX__STABLE_SECONDS": "0.3",
}
STATES = {"queued", "submitting", "running", "retrying", "done", "failed", "canceled"}


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    with running_daemon(env=ENV) as running:
        yield running


def _json(daemon: DaemonProcess, *args: str) -> Any:
    result = daemon.cli(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _submit(daemon: DaemonProcess, name: str, content: str) -> dict[str, Any]:
    path = daemon.socket.parent / name
    path.write_text(content)
    rows = _json(daemon, "submit", str(path))
    assert rows[0]["errors"] == [], rows
    row: dict[str, Any] = rows[0]
    return row


def _jobs(daemon: DaemonProcess, batch_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = _json(daemon, "jobs", "--batch", batch_id, "--limit", "500")
    return rows


def _wait_batch(daemon: DaemonProcess, batch_id: str, *states: str) -> list[dict[str, Any]]:
    def settled() -> list[dict[str, Any]] | None:
        jobs = _jobs(daemon, batch_id)
        return jobs if all(job["state"] in states for job in jobs) else None

    result: list[dict[str, Any]] = daemon.wait_until(settled, 15, f"batch {batch_id} in {states}")
    return result


def test_socket_is_private_and_answers_plain_http(daemon: DaemonProcess) -> None:
    assert stat.S_IMODE(daemon.socket.stat().st_mode) == 0o600
    assert stat.S_IMODE(daemon.socket.parent.stat().st_mode) == 0o700
    with daemon.http() as http:  # what `curl --unix-socket SOCK http://x/v1/status` does
        response = http.get("http://x/v1/status")
    assert response.status_code == 200 and response.json()["jobs"].keys() == STATES
    curl = shutil.which("curl")
    if curl:
        out = subprocess.run(
            [curl, "-sS", "--unix-socket", str(daemon.socket), "http://x/v1/health"],
            capture_output=True,
            timeout=10,
            check=True,
        )
        assert json.loads(out.stdout)["ok"] is True


def test_status_json_shape(daemon: DaemonProcess) -> None:
    status = _json(daemon, "status")
    assert set(status["jobs"]) == STATES
    assert status["paused"] is False
    assert "local" in status["providers"]
    local = status["providers"]["local"]
    assert {"in_flight", "max_in_flight", "paused", "requests_sent", "jobs"} <= local.keys()
    human = daemon.cli("status")
    assert human.exit_code == 0 and "local" in human.stdout


def test_submit_jobs_show_and_paging(daemon: DaemonProcess) -> None:
    submitted = _submit(daemon, "cli-a.jsonl", jsonl("one", "two", "three"))
    assert submitted["jobs"] == 3 and submitted["batch_id"]
    jobs = _wait_batch(daemon, submitted["batch_id"], "done")
    assert len(jobs) == 3
    for job in jobs:
        assert {"id", "batch_id", "state", "prompt", "attempts", "error"} <= job.keys()
        assert job["error"] is None and job["file"].startswith("pending-review/")
    first = daemon.cli("jobs", "--batch", submitted["batch_id"], "--limit", "1", "--json")
    assert first.exit_code == 0 and len(json.loads(first.stdout)) == 1
    cursor = first.stderr.split("--cursor")[1].strip()
    second = _json(daemon, "jobs", "--batch", submitted["batch_id"], "--limit", "5", "--cursor", cursor)
    assert [j["id"] for j in second] == [j["id"] for j in jobs[1:]]
    detail = _json(daemon, "show", str(jobs[0]["id"]))
    assert detail["attempts_history"] and detail["file_path"] and Path(detail["file_path"]).is_file()
    assert daemon.cli("show", str(jobs[0]["id"])).exit_code == 0
    assert daemon.cli("jobs", "--state", "done").exit_code == 0
    missing = daemon.cli("show", "999999")
    assert missing.exit_code == 2 and "no job 999999" in missing.stderr


def test_submit_of_one_entry_counts_one_job(daemon: DaemonProcess, tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    path.write_text(jsonl("just one"))
    shown = daemon.cli("submit", str(path))
    assert shown.exit_code == 0 and ", 1 job queued" in shown.stdout


def test_failures_carry_the_error_and_can_be_retried_and_edited(daemon: DaemonProcess) -> None:
    submitted = _submit(daemon, "cli-fail.jsonl", jsonl(f"{MARKER} one", f"{MARKER} two"))
    batch_id = submitted["batch_id"]
    jobs = _wait_batch(daemon, batch_id, "failed")
    error = jobs[0]["error"]
    assert error["http_status"] == 422 and MARKER in error["message"] and error["request_id"]
    retried = _json(daemon, "retry", "--failed", "--batch", batch_id)
    assert sorted(retried["job_ids"]) == sorted(j["id"] for j in jobs)
    _wait_batch(daemon, batch_id, "failed")
    one = daemon.cli("retry", str(jobs[0]["id"]))
    assert one.exit_code == 0 and "1 job queued again" in one.stdout
    _wait_batch(daemon, batch_id, "failed")
    edited = _json(daemon, "edit", str(jobs[1]["id"]), "--prompt", "a fixed prompt")
    assert edited["job_ids"] == [jobs[1]["id"]]
    daemon.wait_until(
        lambda: _json(daemon, "show", str(jobs[1]["id"]))["state"] == "done", 10, "edited job done"
    )
    assert _json(daemon, "show", str(jobs[1]["id"]))["prompt"] == "a fixed prompt"
    everything = _json(daemon, "retry", "--failed")
    assert jobs[0]["id"] in everything["job_ids"]


def test_pause_cancel_resume(daemon: DaemonProcess) -> None:
    _json(daemon, "pause", "--reason", "lunch")
    status = _json(daemon, "status")
    assert status["paused"] is True and status["pause_reason"] == "lunch"
    submitted = _submit(daemon, "cli-pause.jsonl", jsonl("p1", "p2", "p3", "p4"))
    batch_id = submitted["batch_id"]
    jobs = _jobs(daemon, batch_id)
    assert {j["state"] for j in jobs} == {"queued"}
    canceled = _json(daemon, "cancel", str(jobs[0]["id"]))
    assert canceled["job_ids"] == [jobs[0]["id"]]
    _json(daemon, "pause", "--batch", batch_id)
    _json(daemon, "resume")
    assert _json(daemon, "status")["paused"] is False
    assert {j["state"] for j in _jobs(daemon, batch_id)[1:]} == {"queued"}  # the batch is still paused
    _json(daemon, "pause", "--provider", "local")
    assert _json(daemon, "status")["providers"]["local"]["paused"] == "paused by the user"
    _json(daemon, "resume", "--batch", batch_id)
    assert {j["state"] for j in _jobs(daemon, batch_id)[1:]} == {"queued"}  # the provider is paused
    rest = _json(daemon, "cancel", "--batch", batch_id)
    assert sorted(rest["job_ids"]) == [j["id"] for j in jobs[1:]]
    _json(daemon, "resume", "--provider", "local")
    assert _json(daemon, "status")["providers"]["local"]["paused"] is None
    assert {j["state"] for j in _jobs(daemon, batch_id)} == {"canceled"}
    assert daemon.cli("cancel").exit_code == 2
    assert daemon.cli("pause", "--provider", "nope").exit_code == 2


def test_review_moves_the_image(daemon: DaemonProcess) -> None:
    submitted = _submit(daemon, "cli-review.jsonl", jsonl("review me", "and me"))
    jobs = _wait_batch(daemon, submitted["batch_id"], "done")
    approved = _json(daemon, "review", str(jobs[0]["id"]), "--approve")
    assert approved["job_ids"] == [jobs[0]["id"]]
    detail = _json(daemon, "show", str(jobs[0]["id"]))
    assert detail["review"] == "approved" and detail["file"].startswith("approved/")
    assert Path(detail["file_path"]).is_file()
    assert not (Path(detail["output_dir"]) / jobs[0]["file"]).exists()
    rejected = daemon.cli("review", str(jobs[1]["id"]), "--reject")
    assert rejected.exit_code == 0
    assert _json(daemon, "show", str(jobs[1]["id"]))["file"].startswith("rejected/")
    assert daemon.cli("review", str(jobs[1]["id"])).exit_code == 2


def test_submit_refuses_a_bad_file_and_enqueues_nothing(daemon: DaemonProcess) -> None:
    good = daemon.socket.parent / "good.jsonl"
    good.write_text(jsonl("good one"))
    bad = daemon.socket.parent / "bad.jsonl"
    bad.write_text(jsonl("fine") + '{"prompt": ""}\n')
    before = sum(_json(daemon, "status")["jobs"].values())
    result = daemon.cli("submit", str(good), str(bad))
    assert result.exit_code == 2
    assert "bad.jsonl:2" in result.stderr
    assert sum(_json(daemon, "status")["jobs"].values()) == before
    with daemon.http() as http:
        response = http.post("/v1/submit", json={"name": "x.jsonl", "content": "{oops\n"})
    assert response.status_code == 422
    assert response.json()["detail"]["errors"][0]["line"] == 1


def test_submit_refuses_a_size_the_model_does_not_take(daemon: DaemonProcess) -> None:
    path = daemon.socket.parent / "sizes.jsonl"
    odd = {"prompt": "odd", "provider": "openai", "width": 1000, "height": 1000}
    path.write_text(jsonl("fine") + json.dumps(odd) + "\n")
    before = sum(_json(daemon, "status")["jobs"].values())
    result = daemon.cli("submit", str(path))
    assert result.exit_code == 2
    assert "sizes.jsonl:2: openai: size 1000x1000 is not one of 1024x1024" in result.stderr
    assert sum(_json(daemon, "status")["jobs"].values()) == before


def test_pages_are_bounded_and_chained_by_cursor(daemon: DaemonProcess) -> None:
    _submit(daemon, "page-1.jsonl", jsonl("page one"))
    _submit(daemon, "page-2.jsonl", jsonl("page two"))
    first = daemon.get("/v1/batches", limit=1)
    assert len(first["items"]) == 1 and first["next_cursor"]
    second = daemon.get("/v1/batches", limit=1, cursor=first["next_cursor"])
    assert second["items"][0]["id"] != first["items"][0]["id"]
    assert second["items"][0]["created_at"] <= first["items"][0]["created_at"]
    huge = daemon.get("/v1/jobs", limit=10**9)
    assert len(huge["items"]) <= 500
    with daemon.http() as http:
        assert http.get("/v1/jobs", params={"state": "nope"}).status_code == 400
        assert http.get("/v1/jobs/abc").json()["error"].startswith("a job id is a number")


def test_metrics(daemon: DaemonProcess) -> None:
    with daemon.http() as http:
        text = http.get("/v1/metrics").text
    for family in (
        'wfbatch_jobs{state="done"}',
        'wfbatch_provider_requests_total{provider="local"}',
        "wfbatch_rate_limited_total",
        "wfbatch_credits_used_total",
        "wfbatch_queue_wait_seconds_count",
    ):
        assert family in text


async def test_event_stream_delivers_job_events(daemon: DaemonProcess) -> None:
    received: list[Event] = []

    async def follow() -> None:
        async with daemon.client() as client:
            async for event in client.events():
                received.append(event)
                if isinstance(event, EngineEvent) and event.event == "connected":
                    path = daemon.socket.parent / "events.jsonl"
                    path.write_text(jsonl("an evented fox"))
                    path.rename(daemon.inbox / "events.jsonl")
                if isinstance(event, JobEvent) and event.state is JobState.DONE:
                    return

    await asyncio.wait_for(follow(), patience(15))
    created = [e for e in received if isinstance(e, BatchEvent) and e.event == "created"]
    done = [e for e in received if isinstance(e, JobEvent) and e.state is JobState.DONE]
    # Typed on both sides, and every event that names the batch calls it `batch_id`.
    assert len(created) == 1 and created[0].jobs == 1 and created[0].source_name == "events.jsonl"
    assert done[0].batch_id == created[0].batch_id


def test_without_a_daemon_one_line_and_exit_2() -> None:
    folder = short_tmpdir()
    try:
        sock = folder / "none.sock"
        out = subprocess.run(
            [sys.executable, "-m", "wfbatch", "status", "--socket", str(sock)],
            capture_output=True,
            text=True,
            timeout=30,
            env=clean_env({"WFBATCH_HOME": str(folder / "h")}),
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and str(sock) in lines[0] and "wfbatch daemon" in lines[0]


def test_a_second_daemon_on_the_same_home_is_refused(daemon: DaemonProcess) -> None:
    folder = short_tmpdir()
    try:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "wfbatch",
                "daemon",
                "--home",
                str(daemon.home),
                "--socket",
                str(folder / "second.sock"),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            env=clean_env(),
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert out.returncode == 2
    assert f"pid {daemon.pid}" in out.stderr and str(daemon.socket) in out.stderr
    assert daemon.answers()


def test_a_socket_path_too_long_is_refused_clearly() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "wfbatch", "daemon", "--socket", "/tmp/" + "x" * 120 + ".sock"],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean_env({"WFBATCH_HOME": "/tmp/wfbatch-never"}),
    )
    assert out.returncode == 2 and "--socket" in out.stderr and "107" in out.stderr
