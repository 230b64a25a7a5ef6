"""Rows of the store and the engine's live state → the API's models (`wfbatch.protocol`)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from wfbatch import __version__
from wfbatch.core.progress import JobProgress
from wfbatch.core.states import empty_counts
from wfbatch.daemon.context import DaemonContext
from wfbatch.daemon.eta import batch_etas, batch_shares, overall_eta
from wfbatch.daemon.pooled import pooled_snapshot
from wfbatch.engine.loop.limiter import start_of_today
from wfbatch.protocol import (
    AccountStatus,
    Attempt,
    BatchSummary,
    DaemonInfo,
    DeliveryBacklog,
    DeliveryInfo,
    ErrorInfo,
    JobDetail,
    JobInput,
    JobSummary,
    ProviderStatus,
    RemoteBatchSummary,
    ServerStatus,
    Status,
)
from wfbatch.providers.registry import KNOWN_PROVIDERS
from wfbatch.store import AttemptRow, BatchRow, DeliveryRow, JobRow

RECENT_BATCHES = 50


def moment(epoch: float) -> datetime:
    """Epoch seconds as the protocol's timestamps (ISO 8601 on the wire, UTC)."""
    return datetime.fromtimestamp(epoch, UTC)


def moment_or_none(epoch: float | None) -> datetime | None:
    return None if epoch is None else moment(epoch)


def job_summary(
    job: JobRow, final_id: int | None = None, progress: JobProgress | None = None
) -> JobSummary:
    return JobSummary(**_summary_fields(job, final_id, progress))


def _summary_fields(job: JobRow, final_id: int | None, progress: JobProgress | None) -> dict[str, Any]:
    error = (
        ErrorInfo(
            http_status=job.error_status,
            message=job.error_message,
            request_id=job.error_request_id,
            error_class=job.error_class,
        )
        if job.error_message
        else None
    )
    return {
        "id": job.id,
        "batch_id": job.batch_id,
        "index": job.idx,
        "line": job.line,
        "state": job.state,
        "review": job.review,
        "prompt": job.spec.prompt,
        "provider": job.provider,
        "attempts": job.attempts,
        "error": error,
        "file": job.file,
        "cache_hit": job.cache_hit,
        "credits": job.credits,
        "remote_id": job.remote_id,
        "updated_at": moment(job.updated_at),
        "stage": job.stage,
        "draft_of": job.draft_of,
        "final_id": final_id,
        "progress": progress,
    }


def delivery_info(row: DeliveryRow | None) -> DeliveryInfo | None:
    if row is None:
        return None
    return DeliveryInfo(
        state=row.state,
        url=row.have_url,
        etag=row.etag,
        at=moment_or_none(row.delivered_at),
        presigned_url=row.presigned_url,
        error=row.error,
    )


def job_detail(
    job: JobRow,
    batch: BatchRow | None,
    attempts: list[AttemptRow],
    final_id: int | None = None,
    delivery: DeliveryRow | None = None,
    progress: JobProgress | None = None,
) -> JobDetail:
    spec = job.spec
    output_dir = batch.output_dir if batch else ""
    return JobDetail(
        **_summary_fields(job, final_id, progress),
        negative_prompt=spec.negative_prompt,
        model=spec.model,
        seed=spec.seed,
        width=spec.width,
        height=spec.height,
        variant=spec.variant,
        format=spec.format.value,
        params=spec.params,
        tags=job.tags,
        output_dir=output_dir,
        file_path=str(Path(output_dir) / job.file) if job.file and output_dir else None,
        inputs=[
            JobInput(
                role=item.role,
                source=item.source,
                path=None if item.is_url else item.location,
                url=item.location if item.is_url else None,
                sha256=item.sha256,
            )
            for item in spec.inputs
        ],
        next_attempt_at=moment_or_none(job.next_attempt_at),
        possible_duplicate_charge=job.possible_duplicate_charge is not None,
        possible_duplicate_charge_why=job.possible_duplicate_charge,
        delivery=delivery_info(delivery),
        attempts_history=[
            Attempt(
                at=moment(a.at),
                kind=a.kind,
                outcome=a.outcome,
                http_status=a.http_status,
                message=a.message,
                request_id=a.request_id,
                remote_id=a.remote_id,
            )
            for a in attempts
        ],
    )


def batch_summary(
    ctx: DaemonContext, batch: BatchRow, counts: dict[str, int], credits: float = 0.0,
    eta_seconds: float | None = None, share: float | None = None,
) -> BatchSummary:
    return BatchSummary(
        id=batch.id,
        name=batch.name,
        source_name=batch.source_name,
        provider=batch.provider,
        created_at=moment(batch.created_at),
        output_dir=batch.output_dir,
        paused=batch.paused,
        counts=counts,
        total=sum(counts.values()),
        eta_seconds=eta_seconds,
        budget=batch.budget,
        pause_reason=ctx.engine.holds.batch(batch),
        credits_used=credits,
        priority=batch.priority,
        weight=batch.weight,
        share=share,
        not_before=moment_or_none(
            batch.not_before if batch.not_before and batch.not_before > ctx.engine.clock.wall() else None
        ),
    )


async def batch_summaries(
    ctx: DaemonContext, batches: list[BatchRow], etas: dict[str, float | None] | None = None
) -> list[BatchSummary]:
    ids = [batch.id for batch in batches]
    counts = await ctx.store.counters.counts_for_batches(ids)
    credits = await ctx.store.counters.credits_used_by("batch_id", ids)
    if etas is None:
        etas = await batch_etas(ctx, batches, counts)
    remote: dict[str, list[RemoteBatchSummary]] = {}
    for row in await ctx.store.remote_batches.of_batches(ids):
        remote.setdefault(row.batch_id, []).append(
            RemoteBatchSummary(
                id=row.id,
                remote_id=row.remote_id,
                step=row.step.value,
                status=row.status,
                lines=row.lines,
                completed=row.completed,
                failed=row.failed,
                message=row.message,
            )
        )
    share = batch_shares(ctx, batches, counts)
    summaries = [
        batch_summary(
            ctx, batch, counts[batch.id], credits.get(batch.id, 0.0), etas.get(batch.id), share.get(batch.id)
        )
        for batch in batches
    ]
    return [s.model_copy(update={"remote_batches": remote.get(s.id, [])}) for s in summaries]


async def provider_names(ctx: DaemonContext, by_provider: dict[str, dict[str, int]]) -> list[str]:
    names = set(ctx.engine.pool.limiters) | set(by_provider) | {ctx.settings.provider}
    return sorted(name for name in names if name in KNOWN_PROVIDERS)


async def provider_statuses(
    ctx: DaemonContext, by_provider: dict[str, dict[str, int]] | None = None
) -> dict[str, ProviderStatus]:
    if by_provider is None:
        by_provider = await ctx.store.counters.counts_by("provider")
    credits = await ctx.store.counters.credits_used_by("provider")
    statuses: dict[str, ProviderStatus] = {}
    for name in await provider_names(ctx, by_provider):
        limiter = ctx.engine.pool.limiter(name)
        snapshot = limiter.snapshot().to_json()
        pools = [ctx.engine.pool.account_limiter(name, a.name) for a in ctx.engine.pool.accounts(name)]
        snapshot = pooled_snapshot(snapshot, pools)
        snapshot["paused"] = ctx.engine.holds.provider(name)
        # From the store, not the limiter's memory: that one counts starts that were refused and
        # starts afresh at a restart, so "today" jumped (160, 150, 154) for one true count.
        snapshot["daily_executions"] = await ctx.store.jobs.starts_since(name, start_of_today(time.time()))
        statuses[name] = ProviderStatus(
            name=name,
            label=ctx.engine.pool.label(name),
            **snapshot,
            pause_details=dict(limiter.pause_details),
            jobs=by_provider.get(name, empty_counts()),
            credits_used=credits.get(name, 0.0),
            balance=ctx.engine.pool.balances.get(name),
            balance_at=moment_or_none(ctx.engine.pool.balance_read_at.get(name)),
            servers=[
                ServerStatus(host=s.host, up=s.up, down_since=moment_or_none(s.down_since), jobs=s.jobs)
                for s in ctx.engine.pool.servers(name)
            ],
            accounts=account_statuses(ctx, name),
        )
    return statuses


def account_statuses(ctx: DaemonContext, name: str) -> list[AccountStatus]:
    """Each account of a provider that has several: its pool's use, and what holds it."""
    pool = ctx.engine.pool
    accounts = pool.accounts(name)
    if len(accounts) == 1:
        return []
    found = []
    for account in accounts:
        limiter = pool.account_limiter(name, account.name)
        snapshot = limiter.snapshot()
        held = pool.account_holds.get((name, account.name))
        why = pool.account_hold(name, account.name)
        state: Literal["ready", "blocked", "held"] = "ready"
        # What holds it, by name: a recorded hold's kind, else its pool's daily execution cap (the
        # only other hold an account's own limiter has); outside its windows it starts nothing too.
        kind = (str(held[1].get("kind")) if held else "daily_cap") if why is not None else None
        outside = ctx.engine.windows.account_why(name, account.name)
        if why is not None:
            state = "held"
        elif outside is not None:
            state, why, kind = "held", outside, "window"
        elif snapshot.blocked_for > 0:
            state, why = "blocked", snapshot.block_reason
        found.append(
            AccountStatus(
                name=account.name,
                pool=account.pool,
                weight=account.weight,
                state=state,
                why=why,
                kind=kind,
                requests_in_window=snapshot.requests_in_window,
                requests_per_minute=snapshot.requests_per_minute,
                executions_in_window=snapshot.executions_in_window,
                executions_per_minute=snapshot.executions_per_minute,
                in_flight=snapshot.in_flight,
                max_in_flight=snapshot.max_in_flight,
                balance=pool.account_balances.get((name, account.key_account)),
            )
        )
    return found


async def daemons(ctx: DaemonContext) -> list[DaemonInfo]:
    """The daemons sharing the queue (PostgreSQL): each one's host, pid, heartbeat and accounts."""
    me, rows = await ctx.engine.fleet.members()
    now = time.time()
    return [
        DaemonInfo(
            id=row.id,
            host=row.host,
            pid=row.pid,
            heartbeat_age=max(0.0, now - row.heartbeat_at),
            accounts=list(row.accounts),
            this=row.id == me,
        )
        for row in rows
    ]


async def status(ctx: DaemonContext) -> Status:
    """Whole-table counting is the cost at a million jobs: one pass by (provider, state) gives both
    the totals and the per-provider counts; batches are counted only for the recent ones shown."""
    by_provider = await ctx.store.counters.counts_by("provider")
    totals = empty_counts()
    for counts in by_provider.values():
        for state, n in counts.items():
            totals[state] += n
    batches = await ctx.store.batches.list_batches(RECENT_BATCHES)
    pipeline = await ctx.store.drafts.pipeline_counts()
    providers = await provider_statuses(ctx, by_provider)
    holds = ctx.engine.holds.all(providers, batches)
    batch_counts = await ctx.store.counters.counts_for_batches([b.id for b in batches])
    etas = await batch_etas(ctx, batches, batch_counts)
    return Status(
        version=__version__,
        jobs=totals,
        paused=ctx.engine.holds.everything() is not None,
        pause_reason=ctx.engine.holds.everything(),
        providers=providers,
        batches=await batch_summaries(ctx, batches, etas),
        holds=holds,
        review_pending=await ctx.store.counters.pending_reviews(),
        eta_seconds=overall_eta({b: eta for b, eta in etas.items() if eta != 0.0}),
        pipeline=pipeline if pipeline["drafts"] else None,
        daemons=await daemons(ctx),
        delivery=DeliveryBacklog(
            **await ctx.store.outbox.backlog(),
            held_reasons=await ctx.store.outbox.held_reasons(),
        ),
    )
