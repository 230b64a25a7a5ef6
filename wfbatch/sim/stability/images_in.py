"""Stability's image inputs (providers.md §12.2): image-to-image on `generate/ultra|sd3`, the
upscalers `POST /v2beta/stable-image/upscale/{fast|conservative|creative}` and the creative
upscale's result, `GET /v2beta/results/{id}` (202 while it runs, 200 the image; only the key that
started it may fetch it, else 404).

Every image received is opened (a part that is no PNG/JPEG/WebP is a 400), checked against the
endpoint's documented limits and recorded in the book by sha256 (`received`), so tests compare
what reached the server with what they meant to send. Credits as published: fast 2,
conservative 40, creative 60; a refused request costs nothing.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import hashlib
import io
import secrets
from collections.abc import Callable

from PIL import Image, ImageDraw, ImageFilter, UnidentifiedImageError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wfbatch.sim.replies import json_reply
from wfbatch.sim.stability.book import StabilityBook
from wfbatch.sim.state import SimState

MAX_REQUEST_BYTES = 10 * 1024 * 1024
UPSCALE_CREDITS = {"fast": 2.0, "conservative": 40.0, "creative": 60.0}
_FORMATS = {"png": ("PNG", "image/png"), "jpeg": ("JPEG", "image/jpeg"), "webp": ("WEBP", "image/webp")}
_TAKEN = ("PNG", "JPEG", "WEBP")
_OUTPUT_PIXELS = {"conservative": 4_194_304, "creative": 4_194_304}

ErrorReply = Callable[..., Response]


def parse_form(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, bytes]] | None:
    """(text fields, file parts by name); None when the body is not multipart/form-data. A part
    with a filename is a file (Stability's `image`), whatever it holds."""
    if not content_type.lower().startswith("multipart/form-data"):
        return None
    parser = email.parser.BytesParser(policy=email.policy.HTTP)
    message = parser.parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    if not message.is_multipart():
        return None
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            if part.get_filename() is not None:
                files[name] = payload
            else:
                fields[name] = payload.decode("utf-8", "replace")
    return fields, files


async def read_form(
    request: Request, book: StabilityBook, error: ErrorReply, *, any_accept: bool = False
) -> tuple[dict[str, str], dict[str, bytes]] | Response:
    """The multipart form of an image endpoint, or the refusal the API gives: an Accept it does not
    answer (`*/*` too where `any_accept`), a body over 10 MiB, a body that is not multipart."""
    accept = request.headers.get("accept", "image/*")
    if not (accept.startswith(("image/", "application/json")) or (any_accept and accept == "*/*")):
        book.invalid += 1
        allowed = "image/*, */* or application/json" if any_accept else "image/* or application/json"
        return error(400, "invalid_accept_header", f"accept: must be {allowed}")
    body = await request.body()
    if len(body) > MAX_REQUEST_BYTES:
        book.invalid += 1
        return error(413, "payload_too_large", "the request must be at most 10 MiB")
    form = parse_form(request.headers.get("content-type", ""), body)
    if form is None:
        book.invalid += 1
        return error(400, "bad_request", "content-type: must be multipart/form-data")
    return form


def image_size(data: bytes) -> tuple[int, int] | str:
    """(width, height) of a PNG/JPEG/WebP Stability takes, or what is wrong with it."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in _TAKEN:
                return "image: must be a jpeg, png or webp"
            size = image.size
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return "image: could not be decoded as an image"
    return size


def image_to_image_problem(endpoint: str, fields: dict[str, str], files: dict[str, bytes]) -> str | None:
    """The first thing Stability would refuse about a generate request's image fields."""
    has_image = "image" in files
    if endpoint == "core" and has_image:
        return "image: core does not take an image"
    if endpoint == "sd3":
        mode = fields.get("mode", "text-to-image")
        if mode not in ("text-to-image", "image-to-image"):
            return "mode: must be text-to-image or image-to-image"
        if mode == "image-to-image" and not has_image:
            return "image: required when mode is image-to-image"
        if mode == "text-to-image" and has_image:
            return "image: only with mode image-to-image"
    if not has_image:
        return "strength: only with an image" if "strength" in fields else None
    strength = fields.get("strength")
    if strength is None:
        return "strength: required with an image"
    try:
        if not 0.0 <= float(strength) <= 1.0:
            return "strength: must be between 0 and 1"
    except ValueError:
        return "strength: must be a number"
    size = image_size(files["image"])
    if isinstance(size, str):
        return size
    width, height = size
    if min(width, height) < 64 or max(width, height) > 16_384:
        return "image: each side must be 64 to 16384 pixels"
    if endpoint == "ultra" and width * height < 4096:
        return "image: must have at least 4096 pixels"
    return None


def upscale_problem(kind: str, fields: dict[str, str], files: dict[str, bytes]) -> str | None:
    if "image" not in files:
        return "image: required"
    size = image_size(files["image"])
    if isinstance(size, str):
        return size
    width, height = size
    pixels = width * height
    if kind == "fast":
        if not (32 <= width <= 1536 and 32 <= height <= 1536) or pixels > 1_048_576:
            return "image: each side must be 32 to 1536 pixels, at most 1048576 pixels in all"
        if "prompt" in fields:
            return "prompt: not taken by the fast upscaler"
    else:
        prompt = fields.get("prompt", "")
        if not 1 <= len(prompt) <= 10_000:
            return "prompt: cannot be blank"
        if min(width, height) < 64:
            return "image: each side must be at least 64 pixels"
        if kind == "conservative" and (pixels > 9_437_184 or max(width, height) > 2.5 * min(width, height)):
            return "image: at most 9437184 pixels and an aspect ratio of 2.5:1"
        if kind == "creative" and pixels > 1_048_576:
            return "image: at most 1048576 pixels"
        creativity = fields.get("creativity")
        if creativity is not None:
            try:
                if not 0.2 <= float(creativity) <= 0.5:
                    return "creativity: must be between 0.2 and 0.5"
            except ValueError:
                return "creativity: must be a number"
    if fields.get("output_format", "png") not in _FORMATS:
        return "output_format: must be one of png, jpeg, webp"
    return None


def _encode(image: Image.Image, fmt: str) -> tuple[bytes, str]:
    pil_format, media_type = _FORMATS.get(fmt, _FORMATS["png"])
    out = io.BytesIO()
    # compress_level 1: a 16 MP upscale at the default level takes seconds of the simulator's CPU.
    extra = {"compress_level": 1} if pil_format == "PNG" else {}
    image.convert("RGB").save(out, format=pil_format, **extra)
    return out.getvalue(), media_type


def render_from(data: bytes, fields: dict[str, str], filtered: bool) -> tuple[bytes, str]:
    """Image-to-image: the input at about one megapixel (its own shape), tinted by the prompt."""
    with Image.open(io.BytesIO(data)) as source:
        width, height = source.size
        scale = (1_048_576 / (width * height)) ** 0.5
        size = (max(64, round(width * scale / 64) * 64), max(64, round(height * scale / 64) * 64))
        image = source.convert("RGB").resize(size)
    tint = hashlib.sha256(fields.get("prompt", "").encode()).digest()
    ImageDraw.Draw(image).rectangle((0, 0, size[0] // 4, size[1] // 4), fill=(tint[0], tint[1], tint[2]))
    if filtered:
        image = image.filter(ImageFilter.GaussianBlur(24))
    return _encode(image, fields.get("output_format", "png"))


def upscaled(data: bytes, kind: str, fmt: str) -> tuple[bytes, str]:
    """The input made bigger: 4x (fast), or about 4 MP (conservative, creative)."""
    with Image.open(io.BytesIO(data)) as source:
        width, height = source.size
        if kind == "fast":
            size = (width * 4, height * 4)
        else:
            scale = (_OUTPUT_PIXELS[kind] / (width * height)) ** 0.5
            size = (round(width * scale), round(height * scale))
        image = source.convert("RGB").resize(size, Image.Resampling.NEAREST)
    return _encode(image, fmt)


def upscale_routes(state: SimState, book: StabilityBook, error: ErrorReply) -> list[Route]:
    options = state.options

    async def upscale(request: Request) -> Response:
        state.count_request("upscale")
        kind = request.path_params["kind"]
        if not book.admit(state.clock()):
            return error(429, "rate_limit_exceeded", "rate limit exceeded; timed out")
        key = request.headers.get("authorization")
        problem = state.auth_error(key)
        if problem is not None:
            return error(401, "unauthorized", problem)
        if kind not in UPSCALE_CREDITS:
            return error(404, "not_found", f"no upscaler {kind}")
        form = await read_form(request, book, error, any_accept=True)
        if isinstance(form, Response):
            return form
        fields, files = form
        invalid = upscale_problem(kind, fields, files)
        if invalid is not None:
            book.invalid += 1
            return error(400, "invalid_parameters", invalid)
        marker = options.moderation_marker
        if marker is not None and marker in fields.get("prompt", ""):
            book.moderation_blocked += 1
            flagged = "Your request was flagged by our content moderation system; you were not charged."
            return error(403, "content_moderation", flagged)
        if not book.charge(UPSCALE_CREDITS[kind]):
            return error(402, "payment_required", "You lack sufficient credits to make this request.")
        book.forms.append(dict(fields))
        book.received_files(f"upscale/{kind}", files)
        book.upscaled(kind)
        data, media_type = upscaled(files["image"], kind, fields.get("output_format", "png"))
        if kind == "creative":
            result_id = secrets.token_hex(32)
            book.start_result(result_id, str(key), state.clock() + book.latency(), data, media_type)
            return json_reply({"id": result_id})
        await asyncio.sleep(book.latency())
        headers = {"finish-reason": "SUCCESS", "seed": fields.get("seed", "0")}
        return Response(data, 200, headers, media_type=media_type)

    async def result(request: Request) -> Response:
        state.count_request("results")
        key = request.headers.get("authorization")
        problem = state.auth_error(key)
        if problem is not None:
            return error(401, "unauthorized", problem)
        found = book.result(request.path_params["id"], str(key), state.clock())
        if found is None:
            return error(404, "not_found", "no result with that id for this key (results are kept 24 hours)")
        if isinstance(found, str):  # still running
            return json_reply({"id": request.path_params["id"], "status": "in-progress"}, 202)
        data, media_type = found
        return Response(data, 200, {"finish-reason": "SUCCESS"}, media_type=media_type)

    return [
        Route("/v2beta/stable-image/upscale/{kind}", upscale, methods=["POST"]),
        Route("/v2beta/results/{id}", result, methods=["GET"]),
    ]
