"""Read-only routes: health, status, batches, jobs, one job."""

from __future__ import annotations

import os

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wfbatch import __version__
from wfbatch.core.states import JobState, ReviewStatus
from wfbatch.daemon import views
from wfbatch.daemon.batch_ref import resolve_batch, resolve_optional
from wfbatch.daemon.context import context_of
from wfbatch.daemon.metrics import CONTENT_TYPE, render_metrics
from wfbatch.daemon.responses import ApiProblem, model_response, path_job_id, query_int
from wfbatch.protocol import API_VERSION, MAX_PAGE, BatchSummary, Health, JobSummary, Page, routes
from wfbatch.store import JobRow

DEFAULT_JOBS_PAGE = 100
DEFAULT_BATCHES_PAGE = 50


async def health(request: Request) -> JSONResponse:
    ctx = context_of(request)
    return model_response(
        Health(
            ok=True, version=__version__, api_version=API_VERSION, pid=os.getpid(),
            started_at=views.moment(ctx.started_at), home=str(ctx.layout.root),
        )
    )


async def status(request: Request) -> JSONResponse:
    return model_response(await views.status(context_of(request)))


async def batches(request: Request) -> JSONResponse:
    ctx = context_of(request)
    limit = min(query_int(request, "limit", DEFAULT_BATCHES_PAGE, minimum=1), MAX_PAGE)
    cursor = request.query_params.get("cursor") or None
    rows = await ctx.store.batches.list_batches_page(limit + 1, cursor)
    more = len(rows) > limit
    rows = rows[:limit]
    page = Page[BatchSummary](
        items=await views.batch_summaries(ctx, rows), next_cursor=rows[-1].id if more and rows else None
    )
    return model_response(page)


async def batch(request: Request) -> JSONResponse:
    ctx = context_of(request)
    row = await resolve_batch(ctx, request.path_params["batch_id"])
    return model_response((await views.batch_summaries(ctx, [row]))[0])


def _states(raw: str | None) -> list[JobState]:
    if not raw:
        return []
    states: list[JobState] = []
    for name in raw.split(","):
        name = name.strip().lower()
        if not name:
            continue
        try:
            states.append(JobState(name))
        except ValueError:
            known = ", ".join(s.value for s in JobState)
            raise ApiProblem(400, f"unknown state {name!r} (known: {known})") from None
    return states


async def jobs(request: Request) -> JSONResponse:
    ctx = context_of(request)
    params = request.query_params
    limit = min(query_int(request, "limit", DEFAULT_JOBS_PAGE, minimum=1), MAX_PAGE)
    after = query_int(request, "cursor", 0)
    review = params.get("review") or None
    try:
        review_status = ReviewStatus(review) if review else None
    except ValueError:
        raise ApiProblem(400, f"unknown review status {review!r}") from None
    rows = await ctx.store.jobs.list_jobs(
        states=_states(params.get("state")),
        batch_id=await resolve_optional(ctx, params.get("batch")),
        text=params.get("q") or None,
        review=review_status,
        after_id=after,
        limit=limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    finals = await ctx.store.drafts.finals_of([row.id for row in rows if row.stage == "draft"])
    page = Page[JobSummary](
        items=[
            views.job_summary(row, _id(finals.get(row.id)), ctx.engine.progress.of(row.id))
            for row in rows
        ],
        next_cursor=str(rows[-1].id) if more and rows else None,
    )
    return model_response(page)


async def job(request: Request) -> JSONResponse:
    ctx = context_of(request)
    job_id = path_job_id(request)
    row = await ctx.store.jobs.get_job(job_id)
    if row is None:
        raise ApiProblem(404, f"no job {job_id}")
    batch = await ctx.store.batches.get_batch(row.batch_id)
    final = await ctx.store.drafts.final_of(job_id) if row.stage == "draft" else None
    attempts = await ctx.store.jobs.attempts_for(job_id)
    delivery = await ctx.store.outbox.for_job(job_id)
    progress = ctx.engine.progress.of(job_id)
    return model_response(views.job_detail(row, batch, attempts, _id(final), delivery, progress))


def _id(job: JobRow | None) -> int | None:
    return None if job is None else job.id


async def metrics(request: Request) -> Response:
    return Response(await render_metrics(context_of(request)), media_type=CONTENT_TYPE)


ROUTES = [
    Route(routes.HEALTH, health, methods=["GET"]),
    Route(routes.STATUS, status, methods=["GET"]),
    Route(routes.BATCHES, batches, methods=["GET"]),
    Route(routes.BATCH, batch, methods=["GET"]),
    Route(routes.JOBS, jobs, methods=["GET"]),
    Route(routes.JOB, job, methods=["GET"]),
    Route(routes.METRICS, metrics, methods=["GET"]),
]
