"""Stability AI's v2beta route set (providers.md §4): `POST /v2beta/stable-image/generate/{ultra|core|
sd3}` (multipart in, image bytes out, synchronous; with an `image` part: image-to-image, §12.2),
the upscalers and their results (`images_in`), edit/inpaint (`inpaint`) and `GET /v1/user/balance`.

One request goes: lockout → 150 requests / 10 s window → auth → multipart validation → moderation
(`moderation_marker`: 403 `content_moderation`, not charged) → credits (402 `payment_required`) →
latency → the image, at Stability's own pixel size for the aspect ratio; a prompt carrying
`filter_marker` comes back blurred with `finish-reason: CONTENT_FILTERED`, charged. A 429 locks the
account out for `lockout` seconds (no Retry-After, as documented); every request during the lockout
is answered 429 and counted in stats (`requests_during_lockout`).
"""

from __future__ import annotations

import asyncio
import base64
import io
import uuid

from PIL import Image, ImageFilter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wfbatch.sim.images import render_image
from wfbatch.sim.replies import json_reply
from wfbatch.sim.stability.book import StabilityBook
from wfbatch.sim.stability.images_in import (
    MAX_REQUEST_BYTES,
    image_to_image_problem,
    parse_form,
    render_from,
    upscale_routes,
)
from wfbatch.sim.stability.inpaint import inpaint_routes
from wfbatch.sim.stability.options import StabilityOptions
from wfbatch.sim.state import SimState

API = ""
ROUTE = "generate"
RATIOS: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "16:9": (1344, 768),
    "21:9": (1536, 640),
    "2:3": (832, 1216),
    "3:2": (1216, 832),
    "4:5": (896, 1088),
    "5:4": (1088, 896),
    "9:16": (768, 1344),
    "9:21": (640, 1536),
}
SD3_MODELS = (
    "sd3.5-large",
    "sd3.5-large-turbo",
    "sd3.5-medium",
    "sd3-large",
    "sd3-large-turbo",
    "sd3-medium",
)
CREDITS = {"ultra": 8.0, "core": 3.0, "sd3.5-large": 6.5, "sd3.5-large-turbo": 4.0, "sd3.5-medium": 3.5}
STYLE_PRESETS = frozenset(
    [
        "3d-model",
        "analog-film",
        "anime",
        "cinematic",
        "comic-book",
        "digital-art",
        "enhance",
        "fantasy-art",
        "isometric",
        "line-art",
        "low-poly",
        "modeling-compound",
        "neon-punk",
        "origami",
        "photographic",
        "pixel-art",
        "tile-texture",
    ]
)
_MEDIA = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


def _error(status: int, name: str, *errors: str) -> Response:
    return json_reply({"id": uuid.uuid4().hex, "name": name, "errors": list(errors)}, status)


def parse_multipart(content_type: str, body: bytes) -> dict[str, str] | None:
    """The form's text fields; None when the body is not multipart/form-data."""
    form = parse_form(content_type, body)
    return None if form is None else form[0]


def validate(endpoint: str, fields: dict[str, str]) -> str | None:
    """The first thing Stability would call invalid (its `errors[]` text), or None."""
    prompt = fields.get("prompt", "")
    if not 1 <= len(prompt) <= 10_000:
        return "prompt: cannot be blank" if not prompt else "prompt: must be at most 10000 characters"
    ratio = fields.get("aspect_ratio", "1:1")
    if ratio not in RATIOS:
        return f"aspect_ratio: must be one of {', '.join(RATIOS)}"
    formats = ("png", "jpeg") if endpoint == "sd3" else ("png", "jpeg", "webp")
    if fields.get("output_format", "png") not in formats:
        return f"output_format: must be one of {', '.join(formats)}"
    seed = fields.get("seed", "0")
    if not seed.isdigit() or int(seed) > 4_294_967_294:
        return "seed: must be a number from 0 to 4294967294"
    preset = fields.get("style_preset")
    if preset is not None and preset not in STYLE_PRESETS:
        return "style_preset: invalid value"
    if endpoint == "sd3" and fields.get("model", "sd3.5-large") not in SD3_MODELS:
        return f"model: must be one of {', '.join(SD3_MODELS)}"
    return None


def _render(fields: dict[str, str], filtered: bool) -> tuple[bytes, str]:
    fmt = fields.get("output_format", "png")
    size = RATIOS[fields.get("aspect_ratio", "1:1")]
    data = render_image(uuid.uuid4().hex, fields["prompt"], int(fields.get("seed", "0")), size, "png")
    image: Image.Image = Image.open(io.BytesIO(data))
    if filtered:
        image = image.filter(ImageFilter.GaussianBlur(24))
    out = io.BytesIO()
    image.save(out, format={"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[fmt])
    return out.getvalue(), _MEDIA[fmt]


def stability_routes(state: SimState) -> list[Route]:
    book = state.book_as(StabilityBook)
    options = state.options
    own = StabilityOptions.of(options)

    async def generate(request: Request) -> Response:
        state.count_request(ROUTE)
        endpoint = request.path_params["endpoint"]
        if not book.admit(state.clock()):
            return _error(
                429,
                "rate_limit_exceeded",
                f"You have exceeded the rate limit of {book.window.limit} requests within a "
                f"{own.stability_window:g} second period, and have been timed out for "
                f"{own.lockout:g} seconds.",
            )
        problem = state.auth_error(request.headers.get("authorization"))
        if problem is not None:
            return _error(401, "unauthorized", problem)
        if endpoint not in ("ultra", "core", "sd3"):
            return _error(404, "not_found", f"no endpoint {endpoint}")
        accept = request.headers.get("accept", "image/*")
        if not (accept.startswith("image/") or accept.startswith("application/json")):
            book.invalid += 1
            return _error(400, "invalid_accept_header", "accept: must be image/* or application/json")
        body = await request.body()
        if len(body) > MAX_REQUEST_BYTES:
            book.invalid += 1
            return _error(413, "payload_too_large", "the request must be at most 10 MiB")
        form = parse_form(request.headers.get("content-type", ""), body)
        if form is None:
            book.invalid += 1
            return _error(400, "bad_request", "content-type: must be multipart/form-data")
        fields, files = form
        invalid = validate(endpoint, fields) or image_to_image_problem(endpoint, fields, files)
        if invalid is not None:
            book.invalid += 1
            return _error(400, "invalid_parameters", invalid)
        prompt = fields["prompt"]
        marker = options.moderation_marker
        if marker is not None and marker in prompt:
            book.moderation_blocked += 1
            return _error(
                403,
                "content_moderation",
                "Your request was flagged by our content moderation system, as a result your request "
                "was denied and you were not charged.",
            )
        model = fields.get("model", "sd3.5-large") if endpoint == "sd3" else endpoint
        if not book.charge(CREDITS.get(model, 3.0)):
            return _error(
                402,
                "payment_required",
                "You lack sufficient credits to make this request. Please purchase more credits at "
                "https://platform.stability.ai/account/credits and try again.",
            )
        book.forms.append(dict(fields))
        book.received_files(f"generate/{endpoint}", files)
        await asyncio.sleep(book.latency())
        filtered = own.filter_marker is not None and own.filter_marker in prompt
        if "image" in files:
            data, media_type = render_from(files["image"], fields, filtered)
        else:
            data, media_type = _render(fields, filtered)
        book.made(prompt)
        if filtered:
            book.filtered += 1
        reason = "CONTENT_FILTERED" if filtered else "SUCCESS"
        seed = fields.get("seed", "0")
        if accept.startswith("application/json"):
            answer = {"image": base64.b64encode(data).decode(), "finish_reason": reason, "seed": int(seed)}
            return json_reply(answer, 200, {"content-type": f"application/json; type={media_type}"})
        return Response(data, 200, {"finish-reason": reason, "seed": seed}, media_type=media_type)

    async def balance(request: Request) -> Response:
        state.count_request("balance")
        problem = state.auth_error(request.headers.get("authorization"))
        if problem is not None:
            return _error(401, "unauthorized", problem)
        credits = book.balance
        return json_reply({"credits": 1_000_000.0 if credits is None else credits})

    return [
        Route("/v2beta/stable-image/generate/{endpoint}", generate, methods=["POST"]),
        *upscale_routes(state, book, _error),
        *inpaint_routes(state, book, _error, STYLE_PRESETS),
        Route("/v1/user/balance", balance, methods=["GET"]),
    ]


def rendered_ratio(data: bytes) -> str | None:
    """The aspect ratio whose pixel size an image has (tests)."""
    with Image.open(io.BytesIO(data)) as image:
        for ratio, size in RATIOS.items():
            if image.size == size:
                return ratio
    return None
