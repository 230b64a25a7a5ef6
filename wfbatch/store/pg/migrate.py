"""The schema version of a PostgreSQL database, and its migrations.

PostgreSQL has no `PRAGMA user_version`: the version is the one row of `schema_version`. A new
database gets `PG_BASELINE` (version 13) and then every later step of `MIGRATIONS`, each step in a
transaction of its own with the version it reaches (DDL is transactional in PostgreSQL: a step is
all done or not at all). A transaction-scoped advisory lock makes two daemons that start at once
take turns: the second finds the work done.

Policy: an empty database is set up by whoever opens it first. A database at an older version is
migrated only by `wfbatch db migrate`: a daemon of the older wfbatch may still be running on it, and
the person upgrading decides when. A database newer than this wfbatch is refused.
"""

from __future__ import annotations

from typing import Any

import psycopg

from wfbatch.store.errors import SchemaTooNew, SchemaTooOld
from wfbatch.store.pg.baseline import PG_BASELINE, PG_BASELINE_VERSION
from wfbatch.store.schema import MIGRATIONS, SCHEMA_VERSION, step_text

MIGRATION_LOCK = 0x77666261  # "wfba": the advisory lock key every wfbatch migration takes


async def schema_version(conn: psycopg.AsyncConnection[Any]) -> int | None:
    """The database's version, or None when it has no wfbatch schema at all."""
    cursor = await conn.execute("SELECT to_regclass('schema_version') IS NOT NULL")
    row = await cursor.fetchone()
    if row is None or not row[0]:
        return None
    cursor = await conn.execute("SELECT version FROM schema_version")
    row = await cursor.fetchone()
    return int(row[0]) if row else None


async def migrate_postgres(conn: psycopg.AsyncConnection[Any], where: str, *, allow_upgrade: bool) -> int:
    """Bring the database to `SCHEMA_VERSION` (see the policy above); the version it had."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        found = await schema_version(conn)
        if found is None:
            await conn.execute(PG_BASELINE)
            await conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (PG_BASELINE_VERSION,))
            current = PG_BASELINE_VERSION
        else:
            current = found
    if current > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"{where} has schema version {current}; this wfbatch knows up to {SCHEMA_VERSION}."
            " Upgrade wfbatch."
        )
    if found is not None and current < SCHEMA_VERSION and not allow_upgrade:
        raise SchemaTooOld(
            f"{where} has schema version {current}; this wfbatch needs {SCHEMA_VERSION}. Stop the daemons"
            " of the older wfbatch, then run `wfbatch db migrate`."
        )
    for target in range(current, SCHEMA_VERSION):
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            if await schema_version(conn) != target:
                continue  # another process took this step meanwhile
            text = step_text(MIGRATIONS[target], "postgres")
            if text.strip():
                await conn.execute(text)
            await conn.execute("UPDATE schema_version SET version = %s", (target + 1,))
    return found if found is not None else 0
