"""Replicate's predictions route set (providers.md §3): create through
`POST /v1/models/{owner}/{name}/predictions` or `POST /v1/predictions` (`version`), answered 201
with the prediction object (held up to N seconds by `Prefer: wait=N`); `GET /v1/predictions/{id}`;
`POST /v1/predictions/{id}/cancel`; `GET /v1/predictions` (newest first, cursor pages
`{next, previous, results}`). Outputs are served from `/_sim/replicate-files/…` until the
prediction's data is removed (`retention`), then 404. Errors are problem+json; every answer carries
`ratelimit-remaining` / `ratelimit-reset`.

A create goes: early-retry bookkeeping → auth → creates/min (429 + retry-after) → injected fault →
input validation (422) → credit (402 "Billing required") → created; an injected `lost_*` fault
creates the prediction and loses the answer.
"""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wfbatch.sim.faults import drop_connection, truncate
from wfbatch.sim.images import ImageFormat, render_image
from wfbatch.sim.replicate.book import Prediction, ReplicateBook
from wfbatch.sim.replicate.files import file_routes, picture_problem
from wfbatch.sim.replicate.options import ReplicateOptions
from wfbatch.sim.state import SimState

API = "/v1"
FILES = "/_sim/replicate-files"
VERSION = "5599ed30703defd1d160a25a63321b4dec97101d98b4674bcc56e41f62f35637"
# What flux-schnell makes for each aspect ratio at 1 megapixel (0.25 halves both sides).
FLUX_SIZES = {
    "1:1": (1024, 1024),
    "16:9": (1344, 768),
    "21:9": (1536, 640),
    "3:2": (1216, 832),
    "2:3": (832, 1216),
    "4:5": (896, 1088),
    "5:4": (1088, 896),
    "3:4": (896, 1152),
    "4:3": (1152, 896),
    "9:16": (768, 1344),
    "9:21": (640, 1536),
}
_FORMATS: dict[str, ImageFormat] = {"webp": "webp", "jpg": "jpeg", "png": "png"}
_MEDIA = {"webp": "image/webp", "jpg": "image/jpeg", "png": "image/png"}


def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    body = {"title": title, "detail": detail, "status": status}
    return JSONResponse(body, status, headers, media_type="application/problem+json")


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_input(model: str, raw: Any) -> tuple[dict[str, Any], tuple[int, int], str, int] | Response:
    """The input a flux model (aspect_ratio, megapixels) or a width/height model takes."""
    if not isinstance(raw, dict):
        return problem(422, "Input validation failed", "- input: Invalid type. Expected: object")
    prompt = raw.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        return problem(422, "Input validation failed", "- input: prompt is required")
    seed = raw.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        return problem(422, "Input validation failed", "- input.seed: Invalid type. Expected: integer")
    outputs = raw.get("num_outputs", 1)
    if not isinstance(outputs, int) or not 1 <= outputs <= 4:
        return problem(422, "Input validation failed", "- input.num_outputs: Must be between 1 and 4")
    output_format = raw.get("output_format", "webp")
    if output_format not in _FORMATS:
        return problem(
            422, "Input validation failed", '- input.output_format: must be one of "webp", "jpg", "png"'
        )
    if "flux" in model:
        ratio = raw.get("aspect_ratio", "1:1")
        megapixels = raw.get("megapixels", "1")
        if ratio not in FLUX_SIZES:
            listed = ", ".join(f'"{r}"' for r in FLUX_SIZES)
            return problem(422, "Input validation failed", f"- input.aspect_ratio: must be one of {listed}")
        if megapixels not in ("1", "0.25"):
            return problem(422, "Input validation failed", '- input.megapixels: must be one of "1", "0.25"')
        width, height = FLUX_SIZES[ratio]
        size = (width, height) if megapixels == "1" else (width // 2, height // 2)
    else:
        width, height = raw.get("width", 1024), raw.get("height", 1024)
        if (
            not isinstance(width, int)
            or not isinstance(height, int)
            or not (64 <= width <= 4096 and 64 <= height <= 4096)
        ):
            return problem(422, "Input validation failed", "- input.width/height: must be integers 64-4096")
        size = (width, height)
    return dict(raw), size, str(output_format), outputs


class _Predictions:
    def __init__(self, state: SimState) -> None:
        self.state = state
        self.book = state.book_as(ReplicateBook)

    def _limit_headers(self) -> dict[str, str]:
        now = self.state.clock()
        verdict = self.book.peek_creates(now)
        if verdict.limit is None:
            return {}
        return {
            "ratelimit-remaining": str(verdict.remaining),
            "ratelimit-reset": str(max(0, math.ceil(verdict.reset_at - now))),
        }

    def _auth(self, request: Request) -> Response | None:
        scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
        expected = self.state.options.api_key
        token = token.strip()
        if scheme.lower() != "bearer" or not token or (expected is not None and token != expected):
            return problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        return None

    def body(self, request: Request, p: Prediction) -> dict[str, Any]:
        api = f"{str(request.base_url).rstrip('/')}{API}/predictions/{p.id}"
        output: Any = None
        if p.status == "succeeded" and not p.data_removed:
            root = str(request.base_url).rstrip("/")
            output = [f"{root}{FILES}/{p.id}/out-{i}.{p.output_format}" for i in range(p.outputs)]
        return {
            "id": p.id,
            "model": p.model,
            "version": p.version,
            "input": p.input,
            "status": p.status,
            "output": output,
            "error": p.failure if p.status == "failed" else None,
            "logs": "" if p.data_removed else f"Using seed: {p.seed}",
            "created_at": iso(p.created_at),
            "started_at": iso(p.started_at),
            "completed_at": iso(p.completed_at),
            "data_removed": p.data_removed,
            "source": "api",
            "metrics": {"predict_time": round(p.latency * 0.8, 3)} if p.completed_at else {},
            "urls": {"get": api, "cancel": f"{api}/cancel", "web": f"https://replicate.com/p/{p.id}"},
        }

    def reply(self, body: Any, status: int = 200, extra: dict[str, str] | None = None) -> Response:
        return JSONResponse(body, status, {**self._limit_headers(), **(extra or {})})

    async def create_for_model(self, request: Request) -> Response:
        model = f"{request.path_params['owner']}/{request.path_params['name']}"
        return await self._create(request, model, from_version=False)

    async def create(self, request: Request) -> Response:
        return await self._create(request, None, from_version=True)

    async def _create(self, request: Request, model: str | None, *, from_version: bool) -> Response:
        st, book = self.state, self.book
        st.count_request("create")
        now = st.clock()
        book.arrive(now)
        refused = self._auth(request)
        if refused is not None:
            return refused
        verdict = book.admit_create(now)
        if not verdict.allowed:
            wait = max(1, math.ceil(verdict.retry_after))
            return problem(
                429,
                "Request was throttled.",
                f"Request was throttled. Your rate limit resets in ~{wait}s.",
                {"retry-after": str(wait), **self._limit_headers()},
            )
        fault = st.draw_fault("create", is_start=True)
        if fault in ("500", "502", "503", "reset"):
            st.record_fault(fault)
            if fault == "reset" and await drop_connection(request.scope):
                return Response(status_code=502)
            return problem(502 if fault == "reset" else int(fault), "Internal Server Error", "Please retry.")
        try:
            data: Any = await request.json()
        except ValueError:
            return problem(400, "Invalid JSON", "The request body is not valid JSON")
        if not isinstance(data, dict):
            return problem(422, "Input validation failed", "- body: Invalid type. Expected: object")
        version = VERSION
        if from_version:
            given = data.get("version")
            if not isinstance(given, str) or not given:
                return problem(422, "Invalid version or not permitted", "- version: is required")
            version = given.split(":", 1)[-1]
            model = given.split(":", 1)[0] if "/" in given else "sim/versioned-model"
        assert model is not None
        parsed = _parse_input(model, data.get("input"))
        if isinstance(parsed, Response):
            return parsed
        root = f"{str(request.base_url).rstrip('/')}{API}"
        bad_picture = picture_problem(parsed[0], book.files, root)
        if bad_picture is not None:
            return problem(422, "Input validation failed", bad_picture)
        model_input, size, output_format, outputs = parsed
        prediction = book.create(
            model=model,
            version=version,
            model_input=model_input,
            size=size,
            output_format=output_format,
            outputs=outputs,
            now=now,
        )
        if prediction is None:
            return problem(
                402,
                "Billing required",
                "You need to set up billing to run this model. Go to https://replicate.com/account/billing "
                "and purchase credit.",
            )
        extra: dict[str, str] = {}
        held = _prefer_wait(request.headers.get("prefer"))
        if held is not None:
            extra["Preference-Applied"] = f"wait={held}"
            # Held open until the prediction ends or the wait is over (bounded, in small steps).
            for _ in range(max(1, math.ceil(min(held, prediction.latency + 0.05) / 0.02))):
                if book.get(prediction.id, st.clock()) and prediction.completed_at is not None:
                    break
                await asyncio.sleep(0.02)
        answer = self.reply(self.body(request, prediction), 201, extra)
        if fault == "malformed":
            st.record_fault(fault)
            return Response(truncate(bytes(answer.body)), media_type="application/json")
        if fault in ("lost_5xx", "lost_reset"):
            st.record_fault(fault)  # created (and will be paid); only the answer is lost
            if fault == "lost_reset" and await drop_connection(request.scope):
                return Response(status_code=502)
            return problem(502, "Bad Gateway", "upstream connect error")
        return answer

    async def get(self, request: Request) -> Response:
        self.state.count_request("get")
        self.book.arrive(self.state.clock())
        refused = self._auth(request)
        if refused is not None:
            return refused
        prediction = self.book.get(str(request.path_params["pid"]), self.state.clock())
        if prediction is None:
            return problem(404, "Not found", "The requested resource could not be found.")
        return self.reply(self.body(request, prediction))

    async def cancel(self, request: Request) -> Response:
        self.state.count_request("cancel")
        refused = self._auth(request)
        if refused is not None:
            return refused
        prediction = self.book.cancel(str(request.path_params["pid"]), self.state.clock())
        if prediction is None:
            return problem(404, "Not found", "The requested resource could not be found.")
        return self.reply(self.body(request, prediction))

    async def list(self, request: Request) -> Response:
        self.state.count_request("list")
        self.book.arrive(self.state.clock())
        refused = self._auth(request)
        if refused is not None:
            return refused
        cursor = request.query_params.get("cursor", "0")
        offset = int(cursor) if cursor.isdigit() else 0
        items, following = self.book.page(offset, self.state.clock())
        base = f"{str(request.base_url).rstrip('/')}{API}/predictions"
        previous = max(0, offset - ReplicateOptions.of(self.state.options).page_size)
        return self.reply(
            {
                "next": None if following is None else f"{base}?{urlencode({'cursor': following})}",
                "previous": None if offset == 0 else f"{base}?{urlencode({'cursor': previous})}",
                "results": [self.body(request, p) for p in items],
            }
        )

    async def file(self, request: Request) -> Response:
        prediction = self.book.get(str(request.path_params["pid"]), self.state.clock())
        name = str(request.path_params["name"])
        if prediction is None or prediction.status != "succeeded" or prediction.data_removed:
            if prediction is not None and prediction.data_removed:
                self.book.count("expired_downloads")
            return Response("Not Found", status_code=404, media_type="text/plain")
        fmt = prediction.output_format
        if name not in prediction.files:
            prediction.files[name] = await asyncio.to_thread(
                render_image,
                f"{prediction.id}-{name}",
                prediction.prompt,
                prediction.seed,
                prediction.size,
                _FORMATS[fmt],
            )
        return Response(prediction.files[name], media_type=_MEDIA[fmt])


def _prefer_wait(header: str | None) -> int | None:
    """`Prefer: wait` (60 s) or `wait=N`, N in 1..60."""
    for part in (header or "").split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "wait":
            seconds = int(value) if value.strip().isdigit() else 60
            return min(60, max(1, seconds))
    return None


def replicate_routes(state: SimState) -> list[Route]:
    predictions = _Predictions(state)
    return [
        *file_routes(predictions.book.files, predictions._auth, state.clock, API),
        Route(f"{API}/models/{{owner}}/{{name}}/predictions", predictions.create_for_model, methods=["POST"]),
        Route(f"{API}/predictions", predictions.create, methods=["POST"]),
        Route(f"{API}/predictions", predictions.list, methods=["GET"]),
        Route(f"{API}/predictions/{{pid}}", predictions.get, methods=["GET"]),
        Route(f"{API}/predictions/{{pid}}/cancel", predictions.cancel, methods=["POST"]),
        Route(FILES + "/{pid}/{name}", predictions.file, methods=["GET"]),
    ]
