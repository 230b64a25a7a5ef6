"""`wfbatch daemon` and `wfbatch run` end to end on PostgreSQL: real subprocesses whose store is the
test cluster's database (`WFBATCH_STORE__DATABASE_URL`), a small batch on the `local` provider."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.daemon_harness import jsonl, running_daemon
from tests.deadlines import patience, scaled
from tests.test_run_cli import run_json, wfbatch
from wfbatch.home import HomeLayout
from wfbatch.store import open_store

ENV = {"WFBATCH_INBOX__STABLE_SECONDS": "0.5", "WFBATCH_LOCAL__LATENCY_MAX": "0.05"}


async def _done_in_database(url: str) -> int:
    store = await open_store(url, Path("/nonexistent/unused.db"))
    try:
        return (await store.counters.counts())["done"]
    finally:
        await store.close()


def test_a_daemon_on_postgresql_runs_a_dropped_batch(pg_database: str) -> None:
    env = {**ENV, "WFBATCH_STORE__DATABASE_URL": pg_database}
    with running_daemon(env=env) as daemon:
        daemon.drop("shots.jsonl", jsonl("a red fox", "a blue jay", "a green frog"))
        daemon.wait_for_jobs(lambda jobs: jobs["done"] == 3, timeout=patience(30))
        assert not HomeLayout(daemon.home).db.exists()  # the queue is in PostgreSQL, not in HOME
    assert asyncio.run(_done_in_database(pg_database)) == 3


def test_wfbatch_run_on_postgresql_runs_a_file_to_completion(pg_database: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(jsonl("a red fox", "a blue jay"))
    env = {"WFBATCH_STORE__DATABASE_URL": pg_database, "WFBATCH_LOCAL__LATENCY_MAX": "0.05"}
    code, summary = run_json(home, prompts, env=env)
    assert (code, summary["done"], summary["total"]) == (0, 2, 2), summary
    assert asyncio.run(_done_in_database(pg_database)) == 2
    assert not HomeLayout(home).db.exists()


def test_a_postgresql_url_without_the_driver_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    """psycopg is hidden from the subprocess (an import hook that refuses it)."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n"
        "class _NoPsycopg:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('psycopg', 'psycopg_pool'):\n"
        "            raise ImportError(f'No module named {name!r}', name=name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, _NoPsycopg())\n"
    )
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red fox\n")
    env = {
        "WFBATCH_STORE__DATABASE_URL": "postgresql://wfbatch:secret-pw@db.invalid/wfbatch",
        "PYTHONPATH": f"{tmp_path}:{Path(__file__).resolve().parent.parent}",
    }
    result = wfbatch(tmp_path / "home", "run", str(prompts), env=env)
    assert result.returncode == 2, result.stderr
    assert "pip install 'wfbatch[postgres]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "secret-pw" not in result.stderr


def test_the_same_file_dropped_into_two_daemons_inboxes_is_one_batch(pg_database: str) -> None:
    """Two daemons (two HOMEs, one database); the same content lands in both inboxes at once."""
    env = {**ENV, "WFBATCH_STORE__DATABASE_URL": pg_database}
    content = jsonl("a red fox", "a blue jay", "a green frog")
    with running_daemon(env=env) as first, running_daemon(env=env) as second:
        for daemon in (first, second):
            daemon.drop("same.jsonl", content)

        def archived(daemon: Any) -> list[str]:
            return sorted(p.name for p in (daemon.home / "archive").glob("*same.jsonl"))

        names = [
            daemon.wait_until(lambda d=daemon: archived(d), patience(30), "same.jsonl archived")
            for daemon in (first, second)
        ]
        kinds = sorted("duplicate" if n == ["duplicate-same.jsonl"] else "batch" for n in names)
        assert kinds == ["batch", "duplicate"], names
        first.wait_for_jobs(lambda jobs: jobs["done"] == 3, timeout=patience(30))
        assert sum(second.status()["jobs"].values()) == 3  # the same queue, seen from either daemon
    assert asyncio.run(_batches_in_database(pg_database)) == 1


async def _batches_in_database(url: str) -> int:
    store = await open_store(url, Path("/nonexistent/unused.db"))
    try:
        return len(await store.batches.list_batches())
    finally:
        await store.close()


def test_db_version_and_migrate_on_both_backends(pg_database: str, tmp_path: Path) -> None:
    from wfbatch.store.schema import SCHEMA_VERSION

    for env in ({}, {"WFBATCH_STORE__DATABASE_URL": pg_database}):
        home = tmp_path / ("pg" if env else "sqlite")
        before = wfbatch(home, "db", "version", env=env)
        assert before.returncode == 0 and "schema version none" in before.stdout, before
        migrated = wfbatch(home, "db", "migrate", env=env)
        assert f"migrated from nothing to version {SCHEMA_VERSION}" in migrated.stdout, migrated
        after = wfbatch(home, "db", "version", env=env)
        assert f"schema version {SCHEMA_VERSION}; this wfbatch: {SCHEMA_VERSION}" in after.stdout, after
        again = wfbatch(home, "db", "migrate", env=env)
        assert "nothing to do" in again.stdout, again


def test_the_sqlite_default_never_imports_psycopg(tmp_path: Path) -> None:
    """A fresh interpreter opens the default store and loads the daemon's and run's modules."""
    code = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from wfbatch.store import open_store\n"
        "import wfbatch.daemon.runner, wfbatch.cli.run_cmd, wfbatch.cli.db_cmd\n"
        "async def main():\n"
        f"    await (await open_store(None, Path({str(tmp_path / 'w.db')!r}))).close()\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in sys.modules if m.startswith('psycopg')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=scaled(60))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
