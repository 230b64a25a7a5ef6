"""Several daemons on one PostgreSQL database: real `wfbatch daemon` subprocesses (each with its own
HOME and inbox) against a real Wireflow simulator over loopback, one account served by one daemon at
a time, the one serving it killed with `kill -9` mid-batch.

What must hold: the other daemon takes the account over (a short `lease_timeout` here), adopts the
jobs in flight into the recovery path (reconcile or re-send with the stored idempotency key, poll),
every prompt ends done, and the simulator's books show ONE execution per prompt."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
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


def two_account_env(sims: dict[str, RunningSimulator], url: str) -> dict[str, str]:
    env = {
        "WFBATCH_PROVIDER": "wireflow",
        "WFBATCH_WIREFLOW__WORKFLOW_ID": "wf_demo",
        "WFBATCH_WIREFLOW__PLAN": "enterprise",
        "WFBATCH_WIREFLOW__MAX_IN_FLIGHT": "3",
        "WFBATCH_WIREFLOW__POLL_INITIAL": "0.1",
        "WFBATCH_WIREFLOW__POLL_MAX": "0.3",
        "WFBATCH_WIREFLOW__REQUESTS_PER_MINUTE": "10000",
        "WFBATCH_WIREFLOW__EXECUTIONS_PER_MINUTE": "10000",
        "WFBATCH_WIREFLOW__DAILY_EXECUTIONS": "100000",
        "WFBATCH_STORE__DATABASE_URL": url,
        "WFBATCH_STORE__LEASE_TIMEOUT": LEASE_TIMEOUT,
    }
    for index, (name, sim) in enumerate(sims.items()):
        prefix = f"WFBATCH_WIREFLOW__ACCOUNTS__{index}__"
        env |= {prefix + "NAME": name, prefix + "API_KEY": f"sk-key-{name}"}
        env[prefix + "BASE_URL"] = sim.base_url
    return env


def batch_exposure(url: str) -> float:
    """Credits spent or reserved by every daemon, as the shared ledger has them."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT COALESCE(SUM(credits), 0) FROM ledger").fetchone()
    return float(row[0]) if row else 0.0


def test_one_budget_holds_across_two_daemons_on_two_accounts_after_a_kill_too(
    pg_database: str, tmp_path: Path
) -> None:
    budget, total = 30, 40
    with contextlib.ExitStack() as stack:
        sims = {
            name: stack.enter_context(
                RunningSimulator(fast_options(api_key=f"sk-key-{name}", cost=1, latency=(0.3, 0.6)))
            )
            for name in ("a", "b")
        }
        first, second = stack.enter_context(two_daemons(two_account_env(sims, pg_database)))

        def executions() -> int:
            return sum(int(sim.state.stats()["executions_created"]) for sim in sims.values())

        prompts = tmp_path / "forty.jsonl"
        prompts.write_text(jsonl(*(f"budgeted {i}" for i in range(total))))
        submitted = first.cli("submit", str(prompts), "--budget", str(budget), "--json")
        assert submitted.exit_code == 0, submitted.output
        batch_id = json.loads(submitted.stdout)[0]["batch_id"]

        # Each daemon serves one account (a fair share of two).
        def both_serving() -> dict[str, tuple[str, int]] | None:
            found = lease_holders(pg_database)
            return found if len({daemon for daemon, _ in found.values()}) == 2 else None

        holders = first.wait_until(
            both_serving,
            patience(20),
            "each daemon serving an account",
        )
        first.wait_until(lambda: executions() >= 8, patience(30), "executions on both accounts")
        # `status` on either daemon lists both, with the account each serves.
        listed = second.status()["daemons"]
        assert sorted(d["pid"] for d in listed) == sorted([first.pid, second.pid])
        assert sorted(a for d in listed for a in d["accounts"]) == ["wireflow/a", "wireflow/b"]
        assert [d["pid"] for d in listed if d["this"]] == [second.pid]
        shown = first.cli("status", columns=160)
        assert f"pid {second.pid}" in shown.output and "serves wireflow/" in shown.output, shown.output
        by_pid = {first.pid: first, second.pid: second}
        victim = by_pid[daemon_pid(holders["wireflow/a"][0])]
        survivor = second if victim is first else first
        victim.kill()

        def held_by_budget() -> dict[str, Any] | None:
            batch = next(b for b in survivor.status()["batches"] if b["id"] == batch_id)
            return batch if "budget reached" in str(batch.get("pause_reason")) else None

        survivor.wait_until(
            lambda: lease_holders(pg_database)["wireflow/a"][1] == holders["wireflow/a"][1] + 1,
            patience(30),
            "the takeover of account a",
        )
        survivor.wait_until(held_by_budget, patience(60), "the budget to hold the batch")
        survivor.wait_for_jobs(lambda jobs: jobs["running"] == 0 and jobs["submitting"] == 0, 30)
        # Spent or reserved: exactly the budget, never more. A reservation the victim made just
        # before the kill, for a start it never sent, is given back once older than the lease
        # timeout: then the budget's last credit goes to an image too.
        assert batch_exposure(pg_database) == budget
        survivor.wait_for_jobs(lambda jobs: jobs["done"] == budget, 30)
        assert executions() == budget
        assert batch_exposure(pg_database) == budget
