"""ComfyUI's `POST /upload/image` (providers.md §12.5, `server.py` `image_upload`): a multipart
`image` file part (its filename is the name stored), `type` input|temp|output, `subfolder`,
`overwrite`. The same name with the same bytes gives back the existing name and writes nothing;
other bytes under a taken name become `name (1).png`, ... unless `overwrite`. No format check (as
ComfyUI); a part too large is a 413. What was stored is booked by sha256 (`uploads`).

A graph's `LoadImage` reads `inputs.image` from the input folder (`subfolder/name`, or
`name [output]` from the outputs): a name that is not there fails validation as ComfyUI's
`Invalid image file`."""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import posixpath
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from wfbatch.sim.comfyui.server import ComfyServer
from wfbatch.sim.replies import json_reply

MAX_UPLOAD_BYTES = 100 * 1024 * 1024


def _form(content_type: str, body: bytes) -> tuple[dict[str, str], tuple[str, bytes] | None] | None:
    if not content_type.lower().startswith("multipart/form-data"):
        return None
    parser = email.parser.BytesParser(policy=email.policy.HTTP)
    message = parser.parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    if not message.is_multipart():
        return None
    fields: dict[str, str] = {}
    image: tuple[str, bytes] | None = None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(payload, bytes):
            continue
        filename = part.get_filename()
        if name == "image" and filename:
            image = (filename, payload)
        elif filename is None:
            fields[name] = payload.decode("utf-8", "replace")
    return fields, image


def _free_name(server: ComfyServer, path: str, data: bytes) -> tuple[str, bool]:
    """(stored path, write it): the same bytes under the name: kept as is; else `name (n).ext`."""
    stem, ext = posixpath.splitext(path)
    candidate, counter = path, 1
    while candidate in server.inputs:
        if server.inputs[candidate] == data:
            return candidate, False
        candidate = f"{stem} ({counter}){ext}"
        counter += 1
    return candidate, True


def upload_handler(server: ComfyServer) -> Any:
    async def upload(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_UPLOAD_BYTES:
            return Response(status_code=413)
        form = _form(request.headers.get("content-type", ""), body)
        if form is None or form[1] is None:
            return Response(status_code=400)
        fields, (filename, data) = form[0], form[1]
        kind = fields.get("type", "input")
        subfolder = fields.get("subfolder", "")
        name = posixpath.basename(filename)
        unsafe = ".." in subfolder or subfolder.startswith("/")
        if kind not in ("input", "temp", "output") or not name or unsafe:
            return Response(status_code=400)
        path = posixpath.join(subfolder, name) if subfolder else name
        overwrite = fields.get("overwrite", "").lower() in ("true", "1")
        with server._lock:
            stored, write = (path, True) if overwrite else _free_name(server, path, data)
            if write:
                server.inputs[stored] = data
            digest = hashlib.sha256(data).hexdigest()
            server.uploads.append({"name": stored, "sha256": digest, "written": write})
        return json_reply({"name": posixpath.basename(stored), "subfolder": subfolder, "type": kind})

    return upload
