"""Secrets a provider echoes back never leave the HTTP layer.

A server may put the key it was sent into a request id, an execution id, a URL or an error message;
each of those is stored (SQLite, manifest.json) and served (/v1/jobs). Every string that comes from a
provider goes through `Scrubber` first.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

REDACTED = "[redacted]"
_MIN_SECRET = 6  # shorter "secrets" would redact ordinary words


class Scrubber:
    def __init__(self, secrets: Iterable[str | None]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            secret = (secret or "").strip()
            if len(secret) < _MIN_SECRET:
                continue
            # The key as sent (`Bearer …`/`Key …` contain it), URL-encoded, and in JSON's escaped form.
            forms.update({secret, quote(secret, safe=""), secret.replace("/", "\\/")})
        # Longest first: a form containing another is replaced whole.
        self._forms = sorted(forms, key=len, reverse=True)

    def text(self, value: str) -> str:
        for form in self._forms:
            if form in value:
                value = value.replace(form, REDACTED)
        return value

    def optional(self, value: str | None) -> str | None:
        return None if value is None else self.text(value)

    def json(self, value: Any) -> Any:
        """Every string (keys too) in decoded JSON, recursively."""
        if not self._forms:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.json(item) for item in value]
        if isinstance(value, dict):
            return {self.text(str(k)): self.json(v) for k, v in value.items()}
        return value
