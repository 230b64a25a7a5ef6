"""JSON answers and the one error shape of the API (`Problem`)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from wfbatch.core.api import Problem

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


async def read_body(request: Request, model: type[M]) -> M:
    body = await request.body()
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as error:
        detail = [
            {"loc": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in error.errors()
        ]
        raise ApiProblem(422, f"invalid {model.__name__} body", detail) from None


def query_int(request: Request, name: str, default: int, *, minimum: int = 0) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiProblem(400, f"{name} must be an integer, not {raw!r}") from None
    if value < minimum:
        raise ApiProblem(400, f"{name} must be at least {minimum}")
    return value
