"""The simulator's knobs, shared by `wfbatch sim` and the tests: those every simulator reads
(`SimOptions`), and each simulator's own (a `ProviderOptions` its package declares, found through
`wfbatch.sim.registry`)."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any, Literal, Self

FAULT_GROUPS: tuple[str, ...] = ("5xx", "slow", "reset", "malformed", "lost")
"""Fault families drawn at `error_rate`. `lost` applies to execution starts only: the execution is
created, then the answer is replaced by a 5xx or a dropped connection."""

FAULT_KINDS: tuple[str, ...] = (
    "500",
    "502",
    "503",
    "slow",
    "reset",
    "malformed",
    "lost_5xx",
    "lost_reset",
    "endless",
    "trickle",
    "echo_key",
    "credits_negative",
    "credits_nan",
)
"""Concrete faults, as counted in `/_sim/stats` and accepted by `/_sim/faults`. The last five are
hostile-server faults, only ever queued (never drawn at `error_rate`): `endless` streams a body that
never ends, `trickle` sends the answer one byte every `trickle_seconds`, `echo_key` echoes the
caller's API key in the request id, ids and URLs, `credits_*` report a charge of "-50" / "NaN".
`endless` and `trickle` also apply to `/files/*` (route "files")."""

ErrorStyle = Literal["string", "object"]


@dataclass(frozen=True)
class ProviderOptions:
    """One simulator's own knobs: its package declares a subclass (every field with a default,
    checked in its `__post_init__`), and `SimOptions.own` holds one."""

    @classmethod
    def of(cls, options: SimOptions) -> Self:
        """`options.own`, typed: the knobs of the simulator these options are for."""
        if not isinstance(options.own, cls):
            raise TypeError(f"{cls.__name__} asked of options for {options.provider!r}")
        return options.own


def _options_class(provider: str | None) -> tuple[str, type[ProviderOptions]]:
    """The provider's name (None = the registry's first) and its options class."""
    # Looked up when options are made, never when this module loads: the registry imports every
    # simulator's package, and each of them imports this module.
    from wfbatch.sim.registry import SIM_PROVIDERS

    name = next(iter(SIM_PROVIDERS)) if provider is None else provider
    if name not in SIM_PROVIDERS:
        raise ValueError(f"unknown provider {name!r}; known: {', '.join(SIM_PROVIDERS)}")
    return name, SIM_PROVIDERS[name].options


@dataclass(frozen=True, init=False)
class SimOptions:
    """Everything that shapes one simulator run. Times are in seconds.

    Made like a flat record, `SimOptions(provider="fal", quota=3, concurrency=4)`: a keyword that
    is not one of the fields below is one of the provider's own (`own`), checked by its class.
    `dataclasses.replace` works the same way."""

    provider: str
    """Whose contract it speaks (see `wfbatch.sim.registry`); the registry's first by default."""
    host: str = "127.0.0.1"
    port: int = 0
    latency: tuple[float, float] = (1.0, 5.0)
    """Execution run time, drawn uniformly from [min, max] with the seeded RNG."""
    fail_rate: float = 0.0
    """Share of executions that end FAILED (a moderation-style node error)."""
    fail_marker: str | None = None
    """Prompts containing this text always fail: a deterministic FAILED for rehearsals and tests."""
    error_rate: float = 0.0
    """Share of API requests answered with an injected fault (see FAULT_GROUPS)."""
    faults: tuple[str, ...] = FAULT_GROUPS
    slow_seconds: float = 90.0
    """How long a `slow` fault stalls before answering: longer than a typical client timeout."""
    trickle_seconds: float = 2.0
    """Pause between the bytes of a `trickle` fault's answer."""
    cdn_error_rate: float = 0.0
    """Share of image downloads answered with a 503, an empty body or an HTML page."""
    credits: float | None = None
    """Starting balance, where the API counts credits; None = unlimited."""
    cost: float = 1.0
    """Credits per execution (charged on success only)."""
    quota: float | None = None
    """Images the account may still pay for, where the API counts images; None = unlimited.
    `/_sim/credits` raises it."""
    moderation_marker: str | None = None
    """Prompts containing this text are refused by the "safety system" (as is `fail_marker`)."""
    seed: int = 0
    window: float = 60.0
    """Length of the per-minute windows; the daily window scales with it (window × 1440)."""
    rpm: int | None = None
    """Requests (or submits) per window; None = the provider's own default."""
    epm: int | None = None
    """Executions per window, where the API counts them apart; None = its default."""
    daily: int | None = None
    """Executions per simulated day, where the API has such a cap; None = its default."""
    api_key: str | None = None
    """If set, the only key accepted; otherwise any key of the provider's usual form."""
    api_keys: tuple[str, ...] = ()
    """Several keys on one port, each an account with its own windows, quota, credit and stats
    (see `wfbatch.sim.keys`); empty = one account, as `api_key` says."""
    own: ProviderOptions = field(default_factory=ProviderOptions)
    """The provider's own knobs (its package's `ProviderOptions` subclass)."""

    def __init__(
        self, provider: str | None = None, *, own: ProviderOptions | None = None, **values: Any
    ) -> None:
        name, own_class = _options_class(provider)
        object.__setattr__(self, "provider", name)
        for shared in fields(self):
            if shared.name in ("provider", "own"):
                continue
            if shared.name in values:
                value = values.pop(shared.name)
            elif shared.default is not MISSING:
                value = shared.default
            else:
                raise TypeError(f"SimOptions needs {shared.name}")
            object.__setattr__(self, shared.name, value)
        object.__setattr__(self, "own", _own(name, own_class, own, values))
        self._check()

    def _check(self) -> None:
        lo, hi = self.latency
        if lo < 0 or hi < lo:
            raise ValueError(f"latency must be 0 <= MIN <= MAX, got {lo},{hi}")
        for name in ("fail_rate", "error_rate", "cdn_error_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.window <= 0:
            raise ValueError("window must be > 0")
        if self.cost < 0 or (self.credits is not None and self.credits < 0):
            raise ValueError("credits and cost must be >= 0")
        if self.quota is not None and self.quota < 0:
            raise ValueError("quota must be >= 0")
        for name in ("rpm", "epm", "daily"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.api_keys and self.api_key is not None:
            raise ValueError("give either one api_key or several api_keys, not both")
        unknown = set(self.faults) - set(FAULT_GROUPS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {', '.join(FAULT_GROUPS)}")

    @property
    def day_seconds(self) -> float:
        """A "day" in simulator time: 1440 windows, so a scaled-down window scales the day too."""
        return self.window * 1440


def _own(
    provider: str, own_class: type[ProviderOptions], own: ProviderOptions | None, values: dict[str, Any]
) -> ProviderOptions:
    """The provider's own options: `own` (or its defaults) with the keywords left over applied."""
    known = {f.name for f in fields(own_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise TypeError(
            f"the {provider} simulator has no option {', '.join(unknown)}"
            f" (its own: {', '.join(sorted(known)) or 'none'})"
        )
    if own is None:
        return own_class(**values)
    if type(own) is not own_class:
        raise ValueError(f"{type(own).__name__} are not the {provider} simulator's options")
    return replace(own, **values) if values else own
