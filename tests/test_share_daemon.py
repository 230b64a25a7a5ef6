"""`wfbatch priority` and `wfbatch weight` against a real daemon: the next dispatch round takes the new
order, and `status` shows it. Start times come from the store the daemon wrote."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from tests.daemon_harness import DaemonProcess, jsonl, running_daemon

ONE_AT_A_TIME = {
    "WFBATCH_LOCAL__MAX_IN_FLIGHT": "1",
    "WFBATCH_LOCAL__LATENCY_MIN": "0.02",
    "WFBATCH_LOCAL__LATENCY_MAX": "0.05",
}


def starts(home: Path) -> list[tuple[str, float]]:
    """(batch id, started_at) of every started job, in the order they started."""
    with sqlite3.connect(f"file:{home / 'wfbatch.db'}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT batch_id, started_at FROM jobs WHERE started_at IS NOT NULL ORDER BY started_at"
        ).fetchall()
    return [(row[0], row[1]) for row in rows]


def batch_ids(daemon: DaemonProcess, count: int) -> dict[str, str]:
    """name → id of the daemon's batches, once there are `count`."""
    found = daemon.wait_until(lambda: len(daemon.status()["batches"]) >= count, what=f"{count} batches")
    assert found
    return {b["name"]: b["id"] for b in daemon.status()["batches"]}


def test_a_priority_set_on_a_running_batch_orders_the_next_rounds_and_shows_in_status() -> None:
    with running_daemon(env=ONE_AT_A_TIME) as daemon:
        daemon.drop("first.jsonl", jsonl(*(f"first {i}" for i in range(30))))
        ids = batch_ids(daemon, 1)
        daemon.drop("second.jsonl", jsonl(*(f"second {i}" for i in range(30))))
        ids = batch_ids(daemon, 2)
        first, second = ids["first"], ids["second"]
        daemon.wait_for_jobs(lambda jobs: jobs["done"] >= 4)
        result = daemon.cli("priority", second, "5")
        assert result.exit_code == 0, result.output
        assert f"batch {second} now has priority 5" in result.output
        changed = time.time()  # the command has returned: every round that begins now sees it

        shown = json.loads(daemon.cli("status", "--json").output)
        by_id = {b["id"]: b for b in shown["batches"]}
        assert by_id[second]["priority"] == 5
        if by_id[second]["share"] is not None:  # it may have nothing queued by now
            assert by_id[second]["share"] == 1.0
        daemon.wait_for_jobs(lambda jobs: jobs["done"] == 60, timeout=60)
        after = [batch for batch, at in starts(daemon.home) if at > changed]
    # One place in flight: at most one start comes from a round that had begun before the change.
    rest = after[1:]
    assert second in rest, after
    last_second = max(i for i, batch in enumerate(rest) if batch == second)
    assert first not in rest[: last_second + 1], rest  # every start of the second before the first's


def test_weight_and_priority_are_refused_or_shown_in_one_line() -> None:
    with running_daemon(env={"WFBATCH_LOCAL__LATENCY_MIN": "5", "WFBATCH_LOCAL__LATENCY_MAX": "5"}) as daemon:
        daemon.drop("only.jsonl", jsonl("a fox", "a cat", "a cow"))
        batch = batch_ids(daemon, 1)["only"]
        result = daemon.cli("weight", batch, "2.5")
        assert result.exit_code == 0 and f"batch {batch} now has weight 2.5" in result.output
        result = daemon.cli("weight", batch, "0")
        assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
        result = daemon.cli("priority", batch, "-3")
        assert result.exit_code == 0 and "priority -3" in result.output
        summary = next(b for b in daemon.status()["batches"] if b["id"] == batch)
        assert summary["weight"] == 2.5 and summary["priority"] == -3
        text = daemon.cli("status", columns=120).output
        assert "p-3 w2.5" in text, text
