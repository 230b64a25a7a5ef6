"""The queue: batches with progress, ETA and holds, provider and account limits, spend by batch
and provider, failed jobs with every attempt, and what is queued or running (to cancel)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wfbatch.protocol import BatchSummary, Status
from wfbatch.web.context import csrf_of, web_context
from wfbatch.web.daemon_calls import details, jobs_in
from wfbatch.web.formatting import clock_time, credits, duration, of_limit, percent

LIST_SIZE = 50
ACTIVE_STATES = ("queued", "submitting", "running", "retrying")


def batch_row(batch: BatchSummary) -> dict[str, Any]:
    counts = batch.counts
    done, failed, canceled = counts.get("done", 0), counts.get("failed", 0), counts.get("canceled", 0)
    finished = done + failed + canceled
    unfinished = finished < batch.total
    held = batch.paused or batch.pause_reason is not None or (batch.eta_seconds is None and unfinished)
    eta = "held" if held else ("finished" if finished >= batch.total else duration(batch.eta_seconds))
    if unfinished and not batch.paused and batch.not_before is not None:
        # As `status` and the TUI say it: a bare "7h 17m" read as a slow batch, not a later one.
        later = f" ({eta})" if batch.eta_seconds is not None else ""
        eta = f"scheduled {clock_time(batch.not_before)}{later}"
    return {
        "id": batch.id,
        "name": batch.name,
        "provider": batch.provider,
        "done": done,
        "failed": failed,
        "canceled": canceled,
        "total": batch.total,
        "percent": percent(finished, batch.total),
        "eta": eta,
        "spent": credits(batch.credits_used),
        "budget": credits(batch.budget) if batch.budget is not None else "none",
    }


def _providers(status: Status) -> list[dict[str, Any]]:
    rows = []
    for provider in status.providers.values():
        rows.append({
            "name": provider.name,
            "requests": of_limit(provider.requests_in_window, provider.requests_per_minute),
            "executions": of_limit(provider.executions_in_window, provider.executions_per_minute),
            "in_flight": of_limit(provider.in_flight, provider.max_in_flight),
            "daily": of_limit(provider.daily_executions, provider.daily_cap),
            "paused": provider.paused,
            "blocked": provider.block_reason if provider.blocked_for > 0 else None,
            "spent": credits(provider.credits_used),
            "balance": credits(provider.balance) if provider.balance is not None else "—",
            "accounts": [
                {
                    "name": account.name,
                    "state": account.state,
                    "why": account.why,
                    "requests": of_limit(account.requests_in_window, account.requests_per_minute),
                    "executions": of_limit(account.executions_in_window, account.executions_per_minute),
                    "in_flight": of_limit(account.in_flight, account.max_in_flight),
                }
                for account in provider.accounts
            ],
        })
    return rows


async def _context(request: Request) -> dict[str, Any]:
    ctx = web_context(request)
    status = await ctx.client.status()
    failed, _ = await jobs_in(ctx.client, states=["failed"], limit=LIST_SIZE)
    active, _ = await jobs_in(ctx.client, states=list(ACTIVE_STATES), limit=LIST_SIZE)
    failed_details = await details(ctx.client, [job.id for job in failed])
    return {
        "csrf": csrf_of(request),
        "page": "queue",
        "status": status,
        "eta": duration(status.eta_seconds),
        "batches": [batch_row(batch) for batch in status.batches],
        "holds": status.holds,
        "providers": _providers(status),
        "failed": [failed_details[job.id] for job in failed if job.id in failed_details],
        "failed_total": status.jobs.get("failed", 0),
        "active": active,
    }


async def queue(request: Request) -> Response:
    ctx = web_context(request)
    # `?part=live`: only the part the event stream refreshes (no page chrome, no scripts).
    template = "queue_live.html" if request.query_params.get("part") == "live" else "queue.html"
    return ctx.templates.TemplateResponse(request, template, await _context(request))


ROUTES = [Route("/queue", queue, methods=["GET"])]
