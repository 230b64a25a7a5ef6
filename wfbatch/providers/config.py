"""What every provider's settings section shares: the limits and retry policy (`ProviderLimits`),
the fields of a batch mode (`BatchModeSettings`), and the helpers sections use for their checks and
labels. Each provider's own section lives in its package (`providers/<name>/settings.py`);
`wfbatch.settings` composes them from the registry."""

from __future__ import annotations

from typing import Literal, Protocol
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr


class ProviderLimits(BaseModel):
    """Limits and retry policy shared by every provider. `None` means unknown: the limiter adapts."""

    requests_per_minute: int | None = Field(default=None, ge=1)
    executions_per_minute: int | None = Field(default=None, ge=1)
    max_in_flight: int = Field(default=4, ge=1, le=1000)

    def configuration_problems(self) -> list[str]:
        """What keeps this provider from working as configured (a missing key, ...), said so a
        person can fix it; checked when prompts are accepted, without building a client."""
        return []

    def label(self) -> str:
        """How results of this provider are labelled for people: its name and what it runs where."""
        raise NotImplementedError(f"{type(self).__name__} does not say how its results are labelled")

    daily_executions: int | None = Field(default=None, ge=1)
    max_attempts: int = Field(default=5, ge=1, le=100)
    backoff_initial: float = Field(default=2.0, gt=0, description="seconds before the first retry")
    backoff_max: float = Field(default=300.0, gt=0)
    poll_initial: float = Field(default=1.0, gt=0)
    poll_factor: float = Field(default=1.5, ge=1.0)
    poll_max: float = Field(default=10.0, gt=0)
    request_timeout: float = Field(default=60.0, gt=0, description="seconds per connect / read / write")
    request_deadline: float = Field(
        default=120.0,
        gt=0,
        description="seconds for a whole request, body included: a trickling answer ends here",
    )
    max_response_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024, description="largest answer (image or JSON) read before aborting"
    )
    unreachable_after: int = Field(
        default=3,
        ge=1,
        description="consecutive connection failures before the provider counts as unreachable",
    )
    max_run_seconds: float = Field(
        default=3600.0, gt=0, description="an execution still running after this long counts as a failed try"
    )
    costs: dict[str, float] = Field(
        default_factory=dict, description="credits per image by model name; key 'default' for any model"
    )
    daily_credit_cap: float | None = Field(default=None, ge=0)
    expected_latency: float | None = Field(
        default=None, ge=0, description="seconds an execution takes, for `wfbatch plan` before any history"
    )
    rate_window_seconds: float = Field(
        default=60.0,
        gt=0,
        description="length of the per-minute windows: 60 for a real provider; shorter only to rehearse "
        "against a simulator started with the same --window",
    )


class BatchModeSettings(ProviderLimits):
    """A provider with a batch API (its registry traits say `batch_api`): the engine's remote-batch
    loop reads these fields, whichever provider the section belongs to."""

    model: str = Field(default="", description="used when an entry names no model")
    mode: Literal["direct", "batch"] = Field(
        default="direct",
        description="'batch': jobs go through the batch API (cheaper, done within a day); an entry's"
        " own `mode` wins",
    )
    batch_poll_interval: float = Field(
        default=300.0, gt=0, description="seconds between looks at a live remote batch (minutes, not seconds)"
    )
    batch_gather_seconds: float = Field(
        default=2.0,
        ge=0,
        description="queued batch-mode jobs wait this long for company before a remote batch is made",
    )
    batch_max_lines: int = Field(default=50_000, ge=1, description="requests per remote batch")
    batch_max_file_bytes: int = Field(
        default=200 * 1024 * 1024, ge=1024, description="bytes per uploaded input file"
    )
    batch_queue_limit: int | None = Field(
        default=None,
        ge=1,
        description="requests per model enqueued in live remote batches at once (the account's batch"
        " queue limit); None = no limit here",
    )
    max_remote_batches: int = Field(
        default=10, ge=1, description="live remote batches at once (don't start more than the account allows)"
    )
    batch_output_max_bytes: int = Field(
        default=50 * 1024 * 1024 * 1024,
        ge=1024,
        description="largest output or error file downloaded (streamed; base64 images make it big)",
    )
    batch_download_deadline: float = Field(
        default=3600.0, gt=0, description="seconds for downloading one output or error file"
    )
    batch_discount: float = Field(
        default=0.5, gt=0, le=1, description="share of the direct price a batch line costs (half)"
    )
    batch_expired_to_direct: bool = Field(
        default=False,
        description="lines an expired remote batch did not finish go to direct mode (else back to the"
        " batch queue)",
    )


class ProviderSections(Protocol):
    """What the registry needs of the whole configuration (`wfbatch.settings.Settings` is one)."""

    def provider_limits(self, name: str) -> ProviderLimits: ...


def missing_key(api_key: SecretStr | None, who: str, section: str) -> list[str]:
    """The one problem a provider that needs only a key can have."""
    if api_key is None or not api_key.get_secret_value().strip():
        env = f"WFBATCH_{section.upper()}__API_KEY"
        return [f"{who} needs an API key: set {env} (or api_key under [{section}] in wfbatch.toml)"]
    return []


def host_of(base_url: str) -> str:
    """host:port of a base URL, as labels and status show it (no path, never credentials)."""
    return urlsplit(base_url).netloc.rpartition("@")[2] or base_url
