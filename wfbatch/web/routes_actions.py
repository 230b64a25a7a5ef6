"""What the pages do: review, retry and cancel through the daemon's own command routes; the
images, served by job id and confined to HOME/output; the daemon's events, passed on to the
browser as server-sent events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from wfbatch.client import ApiError, DaemonUnavailable
from wfbatch.protocol import CancelRequest, CommandResult, RetryRequest, ReviewRequest
from wfbatch.web.context import web_context

IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
MAX_BODY = 64 * 1024
Model = TypeVar("Model", bound=BaseModel)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ApiError(413, "request body too large")
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        raise ApiError(400, "the body must be JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    return data


async def _command(request: Request, model: type[Model], what: str) -> Model:
    """The request's JSON body as the daemon's command `model`; a bad one is a 400 naming `what`."""
    try:
        return model.model_validate(await _body(request))
    except ValidationError as error:
        raise ApiError(400, f"bad {what} request: {error.errors()[0]['msg']}") from None


def _result(result: CommandResult) -> JSONResponse:
    return JSONResponse(result.model_dump(mode="json"))


async def review(request: Request) -> Response:
    command = await _command(request, ReviewRequest, "review")
    return _result(await web_context(request).client.review(command))


async def retry(request: Request) -> Response:
    command = await _command(request, RetryRequest, "retry")
    return _result(await web_context(request).client.retry(command))


async def cancel(request: Request) -> Response:
    command = await _command(request, CancelRequest, "cancel")
    return _result(await web_context(request).client.cancel(command))


def confined_image(file_path: str, batch_dir: str, output_root: Path) -> tuple[Path, str] | str:
    """The image's resolved path and media type, or why it is not served: only a file inside its
    batch folder, inside HOME/output, with an image's suffix (symlinks resolved first)."""
    path = Path(file_path).resolve()
    folder = Path(batch_dir).resolve()
    media_type = IMAGE_TYPES.get(path.suffix.lower())
    inside = folder.is_relative_to(output_root.resolve()) and path.is_relative_to(folder)
    if media_type is None or not inside:
        return "the image is not in the output folder"
    if not path.is_file():
        return f"the image is gone from {path.parent.name}/"
    return path, media_type


async def image(request: Request) -> Response:
    """The job's image where it is now (a review moves it): nothing else on disk can be named."""
    ctx = web_context(request)
    job = await ctx.client.job(int(request.path_params["job_id"]))
    if not job.file_path:
        raise ApiError(404, f"job {job.id} has no image")
    found = confined_image(job.file_path, job.output_dir, ctx.output_root)
    if isinstance(found, str):
        raise ApiError(404, f"job {job.id}: {found}")
    return FileResponse(found[0], media_type=found[1])


async def events(request: Request) -> Response:
    ctx = web_context(request)

    async def stream() -> AsyncIterator[dict[str, str]]:
        # Only the kind and the ids go to the page: it re-reads what it shows.
        try:
            async for event in ctx.client.events():
                yield {"event": event.kind, "data": event.model_dump_json()}
        except DaemonUnavailable:
            return

    return EventSourceResponse(stream(), ping=15)


ROUTES = [
    Route("/api/review", review, methods=["POST"]),
    Route("/api/retry", retry, methods=["POST"]),
    Route("/api/cancel", cancel, methods=["POST"]),
    Route("/api/events", events, methods=["GET"]),
    Route("/img/{job_id:int}", image, methods=["GET"]),
]
