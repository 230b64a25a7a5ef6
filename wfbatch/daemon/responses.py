"""JSON answers and the one error shape of the API (`Problem`)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from wfbatch.core.parsing import MAX_FILE_BYTES
from wfbatch.protocol import MAX_ID, Problem

# The biggest body is a submit carrying a whole prompt file: the file cap plus room for JSON.
MAX_BODY_BYTES = MAX_FILE_BYTES + 1024 * 1024

M = TypeVar("M", bound=BaseModel)


class ApiProblem(Exception):
    """Answer with `status` and a Problem body."""

    def __init__(self, status: int, error: str, detail: Any = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.detail = detail


def model_response(model: BaseModel | list[Any], status: int = 200) -> JSONResponse:
    if isinstance(model, list):
        return JSONResponse([m.model_dump(mode="json") for m in model], status_code=status)
    return JSONResponse(model.model_dump(mode="json"), status_code=status)


def problem_response(status: int, error: str, detail: Any = None) -> JSONResponse:
    return JSONResponse(Problem(error=error, detail=detail).model_dump(mode="json"), status_code=status)


async def _bounded_body(request: Request) -> bytes:
    """The body, refused with 413 as soon as it passes MAX_BODY_BYTES (never buffered whole)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiProblem(413, f"the request body is over {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiProblem(413, f"the request body is over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_body(request: Request, model: type[M]) -> M:
    body = await _bounded_body(request)
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as error:
        detail = [
            {"loc": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in error.errors()
        ]
        raise ApiProblem(422, f"invalid {model.__name__} body", detail) from None


def query_int(request: Request, name: str, default: int, *, minimum: int = 0, maximum: int = MAX_ID) -> int:
    """An integer query parameter; 422 when it is not one or lies outside [minimum, maximum]
    (the store cannot take anything past a signed 64-bit integer)."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiProblem(422, f"{name} must be an integer, not {raw[:40]!r}") from None
    if not minimum <= value <= maximum:
        raise ApiProblem(422, f"{name} must be between {minimum} and {maximum}")
    return value


def path_job_id(request: Request) -> int:
    """The `{job_id}` of the path: 400 when it is not a number, 404 when no job can have it."""
    raw = str(request.path_params["job_id"])
    try:
        job_id = int(raw)
    except ValueError:
        raise ApiProblem(400, f"a job id is a number, not {raw[:40]!r}") from None
    if not 1 <= job_id <= MAX_ID:
        raise ApiProblem(404, f"no job {raw[:40]}")
    return job_id
