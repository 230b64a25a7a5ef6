"""The gallery: a batch's images as a grid, filtered by batch, review state and text; one job's
page with the full image and every attempt."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wfbatch.protocol import JobDetail, JobSummary
from wfbatch.web.context import csrf_of, web_context
from wfbatch.web.daemon_calls import details, jobs_in
from wfbatch.web.formatting import credits

PAGE_SIZE = 120
REVIEW_STATES = ("pending", "approved", "rejected")


def _card(job: JobSummary, detail: JobDetail | None) -> dict[str, Any]:
    linked: tuple[str, int] | None = None
    if job.stage == "draft" and job.final_id is not None:
        linked = ("final", job.final_id)
    elif job.stage == "final" and job.draft_of is not None:
        linked = ("draft", job.draft_of)
    return {
        "id": job.id,
        "batch_id": job.batch_id,
        "review": job.review.value,
        "file": job.file or "",
        "name": (job.file or "").rsplit("/", 1)[-1],
        "prompt": job.prompt,
        "seed": detail.seed if detail else None,
        "model": (detail.model if detail else None) or "default",
        "size": f"{detail.width}×{detail.height}" if detail else "",
        "cost": "cache hit" if job.cache_hit else credits(job.credits),
        "stage": job.stage,
        "linked": linked,
    }


async def gallery(request: Request) -> Response:
    ctx = web_context(request)
    params = request.query_params
    batch = params.get("batch") or None
    state = params.get("state", "pending")
    review = state if state in REVIEW_STATES else None
    text = (params.get("q") or "").strip() or None
    batches = (await ctx.client.batches(limit=200)).items
    jobs, next_cursor = await jobs_in(
        ctx.client, states=["done"], batch_id=batch, text=text, review=review,
        limit=PAGE_SIZE, cursor=params.get("cursor") or None,
    )
    found = await details(ctx.client, [job.id for job in jobs])
    cards = [_card(job, found.get(job.id)) for job in jobs]
    return ctx.templates.TemplateResponse(
        request,
        "gallery.html",
        {
            "csrf": csrf_of(request),
            "page": "gallery",
            "cards": cards,
            "batches": batches,
            "batch": batch or "",
            "state": state if review else "all",
            "q": text or "",
            "next_cursor": next_cursor,
        },
    )


async def job_page(request: Request) -> Response:
    ctx = web_context(request)
    job = await ctx.client.job(int(request.path_params["job_id"]))
    return ctx.templates.TemplateResponse(
        request,
        "job.html",
        {"csrf": csrf_of(request), "page": "job", "job": job, "card": _card(job, job),
         "error": job.error},
    )


ROUTES = [
    Route("/", gallery, methods=["GET"]),
    Route("/jobs/{job_id:int}", job_page, methods=["GET"]),
]
