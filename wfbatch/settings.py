"""Configuration: defaults < wfbatch.toml < WFBATCH_* environment (nested with `__`) < flags.

API keys are `SecretStr`: they print as `**********` and are only unwrapped at the moment a request
header is built.
"""

from __future__ import annotations

import base64
import contextvars
import os
import re
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from wfbatch.core.delivery import MAX_PRESIGN_SECONDS, OptionalHttpUrl, OptionalS3Url, UploadMode
from wfbatch.core.targets import AllowList, BucketAllowList

CONFIG_FILE_NAME = "wfbatch.toml"

# The TOML file lives in HOME, and HOME itself may come from a flag: the flag's value is handed to
# the settings sources through this variable while `load_settings` builds the object.
_home_override: contextvars.ContextVar[Path | None] = contextvars.ContextVar("home_override", default=None)


def default_home() -> Path:
    return Path(platformdirs.user_data_dir("wfbatch", appauthor=False))


def resolve_home(explicit: Path | None = None) -> Path:
    if explicit is not None:
        return explicit.expanduser()
    env = os.environ.get("WFBATCH_HOME")
    return Path(env).expanduser() if env else default_home()


class ProviderLimits(BaseModel):
    """Limits and retry policy shared by every provider. `None` means unknown: the limiter adapts."""

    requests_per_minute: int | None = Field(default=None, ge=1)
    executions_per_minute: int | None = Field(default=None, ge=1)
    max_in_flight: int = Field(default=4, ge=1, le=1000)

    def configuration_problems(self) -> list[str]:
        """What keeps this provider from working as configured (a missing key, ...), said so a
        person can fix it; checked when prompts are accepted, without building a client."""
        return []

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


def missing_key(api_key: SecretStr | None, who: str, section: str) -> list[str]:
    """The one problem a provider that needs only a key can have."""
    if api_key is None or not api_key.get_secret_value().strip():
        env = f"WFBATCH_{section.upper()}__API_KEY"
        return [f"{who} needs an API key: set {env} (or api_key under [{section}] in wfbatch.toml)"]
    return []


class LocalSettings(ProviderLimits):
    """The built-in offline renderer: no network, no key, deterministic pictures."""

    costs: dict[str, float] = Field(default_factory=lambda: {"default": 0.0}, description="it is free")

    max_in_flight: int = Field(default=2, ge=1, le=1000)
    latency_min: float = Field(default=0.0, ge=0)
    latency_max: float = Field(default=0.0, ge=0)
    fail_rate: float = Field(default=0.0, ge=0, le=1, description="share of renders that fail transiently")
    permanent_fail_marker: str | None = Field(
        default=None, description="prompts containing this text fail permanently (rehearsing failures)"
    )


class WireflowPlan(StrEnum):
    FREE = "free"
    STARTER = "starter"
    PRO = "pro"
    ENTERPRISE = "enterprise"


# From Wireflow's rate-limit docs: (requests/min, executions/min, executions/day; None = unlimited).
WIREFLOW_PLAN_LIMITS: dict[WireflowPlan, tuple[int, int, int | None]] = {
    WireflowPlan.FREE: (10, 10, 50),
    WireflowPlan.STARTER: (20, 10, 200),
    WireflowPlan.PRO: (60, 10, 1000),
    WireflowPlan.ENTERPRISE: (200, 10, None),
}


class WireflowSettings(ProviderLimits):
    api_key: SecretStr | None = None
    base_url: str = "https://www.wireflow.ai/api/v1"
    workflow_id: str | None = None
    prompt_node_id: str | None = None
    seed_node_id: str | None = None
    webhook_id: str | None = None
    plan: WireflowPlan = WireflowPlan.FREE
    mode: Literal["execute", "run", "webhook"] = "execute"

    def configuration_problems(self) -> list[str]:
        problems = []
        if self.api_key is None or not self.api_key.get_secret_value().strip():
            problems.append(
                "Wireflow needs an API key: set WFBATCH_WIREFLOW__API_KEY (or api_key under [wireflow]"
                " in wfbatch.toml)"
            )
        if not self.workflow_id:
            problems.append("Wireflow needs the id of the workflow to run: set WFBATCH_WIREFLOW__WORKFLOW_ID")
        if self.mode == "run" and not self.prompt_node_id:
            problems.append(
                "Wireflow mode 'run' needs the node id of the prompt input: set "
                "WFBATCH_WIREFLOW__PROMPT_NODE_ID (GET /workflows/{id}/run lists the inputs)"
            )
        return problems

    @model_validator(mode="after")
    def _plan_defaults(self) -> WireflowSettings:
        """The plan fills in limits the user did not set explicitly."""
        rpm, epm, daily = WIREFLOW_PLAN_LIMITS[self.plan]
        if "requests_per_minute" not in self.model_fields_set:
            self.requests_per_minute = rpm
        if "executions_per_minute" not in self.model_fields_set:
            self.executions_per_minute = epm
        if "daily_executions" not in self.model_fields_set:
            self.daily_executions = daily
        return self


class OpenAISettings(ProviderLimits):
    """OpenAI Images (providers.md §5). Costs are in US dollars: a built-in price table by model,
    quality and size (providers/openai/prices.py) unless `costs` names the model (or `default`)."""

    api_key: SecretStr | None = None
    base_url: str = "https://api.openai.com/v1"
    model: str = Field(default="gpt-image-1", description="used when an entry names no model")
    costs: dict[str, float] = Field(
        default_factory=dict,
        description="US dollars per image by model name ('default' for any): overrides the price table",
    )
    max_in_flight: int = Field(default=2, ge=1, le=1000)
    request_deadline: float = Field(
        default=300.0, gt=0, description="a high-quality image can take a minute or two to generate"
    )
    request_timeout: float = Field(default=180.0, gt=0)
    mode: Literal["direct", "batch"] = Field(
        default="direct",
        description="'batch': jobs go through the Batch API (half price, done within 24 h); an entry's"
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
    batch_max_lines: int = Field(
        default=50_000, ge=1, le=50_000, description="requests per remote batch (OpenAI allows 50,000)"
    )
    batch_max_file_bytes: int = Field(
        default=200 * 1024 * 1024,
        ge=1024,
        le=200 * 1024 * 1024,
        description="bytes per uploaded input file (OpenAI allows 200 MB)",
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

    def configuration_problems(self) -> list[str]:
        return missing_key(self.api_key, "OpenAI", "openai")


class FalSettings(ProviderLimits):
    """fal.ai's queue API (providers.md §2). Costs are in US dollars: a default price table for the
    default endpoints (providers/fal/prices.py) unless `costs` names the endpoint (or `default`)."""

    api_key: SecretStr | None = None
    base_url: str = "https://queue.fal.run"
    model: str = Field(default="fal-ai/flux/schnell", description="endpoint id used when an entry names none")
    costs: dict[str, float] = Field(
        default_factory=dict,
        description="US dollars per image by endpoint id ('default' for any): overrides the price table",
    )
    max_in_flight: int = Field(
        default=2, ge=1, le=1000, description="fal runs 2 requests at once on a new account (up to 40)"
    )

    def configuration_problems(self) -> list[str]:
        return missing_key(self.api_key, "fal", "fal")


class ReplicateSettings(ProviderLimits):
    """Replicate's predictions API (providers.md §3). Costs are in US dollars, as for fal."""

    api_key: SecretStr | None = None
    base_url: str = "https://api.replicate.com/v1"
    model: str = Field(
        default="black-forest-labs/flux-schnell",
        description="owner/name (official model) or owner/name:version, used when an entry names none",
    )
    costs: dict[str, float] = Field(
        default_factory=dict,
        description="US dollars per image by model ('default' for any): overrides the price table",
    )
    wait: int | None = Field(
        default=None, ge=1, le=60, description="send `Prefer: wait=N` (seconds) on create; None = off"
    )
    size_mode: Literal["auto", "aspect_ratio", "width_height"] = Field(
        default="auto",
        description="how width x height is sent: flux models take aspect_ratio (+ megapixels), others "
        "width/height; auto picks by model name",
    )
    reconcile_pages: int = Field(
        default=5, ge=1, le=100, description="pages of GET /predictions read to find a lost create"
    )

    def configuration_problems(self) -> list[str]:
        return missing_key(self.api_key, "Replicate", "replicate")


class StabilitySettings(ProviderLimits):
    """Stability AI v2beta Stable Image (providers.md §4): synchronous, multipart in, image out.
    Costs are credits (1 credit = $0.01); the defaults are in providers/stability/prices.py.
    Stability documents 150 requests per 10 s: the defaults say exactly that (a 10 s window)."""

    api_key: SecretStr | None = None
    base_url: str = "https://api.stability.ai"
    model: str = Field(default="core", description="ultra, core, or an sd3 model such as sd3.5-large")
    requests_per_minute: int | None = Field(
        default=150, ge=1, description="requests per rate window (Stability: 150 per 10 s)"
    )
    rate_window_seconds: float = Field(default=10.0, gt=0, description="Stability's window is 10 s")
    lockout_seconds: float = Field(
        default=60.0,
        ge=0,
        description="after a 429 without Retry-After nothing is sent for this long (Stability's lockout)",
    )
    costs: dict[str, float] = Field(
        default_factory=dict,
        description="credits per image by model name ('default' for any): overrides the built-in table",
    )
    request_deadline: float = Field(default=180.0, gt=0, description="Ultra can take a while")

    def configuration_problems(self) -> list[str]:
        return missing_key(self.api_key, "Stability", "stability")


class ComfyUISettings(ProviderLimits):
    """A ComfyUI server (or several) of the user's own (providers.md §7): no key, no limits, no cost."""

    base_url: str | list[str] = Field(
        default="http://127.0.0.1:8188", description="one ComfyUI server, or a list of them (one per GPU)"
    )
    workflow: Path | None = Field(
        default=None, description='an API-format workflow JSON ("Save (API Format)"); none = built-in'
    )
    checkpoint: str = Field(
        default="sd_xl_base_1.0.safetensors", description="the built-in graph's checkpoint"
    )
    inputs: dict[str, str] = Field(
        default_factory=dict,
        description='where values go when the graph is ambiguous: {"prompt": "6.text", "seed": "3.seed"}',
    )
    runs_at_once: int = Field(
        default=1, ge=1, le=100, description="prompts one ComfyUI server executes at the same time"
    )
    max_in_flight: int = Field(
        default=2,
        ge=1,
        le=1000,
        description="per server: runs_at_once + 1 keeps one queued (the GPU never idles)",
    )
    costs: dict[str, float] = Field(default_factory=lambda: {"default": 0.0}, description="it is free")
    poll_initial: float = Field(default=0.5, gt=0)
    poll_max: float = Field(default=3.0, gt=0)
    max_run_seconds: float = Field(default=3600.0, gt=0)

    @model_validator(mode="after")
    def _one_queued_per_server(self) -> ComfyUISettings:
        if "max_in_flight" not in self.model_fields_set:
            self.max_in_flight = (self.runs_at_once + 1) * len(self.servers())
        return self

    def servers(self) -> list[str]:
        """The base URLs, in order, without trailing slashes."""
        urls = [self.base_url] if isinstance(self.base_url, str) else list(self.base_url)
        return [url.rstrip("/") for url in urls if url.strip()] or ["http://127.0.0.1:8188"]


class InboxSettings(BaseModel):
    stable_seconds: float = Field(default=0.5, gt=0, description="size and mtime must hold this long")
    skip_duplicate_files: bool = True


class DraftsSettings(BaseModel):
    """Draft → final batches (a spec's `draft` / `final`)."""

    keep_approved_drafts: bool = Field(
        default=True,
        description="keep an approved draft in approved/ beside its final; false: removed once the "
        "final is written",
    )
    default_approve_rate: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="share of drafts `wfbatch plan` expects to be approved when this HOME has no "
        "reviewed drafts yet (--approve-rate overrides it)",
    )
class DeliverySettings(BaseModel):
    """Where finished images (and each batch's manifest) are uploaded: an S3-compatible bucket.
    Credentials come from the AWS chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, ...), never from here."""

    url: OptionalS3Url = Field(
        default=None, description="s3://bucket/prefix/ ({batch}, {date}, {name} allowed); unset: no upload"
    )
    endpoint_url: OptionalHttpUrl = Field(default=None, description="R2, GCS interop, MinIO...; unset: AWS")
    allowed_endpoints: AllowList = Field(
        default_factory=list,
        description="hosts or URL prefixes a batch spec's delivery.endpoint_url may name (endpoint_url"
        " above always may; 'aws': null, AWS itself); nothing else gets requests signed with the HOME's"
        " credentials",
    )
    allow_private_addresses: bool = Field(
        default=False,
        description="let an allowed endpoint's name resolve to a loopback, private or link-local address",
    )
    allowed_buckets: BucketAllowList = Field(
        default_factory=list,
        description="buckets ('bucket') or key prefixes ('bucket/prefix/') a batch spec's delivery.url"
        " may name (the bucket of url above always may)",
    )
    region: str | None = Field(default=None, description="'auto' for R2; unset: the AWS chain's")
    upload: UploadMode = Field(default="all", description="all: as images finish; approved: once approved")
    presign_seconds: int = Field(
        default=0, ge=0, le=MAX_PRESIGN_SECONDS, description="presigned URLs in the manifest; 0: none"
    )
    backoff_initial: float = Field(default=2.0, gt=0, description="seconds before an upload is tried again")
    backoff_max: float = Field(default=300.0, gt=0)
    max_concurrent: int = Field(default=4, ge=1, le=64, description="uploads at once")
    held_retry_seconds: float = Field(
        default=600.0,
        ge=0,
        description="held deliveries (no bucket, access denied) are tried again this often; 0: only on"
        " SIGHUP or a restart",
    )
    timeout: float = Field(default=60.0, gt=0, description="seconds per connect / read")
    deadline: float = Field(default=300.0, gt=0, description="seconds per whole upload; then tried again")


class NotifySettings(BaseModel):
    """Who is told when a batch finishes or is held: a signed webhook, a command, or both."""

    webhook_url: OptionalHttpUrl = None
    allowed_webhooks: AllowList = Field(
        default_factory=list,
        description="hosts or URL prefixes a batch spec's notify.webhook_url may name (webhook_url above"
        " always may)",
    )
    allow_private_addresses: bool = Field(
        default=False,
        description="let an allowed webhook's name resolve to a loopback, private or link-local address",
    )
    webhook_secret: SecretStr | None = Field(
        default=None, description="whsec_<base64> (Standard Webhooks); unset: requests are unsigned"
    )
    command: str | None = Field(default=None, description="run by the shell, the batch's facts in WFBATCH_*")
    job_failed: bool = Field(default=False, description="also tell of jobs that failed for good")
    job_failed_interval: float = Field(
        default=60.0, gt=0, description="at most one job.failed per batch this often; failures batched"
    )
    max_attempts: int = Field(default=8, ge=1, le=100, description="tries per webhook delivery")
    backoff_initial: float = Field(default=2.0, gt=0)
    backoff_max: float = Field(default=300.0, gt=0)
    timeout: float = Field(default=10.0, gt=0, description="seconds per whole webhook exchange / command run")

    @field_validator("webhook_secret")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            # The message never quotes the value: it is a secret.
            encoded = value.get_secret_value().removeprefix("whsec_").rstrip("=")
            try:
                key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
            except ValueError:
                raise ValueError("expected whsec_ followed by base64 (Standard Webhooks)") from None
            if len(key) < 16:
                raise ValueError("too short: use at least 16 random bytes, base64-encoded")
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="WFBATCH_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    home: Path = Field(default_factory=default_home)
    provider: str = "local"
    socket_path: Path | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    local: LocalSettings = Field(default_factory=LocalSettings)
    wireflow: WireflowSettings = Field(default_factory=WireflowSettings)
    openai: OpenAISettings = Field(default_factory=OpenAISettings)
    fal: FalSettings = Field(default_factory=FalSettings)
    replicate: ReplicateSettings = Field(default_factory=ReplicateSettings)
    stability: StabilitySettings = Field(default_factory=StabilitySettings)
    comfyui: ComfyUISettings = Field(default_factory=ComfyUISettings)
    inbox: InboxSettings = Field(default_factory=InboxSettings)
    drafts: DraftsSettings = Field(default_factory=DraftsSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = resolve_home(_home_override.get()) / CONFIG_FILE_NAME
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml_file))

    def provider_limits(self, name: str) -> ProviderLimits:
        limits = getattr(self, name, None)
        if not isinstance(limits, ProviderLimits):
            raise KeyError(name)
        return limits

    def masked(self) -> dict[str, Any]:
        """The effective configuration as JSON-ready data, secrets shown as `**********`."""
        return self.model_dump(mode="json")


class SettingsError(ValueError):
    """The configuration cannot be used; the message is one line naming where the mistake is
    (the file with line:column, or the field and its source) and never a value given."""


def load_settings(home: Path | None = None, **overrides: Any) -> Settings:
    """Build the effective settings; `home` and `overrides` come from command-line flags.
    Raises `SettingsError` for a broken wfbatch.toml or an invalid value from any source."""
    token = _home_override.set(home)
    config_file = resolve_home(home) / CONFIG_FILE_NAME
    try:
        if home is not None:
            overrides["home"] = home
        return Settings(**overrides)
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(_toml_problem(config_file, error)) from None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else "not UTF-8 text"
        raise SettingsError(f"{config_file}: cannot be read: {reason}") from None
    except ValidationError as error:
        raise SettingsError(_validation_problems(config_file, error)) from None
    finally:
        _home_override.reset(token)


_TOML_POSITION = re.compile(r"^(?P<message>.*) \(at line (?P<line>\d+), column (?P<column>\d+)\)$")


def _toml_problem(config_file: Path, error: tomllib.TOMLDecodeError) -> str:
    # Python 3.11's tomllib puts the position only in the message: "... (at line 12, column 5)".
    text = str(error)
    match = _TOML_POSITION.match(text)
    if match is None:
        return f"{config_file}: {text}"
    return f"{config_file}:{match['line']}:{match['column']}: {match['message']}"


def _validation_problems(config_file: Path, error: ValidationError) -> str:
    """One line for every invalid field, saying where its value came from. Only pydantic's `msg`
    is used: the error's `input` (and its str()) would echo values, API keys among them."""
    file_data = _read_toml_quietly(config_file)
    problems = []
    for item in error.errors():
        loc = tuple(str(part) for part in item["loc"])
        field = ".".join(loc) or "settings"
        env_name = "WFBATCH_" + "__".join(loc).upper()
        if _has_path(file_data, loc):
            problems.append(f"{config_file}: {field}: {item['msg']}")
        elif loc and env_name in os.environ:
            problems.append(f"{env_name}: {item['msg']}")
        else:
            problems.append(f"{field}: {item['msg']}")
    return "; ".join(problems)


def _read_toml_quietly(config_file: Path) -> dict[str, Any]:
    try:
        with config_file.open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}


def _has_path(data: Any, loc: tuple[str, ...]) -> bool:
    for key in loc:
        if not isinstance(data, dict) or key not in data:
            return False
        data = data[key]
    return bool(loc)
