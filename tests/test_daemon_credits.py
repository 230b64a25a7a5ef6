"""Credits through the daemon: budgets held and raised, the balance shown, a warning on submit."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest_sim import fast_options
from tests.daemon_harness import jsonl, running_daemon
from wfbatch.sim import RunningSimulator


def test_a_budget_holds_a_batch_back_until_it_is_raised(tmp_path: Path) -> None:
    with RunningSimulator(fast_options(cost=1, credits=3)) as sim:
        env = {
            "WFBATCH_PROVIDER": "wireflow",
            "WFBATCH_WIREFLOW__BASE_URL": sim.base_url,
            "WFBATCH_WIREFLOW__API_KEY": "sk-daemon-credits-test",
            "WFBATCH_WIREFLOW__WORKFLOW_ID": "wf_demo",
            "WFBATCH_WIREFLOW__PLAN": "enterprise",
            "WFBATCH_WIREFLOW__POLL_INITIAL": "0.05",
            "WFBATCH_WIREFLOW__POLL_MAX": "0.2",
        }
        with running_daemon(env=env) as daemon:
            prompts = tmp_path / "four.jsonl"
            prompts.write_text(jsonl("one", "two", "three", "four"))
            submitted = daemon.cli("submit", str(prompts), "--budget", "2", "--json")
            assert submitted.exit_code == 0, submitted.output
            row = json.loads(submitted.stdout)[0]
            batch_id = row["batch_id"]
            # 4 credits of work against a balance of 3: accepted, with a warning.
            assert any("balance of 3" in w for w in row["warnings"]), row

            def held() -> dict[str, object] | None:
                status = daemon.status()
                batch = next(b for b in status["batches"] if b["id"] == batch_id)
                return batch if batch["counts"]["done"] == 2 and batch["pause_reason"] else None

            batch = daemon.wait_until(held, 20, "the budget to hold the batch")
            assert "budget reached" in str(batch["pause_reason"])
            # Nothing can move: no ETA (not "0s", not a guess), for the batch and for everything.
            assert batch["eta_seconds"] is None and daemon.status()["eta_seconds"] is None
            assert batch["counts"]["queued"] == 2
            assert sim.state.stats()["executions_created"] == 2
            # The text status says it too, at 80 columns, with the command that lifts the hold.
            text = daemon.cli("status", columns=80)
            assert text.exit_code == 0, text.output
            assert "budget reached: 2 of 2 credits spent or reserved; the next job needs 1" in text.stdout
            assert f"wfbatch budget {batch_id} <credits>" in text.stdout
            batch_row = next(line for line in text.stdout.splitlines() if line.startswith(batch_id[:7]))
            assert batch_row.split()[-1] == "held"

            raised = daemon.cli("budget", batch_id, "10")
            assert raised.exit_code == 0, raised.output

            # The balance (3) now binds: one more image, then out of credits, shown with the figures.
            def out_of_credits() -> dict[str, object] | None:
                wireflow = daemon.status()["providers"]["wireflow"]
                return wireflow if wireflow["paused"] and "out of credits" in wireflow["paused"] else None

            wireflow = daemon.wait_until(out_of_credits, 20, "the out-of-credits pause")
            assert wireflow["pause_details"]["available"] == 0
            sim.state.top_up(5)
            # The pause lifts by itself once the balance covers the next start.
            daemon.wait_for_jobs(lambda jobs: jobs["done"] == 4, timeout=40)
            stats = sim.state.stats()
            assert stats["executions_created"] == 4
            assert set(stats["executions_by_key"].values()) == {1}
            assert daemon.status()["providers"]["wireflow"]["balance"] is not None
