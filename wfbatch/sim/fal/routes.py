"""fal.ai's queue route set (providers.md §2): `POST /{endpoint}` queues a request and answers its
`request_id` and the status / result / cancel URLs (under `owner/name`, never the subpath);
`GET …/requests/{id}/status` reports IN_QUEUE (with `queue_position`), IN_PROGRESS or COMPLETED
(which may carry `error` / `error_type`); `GET …/requests/{id}` is the result (422
`content_policy_violation` for a refused prompt); `PUT …/requests/{id}/cancel`. Images are served
from `/_sim/fal-files/…` (fal's CDN). Every answer carries `x-fal-request-id`. Input pictures
(`image_url`...) and the storage upload are `storage`'s.

A submit goes: early-retry bookkeeping → auth → submits/min (429 + Retry-After, when `rpm` is set)
→ injected fault → input validation (422 with a `detail` list) → credit (403 "User is locked") →
queued; an injected `lost_*` fault queues the request and loses the answer.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wfbatch.sim.fal.book import FalBook, FalRequest
from wfbatch.sim.fal.storage import picture_problem, storage_routes
from wfbatch.sim.faults import drop_connection, truncate
from wfbatch.sim.images import ImageFormat, render_image
from wfbatch.sim.replies import json_reply
from wfbatch.sim.state import SimState

API = ""
FILES = "/_sim/fal-files"
LOCKED = "User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing."
IMAGE_SIZES = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}
_FORMATS: dict[str, ImageFormat] = {"jpeg": "jpeg", "png": "png"}
_MEDIA = {"jpeg": "image/jpeg", "png": "image/png"}


def _detail(
    status: int, loc: list[str], msg: str, kind: str, headers: dict[str, str] | None = None
) -> Response:
    return json_reply({"detail": [{"loc": loc, "msg": msg, "type": kind}]}, status, headers)


def _invalid(loc: str, msg: str, kind: str) -> Response:
    return _detail(422, ["body", loc], msg, kind)


class _Queue:
    def __init__(self, state: SimState) -> None:
        self.state = state
        self.book = state.book_as(FalBook)

    def _urls(self, request: Request, item: FalRequest) -> dict[str, str]:
        root = f"{str(request.base_url).rstrip('/')}/{item.app}/requests/{item.id}"
        return {"response_url": root, "status_url": f"{root}/status", "cancel_url": f"{root}/cancel"}

    def _auth(self, request: Request) -> Response | None:
        scheme, _, key = (request.headers.get("authorization") or "").partition(" ")
        expected = self.state.options.api_key
        if scheme.lower() != "key" or not key.strip() or (expected is not None and key.strip() != expected):
            return json_reply({"detail": "Invalid API key or missing Authorization: Key <key> header"}, 401)
        return None

    # -- submit ------------------------------------------------------------------------------

    async def submit(self, request: Request) -> Response:
        st = self.state
        st.count_request("submit")
        now = st.clock()
        self.book.arrive(now)
        problem = self._auth(request)
        if problem is not None:
            return problem
        verdict = self.book.admit_submit(now)
        if not verdict.allowed:
            wait = max(1, math.ceil(verdict.retry_after))
            return json_reply({"detail": "Rate limit exceeded"}, 429, {"Retry-After": str(wait)})
        fault = st.draw_fault("submit", is_start=True)
        if fault in ("500", "502", "503", "reset"):
            st.record_fault(fault)
            if fault == "reset" and await drop_connection(request.scope):
                return Response(status_code=502)
            return json_reply({"detail": "Internal Server Error"}, 502 if fault == "reset" else int(fault))
        endpoint = str(request.path_params["endpoint"]).strip("/")
        if endpoint.count("/") < 1:
            return json_reply({"detail": f"Application '{endpoint}' not found"}, 404)
        try:
            body: Any = await request.json()
        except ValueError:
            return _invalid("body", "Input should be a valid JSON object", "json_invalid")
        parsed = _parse_input(body)
        if isinstance(parsed, Response):
            return parsed
        bad_picture = picture_problem(body, self.book.storage, str(request.base_url).rstrip("/"))
        if bad_picture is not None:
            return _invalid(bad_picture[0], bad_picture[1], "image_load_error")
        prompt, seed, size, output_format, num_images = parsed
        item = self.book.submit(
            endpoint=endpoint,
            prompt=prompt,
            seed=seed,
            size=size,
            output_format=output_format,
            num_images=num_images,
            now=now,
        )
        if item is None:
            return json_reply({"detail": LOCKED}, 403)
        _, position = self.book.look(item.id, now)
        reply = json_reply(
            {
                "status": item.status if position is not None else "IN_QUEUE",
                "request_id": item.id,
                "gateway_request_id": item.id,
                "queue_position": position or 0,
                **self._urls(request, item),
            },
            headers={"x-fal-request-id": item.id},
        )
        if fault == "malformed":
            st.record_fault(fault)
            return Response(truncate(bytes(reply.body)), media_type="application/json")
        if fault in ("lost_5xx", "lost_reset"):
            st.record_fault(fault)  # queued (and will be paid); only the answer is lost
            if fault == "lost_reset" and await drop_connection(request.scope):
                return Response(status_code=502)
            return json_reply({"detail": "Bad Gateway"}, 502)
        return reply

    # -- status, result, cancel --------------------------------------------------------------

    async def _find(self, request: Request) -> tuple[FalRequest | None, int | None, Response | None]:
        problem = self._auth(request)
        if problem is not None:
            return None, None, problem
        item, position = self.book.look(str(request.path_params["rid"]), self.state.clock())
        if item is None or item.app != str(request.path_params["app"]).strip("/"):
            return None, None, json_reply({"detail": "Request not found"}, 404)
        return item, position, None

    async def status(self, request: Request) -> Response:
        self.state.count_request("status")
        self.book.arrive(self.state.clock())
        fault = self.state.take_queued_fault("status")
        if fault in ("500", "502", "503"):
            self.state.record_fault(fault)
            return json_reply({"detail": "Internal Server Error"}, int(fault))
        item, position, problem = await self._find(request)
        if problem is not None or item is None:
            return problem or Response(status_code=500)
        body: dict[str, Any] = {"status": item.status, "request_id": item.id, **self._urls(request, item)}
        if item.status == "IN_QUEUE":
            body["queue_position"] = position
        else:
            body["logs"] = None  # `?logs=1` would fill it; the official client needs the key
        if item.status == "COMPLETED":
            body["metrics"] = {"inference_time": round(item.latency, 3)}
            if item.error is not None:
                body["error"], body["error_type"] = item.error, item.error_type
        return json_reply(body, headers={"x-fal-request-id": item.id})

    async def result(self, request: Request) -> Response:
        self.state.count_request("result")
        self.book.arrive(self.state.clock())
        item, _, problem = await self._find(request)
        if problem is not None or item is None:
            return problem or Response(status_code=500)
        headers = {"x-fal-request-id": item.id}
        if item.status != "COMPLETED":
            return json_reply({"detail": "Request is still in progress"}, 400, headers)
        if item.error_type == "content_policy_violation":
            headers.update({"x-fal-error-type": "content_policy_violation", "x-fal-retryable": "false"})
            return _detail(422, ["body", "prompt"], item.error or "", "content_policy_violation", headers)
        if item.error is not None:
            return json_reply({"detail": item.error}, 400, headers)
        root = str(request.base_url).rstrip("/")
        fmt = item.output_format
        images = [
            {
                "url": f"{root}{FILES}/{item.id}/{index}.{'jpg' if fmt == 'jpeg' else fmt}",
                "width": item.width,
                "height": item.height,
                "content_type": _MEDIA[fmt],
            }
            for index in range(item.num_images)
        ]
        body = {
            "images": images,
            "seed": item.seed,
            "has_nsfw_concepts": [False] * item.num_images,
            "prompt": item.prompt,
            "timings": {"inference": round(item.latency, 3)},
        }
        return json_reply(body, headers=headers)

    async def cancel(self, request: Request) -> Response:
        self.state.count_request("cancel")
        item, _, problem = await self._find(request)
        if problem is not None or item is None:
            if problem is not None and problem.status_code == 404:
                return json_reply({"status": "NOT_FOUND"}, 404)
            return problem or Response(status_code=500)
        outcome = self.book.cancel(item.id, self.state.clock())
        status = {"OK": 200, "CANCELLATION_REQUESTED": 202, "ALREADY_COMPLETED": 400}.get(outcome, 404)
        return json_reply({"status": outcome}, status, {"x-fal-request-id": item.id})

    async def file(self, request: Request) -> Response:
        item = self.book.requests.get(str(request.path_params["rid"]))
        name = str(request.path_params["name"])
        if item is None or item.status != "COMPLETED" or item.error is not None:
            return Response("Not Found", status_code=404, media_type="text/plain")
        fmt = item.output_format
        if name not in item.files:
            item.files[name] = await asyncio.to_thread(
                render_image,
                f"{item.id}-{name}",
                item.prompt,
                item.seed,
                (item.width, item.height),
                _FORMATS[fmt],
            )
        return Response(item.files[name], media_type=_MEDIA[fmt])


def _parse_input(body: Any) -> tuple[str, int | None, tuple[int, int], str, int] | Response:
    """The flux text-to-image input (prompt, image_size, seed, num_images, output_format)."""
    if not isinstance(body, dict):
        return _invalid("body", "Input should be a valid dictionary", "dict_type")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return _invalid("prompt", "Field required", "missing")
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        return _invalid("seed", "Input should be a valid integer", "int_type")
    raw_size = body.get("image_size", "landscape_4_3")
    if isinstance(raw_size, str):
        if raw_size not in IMAGE_SIZES:
            return _invalid("image_size", f"Input should be one of {', '.join(IMAGE_SIZES)}", "enum")
        size = IMAGE_SIZES[raw_size]
    elif isinstance(raw_size, dict):
        width, height = raw_size.get("width"), raw_size.get("height")
        if not isinstance(width, int) or not isinstance(height, int) or isinstance(width, bool):
            return _invalid("image_size", "width and height should be valid integers", "int_type")
        if not (1 <= width <= 14142 and 1 <= height <= 14142):
            return _invalid("image_size", "width and height should be between 1 and 14142", "less_than_equal")
        size = (width, height)
    else:
        return _invalid("image_size", "Input should be a valid dictionary or enum", "model_type")
    output_format = body.get("output_format", "jpeg")
    if output_format not in _FORMATS:
        return _invalid("output_format", "Input should be 'jpeg' or 'png'", "enum")
    num_images = body.get("num_images", 1)
    if not isinstance(num_images, int) or isinstance(num_images, bool) or not 1 <= num_images <= 4:
        return _invalid("num_images", "Input should be between 1 and 4", "less_than_equal")
    return prompt, seed, size, str(output_format), num_images


def fal_routes(state: SimState) -> list[Route]:
    queue = _Queue(state)
    return [
        *storage_routes(queue.book.storage, queue._auth),
        Route(FILES + "/{rid}/{name}", queue.file, methods=["GET"]),
        Route("/{app:path}/requests/{rid}/status", queue.status, methods=["GET"]),
        Route("/{app:path}/requests/{rid}/cancel", queue.cancel, methods=["PUT"]),
        Route("/{app:path}/requests/{rid}", queue.result, methods=["GET"]),
        Route("/{endpoint:path}", queue.submit, methods=["POST"]),
    ]
