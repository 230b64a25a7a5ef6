"""`status`, the API and the TUI header say when queued work waits behind a rate limit, and a batch
held by its provider's pause or a global pause reads as held everywhere, not `working`."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from tests.daemon_harness import jsonl, running_daemon
from wfbatch.cli.remote_render import render_batches
from wfbatch.protocol import BatchSummary, Hold, ProviderStatus, Status
from wfbatch.tui.widgets.header import provider_parts

LOCAL_TWO_A_MINUTE = {
    "WFBATCH_PROVIDER": "local",
    "WFBATCH_LOCAL__EXECUTIONS_PER_MINUTE": "2",
    "WFBATCH_LOCAL__MAX_IN_FLIGHT": "4",
}


def _waiting(status: dict[str, Any]) -> dict[str, Any] | None:
    local = status["providers"].get("local")
    if local and local["next_start_in"] >= 1.0 and local["jobs"].get("queued", 0):
        return dict(local)
    return None


def test_status_says_which_limit_holds_the_next_start_and_when() -> None:
    with running_daemon(env=LOCAL_TWO_A_MINUTE) as daemon:
        daemon.drop("four.jsonl", jsonl("one", "two", "three", "four"))
        local = daemon.wait_until(lambda: _waiting(daemon.status()), what="a start waiting on the limit")
        assert local["next_start_why"] == "2/min start limit"
        assert 1.0 <= local["next_start_in"] <= 65.0  # a minute and the window's safety margin

        for columns in (80, 140):
            shown = daemon.cli("status", columns=columns)
            assert shown.exit_code == 0, shown.output
            assert "next start in" in shown.output and "2/min start limit" in shown.output
        row = next(line for line in shown.output.splitlines() if line.startswith("local"))
        assert "waiting" in row


def _provider(**fields: Any) -> ProviderStatus:
    return ProviderStatus(name="wireflow", label="wireflow", **fields)


def test_a_wait_is_said_only_while_work_is_queued_behind_it() -> None:
    waiting = _provider(next_start_in=48.0, next_start_why="10/min request limit", jobs={"queued": 3})
    assert waiting.start_wait() == (48.0, "10/min request limit")
    assert _provider(next_start_in=48.0, next_start_why="10/min request limit").start_wait() is None
    assert _provider(next_start_in=0.4, next_start_why="x", jobs={"queued": 1}).start_wait() is None
    paused = _provider(next_start_in=48.0, next_start_why="x", jobs={"queued": 1}, paused="out of credits")
    assert paused.start_wait() is None


def test_the_tui_header_says_the_wait() -> None:
    waiting = _provider(next_start_in=48.0, next_start_why="10/min request limit", jobs={"queued": 3})
    console = Console(width=200, record=True)
    for text, _rank in provider_parts(waiting):
        console.print(text, end="")
    assert "next start in 48s: 10/min request limit" in console.export_text()


def _status(holds: list[Hold], paused: bool = False) -> Status:
    batch = BatchSummary.model_validate({
        "id": "b1", "name": "shots", "source_name": "shots.txt", "provider": "wireflow",
        "created_at": "2026-12-07T10:00:00Z", "output_dir": "/tmp/out",
        "total": 3, "counts": {"queued": 3}, "paused": False,
    })
    return Status(version="x", jobs={"queued": 3}, paused=paused, providers={}, batches=[batch], holds=holds)


def test_a_provider_or_global_pause_holds_the_batch_in_one_place() -> None:
    provider_hold = Hold(scope="provider", target="wireflow", kind="pause", reason="paused", lift="resume")
    everything = Hold(scope="everything", kind="pause", reason="paused", lift="wfbatch resume")
    other = Hold(scope="provider", target="openai", kind="pause", reason="paused", lift="resume")
    for holds in ([provider_hold], [everything]):
        status = _status(holds)
        assert status.hold_of(status.batches[0]) == holds[0]
    status = _status([other])
    assert status.hold_of(status.batches[0]) is None


def test_status_shows_a_batch_held_by_its_provider_as_held() -> None:
    hold = Hold(scope="provider", target="wireflow", kind="pause", reason="paused", lift="resume")
    status = _status([hold])
    console = Console(width=140, record=True)
    render_batches(status.batches, console, hold_of=status.hold_of)
    row = next(line for line in console.export_text().splitlines() if "shots" in line)
    assert "held" in row and "working" not in row
