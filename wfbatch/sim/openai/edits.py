"""`CreateImageEditRequest` as multipart/form-data (providers.md §12.1), checked the way the real
API checks it: file parts `image` (one) or repeated `image[]` (several, at most 16; png/webp/jpg
under 50 MB each; dall-e-2: one square PNG under 4 MB), an optional `mask` (PNG under 4 MB, the
first image's size), the text fields a generation takes except `moderation` and `style` (JSON
only / dall-e-3), plus `input_fidelity` (high|low; not gpt-image-1-mini). dall-e-3 cannot edit.

What passes becomes a `Generation` (the same answer as `/images/generations`), and every picture
received is listed by sha256 for the book (`received`)."""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import io
import json
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError

from wfbatch.sim.openai.request import ApiError, Generation, parse_generation

EDIT_TEXT_FIELDS = (
    "prompt",
    "model",
    "n",
    "size",
    "quality",
    "response_format",
    "output_format",
    "output_compression",
    "background",
    "input_fidelity",
    "stream",
    "partial_images",
    "user",
)
DEFAULT_EDIT_MODEL = "gpt-image-1.5"
_INTEGERS = ("n", "output_compression", "partial_images")
_TAKEN = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None
    data: bytes


@dataclass(frozen=True)
class Edit:
    generation: Generation
    received: list[dict[str, Any]]


def _parts(content_type: str, body: bytes) -> list[Part] | None:
    if not content_type.lower().startswith("multipart/form-data"):
        return None
    parser = email.parser.BytesParser(policy=email.policy.HTTP)
    message = parser.parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    if not message.is_multipart():
        return None
    parts: list[Part] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            parts.append(Part(name, part.get_filename(), payload))
    return parts


def _invalid_image(param: str, message: str) -> ApiError:
    return ApiError(400, message, param=param, code="invalid_image")


def _picture(part: Part) -> tuple[str, tuple[int, int]] | ApiError:
    try:
        with Image.open(io.BytesIO(part.data)) as image:
            fmt = image.format or ""
            size = image.size
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        invalid = "Invalid image file or mode for image, please check your image file."
        return _invalid_image(part.name, invalid)
    if fmt not in _TAKEN:
        return _invalid_image(
            part.name, f"Invalid image format for {part.name}: supported formats are png, webp and jpeg."
        )
    return _TAKEN[fmt], size


def parse_edit(content_type: str, body: bytes) -> Edit | ApiError:
    parts = _parts(content_type, body)
    if parts is None:
        return ApiError(400, "Invalid Content-Type header: edits are read as multipart/form-data here.")
    fields: dict[str, Any] = {}
    images: list[Part] = []
    mask: Part | None = None
    names_used: set[str] = set()
    for part in parts:
        if part.name in ("image", "image[]"):
            if part.filename is None:
                message = f"'{part.name}' must be a file upload."
                return ApiError(400, message, param="image", code="invalid_type")
            images.append(part)
            names_used.add(part.name)
        elif part.name == "mask":
            if part.filename is None:
                return ApiError(400, "'mask' must be a file upload.", param="mask", code="invalid_type")
            mask = part
        elif part.name not in EDIT_TEXT_FIELDS:
            message = f"Unrecognized request argument supplied: {part.name}"
            return ApiError(400, message, param=part.name, code="unknown_parameter")
        else:
            fields[part.name] = part.data.decode("utf-8", "replace")
    if not images:
        missing = "Missing required parameter: 'image'."
        return ApiError(400, missing, param="image", code="missing_required_parameter")
    if names_used == {"image", "image[]"}:
        return ApiError(400, "Give the images either as 'image' or as 'image[]', not both.", param="image")
    model = fields.get("model") or DEFAULT_EDIT_MODEL
    fields["model"] = model
    if model == "dall-e-3":
        message = "Invalid model dall-e-3. The model must be one of gpt-image-* or dall-e-2."
        return ApiError(400, message, param="model")
    for name in _INTEGERS:
        if name in fields:
            try:
                fields[name] = int(fields[name])
            except ValueError:
                message = f"Invalid type for '{name}': expected an integer."
                return ApiError(400, message, param=name, code="invalid_type")
    if "stream" in fields:
        fields["stream"] = fields["stream"] == "true"
    fidelity = fields.pop("input_fidelity", None)
    if fidelity is not None:
        if fidelity not in ("high", "low"):
            message = f"Invalid value: '{fidelity}'. Supported values are: 'high' and 'low'."
            return ApiError(400, message, param="input_fidelity", code="invalid_value")
        if model in ("gpt-image-1-mini", "dall-e-2"):
            return ApiError(400, f"input_fidelity is not supported for {model}.", param="input_fidelity")
    if len(images) > 16:
        return ApiError(400, "Too many images: at most 16.", param="image")
    received: list[dict[str, Any]] = []
    first_size: tuple[int, int] | None = None
    for part in images:
        checked = _picture(part)
        if isinstance(checked, ApiError):
            return checked
        media_type, size = checked
        if len(part.data) >= 50 * 1024 * 1024:
            return _invalid_image("image", "Each image must be smaller than 50 MB.")
        small = len(part.data) < 4 * 1024 * 1024
        small_square_png = media_type == "image/png" and size[0] == size[1] and small
        if model == "dall-e-2" and (len(images) > 1 or not small_square_png):
            return _invalid_image("image", "dall-e-2 edits one square PNG image smaller than 4 MB.")
        first_size = first_size or size
        received.append(_seen(part))
    if mask is not None:
        checked = _picture(mask)
        if isinstance(checked, ApiError):
            return checked
        media_type, size = checked
        if media_type != "image/png" or len(mask.data) >= 4 * 1024 * 1024:
            return _invalid_image("mask", "The mask must be a PNG smaller than 4 MB.")
        if size != first_size:
            return _invalid_image("mask", "Invalid mask: the mask and the image must be the same size.")
        received.append(_seen(mask))
    generation = parse_generation(json.dumps(fields).encode())
    if isinstance(generation, ApiError):
        return generation
    return Edit(generation, received)


def _seen(part: Part) -> dict[str, Any]:
    return {"endpoint": "images/edits", "field": part.name, "sha256": hashlib.sha256(part.data).hexdigest()}
