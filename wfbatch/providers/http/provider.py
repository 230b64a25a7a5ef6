"""The one base of the HTTP providers: what each of them did the same way in its own constructor —
refuse settings that cannot work, take the base URL, build the `Authorization` header, open the
shared HTTP layer (gate → request → observe → classify) with the key registered as a secret to
scrub, take its label from its settings section — plus `__repr__` and `aclose`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

import httpx
from pydantic import SecretStr

from wfbatch.providers.base import ProviderDefaults, RequestGate
from wfbatch.providers.config import ProviderLimits
from wfbatch.providers.errors import ProviderError
from wfbatch.providers.http.headers import RateLimitDialect, no_dialect
from wfbatch.providers.http.layer import HttpAnswer, HttpLayer, HttpLimits

SettingsT = TypeVar("SettingsT", bound=ProviderLimits)


class ProviderConfigError(ValueError):
    """A provider's settings cannot work (no API key, no workflow, ...): the message says what to set."""


@dataclass(frozen=True)
class HttpStyle:
    """How a provider's API differs on the wire."""

    auth_scheme: str = "Bearer"
    """`Authorization: <scheme> <key>`; a section without an `api_key` sends no header."""
    dialect: RateLimitDialect = no_dialect
    """How its answers spell rate-limit headers (the registry's trait says the same to the limiter)."""
    request_id_header: str = "x-request-id"
    follow_redirects: bool = True


class HttpProvider(ProviderDefaults, Generic[SettingsT]):
    """A provider that talks to its API over HTTP. A subclass names itself and says how its API
    differs: how the key is sent, which rate-limit headers it speaks, how it reads error bodies."""

    name: ClassVar[str]
    config_error: ClassVar[type[ValueError]] = ProviderConfigError
    """Raised when the settings cannot work (each provider has its own subclass, for its tests)."""
    style: ClassVar[HttpStyle] = HttpStyle()

    def __init__(
        self,
        settings: SettingsT,
        gate: RequestGate,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        problems = settings.configuration_problems()
        if problems:
            raise self.config_error(problems[0])
        self._settings = settings
        base_url = getattr(settings, "base_url", "")
        # A provider with several servers (a list) keeps its own; `_base` is for the one-URL APIs.
        self._base = base_url.rstrip("/") if isinstance(base_url, str) else ""
        key = getattr(settings, "api_key", None)
        secret = key.get_secret_value() if isinstance(key, SecretStr) else None
        self._authorization = f"{self.style.auth_scheme} {secret}" if secret else ""
        self._http = HttpLayer(
            self.name,
            gate,
            HttpLimits.of(settings),
            secrets=[secret] if secret else [],
            key_setting=self._key_setting(settings) if secret else None,
            classify=self.read_error,
            dialect=self.style.dialect,
            request_id_header=self.style.request_id_header,
            transport=transport,
            follow_redirects=self.style.follow_redirects,
        )
        self.label = settings.label()

    def _key_setting(self, settings: SettingsT) -> str:
        """What a refused key's message says to check: the section's key, or the account's."""
        named = getattr(settings, "key_setting", None)
        return named(self.name) if callable(named) else f"WFBATCH_{self.name.upper()}__API_KEY"

    def read_error(self, answer: HttpAnswer) -> ProviderError | None:
        """The provider's reading of an error answer's body; None leaves it to the status mapping."""
        return None

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": self._authorization} if self._authorization else {}

    def __repr__(self) -> str:
        # Never the settings themselves: a section's repr would be safe (SecretStr), but what
        # people need in a log is what runs where.
        model = getattr(self._settings, "model", None)
        what = f"model={model!r}, " if model is not None else ""
        return f"{type(self).__name__}({what}base_url={self._base!r})"

    async def aclose(self) -> None:
        await self._http.aclose()
