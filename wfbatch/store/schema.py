"""The schema and its migrations, for both dialects. `MIGRATIONS[i]` brings a database from version
i to i + 1.

A step is either one SQL text both databases run (write it in the common subset: `TEXT`, `INTEGER`,
`CREATE INDEX`, `ALTER TABLE ... ADD COLUMN`, `ON CONFLICT`), or a `Dialects` pair when they must
differ (types such as REAL, triggers, JSON functions). SQLite databases replay the whole history
from version 0; a new PostgreSQL database starts from `PG_BASELINE` (store/pg/baseline.py: version
13's schema in one script) and replays only the steps after it. Adding a migration: append ONE
entry at the end of `MIGRATIONS`, neutral text or a pair.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dialects:
    """One migration step written twice; an empty text: nothing to do on that database."""

    sqlite: str
    postgres: str


MIGRATIONS: list[str | Dialects] = [
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
    # 8: delivery and notification. A batch keeps what its spec overrides of the HOME's [delivery]
    # and [notify] (never a secret). `deliveries` holds one row per image (and one per batch for
    # its manifest): the path that should be in the bucket (`want`, NULL: nothing) against the
    # object that is there (`have_url`); the worker makes them agree, so a crash anywhere only
    # repeats an upload to the same key. `notifications` is the outbox of webhooks/commands, one
    # row per event key (a batch finishing, a hold), so each is sent once across restarts.
    """
    ALTER TABLE batches ADD COLUMN delivery TEXT;
    ALTER TABLE batches ADD COLUMN notify TEXT;
    CREATE TABLE deliveries (
        id              INTEGER PRIMARY KEY,
        batch_id        TEXT NOT NULL REFERENCES batches(id),
        job_id          INTEGER UNIQUE REFERENCES jobs(id),
        kind            TEXT NOT NULL,
        want            TEXT,
        have_url        TEXT,
        etag            TEXT,
        delivered_at    REAL,
        presigned_url   TEXT,
        presigned_until REAL,
        state           TEXT NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL,
        error           TEXT,
        updated_at      REAL NOT NULL
    );
    CREATE UNIQUE INDEX deliveries_manifest ON deliveries(batch_id) WHERE kind = 'manifest';
    CREATE INDEX deliveries_state ON deliveries(state, next_attempt_at);
    CREATE INDEX deliveries_batch ON deliveries(batch_id, state);
    CREATE TABLE notifications (
        id              INTEGER PRIMARY KEY,
        key             TEXT NOT NULL UNIQUE,
        batch_id        TEXT NOT NULL,
        type            TEXT NOT NULL,
        payload         TEXT NOT NULL,
        state           TEXT NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL,
        error           TEXT,
        created_at      REAL NOT NULL,
        sent_at         REAL
    );
    CREATE INDEX notifications_state ON notifications(state, next_attempt_at);
    """,
    # 9: what `status`, the TUI header and the metrics read, kept as counters so they cost the same
    # at a million jobs as at ten. Triggers keep them in the transaction of every insert, state
    # change and delete, so no code path (nor a hand-written UPDATE) can forget them; the store
    # checks them against COUNT(*) on start (`store.counters.check_counters`) and rebuilds them if they
    # disagree. Zero rows are kept: deleting them would cost every transition a second statement.
    """
    CREATE TABLE job_counts (
        batch_id  TEXT NOT NULL,
        provider  TEXT NOT NULL,
        state     TEXT NOT NULL,
        n         INTEGER NOT NULL,
        PRIMARY KEY (batch_id, provider, state)
    ) WITHOUT ROWID;
    INSERT INTO job_counts (batch_id, provider, state, n)
        SELECT batch_id, provider, state, COUNT(*) FROM jobs GROUP BY batch_id, provider, state;
    CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs BEGIN
        INSERT INTO job_counts (batch_id, provider, state, n)
            VALUES (NEW.batch_id, NEW.provider, NEW.state, 1)
            ON CONFLICT (batch_id, provider, state) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs BEGIN
        UPDATE job_counts SET n = n - 1
            WHERE batch_id = OLD.batch_id AND provider = OLD.provider AND state = OLD.state;
    END;
    CREATE TRIGGER job_counts_update AFTER UPDATE OF state, batch_id, provider ON jobs
        WHEN OLD.state IS NOT NEW.state OR OLD.batch_id IS NOT NEW.batch_id
            OR OLD.provider IS NOT NEW.provider
    BEGIN
        UPDATE job_counts SET n = n - 1
            WHERE batch_id = OLD.batch_id AND provider = OLD.provider AND state = OLD.state;
        INSERT INTO job_counts (batch_id, provider, state, n)
            VALUES (NEW.batch_id, NEW.provider, NEW.state, 1)
            ON CONFLICT (batch_id, provider, state) DO UPDATE SET n = n + 1;
    END;

    CREATE TABLE charge_totals (
        batch_id  TEXT NOT NULL,
        provider  TEXT NOT NULL,
        credits   REAL NOT NULL,
        PRIMARY KEY (batch_id, provider)
    ) WITHOUT ROWID;
    INSERT INTO charge_totals (batch_id, provider, credits)
        SELECT batch_id, provider, SUM(credits) FROM ledger WHERE kind = 'charge' GROUP BY batch_id, provider;
    CREATE TRIGGER charge_totals_insert AFTER INSERT ON ledger WHEN NEW.kind = 'charge' BEGIN
        INSERT INTO charge_totals (batch_id, provider, credits)
            VALUES (NEW.batch_id, NEW.provider, NEW.credits)
            ON CONFLICT (batch_id, provider) DO UPDATE SET credits = credits + excluded.credits;
    END;

    CREATE TABLE wait_totals (
        id       INTEGER PRIMARY KEY CHECK (id = 1),
        started  INTEGER NOT NULL,
        seconds  REAL NOT NULL
    );
    INSERT INTO wait_totals (id, started, seconds)
        SELECT 1, COUNT(*), COALESCE(SUM(started_at - created_at), 0) FROM jobs WHERE started_at IS NOT NULL;
    CREATE TRIGGER wait_totals_update AFTER UPDATE OF started_at ON jobs
        WHEN OLD.started_at IS NOT NEW.started_at
    BEGIN
        UPDATE wait_totals SET
            started = started + (NEW.started_at IS NOT NULL) - (OLD.started_at IS NOT NULL),
            seconds = seconds + COALESCE(NEW.started_at - NEW.created_at, 0)
                - COALESCE(OLD.started_at - OLD.created_at, 0)
            WHERE id = 1;
    END;
    CREATE TRIGGER wait_totals_insert AFTER INSERT ON jobs WHEN NEW.started_at IS NOT NULL BEGIN
        UPDATE wait_totals SET started = started + 1, seconds = seconds + NEW.started_at - NEW.created_at
            WHERE id = 1;
    END;
    CREATE TRIGGER wait_totals_delete AFTER DELETE ON jobs WHEN OLD.started_at IS NOT NULL BEGIN
        UPDATE wait_totals SET started = started - 1, seconds = seconds - (OLD.started_at - OLD.created_at)
            WHERE id = 1;
    END;
    CREATE INDEX jobs_started ON jobs(started_at) WHERE started_at IS NOT NULL;
    CREATE INDEX batches_created ON batches(created_at);
    """,
    # 10: remote batches (a provider's batch API, e.g. OpenAI Batch): one row per uploaded file and
    # remote batch, its step committed before the next step depends on it; each job of a live remote
    # batch points at it (at most one: the column), and is let go when its outcome is recorded.
    """
    CREATE TABLE remote_batches (
        id              INTEGER PRIMARY KEY,
        provider        TEXT NOT NULL,
        batch_id        TEXT NOT NULL REFERENCES batches(id),
        model           TEXT NOT NULL,
        tag             TEXT NOT NULL UNIQUE,
        step            TEXT NOT NULL,
        lines           INTEGER NOT NULL,
        file_id         TEXT,
        remote_id       TEXT,
        status          TEXT,
        total           INTEGER NOT NULL DEFAULT 0,
        completed       INTEGER NOT NULL DEFAULT 0,
        failed          INTEGER NOT NULL DEFAULT 0,
        output_file_id  TEXT,
        error_file_id   TEXT,
        message         TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        created_at      REAL NOT NULL,
        polled_at       REAL,
        closed_at       REAL
    );
    CREATE INDEX remote_batches_step ON remote_batches(step, provider);
    ALTER TABLE jobs ADD COLUMN remote_batch INTEGER REFERENCES remote_batches(id);
    CREATE INDEX jobs_remote_batch ON jobs(remote_batch);
    """,
    # 11: images waiting for review, counted for every status answer (the TUI's Review tab): the
    # partial index holds only those, so the count never walks the reviewed ones.
    """
    CREATE INDEX jobs_review_pending ON jobs(batch_id) WHERE state = 'done' AND review = 'pending';
    """,
    # 12: the account a job's start went to (written with the move to submitting): once that start may
    # have reached the provider, every poll, download and cancel of the job uses that account.
    """
    ALTER TABLE jobs ADD COLUMN account TEXT;
    """,
    # 13: money per account: a charge (or a release) names the account of the start it settles, which
    # is written on the job before anything can be charged, so every path that books money gets it.
    """
    ALTER TABLE ledger ADD COLUMN account TEXT;
    CREATE TRIGGER ledger_account AFTER INSERT ON ledger
    WHEN NEW.account IS NULL AND NEW.kind IN ('charge', 'release') BEGIN
        UPDATE ledger SET account = (SELECT account FROM jobs WHERE id = NEW.job_id) WHERE rowid = NEW.rowid;
    END;
    """,
    # 14: caps as counter rows on PostgreSQL. Several daemons reserve at once there, and READ
    # COMMITTED lets two of them read the same SUM of the ledger and both insert (measured: 36 reserved
    # against a cap of 30, design notes: scale.md 1.3). A reservation is instead a conditional
    # `UPDATE cap_exposure SET exposure = exposure + cost WHERE exposure + cost <= cap` of each scope's
    # row, in a fixed order (store/pg/caps.py); every other ledger row (release, charge, refund) is
    # applied to the same rows by a trigger, so the rows always equal the ledger's sums. SQLite keeps
    # its sums: its one writer at a time makes "sum, then insert" exact.
    Dialects(
        sqlite="",
        postgres="""
        CREATE TABLE cap_exposure (
            scope     TEXT PRIMARY KEY,
            exposure  DOUBLE PRECISION NOT NULL
        );
        INSERT INTO cap_exposure (scope, exposure)
            SELECT 'batch:' || batch_id, SUM(credits) FROM ledger GROUP BY batch_id;
        INSERT INTO cap_exposure (scope, exposure)
            SELECT 'provider-day:' || provider || ':' || day, SUM(credits) FROM ledger GROUP BY provider, day;
        CREATE FUNCTION cap_exposure_book() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            -- The batch's row first, then the provider-day's: the order every reservation locks them in.
            INSERT INTO cap_exposure (scope, exposure) VALUES ('batch:' || NEW.batch_id, NEW.credits)
                ON CONFLICT (scope) DO UPDATE SET exposure = cap_exposure.exposure + excluded.exposure;
            INSERT INTO cap_exposure (scope, exposure)
                VALUES ('provider-day:' || NEW.provider || ':' || NEW.day, NEW.credits)
                ON CONFLICT (scope) DO UPDATE SET exposure = cap_exposure.exposure + excluded.exposure;
            RETURN NULL;
        END $$;
        CREATE TRIGGER cap_exposure_book AFTER INSERT ON ledger
            FOR EACH ROW WHEN (NEW.kind <> 'reserve') EXECUTE FUNCTION cap_exposure_book();
        """,
    ),
    # 15: sharing a provider between batches: a batch's priority (higher goes first), its weight (its
    # share among batches of the same priority) and the time before which none of its jobs starts
    # (unix seconds; NULL: now). The index finds each runnable batch's next jobs without walking the
    # queued jobs of the others.
    """
    ALTER TABLE batches ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE batches ADD COLUMN weight DOUBLE PRECISION NOT NULL DEFAULT 1;
    ALTER TABLE batches ADD COLUMN not_before DOUBLE PRECISION;
    CREATE INDEX jobs_batch_ready ON jobs(batch_id, state, provider, priority DESC, id);
    """,
    # 16: a remote batch (OpenAI Batch) belongs to the account its file went to: its
    # polls, results and cancel use that account's key, after a crash too. NULL: made before there
    # were accounts, the provider's first.
    """
    ALTER TABLE remote_batches ADD COLUMN account TEXT;
    """,
    # 17: an account's daily credit cap as a counter row on PostgreSQL too (the account-day scope of
    # store/pg/caps.py): every ledger row naming an account books on `account-day:<provider>:<key's
    # account>:<day>` (a per-workflow account `studio/wf_a` spends its key's `studio`), beside the
    # batch's and the provider-day's rows. SQLite sums the ledger instead (nothing to do there).
    Dialects(
        sqlite="",
        postgres="""
        INSERT INTO cap_exposure (scope, exposure)
            SELECT 'account-day:' || provider || ':' || split_part(account, '/', 1) || ':' || day,
                   SUM(credits)
            FROM ledger WHERE account IS NOT NULL
            GROUP BY provider, split_part(account, '/', 1), day
            ON CONFLICT (scope) DO UPDATE SET exposure = excluded.exposure;
        CREATE OR REPLACE FUNCTION cap_exposure_book() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            -- The order every reservation locks them in: batch, provider-day, account-day.
            INSERT INTO cap_exposure (scope, exposure) VALUES ('batch:' || NEW.batch_id, NEW.credits)
                ON CONFLICT (scope) DO UPDATE SET exposure = cap_exposure.exposure + excluded.exposure;
            INSERT INTO cap_exposure (scope, exposure)
                VALUES ('provider-day:' || NEW.provider || ':' || NEW.day, NEW.credits)
                ON CONFLICT (scope) DO UPDATE SET exposure = cap_exposure.exposure + excluded.exposure;
            IF NEW.account IS NOT NULL THEN
                INSERT INTO cap_exposure (scope, exposure)
                    VALUES ('account-day:' || NEW.provider || ':' || split_part(NEW.account, '/', 1)
                            || ':' || NEW.day, NEW.credits)
                    ON CONFLICT (scope) DO UPDATE SET exposure = cap_exposure.exposure + excluded.exposure;
            END IF;
            RETURN NULL;
        END $$;
        """,
    ),
    # 18: input pictures uploaded to a provider's own storage (fal's CDN, Replicate's files
    # API), by provider, account and the bytes' sha256, with the URL and when it expires: uploaded
    # once, reused by every job and after a crash.
    """
    CREATE TABLE input_uploads (
        provider    TEXT NOT NULL,
        account     TEXT NOT NULL,
        sha256      TEXT NOT NULL,
        url         TEXT NOT NULL,
        expires_at  DOUBLE PRECISION NOT NULL,
        created_at  DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (provider, account, sha256)
    );
    """,
    # 19: several daemons on one database (store/fleet.py). `daemons`: who runs, and when each last
    # said so. `account_leases`: which daemon serves each provider account, under which epoch (a
    # takeover adds one). A job in flight names its owner and the epoch it was claimed or adopted
    # under, and every write of the engine about it is fenced on both (store/jobs.py). On
    # PostgreSQL a job becoming queued wakes the other daemons (`pg_notify('wfbatch', provider)`).
    # `ledger_job`: the age of a job's reservation (a leaked one is released only when old).
    Dialects(
        sqlite="""
        CREATE TABLE daemons (
            id            TEXT PRIMARY KEY,
            host          TEXT NOT NULL,
            pid           INTEGER NOT NULL,
            started_at    REAL NOT NULL,
            heartbeat_at  REAL NOT NULL
        );
        CREATE TABLE account_leases (
            provider    TEXT NOT NULL,
            account     TEXT NOT NULL,
            daemon_id   TEXT NOT NULL,
            epoch       INTEGER NOT NULL,
            renewed_at  REAL NOT NULL,
            PRIMARY KEY (provider, account)
        );
        ALTER TABLE jobs ADD COLUMN owner TEXT;
        ALTER TABLE jobs ADD COLUMN owner_epoch INTEGER;
        CREATE INDEX ledger_job ON ledger(job_id);
        """,
        postgres="""
        CREATE TABLE daemons (
            id            TEXT PRIMARY KEY,
            host          TEXT NOT NULL,
            pid           BIGINT NOT NULL,
            started_at    DOUBLE PRECISION NOT NULL,
            heartbeat_at  DOUBLE PRECISION NOT NULL
        );
        CREATE TABLE account_leases (
            provider    TEXT NOT NULL,
            account     TEXT NOT NULL,
            daemon_id   TEXT NOT NULL,
            epoch       BIGINT NOT NULL,
            renewed_at  DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (provider, account)
        );
        ALTER TABLE jobs ADD COLUMN owner TEXT;
        ALTER TABLE jobs ADD COLUMN owner_epoch BIGINT;
        CREATE INDEX ledger_job ON ledger(job_id);
        CREATE FUNCTION jobs_notify_queued() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            -- One notice per provider and transaction (PostgreSQL folds identical ones).
            PERFORM pg_notify('wfbatch', NEW.provider);
            RETURN NULL;
        END $$;
        CREATE TRIGGER jobs_notify_queued AFTER INSERT OR UPDATE OF state ON jobs
            FOR EACH ROW WHEN (NEW.state = 'queued') EXECUTE FUNCTION jobs_notify_queued();
        """,
    ),
    # 20: several daemons on one database: the daemon that writes a batch's manifest (store/fleet.py
    # `take_manifest`); NULL on SQLite, where the one daemon writes every manifest.
    "ALTER TABLE batches ADD COLUMN owner_daemon TEXT;",
]

SCHEMA_VERSION = len(MIGRATIONS)


def step_text(step: str | Dialects, dialect: str) -> str:
    """The SQL of one step on `dialect` ("sqlite" or "postgres")."""
    if isinstance(step, str):
        return step
    return step.sqlite if dialect == "sqlite" else step.postgres
