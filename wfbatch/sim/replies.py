"""Response helpers: JSON bodies, Wireflow's two error envelopes, and numbers printed the way a
JSON API prints them (10, not 10.0)."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from wfbatch.sim.options import ErrorStyle

# Error `type`s of the newer envelope, per status (from the client notes in providers.md §1.10).
_ERROR_TYPES = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("authentication_error", "invalid_api_key"),
    402: ("insufficient_credits_error", "insufficient_credits"),
    403: ("invalid_request_error", "forbidden"),
    404: ("invalid_request_error", "not_found"),
    409: ("conflict_error", "idempotency_conflict"),
    413: ("invalid_request_error", "payload_too_large"),
    422: ("invalid_request_error", "invalid_graph"),
    429: ("rate_limit_error", "rate_limited"),
}


def number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def json_reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


def error_reply(
    status: int,
    message: str,
    style: ErrorStyle,
    *,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> JSONResponse:
    """`{"error": "msg", ...context}` or `{"error": {"type", "code", "message"}, ...context}`."""
    error_type, default_code = _ERROR_TYPES.get(status, ("api_error", "server_error"))
    error: Any = message
    if style == "object":
        error = {"type": error_type, "code": code or default_code, "message": message}
    return json_reply({"error": error, **context}, status, headers)
