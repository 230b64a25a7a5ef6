"""fal's storage and the pictures a model input carries (providers.md §12.3).

`POST /storage/auth/token?storage_type=fal-cdn-v3` (with the key) answers a short-lived token and
the CDN's `base_url`; `POST {base_url}/files/upload` with `Authorization: <token_type> <token>`
and the raw bytes answers `{"access_url"}`, served at `/_sim/fal-uploads/…` like fal's CDN.
Every upload is booked by sha256 (`uploads`).

A submit's `image_url`, `mask_url` and `image_urls` are read like an endpoint that loads them: a
data URI must decode to an image, a URL of this CDN must exist, any other https:// URL is taken
(it cannot be fetched from here). A picture that is not one is a 422 `image_load_error`. Each
picture received is booked by sha256 (or the URL, for an outside one) in `received`."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import secrets
from collections.abc import Callable
from typing import Any

from PIL import Image, UnidentifiedImageError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wfbatch.sim.replies import json_reply

CDN = "/_sim/fal-cdn"
UPLOADS = "/_sim/fal-uploads"
PICTURE_FIELDS = ("image_url", "mask_url", "image_urls")


class FalStorage:
    """The simulated CDN: uploaded files by name, tokens handed out, what was uploaded."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        self.tokens: set[str] = set()
        self.uploads: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []


def _is_image(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return False
    return True


def picture_problem(body: dict[str, Any], storage: FalStorage, root: str) -> tuple[str, str] | None:
    """(field, message) of the first picture an endpoint could not load; books the others."""
    seen: list[dict[str, Any]] = []
    for field in PICTURE_FIELDS:
        value = body.get(field)
        values = value if field == "image_urls" and isinstance(value, list) else [value]
        if value is None:
            continue
        for item in values:
            if not isinstance(item, str):
                return field, "Input should be a valid URL or data URI"
            data: bytes | None = None
            if item.startswith("data:"):
                head, _, encoded = item.partition(",")
                try:
                    data = base64.b64decode(encoded, validate=True) if head.endswith(";base64") else None
                except (binascii.Error, ValueError):
                    data = None
                if data is None or not _is_image(data):
                    return field, "Failed to load the image from the data URI"
            elif item.startswith(f"{root}{UPLOADS}/"):
                found = storage.files.get(item.rsplit("/", 1)[-1])
                if found is None:
                    return field, "Failed to download the file: 404"
                data = found[0]
            elif not item.startswith("https://"):
                return field, "Input should be a valid URL (https://) or data URI"
            digest = hashlib.sha256(data).hexdigest() if data is not None else None
            how = "data_uri" if item.startswith("data:") else "url"
            outside = None if data is not None else item
            seen.append({"field": field, "sha256": digest, "url": outside, "as": how})
    storage.received.extend(seen)
    return None


def storage_routes(storage: FalStorage, authorized: Callable[[Request], Response | None]) -> list[Route]:
    async def token(request: Request) -> Response:
        refused = authorized(request)
        if refused is not None:
            return refused
        if request.query_params.get("storage_type") not in ("fal-cdn-v3", "fal-cdn"):
            return json_reply({"detail": "storage_type: unknown"}, 422)
        grant = secrets.token_hex(16)
        storage.tokens.add(grant)
        base = f"{str(request.base_url).rstrip('/')}{CDN}"
        return json_reply(
            {"token": grant, "token_type": "Bearer", "base_url": base, "expires_at": "2099-01-01T00:00:00Z"}
        )

    async def upload(request: Request) -> Response:
        scheme, _, grant = (request.headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or grant not in storage.tokens:
            return json_reply({"detail": "Unauthorized: a storage token is required"}, 401)
        data = await request.body()
        if not data:
            return json_reply({"detail": "empty upload"}, 400)
        content_type = request.headers.get("content-type", "application/octet-stream")
        digest = hashlib.sha256(data).hexdigest()
        name = f"{secrets.token_hex(8)}-{request.headers.get('x-fal-file-name', 'upload')}"
        storage.files[name] = (data, content_type)
        storage.uploads.append({"sha256": digest, "name": name, "bytes": len(data)})
        return json_reply({"access_url": f"{str(request.base_url).rstrip('/')}{UPLOADS}/{name}"})

    async def serve(request: Request) -> Response:
        found = storage.files.get(request.path_params["name"])
        if found is None:
            return Response(status_code=404)
        return Response(found[0], media_type=found[1])

    return [
        Route("/storage/auth/token", token, methods=["POST"]),
        Route(f"{CDN}/files/upload", upload, methods=["POST"]),
        Route(UPLOADS + "/{name}", serve, methods=["GET"]),
    ]

