"""OpenAI's Batch API route set (providers.md §6) on the simulator's clock:

`POST /v1/files` (multipart, purpose `batch`), `GET /v1/files` (`purpose`, `after`, `limit`),
`GET /v1/files/{id}/content`, `POST /v1/batches`,
`GET /v1/batches/{id}`, `GET /v1/batches` (`after`, `limit`; newest first),
`POST /v1/batches/{id}/cancel`.

A batch goes validating → in_progress → finalizing → completed, `batch_step` seconds each, computed
when it is looked at; its lines run in input order, evenly through in_progress. When it finishes,
every line that ran is answered as `POST /v1/images/generations` would (validation, moderation,
images) into an output file in a shuffled order (each line
`{id, custom_id, response:{status_code, request_id, body}, error}`), and the lines that did not run
(an expiry after `batch_expire_after` lines, a cancel before their turn) into the error file with
`response: null`: a cancel delivers the lines that ran before it, as the real API does (§6.1).
`batch_not_image_marker` / `batch_no_image_marker` spoil a paid line's answer (a `200` whose
`b64_json` is not an image, or whose `data` is empty), `batch_broken_image_marker` sends a PNG
signature over junk; `batch_cut_line_marker` cuts its output line short (not JSON);
`batch_server_error_marker` answers the line `500` (not made, not charged).
Creating a batch answers after the simulated latency (the batch exists before the answer leaves).
`batch_fail_input` rejects every input file (status `failed`, `errors.data`). A clean batch's
`error_file_id` is `""`, and one whose every line failed has `output_file_id: null`, as the real API
does (§6.2).
"""

from __future__ import annotations

import asyncio
import base64
import email.parser
import email.policy
import json
import math
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wfbatch.sim.openai.batch_book import SimBatch, SimFile
from wfbatch.sim.openai.book import OpenAIBook, OpenAIBooks
from wfbatch.sim.openai.options import OpenAIOptions
from wfbatch.sim.openai.request import ApiError, Generation, parse_generation
from wfbatch.sim.replies import json_reply
from wfbatch.sim.state import SimState

API = "/v1"
ENDPOINTS = ("/v1/images/generations", "/v1/images/edits")
MAX_LINES = 50_000
MAX_FILE_BYTES = 200 * 1024 * 1024
PHASES = ("validating", "in_progress", "finalizing")
_CUT = "_cut"
"""Marks an output line to be cut short when written (never itself written)."""

AuthCheck = Callable[[str | None], ApiError | None]
Render = Callable[[OpenAIBook, Generation, float, str], dict[str, Any]]


def _error(status: int, message: str, code: str | None = None, param: str | None = None) -> Response:
    return json_reply(ApiError(status, message, code=code, param=param).body(), status)


def _file_object(stored: SimFile) -> dict[str, Any]:
    return {
        "id": stored.id,
        "object": "file",
        "bytes": len(stored.content),
        "created_at": stored.created_at,
        "filename": stored.filename,
        "purpose": stored.purpose,
        "status": "processed",
    }


def _batch_object(batch: SimBatch) -> dict[str, Any]:
    return {
        "id": batch.id,
        "object": "batch",
        "endpoint": batch.endpoint,
        "errors": {"object": "list", "data": batch.errors} if batch.errors else None,
        "input_file_id": batch.input_file_id,
        "completion_window": "24h",
        "status": batch.status,
        "output_file_id": batch.output_file_id,
        # A clean batch says "" here, not null (client: tobert/kaibo PR #93).
        "error_file_id": batch.error_file_id
        if batch.error_file_id is not None
        else ("" if batch.finished_at is not None else None),
        "created_at": int(batch.created_at),
        "in_progress_at": None,
        "expires_at": int(batch.created_at + 86400),
        "completed_at": int(batch.finished_at) if batch.status == "completed" and batch.finished_at else None,
        "request_counts": {
            "total": len(batch.lines),
            "completed": batch.completed,
            "failed": batch.failed,
        },
        "metadata": batch.metadata,
    }


def _parse_lines(content: bytes) -> list[dict[str, Any]] | list[dict[str, Any]] | str:
    """The input file's lines, or what is wrong with it (one message)."""
    lines: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, raw in enumerate(content.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            return f"line {number}: not valid JSON"
        if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
            return f"line {number}: missing custom_id"
        if line["custom_id"] in seen:
            return f"line {number}: duplicate custom_id {line['custom_id']!r}"
        if (
            line.get("method") != "POST"
            or line.get("url") not in ENDPOINTS
            or not isinstance(line.get("body"), dict)
        ):
            return f"line {number}: method must be POST, url an images endpoint, body an object"
        seen.add(line["custom_id"])
        lines.append(line)
    if not lines:
        return "the file has no requests"
    if len(lines) > MAX_LINES:
        return f"more than {MAX_LINES} requests"
    return lines


class _Batches:
    def __init__(self, state: SimState, auth: AuthCheck, render: Render) -> None:
        self.state = state
        books = state.book_as(OpenAIBooks)
        self.book = books.batches
        self.images = books.images
        self.own = OpenAIOptions.of(state.options)
        self.auth = auth
        self.render = render

    def _refused(self, request: Request) -> Response | None:
        problem = self.auth(request.headers.get("authorization"))
        return None if problem is None else json_reply(problem.body(), problem.status)

    async def upload(self, request: Request) -> Response:
        self.state.count_request("files")
        refused = self._refused(request)
        if refused is not None:
            return refused
        body = await request.body()
        if len(body) > MAX_FILE_BYTES + 64 * 1024:
            return _error(413, f"File too large: the limit is {MAX_FILE_BYTES} bytes.")
        header = f"Content-Type: {request.headers.get('content-type', '')}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + body)
        if not message.is_multipart():
            return _error(400, "Expected a multipart/form-data body.")
        purpose: str | None = None
        upload: tuple[str, bytes] | None = None
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
            if name == "purpose":
                purpose = data.decode("utf-8", "replace").strip()
            elif name == "file":
                upload = (str(part.get_filename() or "upload"), data)
        if purpose is None:
            return _error(400, "Missing required parameter: 'purpose'.", param="purpose")
        if upload is None:
            return _error(400, "Missing required parameter: 'file'.", param="file")
        stored = self.book.add_file(upload[0], purpose, upload[1], self.state.clock())
        return json_reply(_file_object(stored))

    async def files(self, request: Request) -> Response:
        """`GET /v1/files` (`purpose`, `after`, `limit`), newest first."""
        self.state.count_request("files")
        refused = self._refused(request)
        if refused is not None:
            return refused
        purpose = request.query_params.get("purpose")
        try:
            limit = max(1, min(10_000, int(request.query_params.get("limit", "10000"))))
        except ValueError:
            return _error(400, "Invalid 'limit'.", param="limit")
        stored = [f for f in reversed(list(self.book.files.values())) if purpose in (None, f.purpose)]
        after = request.query_params.get("after")
        if after is not None:
            ids = [f.id for f in stored]
            stored = stored[ids.index(after) + 1 :] if after in ids else []
        page = stored[:limit]
        return json_reply(
            {"object": "list", "data": [_file_object(f) for f in page], "has_more": len(stored) > limit}
        )

    async def content(self, request: Request) -> Response:
        self.state.count_request("files")
        refused = self._refused(request)
        if refused is not None:
            return refused
        stored = self.book.files.get(str(request.path_params["file_id"]))
        if stored is None:
            return _error(404, "No such File object.", code="not_found")
        return Response(stored.content, media_type="application/jsonl")

    async def create(self, request: Request) -> Response:
        self.state.count_request("batches")
        refused = self._refused(request)
        if refused is not None:
            return refused
        try:
            data = json.loads(await request.body())
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return _error(400, "We could not parse the JSON body of your request.")
        if data.get("endpoint") not in ENDPOINTS:
            return _error(400, "Invalid value for 'endpoint'.", param="endpoint", code="invalid_value")
        if data.get("completion_window") != "24h":
            return _error(400, "Invalid value for 'completion_window'.", param="completion_window")
        metadata = data.get("metadata") or {}
        if not isinstance(metadata, dict) or len(metadata) > 16:
            return _error(400, "Invalid 'metadata'.", param="metadata")
        stored = self.book.files.get(str(data.get("input_file_id")))
        if stored is None or stored.purpose != "batch":
            return _error(400, "Invalid 'input_file_id': no batch file with that id.", param="input_file_id")
        now = self.state.clock()
        parsed = _parse_lines(stored.content)
        batch = SimBatch(
            id=f"batch_{uuid.uuid4().hex[:24]}",
            input_file_id=stored.id,
            endpoint=str(data["endpoint"]),
            metadata={str(k): str(v) for k, v in metadata.items()},
            created_at=now,
            lines=parsed if isinstance(parsed, list) else [],
        )
        if isinstance(parsed, str) or self.own.batch_fail_input:
            reason = parsed if isinstance(parsed, str) else "line 1: invalid request (batch_fail_input)"
            batch.errors = [{"code": "invalid_request", "message": reason, "param": None, "line": 1}]
        self.book.add_batch(batch)
        # Created before the answer goes out: a client that dies while waiting left a batch behind.
        await asyncio.sleep(self.images.draw_latency())
        return json_reply(_batch_object(batch))

    async def _named(self, request: Request) -> SimBatch | Response:
        """The batch the path names, moved on to now; or the answer that refuses the request."""
        self.state.count_request("batches")
        refused = self._refused(request)
        if refused is not None:
            return refused
        batch = self.book.batches.get(str(request.path_params["batch_id"]))
        if batch is None:
            return _error(404, "No batch found with that id.", code="not_found")
        await self._advance(batch, str(request.base_url).rstrip("/"))
        return batch

    async def get(self, request: Request) -> Response:
        batch = await self._named(request)
        return batch if isinstance(batch, Response) else json_reply(_batch_object(batch))

    async def listing(self, request: Request) -> Response:
        self.state.count_request("batches")
        refused = self._refused(request)
        if refused is not None:
            return refused
        try:
            limit = max(1, min(100, int(request.query_params.get("limit", "20"))))
        except ValueError:
            return _error(400, "Invalid 'limit'.", param="limit")
        after = request.query_params.get("after")
        newest_first = sorted(self.book.batches.values(), key=lambda b: (b.created_at, b.id), reverse=True)
        if after is not None:
            ids = [b.id for b in newest_first]
            newest_first = newest_first[ids.index(after) + 1 :] if after in ids else []
        page = newest_first[:limit]
        root = str(request.base_url).rstrip("/")
        for batch in page:
            await self._advance(batch, root)
        return json_reply(
            {
                "object": "list",
                "data": [_batch_object(b) for b in page],
                "first_id": page[0].id if page else None,
                "last_id": page[-1].id if page else None,
                "has_more": len(newest_first) > limit,
            }
        )

    async def cancel(self, request: Request) -> Response:
        batch = await self._named(request)
        if isinstance(batch, Response):
            return batch
        if batch.finished_at is not None:
            return _error(409, f"Cannot cancel a batch with status '{batch.status}'.")
        batch.cancelled_at = self.state.clock()
        self.book.count_cancel()
        await self._advance(batch, str(request.base_url).rstrip("/"))
        return json_reply(_batch_object(batch))

    # -- the clock ---------------------------------------------------------------------------

    async def _advance(self, batch: SimBatch, root: str) -> None:
        if batch.finished_at is not None or batch.finishing:
            return
        now = self.state.clock()
        step = self.own.batch_step
        if batch.errors:
            if now >= batch.created_at + step:
                batch.status = "failed"
                batch.finished_at = now
            return
        if batch.cancelled_at is not None:
            await self._finish(batch, root, "cancelled", ran=self._ran_by(batch, batch.cancelled_at))
            return
        phase = int((now - batch.created_at) // step) if step > 0 else len(PHASES)
        if phase < len(PHASES):
            batch.status = PHASES[phase]
            return
        expire_after = self.own.batch_expire_after
        if expire_after is not None and expire_after < len(batch.lines):
            await self._finish(batch, root, "expired", ran=expire_after)
        else:
            await self._finish(batch, root, "completed", ran=len(batch.lines))

    def _ran_by(self, batch: SimBatch, at: float) -> int:
        """Lines run by `at`: in input order, evenly through the in_progress phase (the second)."""
        step = self.own.batch_step
        if step <= 0:
            return len(batch.lines)
        progress = (at - batch.created_at) / step - 1
        return max(0, min(len(batch.lines), math.floor(len(batch.lines) * progress)))

    async def _finish(self, batch: SimBatch, root: str, status: str, *, ran: int) -> None:
        batch.finishing = True  # two looks at once must not run the lines twice
        now = self.state.clock()
        outputs = await asyncio.to_thread(self._run_lines, batch.lines[:ran], now, root)
        errors = [
            {
                "id": f"batch_req_{uuid.uuid4().hex[:24]}",
                "custom_id": line["custom_id"],
                "response": None,
                "error": {
                    "code": "batch_expired" if status == "expired" else "batch_cancelled",
                    "message": "This line could not be executed before the batch "
                    + ("expired." if status == "expired" else "was cancelled."),
                },
            }
            for line in batch.lines[ran:]
        ]
        ok = [o for o in outputs if o["response"]["status_code"] == 200]
        refused = [o for o in outputs if o["response"]["status_code"] != 200]
        batch.completed = len(ok)
        batch.failed = len(refused)
        self.book.shuffle(ok)  # output order is not input order (§6.2)
        if ok:
            batch.output_file_id = self._jsonl(ok, now)
        # Lines answered with an error go to the error file, as do lines that never ran.
        if refused or errors:
            batch.error_file_id = self._jsonl(refused + errors, now)
        batch.status = status
        batch.finished_at = now

    def _jsonl(self, lines: list[dict[str, Any]], now: float) -> str:
        content = b"".join(_encoded(line) for line in lines)
        return self.book.add_file("batch_output.jsonl", "batch_output", content, now).id

    def _run_lines(self, lines: list[dict[str, Any]], now: float, root: str) -> list[dict[str, Any]]:
        out = []
        for line in lines:
            request_id = f"req_{uuid.uuid4().hex}"
            generation = parse_generation(json.dumps(line["body"]).encode())
            status, body = 200, {}
            if isinstance(generation, ApiError):
                self.images.count_invalid()
                status, body = generation.status, generation.body()
            elif self.images.blocked_by_moderation(generation.prompt):
                status = 400
                body = ApiError(
                    400,
                    "Your request was rejected by the safety system.",
                    type="image_generation_user_error",
                    code="moderation_blocked",
                ).body()
            elif self._marked(generation.prompt, self.own.batch_server_error_marker):
                # The line failed on the server's side: answered 500, nothing made or charged.
                status = 500
                body = ApiError(
                    500, "The server had an error processing your request.", type="server_error"
                ).body()
            else:
                body = self._spoiled(generation.prompt, self.render(self.images, generation, now, root))
            cut = self.own.batch_cut_line_marker
            out.append(
                {
                    "id": f"batch_req_{uuid.uuid4().hex[:24]}",
                    "custom_id": line["custom_id"],
                    "response": {"status_code": status, "request_id": request_id, "body": body},
                    "error": None,
                    _CUT: cut is not None and cut in str(line["body"].get("prompt", "")),
                }
            )
        return out

    @staticmethod
    def _marked(prompt: str, marker: str | None) -> bool:
        return marker is not None and marker in prompt

    def _spoiled(self, prompt: str, body: dict[str, Any]) -> dict[str, Any]:
        """A made (and paid) image's answer, spoiled where the options ask for a hostile line."""
        o = self.own
        if o.batch_no_image_marker is not None and o.batch_no_image_marker in prompt:
            return {**body, "data": []}
        if o.batch_not_image_marker is not None and o.batch_not_image_marker in prompt:
            garbage = base64.b64encode(b"<html>this is not an image</html>").decode("ascii")
            return {**body, "data": [{"b64_json": garbage}]}
        if o.batch_broken_image_marker is not None and o.batch_broken_image_marker in prompt:
            broken = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00junk" * 64).decode("ascii")
            return {**body, "data": [{"b64_json": broken}]}
        return body


def _encoded(line: dict[str, Any]) -> bytes:
    """One JSONL line of an output or error file (cut short where `batch_cut_line_marker` says)."""
    cut = bool(line.pop(_CUT, False))
    raw = json.dumps(line).encode()
    return (raw[: len(raw) // 2] if cut else raw) + b"\n"


def batch_routes(state: SimState, auth: AuthCheck, render: Render) -> list[Route]:
    batches = _Batches(state, auth, render)
    routes: list[tuple[str, Callable[[Request], Awaitable[Response]], str]] = [
        (f"{API}/files", batches.upload, "POST"),
        (f"{API}/files", batches.files, "GET"),
        (f"{API}/files/{{file_id}}/content", batches.content, "GET"),
        (f"{API}/batches", batches.create, "POST"),
        (f"{API}/batches", batches.listing, "GET"),
        (f"{API}/batches/{{batch_id}}", batches.get, "GET"),
        (f"{API}/batches/{{batch_id}}/cancel", batches.cancel, "POST"),
    ]
    return [Route(path, endpoint, methods=[method]) for path, endpoint, method in routes]
