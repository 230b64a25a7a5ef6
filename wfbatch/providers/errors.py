"""The few typed errors a provider raises. Each carries what a user needs to act on a failure:
the HTTP status, the provider's message and the provider's request id.

Account-level errors (`OutOfCredits`, `AuthenticationFailed`, `Unreachable`) concern every job of the
provider, not the one that met them: the engine pauses the provider and keeps the jobs queued.
`AuthenticationFailed` subclasses `Permanent` and `Unreachable` subclasses `Transient` so an engine
that does not handle them yet still does the conservative thing (fail / retry); handle them before
their base classes."""

from __future__ import annotations

from typing import Any

from wfbatch.core.states import ErrorClass
from wfbatch.providers.base import Image


class ProviderError(Exception):
    """Base of every error a provider raises."""

    error_class: ErrorClass = ErrorClass.TRANSIENT

    def __init__(self, message: str, *, status: int | None = None, request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id
        self.connection_failed = False
        """True when no connection could be made (refused, DNS, TLS, connect timeout): what
        `Unreachable` counts. The request's bytes never left."""
        self.start_not_sent = False
        """True when this is a start request that could not connect: nothing was created, so the
        job's execution is known not to exist (a retry is a first send, not a re-send)."""


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


class PaidRejection(Permanent):
    """A paid image that is not a success (Stability's `CONTENT_FILTERED`: a 200 with a blurred
    image, charged). The job fails; the engine first keeps `image` in the batch folder's rejected/
    and books `credits_used`, so the charge is visible."""

    def __init__(
        self,
        message: str,
        *,
        image: Image,
        credits_used: float | None,
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, status=status, request_id=request_id)
        self.image = image
        self.credits_used = credits_used


class AuthenticationFailed(Permanent):
    """401, or a 403 that names the key: no job can succeed until the key is fixed."""

    error_class = ErrorClass.AUTHENTICATION


class Unreachable(Transient):
    """Several consecutive connection failures: the provider is down or unreachable from here."""

    error_class = ErrorClass.UNREACHABLE
