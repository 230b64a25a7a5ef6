"""`wfbatch costs`: what was made and spent, grouped by batch, provider, model, account or day.

Spend is never summed across providers: one provider bills in credits, another in USD, and two
providers' credits are not the same money. Every group is therefore a (group, provider) pair, and the
totals are per provider."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from wfbatch.engine.loop.budget import configured_cost
from wfbatch.providers.registry import UnknownProvider, traits
from wfbatch.settings import Settings
from wfbatch.store import CostLine, PossibleDuplicate, StoreApi

GroupBy = Literal["batch", "provider", "model", "account", "day"]
GROUPINGS: tuple[GroupBy, ...] = ("batch", "provider", "model", "account", "day")
DEFAULT_MODEL = "(default)"
"""How the provider's default model (no `model` in the entry) is shown."""
NO_ACCOUNT = "(none)"
"""How images no account was asked for are grouped: cache hits, and jobs from before accounts."""


@dataclass
class CostGroup:
    group: str
    provider: str
    unit: str
    name: str = ""
    """The batch's name when grouped by batch; empty otherwise."""
    images: int = 0
    cache_hits: int = 0
    saved: float | None = 0.0
    """What the cache hits would have cost; None when a price is unknown."""
    spent: float = 0.0
    refunds: float = 0.0
    possible_duplicates: int = 0
    possible_duplicate_spend: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {k: _rounded(v) for k, v in self.__dict__.items()}


@dataclass
class CostReport:
    by: GroupBy
    since: str | None
    until: str | None
    groups: list[CostGroup] = field(default_factory=list)
    totals: list[CostGroup] = field(default_factory=list)
    """One per provider, in its unit."""
    possible_duplicates: list[PossibleDuplicate] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "since": self.since,
            "until": self.until,
            "groups": [g.to_json() for g in self.groups],
            "totals": [t.to_json() for t in self.totals],
            "possible_duplicates": [d.__dict__ for d in self.possible_duplicates],
        }


async def cost_report(
    store: StoreApi, settings: Settings, by: GroupBy, since: str | None, until: str | None
) -> CostReport:
    lines = await store.ledger.cost_lines(since=since, until=until)
    duplicates = await store.ledger.possible_duplicates(since=since, until=until)
    charged = await store.ledger.average_charges()

    def price(provider: str, model: str | None) -> float | None:
        if (provider, model) in charged:
            return charged[(provider, model)]
        try:
            return configured_cost(settings, provider, model)
        except UnknownProvider:  # a provider this wfbatch no longer has: its price is unknown
            return None

    report = CostReport(by, since, until, possible_duplicates=duplicates)
    groups: dict[tuple[str, str], CostGroup] = {}
    totals: dict[str, CostGroup] = {}
    for line in lines:
        key = (_group_of(line, by), line.provider)
        group = groups.get(key) or groups.setdefault(key, _new_group(key, line, by))
        total = totals.get(line.provider) or totals.setdefault(
            line.provider, _new_group(("total", line.provider), line, None)
        )
        saved = None if not line.cache_hits else _times(line.cache_hits, price(line.provider, line.model))
        for target in (group, total):
            target.images += line.images
            target.cache_hits += line.cache_hits
            target.spent += line.charged
            target.refunds += line.refunds
            if saved is None and line.cache_hits:
                target.saved = None  # unknown stays unknown: a partial sum would understate it
            elif target.saved is not None:
                target.saved += saved or 0.0
    for duplicate in duplicates:
        key = (_group_of(duplicate, by), duplicate.provider)
        for found in (groups.get(key), totals.get(duplicate.provider)):
            if found is not None:
                found.possible_duplicates += 1
                found.possible_duplicate_spend += duplicate.credits or 0.0
    report.groups = list(groups.values())
    report.totals = sorted(totals.values(), key=lambda t: t.provider)
    return report


def _group_of(line: CostLine | PossibleDuplicate, by: GroupBy) -> str:
    if by == "batch":
        return line.batch_id
    if by == "provider":
        return line.provider
    if by == "model":
        return line.model or DEFAULT_MODEL
    if by == "account":
        return line.account or NO_ACCOUNT
    return line.day


def _new_group(key: tuple[str, str], line: CostLine, by: GroupBy | None) -> CostGroup:
    group, provider = key
    return CostGroup(group, provider, _unit(provider), name=line.batch_name if by == "batch" else "")


def _unit(provider: str) -> str:
    try:
        return traits(provider).cost_unit
    except UnknownProvider:
        return "credits"


def _times(count: int, price: float | None) -> float | None:
    return None if price is None else count * price


def _rounded(value: object) -> object:
    # Sums of floats (0.1 + 0.2): six places is finer than any provider bills.
    return round(value, 6) if isinstance(value, float) else value

