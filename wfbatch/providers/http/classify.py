"""HTTP status -> typed error, shared by every provider (providers.md §8, "what a serious client
does"). A provider refines it from the body with its own `classify` hook; whatever the hook does not
decide falls back to `classify_status`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from wfbatch.providers.errors import (
    AuthenticationFailed,
    OutOfCredits,
    Permanent,
    ProviderError,
    RateLimited,
    Transient,
)
from wfbatch.providers.http import headers as hdr

_TAGS = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"\s+")
MESSAGE_LIMIT = 500
# A 403 whose error names the key is an authentication failure, not a per-request refusal.
_KEY_CODES = frozenset(
    {"invalid_api_key", "invalid_key", "authentication_error", "unauthorized", "api_key_invalid"}
)


def snippet(text: str, limit: int = 200) -> str:
    """Readable text from a non-JSON error body (a proxy's HTML page, say)."""
    return _SPACES.sub(" ", _TAGS.sub(" ", text)).strip()[:limit]


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, dict):
        for key in ("message", "error", "detail", "title", "code", "type"):
            found = _text(value.get(key))
            if found:
                return found
    return None


def error_message(body: Any) -> str | None:
    """`error` as a string or as `{message, type, code}`, else `message` / `detail` / `title`."""
    layers = [body] if isinstance(body, dict) else []
    if isinstance(body, dict) and isinstance(body.get("data"), dict):
        layers.append(body["data"])
    for layer in layers:
        for key in ("error", "message", "detail", "title"):
            found = _text(layer.get(key))
            if found:
                return found[:MESSAGE_LIMIT]
    return None


def error_code(body: Any) -> tuple[str | None, str | None]:
    """(`error.code`, `error.type`) of an OpenAI/Stripe-style envelope; (None, None) otherwise."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, None
    code, kind = error.get("code"), error.get("type")
    return (code if isinstance(code, str) else None, kind if isinstance(kind, str) else None)


def classify_status(
    provider: str,
    status: int,
    headers: Mapping[str, str],
    body: Any,
    message: str,
    *,
    request_id: str | None,
    now: float,
    reset_at: float | None = None,
    key_setting: str | None = None,
) -> ProviderError:
    """401/403-key -> AuthenticationFailed, 402 -> OutOfCredits, 429 -> RateLimited,
    408/409/425/5xx -> Transient, other 4xx -> Permanent, anything else unexpected -> Transient."""
    code, kind = error_code(body)
    if status == 401 or (status == 403 and (code in _KEY_CODES or kind in _KEY_CODES)):
        return authentication_failed(provider, status, code, message, request_id, key_setting)
    if status == 402:
        return OutOfCredits(message, status=status, request_id=request_id)
    if status == 429:
        delay = hdr.retry_after(headers, now)
        if delay is None and reset_at is not None:
            delay = max(0.0, reset_at - now)
        return RateLimited(message, retry_after=delay, status=status, request_id=request_id)
    if status in (408, 409, 425) or status >= 500:
        return Transient(message, status=status, request_id=request_id)
    if 400 <= status < 500:
        return Permanent(message, status=status, request_id=request_id)
    return Transient(f"unexpected HTTP {status}: {message}", status=status, request_id=request_id)


def authentication_failed(
    provider: str,
    status: int,
    code: str | None,
    message: str,
    request_id: str | None,
    key_setting: str | None,
) -> AuthenticationFailed:
    what = f"{status} {code}" if code else str(status)
    hint = f": check {key_setting}" if key_setting else ""
    return AuthenticationFailed(
        f"{provider}: authentication failed ({what}){hint} ({message})", status=status, request_id=request_id
    )


def obey_should_retry(error: ProviderError, headers: Mapping[str, str]) -> ProviderError:
    """`x-should-retry: false` is the server's verdict: what we would retry becomes final. (A `true`
    is not taken as licence to retry a 4xx we consider final: moderation stays final.)"""
    if hdr.should_retry(headers) is False and isinstance(error, Transient | RateLimited):
        return Permanent(
            f"{error.message} (the provider says not to retry)",
            status=error.status,
            request_id=error.request_id,
        )
    return error
