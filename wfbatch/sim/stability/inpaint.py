"""Stability's `POST /v2beta/stable-image/edit/inpaint` (providers.md §12.2): multipart with `image`
and `prompt` required, `mask` optional (else the image's alpha is the mask), `negative_prompt`,
`grow_mask` 0-100, `seed`, `output_format` png/jpeg/webp, `style_preset`. Answers like the generate
endpoints (bytes with `finish-reason`/`seed` headers, or JSON with base64 `image`); 3 credits.

Checked as strictly as the contract: a missing image or prompt, a part that is no PNG/JPEG/WebP, an
image outside 64 px a side / 4,096-9,437,184 pixels, a mask of another size than the image, an
image-only request whose image has no alpha, or a grow_mask out of range is a 400 with `errors`,
not charged. Every picture received (image and mask) is booked by sha256 (`received_images`), and
each inpaint counted (`inpaints`).
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Callable

from PIL import Image
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wfbatch.sim.replies import json_reply
from wfbatch.sim.stability.book import StabilityBook
from wfbatch.sim.stability.images_in import image_size, read_form
from wfbatch.sim.state import SimState

PATH = "edit/inpaint"
CREDITS = 3.0
GROW_MASK = (0, 100)
PIXELS = (4_096, 9_437_184)
_FORMATS = {"png": ("PNG", "image/png"), "jpeg": ("JPEG", "image/jpeg"), "webp": ("WEBP", "image/webp")}

ErrorReply = Callable[..., Response]


def inpaint_problem(fields: dict[str, str], files: dict[str, bytes], styles: frozenset[str]) -> str | None:
    """The first thing Stability would refuse about an inpaint request (its `errors[]` text), or None."""
    if "image" not in files:
        return "image: required"
    prompt = fields.get("prompt", "")
    if not 1 <= len(prompt) <= 10_000:
        return "prompt: cannot be blank" if not prompt else "prompt: must be at most 10000 characters"
    size = image_size(files["image"])
    if isinstance(size, str):
        return size
    width, height = size
    if min(width, height) < 64 or not PIXELS[0] <= width * height <= PIXELS[1]:
        return "image: each side must be at least 64 pixels, and 4096 to 9437184 pixels in all"
    if "mask" in files:
        mask_size = image_size(files["mask"])
        if isinstance(mask_size, str):
            return mask_size.replace("image:", "mask:", 1)
        if mask_size != size:
            return (
                f"mask: must be the same size as the image ({width}x{height}),"
                f" not {mask_size[0]}x{mask_size[1]}"
            )
    elif not _has_alpha(files["image"]):
        return "mask: required when the image has no alpha channel"
    grow = fields.get("grow_mask")
    if grow is not None and (not grow.isdigit() or not GROW_MASK[0] <= int(grow) <= GROW_MASK[1]):
        return f"grow_mask: must be a whole number from {GROW_MASK[0]} to {GROW_MASK[1]}"
    if fields.get("output_format", "png") not in _FORMATS:
        return "output_format: must be one of png, jpeg, webp"
    seed = fields.get("seed", "0")
    if not seed.isdigit() or int(seed) > 4_294_967_294:
        return "seed: must be a number from 0 to 4294967294"
    preset = fields.get("style_preset")
    if preset is not None and preset not in styles:
        return "style_preset: invalid value"
    if "strength" in fields or "model" in fields:
        return "inpaint takes no strength or model"
    return None


def _has_alpha(data: bytes) -> bool:
    with Image.open(io.BytesIO(data)) as image:
        return "A" in image.getbands() or "transparency" in image.info


def painted(image_data: bytes, mask_data: bytes | None, fmt: str) -> tuple[bytes, str]:
    """The image with its masked part (mask white, else transparent) painted over: the result keeps
    the input's size, as Stability's inpaint does."""
    with Image.open(io.BytesIO(image_data)) as source:
        image = source.convert("RGBA")
    if mask_data is not None:
        with Image.open(io.BytesIO(mask_data)) as mask_source:
            where = mask_source.convert("L")
    else:
        where = image.getchannel("A").point(lambda alpha: 255 - alpha)
    fill = Image.new("RGBA", image.size, (200, 40, 160, 255))
    result = Image.composite(fill, image, where).convert("RGB")
    pil_format, media_type = _FORMATS.get(fmt, _FORMATS["png"])
    out = io.BytesIO()
    result.save(out, format=pil_format)
    return out.getvalue(), media_type


def inpaint_routes(
    state: SimState, book: StabilityBook, error: ErrorReply, styles: frozenset[str]
) -> list[Route]:
    options = state.options

    async def inpaint(request: Request) -> Response:
        state.count_request("inpaint")
        if not book.admit(state.clock()):
            return error(429, "rate_limit_exceeded", "rate limit exceeded; timed out")
        problem = state.auth_error(request.headers.get("authorization"))
        if problem is not None:
            return error(401, "unauthorized", problem)
        form = await read_form(request, book, error)
        if isinstance(form, Response):
            return form
        fields, files = form
        invalid = inpaint_problem(fields, files, styles)
        if invalid is not None:
            book.invalid += 1
            return error(400, "invalid_parameters", invalid)
        marker = options.moderation_marker
        if marker is not None and marker in fields["prompt"]:
            book.moderation_blocked += 1
            flagged = "Your request was flagged by our content moderation system; you were not charged."
            return error(403, "content_moderation", flagged)
        if not book.charge(CREDITS):
            return error(402, "payment_required", "You lack sufficient credits to make this request.")
        book.forms.append(dict(fields))
        book.received_files(PATH, files)
        book.inpainted()
        await asyncio.sleep(book.latency())
        data, media_type = painted(files["image"], files.get("mask"), fields.get("output_format", "png"))
        seed = fields.get("seed", "0")
        if request.headers.get("accept", "image/*").startswith("application/json"):
            answer = {"image": base64.b64encode(data).decode(), "finish_reason": "SUCCESS", "seed": int(seed)}
            return json_reply(answer, 200, {"content-type": f"application/json; type={media_type}"})
        return Response(data, 200, {"finish-reason": "SUCCESS", "seed": seed}, media_type=media_type)

    return [Route(f"/v2beta/stable-image/{PATH}", inpaint, methods=["POST"])]
