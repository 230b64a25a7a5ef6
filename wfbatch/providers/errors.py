"""The few typed errors a provider raises. Each carries what a user needs to act on a failure:
the HTTP status, the provider's message and the provider's request id."""

from __future__ import annotations

from typing import Any

from wfbatch.core.states import ErrorClass


class ProviderError(Exception):
    """Base of every error a provider raises."""

    error_class: ErrorClass = ErrorClass.TRANSIENT

    def __init__(self, message: str, *, status: int | None = None, request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id


class RateLimited(ProviderError):
    """429: slow down the whole provider until `retry_after` seconds have passed."""

    error_class = ErrorClass.RATE_LIMITED

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None,
        status: int | None = 429,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, status=status, request_id=request_id)
        self.retry_after = retry_after


class OutOfCredits(ProviderError):
    """402 (or a quota refusal): pause the provider and keep the jobs queued."""

    error_class = ErrorClass.OUT_OF_CREDITS

    def __init__(
        self,
        message: str,
        *,
        required: float | None = None,
        available: float | None = None,
        breakdown: list[dict[str, Any]] | None = None,
        status: int | None = 402,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, status=status, request_id=request_id)
        self.required = required
        self.available = available
        self.breakdown = breakdown or []


class Transient(ProviderError):
    """5xx, timeouts, connection resets, malformed bodies: retry with backoff."""

    error_class = ErrorClass.TRANSIENT


class Permanent(ProviderError):
    """400, 401, 403, 404, 422, content policy, a failed execution: fail the job at once."""

    error_class = ErrorClass.PERMANENT
