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
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import platformdirs
from pydantic import BaseModel, Field, SecretStr, ValidationError, create_model, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from wfbatch.core.delivery import MAX_PRESIGN_SECONDS, OptionalHttpUrl, OptionalS3Url, UploadMode
from wfbatch.core.name_template import placeholders
from wfbatch.core.targets import AllowList, BucketAllowList
from wfbatch.core.windows import Schedule, parse_window, zone_of
from wfbatch.providers.config import BatchModeSettings, ProviderLimits
from wfbatch.providers.registry import DEFAULT_PROVIDER, REGISTRY

__all__ = [
    "CONFIG_FILE_NAME",
    "BatchModeSettings",
    "DeliverySettings",
    "DraftsSettings",
    "InboxSettings",
    "NotifySettings",
    "ProviderLimits",
    "Settings",
    "SettingsError",
    "default_home",
    "load_settings",
    "resolve_home",
]

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
    wait_at_exit: float = Field(
        default=60.0,
        ge=0,
        description="seconds `wfbatch run` waits after its last job for uploads and notifications still"
        " going out; what is left goes at the next start (the daemon or another run)",
    )


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
    budget_alert: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="tell once when a batch's budget or a provider's daily cap is this share spent or"
        " reserved (0.8: at 80 %); unset: no alert",
    )
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


class OutputSettings(BaseModel):
    """How images are named inside a batch folder."""

    name: str | None = Field(
        default=None,
        description="name template, e.g. \"{sku}/{index:05d}-{variant}\": {batch} {index} {slug} {seed}"
        " {model} {variant} {id} {date} {stage} and any entry field; unset: {index:05d}-{slug}",
    )

    @field_validator("name")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None:
            placeholders(value)  # raises NameTemplateError (a ValueError): a clear config error
        return value


class ScheduleEntry(BaseModel):
    """`[schedule.<provider>]`: when the provider may start work; in-flight work always finishes."""

    model_config = {"extra": "forbid"}

    windows: list[str] = Field(
        default_factory=list, description="e.g. [\"22:00-06:00\"]; an end before the start runs past midnight"
    )
    timezone: str | None = Field(
        default=None, description="IANA zone, e.g. \"Europe/Berlin\"; unset: local time"
    )
    accounts: dict[str, list[str]] = Field(
        default_factory=dict, description="an account's own windows (replace the provider's for it)"
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        zone_of(value)  # raises BadWindow (a ValueError): a clear config error
        return value

    @field_validator("windows")
    @classmethod
    def _windows(cls, value: list[str]) -> list[str]:
        for text in value:
            parse_window(text)
        return value

    @field_validator("accounts")
    @classmethod
    def _account_windows(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for windows in value.values():
            for text in windows:
                parse_window(text)
        return value

    def schedule(self, account: str | None = None) -> Schedule:
        """The account's schedule: its own windows if it has some, else the provider's."""
        windows = self.accounts.get(account, self.windows) if account is not None else self.windows
        return Schedule.parse(windows, self.timezone)


class WebSettings(BaseModel):
    """The browser gallery and queue the daemon serves beside its socket (`wfbatch web`)."""

    enabled: bool = Field(default=False, description="serve the web app on 127.0.0.1 (remote: ssh -L)")
    port: int = Field(default=8765, ge=0, le=65535, description="TCP port on 127.0.0.1; 0: any free one")


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class StoreSettings(BaseModel):
    """Where the queue, the ledger and the caps live: this HOME's SQLite file (the default), or a
    PostgreSQL database that several daemons share."""

    database_url: SecretStr | None = Field(
        default=None,
        description="postgresql://user:password@host/dbname to share one queue between daemons"
        " (needs `pip install 'wfbatch[postgres]'`); unset: the SQLite file in HOME",
    )

    lease_timeout: float = Field(
        default=60.0,
        ge=0.5,
        description="seconds without a heartbeat after which another daemon on the same PostgreSQL"
        " database takes over this daemon's provider accounts (and adopts their jobs in flight)",
    )

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(POSTGRES_SCHEMES):
            # The value itself may hold a password: never repeated in the message.
            raise ValueError("expected a postgresql:// URL (or leave it unset for the SQLite file in HOME)")
        return value

    def url(self) -> str | None:
        """The PostgreSQL URL, unwrapped at the moment it is used; None: SQLite."""
        return self.database_url.get_secret_value() if self.database_url is not None else None


class _GeneralSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="WFBATCH_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    home: Path = Field(default_factory=default_home)
    provider: str = DEFAULT_PROVIDER
    socket_path: Path | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"


# One section per provider (`[wireflow]`, WFBATCH_WIREFLOW__*), named and typed by the provider
# registry: pydantic needs a field per section, and only the registry may name providers. Code reads
# a section through `provider_limits(name)`, so the type checker sees the general fields only.
if TYPE_CHECKING:
    _WithProviderSections = _GeneralSettings
else:
    _WithProviderSections = create_model(
        "_WithProviderSections",
        __base__=_GeneralSettings,
        **{
            name: (entry.settings_class, Field(default_factory=entry.settings_class))
            for name, entry in REGISTRY.items()
        },
    )


class Settings(_WithProviderSections):
    inbox: InboxSettings = Field(default_factory=InboxSettings)
    drafts: DraftsSettings = Field(default_factory=DraftsSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    output: OutputSettings = Field(default_factory=OutputSettings)
    schedule: dict[str, ScheduleEntry] = Field(
        default_factory=dict, description="[schedule.<provider>] windows: when it may start work"
    )
    web: WebSettings = Field(default_factory=WebSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)

    @field_validator("schedule")
    @classmethod
    def _scheduled_providers(cls, value: dict[str, ScheduleEntry]) -> dict[str, ScheduleEntry]:
        unknown = sorted(set(value) - set(REGISTRY))
        if unknown:
            raise ValueError(f"unknown provider {unknown[0]!r} (known: {', '.join(REGISTRY)})")
        return value

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
        # "Value error, " is pydantic's wrapping of our own validators' messages: noise to a reader.
        item["msg"] = str(item["msg"]).removeprefix("Value error, ")
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
