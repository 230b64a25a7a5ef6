"""What every provider's settings section shares: the limits and retry policy (`ProviderLimits`),
the fields of a batch mode (`BatchModeSettings`), and the helpers sections use for their checks and
labels. Each provider's own section lives in its package (`providers/<name>/settings.py`);
`wfbatch.settings` composes them from the registry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator

from wfbatch.core.accounts import key_account_of, workflow_account

DEFAULT_ACCOUNT = "default"
"""The one account of a section that lists none: its own `api_key` and `base_url`."""

ACCOUNT_LIMITS = (
    "requests_per_minute",
    "executions_per_minute",
    "daily_executions",
    "max_in_flight",
)
"""The limits an account may set for itself; unset, it takes the section's. (Its own
`daily_credit_cap` is not one of them: the section's holds across all accounts, the account's
beside it, see `ProviderLimits.account_credit_cap`.)"""


class AccountSettings(BaseModel):
    """One account of a provider (`[[<provider>.accounts]]`, WFBATCH_<PROVIDER>__ACCOUNTS__0__*): a key the
    user is entitled to use, its endpoint and its own limits. Accounts naming the same `pool` share
    one set of limits (two keys of one organisation); by default each account is its own pool."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    api_key: SecretStr | None = None
    base_url: str | None = Field(default=None, description="unset: the section's")
    weight: float = Field(default=1.0, gt=0, description="preferred among accounts that can start as soon")
    pool: str | None = Field(
        default=None, description="accounts naming the same pool share its limits; unset: its own"
    )
    requests_per_minute: int | None = Field(default=None, ge=1)
    executions_per_minute: int | None = Field(default=None, ge=1)
    daily_executions: int | None = Field(default=None, ge=1)
    daily_credit_cap: float | None = Field(
        default=None, ge=0, description="credits this account may spend a day (the section's cap holds too)"
    )
    max_in_flight: int | None = Field(default=None, ge=1, le=1000)
    workflow_ids: list[str] = Field(
        default_factory=list,
        description="several workflows of this key (a provider with workflows), each its own start window"
        " (the key's request window is shared by them); empty: the section's workflow_id",
    )


@dataclass(frozen=True)
class Account:
    """An account as the engine uses it: its name, its quota pool, its weight, and the provider's
    section as this account sees it (its key, endpoint and limits in place of the section's).

    A Wireflow key with several `workflow_ids` is one of these per workflow, named
    `<account>/<workflow>` (its own start window; `owner` names the key's account, whose request
    window, holds and credit cap they share): a job pinned to one re-sends to the same workflow."""

    name: str
    pool: str
    weight: float
    section: ProviderLimits
    owner: str | None = None
    """The configured account a per-workflow one belongs to; None: this one is configured as is."""

    @property
    def key_account(self) -> str:
        """The configured account whose key this is."""
        return self.owner or self.name


class ProviderLimits(BaseModel):
    """Limits and retry policy shared by every provider. `None` means unknown: the limiter adapts."""

    requests_per_minute: int | None = Field(default=None, ge=1)
    executions_per_minute: int | None = Field(default=None, ge=1)
    max_in_flight: int = Field(default=4, ge=1, le=1000)

    _account_place: tuple[int, str] | None = PrivateAttr(default=None)
    """On an account's copy of the section: its place in the list and its name (what a refused key
    tells the user to check)."""

    accounts: list[AccountSettings] = Field(
        default_factory=list,
        description="several accounts of this provider, each with its own key and limits; none: the"
        " section's own api_key is the one account, named 'default'",
    )

    @field_validator("accounts", mode="before")
    @classmethod
    def _indexed_accounts(cls, value: Any) -> Any:
        """The environment spells a list by index (WFBATCH_<PROVIDER>__ACCOUNTS__0__API_KEY), which
        arrives as a mapping {"0": {...}}: taken in the order of its indices."""
        if isinstance(value, dict) and value and all(str(key).isdigit() for key in value):
            return [value[key] for key in sorted(value, key=lambda key: int(key))]
        return value

    @field_validator("accounts")
    @classmethod
    def _unique_accounts(cls, value: list[AccountSettings]) -> list[AccountSettings]:
        names = [account.name for account in value]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"account names must differ: {', '.join(repeated)} given more than once")
        return value

    def account_list(self) -> list[Account]:
        """Every account of this provider, each with the section as it sees it."""
        if not self.accounts:
            return [Account(DEFAULT_ACCOUNT, DEFAULT_ACCOUNT, 1.0, self)]
        found = []
        for place, account in enumerate(self.accounts):
            update: dict[str, Any] = {"accounts": []}
            for field in ("api_key", "base_url"):
                if field in type(self).model_fields and getattr(account, field) is not None:
                    update[field] = getattr(account, field)
            if "api_key" in type(self).model_fields and account.api_key is None:
                update["api_key"] = None  # never the section's: one key would count as two accounts
            for field in ACCOUNT_LIMITS:
                if getattr(account, field) is not None:
                    update[field] = getattr(account, field)
            pool = account.pool or account.name
            if account.workflow_ids and "workflow_id" in type(self).model_fields:
                for workflow in account.workflow_ids:
                    section = self.model_copy(update={**update, "workflow_id": workflow})
                    section._account_place = (place, account.name)
                    name = workflow_account(account.name, workflow)
                    found.append(Account(name, f"{pool}/{workflow}", account.weight, section, account.name))
                continue
            section = self.model_copy(update=update)
            section._account_place = (place, account.name)
            found.append(Account(account.name, pool, account.weight, section))
        return found

    def key_setting(self, provider: str) -> str:
        """Where this section's key is set, as a refused key's message names it."""
        if self._account_place is None:
            return f"WFBATCH_{provider.upper()}__API_KEY"
        place, name = self._account_place
        return f"the api_key of account {name} (WFBATCH_{provider.upper()}__ACCOUNTS__{place}__API_KEY)"

    def key_accounts(self, account: str | None) -> list[str]:
        """The accounts sharing this one's key: itself, or every workflow of its key."""
        owner = key_account_of(account or "")
        return [a.name for a in self.account_list() if a.key_account == owner] or [account or DEFAULT_ACCOUNT]

    def account_credit_cap(self, account: str | None) -> float | None:
        """The account's own daily credit cap (None: none of its own; the section's still holds);
        a per-workflow account has its key's."""
        owner = key_account_of(account or "")
        found = next((a for a in self.accounts if a.name == owner), None)
        return found.daily_credit_cap if found is not None else None

    def account_problems(self) -> list[str]:
        """What keeps this provider's accounts from working, each problem naming its account."""
        if not self.accounts:
            return self.configuration_problems()
        problems = []
        if "api_key" not in type(self).model_fields and any(a.api_key is not None for a in self.accounts):
            problems.append("this provider takes no api_key: its accounts cannot set one")
        if "workflow_id" not in type(self).model_fields and any(a.workflow_ids for a in self.accounts):
            problems.append("workflow_ids is for a provider with workflows: this one has none")
        for configured in self.accounts:
            if len(set(configured.workflow_ids)) != len(configured.workflow_ids):
                problems.append(f"account {configured.name!r}: a workflow is listed twice in workflow_ids")
        if getattr(self, "api_key", None) is not None:
            problems.append("api_key is set beside accounts: give each account its own api_key instead")
        for account in self.account_list():
            own = account.section.configuration_problems()
            problems += [f"account {account.name!r}: {problem}" for problem in own]
        return problems

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
