"""Several daemons on one PostgreSQL database: real `wfbatch daemon` subprocesses (each with its own
HOME and inbox) against a real Wireflow simulator over loopback, one account served by one daemon at
a time, the one serving it killed with `kill -9` mid-batch.

What must hold: the other daemon takes the account over (a short `lease_timeout` here), adopts the
jobs in flight into the recovery path (reconcile or re-send with the stored idempotency key, poll),
every prompt ends done, and the simulator's books show ONE execution per prompt."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg

from tests.conftest_sim import fast_options
from tests.daemon_harness import DaemonProcess, jsonl, running_daemon
from tests.deadlines import patience
from tests.test_daemon_recovery import _sim_env
from wfbatch.sim import RunningSimulator

LEASE_TIMEOUT = "2"


def fleet_env(sim: RunningSimulator, url: str) -> dict[str, str]:
    return {
        **_sim_env(sim),
        "WFBATCH_STORE__DATABASE_URL": url,
        "WFBATCH_STORE__LEASE_TIMEOUT": LEASE_TIMEOUT,
    }


def lease_holders(url: str) -> dict[str, tuple[str, int]]:
    """{"provider/account": (daemon id, epoch)} as the database has them."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT provider, account, daemon_id, epoch FROM account_leases").fetchall()
    return {f"{p}/{a}": (d, int(e)) for p, a, d, e in rows}


def daemon_pid(daemon_id: str) -> int:
    return int(daemon_id.split(":")[1])


@contextlib.contextmanager
def two_daemons(env: dict[str, str]) -> Iterator[tuple[DaemonProcess, DaemonProcess]]:
    with running_daemon(env=env) as first, running_daemon(env=env) as second:
        yield first, second


def test_kill_9_of_the_daemon_serving_the_account_hands_its_jobs_to_the_other(pg_database: str) -> None:
    total = 40
    with (
        RunningSimulator(fast_options(latency=(0.6, 1.2))) as sim,
        two_daemons(fleet_env(sim, pg_database)) as (first, second),
    ):
        first.drop("fleet.jsonl", jsonl(*(f"shared queue {i}" for i in range(total))))

        def stats() -> dict[str, Any]:
            return sim.state.stats()

        first.wait_until(lambda: stats()["executions_created"] >= 6, patience(30), "the first executions")
        holder_id, epoch = first.wait_until(
            lambda: lease_holders(pg_database).get("wireflow/default"), patience(10), "a lease"
        )
        by_pid = {first.pid: first, second.pid: second}
        holder = by_pid[daemon_pid(holder_id)]
        other = second if holder is first else first
        holder.kill()

        # The other daemon takes the account (epoch + 1) and finishes the batch; it sees the whole
        # queue, the jobs its inbox never saw included.
        other.wait_until(
            lambda: (lease_holders(pg_database).get("wireflow/default") or ("", 0))[1] == epoch + 1,
            patience(30),
            "the takeover",
        )
        assert daemon_pid(lease_holders(pg_database)["wireflow/default"][0]) == other.pid
        other.wait_for_jobs(lambda jobs: jobs["done"] == total, timeout=patience(60))
        final = stats()
        assert final["executions_created"] == total, final
        assert set(final["executions_by_key"].values()) == {1}, final["executions_by_key"]
        assert "adopted" in other.log()
