"""The schema and its migrations. `MIGRATIONS[i]` brings a database from version i to i + 1."""

from __future__ import annotations

MIGRATIONS: list[str] = [
    """
    CREATE TABLE batches (
        id            TEXT PRIMARY KEY,
        name          TEXT NOT NULL,
        source_name   TEXT NOT NULL,
        content_hash  TEXT NOT NULL,
        provider      TEXT NOT NULL,
        cache_enabled INTEGER NOT NULL,
        budget        REAL,
        output_dir    TEXT NOT NULL,
        paused        INTEGER NOT NULL DEFAULT 0,
        created_at    REAL NOT NULL
    );
    CREATE INDEX batches_content ON batches(content_hash);

    CREATE TABLE jobs (
        id               INTEGER PRIMARY KEY,
        uid              TEXT NOT NULL UNIQUE,
        batch_id         TEXT NOT NULL REFERENCES batches(id),
        idx              INTEGER NOT NULL,
        line             INTEGER NOT NULL,
        user_id          TEXT,
        provider         TEXT NOT NULL,
        spec             TEXT NOT NULL,
        prompt           TEXT NOT NULL,
        tags             TEXT NOT NULL DEFAULT '[]',
        cache_key        TEXT NOT NULL,
        priority         INTEGER NOT NULL DEFAULT 0,
        state            TEXT NOT NULL,
        review           TEXT NOT NULL DEFAULT 'pending',
        attempts         INTEGER NOT NULL DEFAULT 0,
        generation       INTEGER NOT NULL DEFAULT 0,
        next_attempt_at  REAL,
        remote_id        TEXT,
        result           TEXT,
        file             TEXT,
        cache_hit        INTEGER NOT NULL DEFAULT 0,
        credits          REAL,
        error_class      TEXT,
        error_status     INTEGER,
        error_message    TEXT,
        error_request_id TEXT,
        created_at       REAL NOT NULL,
        updated_at       REAL NOT NULL,
        started_at       REAL,
        finished_at      REAL
    );
    CREATE INDEX jobs_ready ON jobs(state, provider, priority DESC, id);
    CREATE INDEX jobs_batch ON jobs(batch_id, state);

    CREATE TABLE attempts (
        id          INTEGER PRIMARY KEY,
        job_id      INTEGER NOT NULL REFERENCES jobs(id),
        at          REAL NOT NULL,
        kind        TEXT NOT NULL,
        outcome     TEXT NOT NULL,
        http_status INTEGER,
        message     TEXT,
        request_id  TEXT,
        remote_id   TEXT
    );
    CREATE INDEX attempts_job ON attempts(job_id);
    CREATE INDEX attempts_kind_at ON attempts(kind, at);

    CREATE TABLE cache_entries (
        key         TEXT PRIMARY KEY,
        sha256      TEXT NOT NULL,
        media_type  TEXT NOT NULL,
        created_at  REAL NOT NULL
    );

    CREATE TABLE pauses (
        scope       TEXT PRIMARY KEY,
        reason      TEXT NOT NULL,
        created_at  REAL NOT NULL
    );
    """,
    # 2: the credit ledger. Every reservation, release and charge is a row; a job's outstanding
    # reservation is also kept on the job so settling it never needs a scan.
    """
    CREATE TABLE ledger (
        id        INTEGER PRIMARY KEY,
        job_id    INTEGER NOT NULL REFERENCES jobs(id),
        batch_id  TEXT NOT NULL,
        provider  TEXT NOT NULL,
        day       TEXT NOT NULL,
        kind      TEXT NOT NULL,
        credits   REAL NOT NULL,
        at        REAL NOT NULL
    );
    CREATE INDEX ledger_batch ON ledger(batch_id);
    CREATE INDEX ledger_provider_day ON ledger(provider, day);
    ALTER TABLE jobs ADD COLUMN reserved REAL;
    """,
    # 3: what `status` sums at a million jobs, answered from indexes alone.
    """
    CREATE INDEX ledger_charges ON ledger(kind, batch_id, provider, credits);
    CREATE INDEX jobs_provider_state ON jobs(provider, state);
    """,
    # 4: acceptance is atomic (one canonical batch per content identity, enforced by a UNIQUE
    # index, so two identical submits at once cannot both enqueue), and each job says what is known
    # of its remote execution (see core.states.Execution): what retries, cancels and budgets go by.
    """
    ALTER TABLE batches ADD COLUMN canonical INTEGER NOT NULL DEFAULT 0;
    UPDATE batches SET canonical = 1 WHERE rowid IN (SELECT MIN(rowid) FROM batches GROUP BY content_hash);
    CREATE UNIQUE INDEX batches_identity ON batches(content_hash) WHERE canonical = 1;
    ALTER TABLE jobs ADD COLUMN execution TEXT NOT NULL DEFAULT 'none';
    UPDATE jobs SET execution = 'maybe' WHERE state IN ('submitting', 'running')
        OR (state <> 'done' AND (remote_id IS NOT NULL OR result IS NOT NULL));
    UPDATE jobs SET execution = 'finished' WHERE state = 'done' AND cache_hit = 0;
    CREATE TABLE space_probe (id INTEGER PRIMARY KEY, data BLOB);
    """,
    # 5: the poll handle a provider's submit returned (JSON), handed back to poll/cancel unchanged.
    # Until now only Wireflow had remote executions, and its handle is its execution id.
    """
    ALTER TABLE jobs ADD COLUMN handle TEXT;
    UPDATE jobs SET handle = json_object('execution_id', remote_id) WHERE remote_id IS NOT NULL;
    """,
    # 6: why a job may have been charged twice (a start re-sent after its answer was lost, to a
    # provider that cannot recognise a re-send): shown in `show` and the manifest.
    """
    ALTER TABLE jobs ADD COLUMN possible_duplicate_charge TEXT;
    """,
    # 7: draft -> final. A draft carries the spec its approval queues (`final_spec`); a final names
    # its draft (`draft_of`), at most one final per draft (a UNIQUE index: approving twice, or two
    # approvals at once, never queue a second paid final). A batch may approve its drafts by itself.
    """
    ALTER TABLE jobs ADD COLUMN final_spec TEXT;
    ALTER TABLE jobs ADD COLUMN draft_of INTEGER REFERENCES jobs(id);
    CREATE UNIQUE INDEX jobs_final_of_draft ON jobs(draft_of) WHERE draft_of IS NOT NULL;
    ALTER TABLE batches ADD COLUMN auto_approve TEXT NOT NULL DEFAULT 'none';
    CREATE INDEX jobs_pipeline ON jobs(batch_id) WHERE final_spec IS NOT NULL OR draft_of IS NOT NULL;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
