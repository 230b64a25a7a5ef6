"""Several daemons on one PostgreSQL database: a batch's manifest has one writer at a time.

Two real `wfbatch daemon` subprocesses (two HOMEs, one database, one account each against its own
Wireflow simulator) run one batch together. The batch folder is one folder for both (its path is
the accepting daemon's, as a shared mount gives every machine): the daemon that accepted the batch
writes its manifest, from the database, so with the other daemon's images too; the other says once
that it leaves the manifest alone and never takes it while its writer lives. After `kill -9` of the
writer, the other takes the manifest over and brings it to the end of the batch."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import psycopg

from tests.conftest_sim import fast_options
from tests.deadlines import patience
from tests.test_pg_fleet import daemon_pid, lease_holders, two_account_env, two_daemons
from wfbatch.outputs import MANIFEST_FILE_NAME, Manifest, read_manifest
from wfbatch.sim import RunningSimulator


def batch_row(url: str, batch_id: str) -> tuple[str, str | None]:
    """(output folder, manifest writer) of the batch, as the database has them."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT output_dir, owner_daemon FROM batches WHERE id = %s", (batch_id,)
        ).fetchone()
    assert row is not None
    return str(row[0]), row[1]


def done_by(url: str, batch_id: str) -> dict[str, set[str]]:
    """{daemon id: ids of the batch's done jobs it ran}."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT owner, id FROM jobs WHERE batch_id = %s AND state = 'done'", (batch_id,)
        ).fetchall()
    found: dict[str, set[str]] = {}
    for owner, job_id in rows:
        found.setdefault(str(owner), set()).add(str(job_id))
    return found


def manifest_of(folder: Path) -> Manifest | None:
    try:
        return read_manifest(folder)
    except (FileNotFoundError, ValueError):
        return None


def test_one_daemon_writes_a_batch_manifest_and_the_other_takes_it_over_after_a_kill(
    pg_database: str, tmp_path: Path
) -> None:
    total = 60
    with contextlib.ExitStack() as stack:
        sims = {
            name: stack.enter_context(
                RunningSimulator(fast_options(api_key=f"sk-key-{name}", cost=1, latency=(0.8, 1.2)))
            )
            for name in ("a", "b")
        }
        first, second = stack.enter_context(two_daemons(two_account_env(sims, pg_database)))
        prompts = tmp_path / "sixty.jsonl"
        prompts.write_text(
            "".join(json.dumps({"prompt": f"shared manifest {i}"}) + "\n" for i in range(total))
        )
        submitted = first.cli("submit", str(prompts), "--json")
        assert submitted.exit_code == 0, submitted.output
        batch_id = json.loads(submitted.stdout)[0]["batch_id"]

        # The daemon that accepted the batch writes its manifest.
        output_dir, writer = batch_row(pg_database, batch_id)
        assert writer is not None and daemon_pid(writer) == first.pid
        folder = Path(output_dir)

        # Both daemons run jobs of it (one account each) ...
        def ran_by_both() -> dict[str, set[str]] | None:
            found = done_by(pg_database, batch_id)
            return found if len(found) == 2 and all(len(ids) >= 2 for ids in found.values()) else None

        by_daemon = first.wait_until(ran_by_both, patience(30), "jobs done by both daemons")
        other_id = next(d for d in by_daemon if d != writer)
        assert daemon_pid(other_id) == second.pid

        # ... and the manifest, written by the first alone, has the second's images too: it is
        # built from the database, not from what its writer ran itself.
        def lists_the_others_images() -> Manifest | None:
            manifest = manifest_of(folder)
            if manifest is None:
                return None
            done = {e.job_id for e in manifest.entries if e.status == "done"}
            return manifest if by_daemon[other_id] <= done else None

        manifest = first.wait_until(lists_the_others_images, patience(30), "the other daemon's images in it")
        assert len(manifest.entries) == total
        assert {e.job_id for e in manifest.entries} == {
            str(job_id) for job_id in _job_ids(pg_database, batch_id)
        }
        # The second left it alone (said once), and never took it while its writer lived.
        second.wait_until(
            lambda: (
                f"batch {batch_id}: its manifest is written by daemon {writer}, not this one" in second.log()
            ),
            patience(10),
            "the second daemon leaving the manifest to the first",
        )
        assert f"batch {batch_id}: its manifest is written here now" not in second.log()
        assert batch_row(pg_database, batch_id)[1] == writer
        assert MANIFEST_FILE_NAME in {p.name for p in folder.iterdir()}

        # kill -9 of the writer, mid-batch: the other takes its account and the manifest over.
        remaining = total - sum(len(ids) for ids in done_by(pg_database, batch_id).values())
        assert remaining > 0, "the batch ended before the kill: slow the simulators down"
        first.kill()
        second.wait_until(
            lambda: batch_row(pg_database, batch_id)[1] == other_id, patience(30), "the manifest's takeover"
        )
        assert (
            f"batch {batch_id}: its manifest is written here now (its writer {writer} is gone)"
            in second.log()
        )
        second.wait_for_jobs(lambda jobs: jobs["done"] == total, timeout=patience(60))

        def finished_manifest() -> Manifest | None:
            manifest = manifest_of(folder)
            return manifest if manifest is not None and manifest.counts == {"done": total} else None

        final = second.wait_until(finished_manifest, patience(30), "the finished manifest")
        assert len(final.entries) == total and all(e.file for e in final.entries)
        # The first's account went to the second too (it ran the rest of the batch).
        assert {daemon_pid(d) for d, _ in lease_holders(pg_database).values()} == {second.pid}


def _job_ids(url: str, batch_id: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [int(r[0]) for r in conn.execute("SELECT id FROM jobs WHERE batch_id = %s", (batch_id,))]
