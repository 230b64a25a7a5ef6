"""Command routes: retry, cancel, edit, budget, priority, weight, pause/resume, review, submit. The
rules live in `wfbatch.engine.intake.control`; these handlers only translate between HTTP and it."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from wfbatch.core.states import ReviewStatus
from wfbatch.daemon.batch_ref import resolve_batch, resolve_optional
from wfbatch.daemon.context import context_of
from wfbatch.daemon.responses import model_response, path_job_id, problem_response, read_body
from wfbatch.daemon.sidecars import SidecarFailed
from wfbatch.engine.intake.control import Accepted, Duplicate, Refused
from wfbatch.protocol import (
    BudgetRequest,
    CancelRequest,
    CommandResult,
    EditRequest,
    PauseRequest,
    PriorityRequest,
    RetryRequest,
    ReviewRequest,
    SubmitError,
    SubmitRequest,
    SubmitResult,
    WeightRequest,
    routes,
)

DECISIONS = {
    "approve": ReviewStatus.APPROVED,
    "reject": ReviewStatus.REJECTED,
    "pending": ReviewStatus.PENDING,
}


async def retry(request: Request) -> JSONResponse:
    body = await read_body(request, RetryRequest)
    ctx = context_of(request)
    result = await ctx.control.retry(
        body.job_ids, failed_of_batch=await resolve_optional(ctx, body.failed_of_batch),
        all_failed=body.all_failed,
    )
    return model_response(result)


async def cancel(request: Request) -> JSONResponse:
    body = await read_body(request, CancelRequest)
    ctx = context_of(request)
    batch_id = await resolve_optional(ctx, body.batch_id)
    return model_response(await ctx.control.cancel(body.job_ids, batch_id=batch_id))


async def edit(request: Request) -> JSONResponse:
    job_id = path_job_id(request)
    body = await read_body(request, EditRequest)
    return model_response(await context_of(request).control.edit(job_id, body.prompt))


async def set_budget(request: Request) -> JSONResponse:
    body = await read_body(request, BudgetRequest)
    ctx = context_of(request)
    batch = await resolve_batch(ctx, request.path_params["batch_id"])
    return model_response(await ctx.control.set_budget(batch.id, body.budget))


async def set_priority(request: Request) -> JSONResponse:
    body = await read_body(request, PriorityRequest)
    ctx = context_of(request)
    batch = await resolve_batch(ctx, request.path_params["batch_id"])
    return model_response(await ctx.control.set_priority(batch.id, body.priority))


async def set_weight(request: Request) -> JSONResponse:
    body = await read_body(request, WeightRequest)
    ctx = context_of(request)
    batch = await resolve_batch(ctx, request.path_params["batch_id"])
    return model_response(await ctx.control.set_weight(batch.id, body.weight))


async def _scope_target(request: Request, body: PauseRequest) -> str | None:
    """A batch scope names its batch as people type it; the engine gets the full id."""
    if body.scope == "batch":
        return (await resolve_batch(context_of(request), body.id)).id
    return body.id


async def pause(request: Request) -> JSONResponse:
    body = await read_body(request, PauseRequest)
    target = await _scope_target(request, body)
    return model_response(await context_of(request).control.pause(body.scope, target, body.reason))


async def resume(request: Request) -> JSONResponse:
    body = await read_body(request, PauseRequest)
    target = await _scope_target(request, body)
    return model_response(await context_of(request).control.resume(body.scope, target))


async def review(request: Request) -> JSONResponse:
    body = await read_body(request, ReviewRequest)
    return model_response(await context_of(request).control.review(body.job_ids, DECISIONS[body.decision]))


async def submit(request: Request) -> JSONResponse:
    body = await read_body(request, SubmitRequest)
    outcome = await context_of(request).control.accept(
        body.content.encode("utf-8"),
        body.name,
        fmt=body.format,
        provider=body.provider,
        budget=body.budget,
        not_before=body.not_before.timestamp() if body.not_before is not None else None,
        dry_run=body.dry_run,
        prompt_dir=Path(body.folder) if body.folder and Path(body.folder).is_absolute() else None,
    )
    if isinstance(outcome, Refused):
        result = SubmitResult(
            errors=[SubmitError(line=e.line, column=e.column, message=e.message) for e in outcome.errors],
            report=outcome.report,
        )
        error = f"{body.name}: refused, nothing was enqueued"
        return problem_response(422, error, result.model_dump(mode="json"))
    if isinstance(outcome, Duplicate):
        return model_response(SubmitResult(batch_id=outcome.of.id, duplicate_of=outcome.of.id))
    assert isinstance(outcome, Accepted)
    return model_response(
        SubmitResult(
            batch_id=outcome.batch.id if outcome.batch else None,
            jobs=outcome.jobs,
            warnings=list(outcome.warnings),
        ),
        status=200 if body.dry_run else 201,
    )


async def start_sidecar(request: Request) -> JSONResponse:
    ctx = context_of(request)
    name = request.path_params["name"]
    try:
        started = await ctx.sidecars.ensure(name)
    except KeyError:
        known = ", ".join(sorted(ctx.sidecars.known)) or "none in this daemon"
        return problem_response(404, f"no sidecar named {name!r} (known: {known})")
    except (SidecarFailed, TimeoutError) as error:
        return problem_response(409, str(error))
    return model_response(CommandResult(message=f"{name}: {'started' if started else 'already running'}"))


ROUTES = [
    Route(routes.SIDECAR, start_sidecar, methods=["POST"]),
    Route(routes.JOBS_RETRY, retry, methods=["POST"]),
    Route(routes.JOBS_CANCEL, cancel, methods=["POST"]),
    Route(routes.JOB_EDIT, edit, methods=["POST"]),
    Route(routes.BATCH_BUDGET, set_budget, methods=["POST"]),
    Route(routes.BATCH_PRIORITY, set_priority, methods=["POST"]),
    Route(routes.BATCH_WEIGHT, set_weight, methods=["POST"]),
    Route(routes.PAUSE, pause, methods=["POST"]),
    Route(routes.RESUME, resume, methods=["POST"]),
    Route(routes.REVIEW, review, methods=["POST"]),
    Route(routes.SUBMIT, submit, methods=["POST"]),
]
