"""Replicate's files API and the pictures a prediction's input carries (providers.md §12.4).

`POST /v1/files` (multipart: a `content` file part, `filename`, `type`, `metadata`) answers `201
{id, name, content_type, size, checksums, created_at, expires_at, urls{get}}`, the file kept 24 h;
`GET /v1/files/{id}` its record, `GET /v1/files/{id}/download` its bytes (with the key).

A prediction's `image`, `mask` and `image_urls` are read as a model loads them: a data URI must
decode to an image and be under 1 MB, a URL of this files API must exist, any other https:// URL
is taken (it cannot be fetched from here). Anything else is a 422. Each picture received is booked
by sha256 (or the URL, for an outside one)."""

from __future__ import annotations

import base64
import binascii
import email.parser
import email.policy
import hashlib
import io
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from PIL import Image, UnidentifiedImageError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

PICTURE_FIELDS = ("image", "mask", "image_urls")
MAX_DATA_URI_BYTES = 1024 * 1024
KEPT_SECONDS = 24 * 3600


class ReplicateFiles:
    def __init__(self) -> None:
        self.files: dict[str, dict[str, Any]] = {}
        self.uploads: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _is_image(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return False
    return True


def picture_problem(model_input: dict[str, Any], files: ReplicateFiles, root: str) -> str | None:
    """The first picture a model could not load (Replicate's 422 detail line), else None."""
    seen: list[dict[str, Any]] = []
    for field in PICTURE_FIELDS:
        value = model_input.get(field)
        if value is None:
            continue
        for item in value if field == "image_urls" and isinstance(value, list) else [value]:
            if not isinstance(item, str):
                return f"- input.{field}: Invalid type. Expected: string"
            data: bytes | None = None
            if item.startswith("data:"):
                head, _, encoded = item.partition(",")
                try:
                    data = base64.b64decode(encoded, validate=True) if head.endswith(";base64") else None
                except (binascii.Error, ValueError):
                    data = None
                if data is None or not _is_image(data):
                    return f"- input.{field}: could not read the image in the data URI"
                if len(data) >= MAX_DATA_URI_BYTES:
                    return f"- input.{field}: a data URI must be under 1 MB: upload the file instead"
            elif item.startswith(f"{root}/files/"):
                record = files.files.get(item.rsplit("/", 1)[-1])
                if record is None:
                    return f"- input.{field}: the file {item} does not exist (or has expired)"
                data = record["data"]
            elif not item.startswith("https://"):
                return f"- input.{field}: Does not match format 'uri'"
            digest = hashlib.sha256(data).hexdigest() if data is not None else None
            how = "data_uri" if item.startswith("data:") else "url"
            seen.append({"field": field, "sha256": digest, "url": None if data else item, "as": how})
    files.received.extend(seen)
    return None


def file_routes(
    files: ReplicateFiles,
    authorized: Callable[[Request], Response | None],
    clock: Callable[[], float],
    api: str,
) -> list[Route]:
    def record(file_id: str, root: str) -> dict[str, Any]:
        found = files.files[file_id]
        return {key: value for key, value in found.items() if key != "data"} | {
            "urls": {"get": f"{root}{api}/files/{file_id}"}
        }

    async def create(request: Request) -> Response:
        refused = authorized(request)
        if refused is not None:
            return refused
        content_type = request.headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            return JSONResponse({"detail": "Expected multipart/form-data", "status": 415}, 415)
        parser = email.parser.BytesParser(policy=email.policy.HTTP)
        raw = b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + await request.body()
        message = parser.parsebytes(raw)
        parts = {
            part.get_param("name", header="content-disposition"): part for part in message.iter_parts()
        }
        content = parts.get("content")
        payload = content.get_payload(decode=True) if content is not None else None
        if content is None or content.get_filename() is None or not isinstance(payload, bytes) or not payload:
            return JSONResponse({"detail": "content: a file is required", "status": 400}, 400)
        now = clock()
        file_id = secrets.token_hex(12)
        digest = hashlib.sha256(payload).hexdigest()
        name_part = parts.get("filename")
        given = name_part.get_payload(decode=True) if name_part is not None else None
        name = given.decode("utf-8", "replace") if isinstance(given, bytes) else content.get_filename()
        files.files[file_id] = {
            "id": file_id,
            "name": name,
            "content_type": content.get_content_type(),
            "size": len(payload),
            "checksums": {"sha256": digest},
            "created_at": _iso(now),
            "expires_at": _iso(now + KEPT_SECONDS),
            "data": payload,
        }
        files.uploads.append({"sha256": digest, "id": file_id, "bytes": len(payload)})
        return JSONResponse(record(file_id, str(request.base_url).rstrip("/")), 201)

    async def get(request: Request) -> Response:
        refused = authorized(request)
        if refused is not None:
            return refused
        file_id = request.path_params["file_id"]
        if file_id not in files.files:
            return JSONResponse({"detail": "Not found.", "status": 404}, 404)
        return JSONResponse(record(file_id, str(request.base_url).rstrip("/")))

    async def download(request: Request) -> Response:
        refused = authorized(request)
        if refused is not None:
            return refused
        found = files.files.get(request.path_params["file_id"])
        if found is None:
            return JSONResponse({"detail": "Not found.", "status": 404}, 404)
        return Response(found["data"], media_type=found["content_type"])

    return [
        Route(f"{api}/files", create, methods=["POST"]),
        Route(f"{api}/files/{{file_id}}", get, methods=["GET"]),
        Route(f"{api}/files/{{file_id}}/download", download, methods=["GET"]),
    ]

