"""OpenAI's error envelope read by `code`, then `type`, never by the message (providers.md §5.3):
one reading for a direct answer and for a batch output line's `response.body`."""

from __future__ import annotations

from typing import Any

from wfbatch.providers.errors import OutOfCredits, Permanent, ProviderError
from wfbatch.providers.http.classify import error_code, error_message

SAFETY_CODES = frozenset({"moderation_blocked", "content_policy_violation"})
QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})


def classify_body(body: Any, status: int | None, request_id: str | None) -> ProviderError | None:
    """A safety refusal is final for the prompt; a spent quota pauses the provider; None leaves the
    status mapping to decide."""
    code, kind = error_code(body)
    message = error_message(body) or f"HTTP {status}"
    if code in SAFETY_CODES or kind == "image_generation_user_error":
        return Permanent(
            f"openai: refused by the safety system ({code or kind}): {message}",
            status=status,
            request_id=request_id,
        )
    if code in QUOTA_CODES or kind == "insufficient_quota":
        return OutOfCredits(
            f"openai: out of quota ({code or kind}): {message}", status=status, request_id=request_id
        )
    return None
