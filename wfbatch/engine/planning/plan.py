"""`wfbatch plan`: what a set of prompt files would cost and take, without a paid request.

Dedup and cache hits come from the store; costs from the provider's free estimate endpoint where it
has one, else the config; duration from `forecast.estimate_seconds` with the latency seen in past
runs (else the configured `expected_latency`, else a default), for the starts the provider makes
until the planned jobs are through under the fair share beside the batches already queued on it;
stops from budgets, daily caps and the known balance.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass, field, replace
from typing import Any

from wfbatch.core.expand import expand_batch
from wfbatch.core.hashing import cache_key
from wfbatch.core.models import JobSpec, ParsedBatch
from wfbatch.core.states import UNFINISHED_STATES
from wfbatch.engine.intake.final_modes import final_modes
from wfbatch.engine.loop.budget import ask_estimate
from wfbatch.engine.loop.fairshare import Claim, shares, starts_until_done
from wfbatch.engine.loop.limiter import start_of_today
from wfbatch.engine.planning.forecast import ScheduleModel, estimate_seconds
from wfbatch.providers.base import LikelyCost, Provider, UnlimitedGate
from wfbatch.providers.errors import ProviderError
from wfbatch.providers.registry import batch_mode, build_provider, traits
from wfbatch.settings import ProviderLimits, Settings
from wfbatch.store import StoreApi, ledger_day

log = logging.getLogger("wfbatch.plan")

# Latency assumed when there is no history and no `expected_latency`: the local renderer is
# near-instant; a remote image model typically needs tens of seconds.
DEFAULT_REMOTE_LATENCY = 20.0
ModelKey = tuple[str | None, str | None]
"""(model, mode): what one provider's prices are known by."""
PLANNED = "(planned)"
"""The planned files' key among the fair-share claims on a provider."""
BATCH_COMPLETION_WINDOW = "24h"
"""A batch API's promise (OpenAI Batch: within 24 hours), shown instead of a minutes estimate."""


@dataclass
class ProviderPlan:
    jobs_left: int = 0
    cost_per_image: float | None = None
    """What budgets reserve per image (the most it can be charged)."""
    likely_cost_per_image: tuple[float, float] | None = None
    """(low, high) it will likely be charged, where that is a range (the server picks a quality)."""
    likely_why: str | None = None
    unit: str = "credits"
    """The provider's cost unit (its registry entry): credits, USD, or free."""
    latency: float = 0.0
    latency_source: str = "default"
    estimated_seconds: float = 0.0
    daily_remaining: int | None = None
    balance: float | None = None
    batch_jobs: int = 0
    """Jobs going through the provider's batch API (`mode = "batch"`): not in `estimated_seconds`."""
    batch_cost: float | None = None
    """What the batch jobs cost at the batch price..."""
    batch_direct_cost: float | None = None
    """...and what they would cost sent directly (the saving is the difference)."""
    completion_window: str | None = None
    """When the batch jobs are done at the latest (the batch API's window), instead of minutes."""
    share: float = 1.0
    """The share of the provider's starts these jobs get beside the batches already queued on it
    (fair share by priority and weight): `estimated_seconds` counts their starts meanwhile too."""
    shared_with: int = 0
    """Batches already queued on the provider that it is shared with."""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class PipelinePlan:
    """Draft → final batches priced: every draft, plus finals for the share expected to be approved,
    beside what making every image at the final settings at once would cost."""

    approve_rate: float
    approve_rate_source: str
    drafts: int = 0
    """Drafts to generate (not from the cache)."""
    expected_finals: float = 0.0
    drafts_credits: float | None = None
    finals_credits: float | None = None
    """For the expected finals."""
    pipeline_credits: float | None = None
    straight_to_finals: float | None = None
    """Every entry generated at the final settings, without drafts."""
    saving: float | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Plan:
    entries: int = 0
    jobs: int = 0
    unique_jobs: int = 0
    cache_hits: int = 0
    jobs_left: int = 0
    estimated_credits: float | None = None
    """What budgets reserve for the run (in each provider's unit: see `unit`)."""
    likely_credits: tuple[float, float] | None = None
    """(low, high) the run will likely be charged, where a provider prices by a range."""
    unit: str | None = None
    """The cost unit of every provider of the run; None when they differ."""
    unknown_cost_jobs: int = 0
    estimated_seconds: float = 0.0
    stops_at: dict[str, Any] | None = None
    providers: dict[str, ProviderPlan] = field(default_factory=dict)
    pipeline: PipelinePlan | None = None
    """Set when a batch has draft → final stages; `estimated_credits` then includes the expected
    finals."""

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["providers"] = {name: p.to_json() for name, p in self.providers.items()}
        data["pipeline"] = self.pipeline.to_json() if self.pipeline else None
        return data


async def approve_rate_of(store: StoreApi, settings: Settings, given: float | None) -> tuple[float, str]:
    """The share of drafts expected to be approved, and where the figure comes from: as given, else
    this HOME's reviewed drafts so far, else the configured default."""
    if given is not None:
        return given, "--approve-rate"
    approved, reviewed = await store.drafts.draft_reviews()
    if reviewed:
        return approved / reviewed, f"{approved} of {reviewed} reviewed drafts approved in this HOME"
    default = settings.drafts.default_approve_rate
    return default, "drafts.default_approve_rate setting (no reviewed drafts yet)"


async def make_plan(
    store: StoreApi, settings: Settings, batches: list[ParsedBatch], *, approve_rate: float | None = None
) -> Plan:
    plan = Plan()
    left_by_batch: list[tuple[ParsedBatch, list[JobSpec]]] = []
    finals: list[JobSpec] = []
    seen: set[str] = set()
    for parsed in batches:
        plan.entries += len(parsed.entries)
        expanded = final_modes(expand_batch(parsed, settings.provider))
        specs = [job.spec for job in expanded]
        finals += [job.final for job in expanded if job.final is not None]
        plan.jobs += len(specs)
        keys = [cache_key(spec) for spec in specs]
        cached = await store.cache.cached_keys(keys) if parsed.cache else set()
        batch_left: list[JobSpec] = []
        for spec, key in zip(specs, keys, strict=True):
            if parsed.cache and key in seen:
                continue  # a duplicate: generated once, then served from the cache
            seen.add(key)
            plan.unique_jobs += 1
            if key in cached:
                plan.cache_hits += 1
            else:
                batch_left.append(spec)
        left_by_batch.append((parsed, batch_left))
    all_left = [spec for _, specs in left_by_batch for spec in specs]
    plan.jobs_left = len(all_left)

    costs: dict[tuple[str, str | None, str | None], float | None] = {}
    likely: dict[tuple[str, str | None, str | None], tuple[float, float]] = {}
    claim = _planned_claim(batches)
    for name in sorted({spec.provider for spec in all_left}):
        specs = [spec for spec in all_left if spec.provider == name]
        provider_plan, model_costs, model_likely = await _plan_provider(store, settings, name, specs, claim)
        plan.providers[name] = provider_plan
        costs.update({(name, *key): cost for key, cost in model_costs.items()})
        likely.update({(name, *key): (r.low, r.high) for key, r in model_likely.items()})
        plan.estimated_seconds = max(plan.estimated_seconds, provider_plan.estimated_seconds)

    def cost_of(spec: JobSpec) -> float | None:
        return costs[(spec.provider, spec.model, spec.mode)]

    known = [c for c in map(cost_of, all_left) if c is not None]
    plan.unknown_cost_jobs = len(all_left) - len(known)
    plan.estimated_credits = round(sum(known), 6) if known or not all_left else None
    units = {p.unit for p in plan.providers.values()}
    plan.unit = units.pop() if len(units) == 1 else None
    if plan.estimated_credits is not None and any(p.likely_cost_per_image for p in plan.providers.values()):
        low = sum(likely[(s.provider, s.model, s.mode)][0] if (s.provider, s.model, s.mode) in likely
                  else cost_of(s) or 0.0 for s in all_left)
        plan.likely_credits = (round(low, 6), plan.estimated_credits)
    if finals:
        rate, source = await approve_rate_of(store, settings, approve_rate)
        plan.pipeline = await _price_pipeline(store, settings, all_left, finals, costs, rate, source)
        plan.estimated_credits = plan.pipeline.pipeline_credits

    stops: list[tuple[int, str]] = []
    for name, provider_plan in plan.providers.items():
        provider_costs = [cost_of(spec) for spec in all_left if spec.provider == name]
        spent = await store.ledger.provider_exposure(name, ledger_day(time.time()))
        stops.extend(_provider_stops(settings, name, provider_plan, provider_costs, spent))
    for parsed, batch_left in left_by_batch:
        if parsed.budget is not None:
            after = _jobs_affordable([cost_of(spec) for spec in batch_left], parsed.budget)
            if after < len(batch_left):
                stops.append((after, f"budget of {parsed.budget:g} credits of batch {parsed.name!r}"))
    if stops:
        after, reason = min(stops)
        plan.stops_at = {"reason": reason, "after_jobs": after}
    return plan


def _planned_claim(batches: list[ParsedBatch]) -> Claim:
    """The planned files as one claim on a provider: the highest priority among them, with the
    weights of the files at that priority (each file becomes a batch with its own share)."""
    top = max((parsed.priority for parsed in batches), default=0)
    weight = sum(parsed.weight for parsed in batches if parsed.priority == top) or 1.0
    return Claim(PLANNED, 0, top, weight)


async def _queued_claims(store: StoreApi, name: str) -> list[Claim]:
    """The batches queued on the provider now (their time come, unpaused), as fair-share claims."""
    batches = await store.jobs.ready_batches(name, time.time())
    counts = await store.counters.counts_for_batches([batch.id for batch in batches])
    return [
        Claim(batch.id, sum(counts[batch.id].get(state, 0) for state in UNFINISHED_STATES),
              batch.priority, batch.weight)
        for batch in batches
    ]


async def _plan_provider(
    store: StoreApi, settings: Settings, name: str, specs: list[JobSpec], claim: Claim
) -> tuple[ProviderPlan, dict[ModelKey, float | None], dict[ModelKey, LikelyCost]]:
    result = ProviderPlan(jobs_left=len(specs), unit=traits(name).cost_unit)
    model_likely: dict[ModelKey, LikelyCost] = {}
    provider: Provider | None = None
    try:
        provider = build_provider(name, settings, UnlimitedGate())
    except ValueError as error:
        log.warning("%s: %s", name, error)
    model_costs: dict[tuple[str | None, str | None], float | None] = {}
    batch_specs = [spec for spec in specs if batch_mode(spec.mode, name, settings)]
    direct_costs: dict[str | None, float | None] = {}
    try:
        for spec in specs:
            if (spec.model, spec.mode) not in model_costs:
                model_costs[(spec.model, spec.mode)] = await ask_estimate(provider, settings, spec)
                found = provider.likely_cost(spec) if provider is not None else None
                if found is not None:
                    model_likely[(spec.model, spec.mode)] = found
        for spec in batch_specs:
            if spec.model not in direct_costs:
                as_direct = replace(spec, mode="direct")
                direct_costs[spec.model] = await ask_estimate(provider, settings, as_direct)
        if provider is not None and traits(name).reports_balance:
            try:
                result.balance = await provider.balance()
            except ProviderError as error:
                log.warning("%s: balance unknown (%s)", name, error)
    finally:
        if provider is not None:
            await provider.aclose()
    known = [cost for cost in model_costs.values() if cost is not None]
    result.cost_per_image = statistics.fmean(known) if known else None
    if model_likely:
        priced = {k: c for k, c in model_costs.items() if c is not None}
        lows = [model_likely[k].low if k in model_likely else c for k, c in priced.items()]
        highs = [model_likely[k].high if k in model_likely else c for k, c in priced.items()]
        result.likely_cost_per_image = (statistics.fmean(lows), statistics.fmean(highs))
        result.likely_why = "; ".join(sorted({r.why for r in model_likely.values()}))
    result.latency, result.latency_source = await latency_of(store, settings, name)
    daily = pooled_limits(settings, name).daily_executions
    if daily is not None:
        used = await store.jobs.starts_since(name, start_of_today(time.time()))
        result.daily_remaining = max(0, daily - used)
    model = schedule_model(settings, name, result.latency)
    direct_jobs = len(specs) - len(batch_specs)
    runnable = direct_jobs if result.daily_remaining is None else min(direct_jobs, result.daily_remaining)
    # Other batches queued on the provider take their share of its starts meanwhile.
    others = [other for other in await _queued_claims(store, name) if other.jobs > 0]
    planned = replace(claim, jobs=runnable)
    starts = starts_until_done([*others, planned])[PLANNED] if runnable else 0
    result.share = shares([*others, planned]).get(PLANNED, 1.0)
    result.shared_with = len(others)
    if daily := result.daily_remaining:
        starts = min(starts, daily)  # the cap stops the provider, whoever's jobs they are
    result.estimated_seconds = round(estimate_seconds(starts, model), 3)
    if batch_specs:
        result.batch_jobs = len(batch_specs)
        result.completion_window = BATCH_COMPLETION_WINDOW
        at_batch = [model_costs[(spec.model, spec.mode)] for spec in batch_specs]
        at_direct = [direct_costs[spec.model] for spec in batch_specs]
        if all(cost is not None for cost in at_batch + at_direct):
            result.batch_cost = round(sum(cost or 0.0 for cost in at_batch), 6)
            result.batch_direct_cost = round(sum(cost or 0.0 for cost in at_direct), 6)
    return result, model_costs, model_likely


async def latency_of(store: StoreApi, settings: Settings, name: str) -> tuple[float, str]:
    """The provider's expected time per execution, and where that figure comes from: the median
    of its past jobs, else the setting, else the provider's typical latency."""
    limits = settings.provider_limits(name)
    history = await store.jobs.recent_durations(name)
    if len(history) >= 3:
        return statistics.median(history), f"median of {len(history)} past jobs"
    if limits.expected_latency is not None:
        return limits.expected_latency, "expected_latency setting"
    return traits(name).expected_latency or DEFAULT_REMOTE_LATENCY, "default"


def pooled_limits(settings: Settings, name: str) -> ProviderLimits:
    """The provider's limits as the sum of its quota pools' (each pool counted once, with the limits
    of its first account): with several accounts a batch runs at their sum. A limit that is unknown
    in any pool stays unknown."""
    limits = settings.provider_limits(name)
    pools: dict[str, ProviderLimits] = {}
    # The workflows of one key share its request window and daily cap: those count once per key.
    keys: dict[str, ProviderLimits] = {}
    for account in limits.account_list():
        pools.setdefault(account.pool, account.section)
        keys.setdefault(account.owner or account.pool, account.section)
    if len(pools) == 1:
        return next(iter(pools.values()))

    def total(field: str, of: dict[str, ProviderLimits]) -> int | None:
        values = [getattr(section, field) for section in of.values()]
        return None if any(value is None for value in values) else sum(values)

    return limits.model_copy(
        update={
            "requests_per_minute": total("requests_per_minute", keys),
            "executions_per_minute": total("executions_per_minute", pools),
            "daily_executions": total("daily_executions", keys),
            "max_in_flight": sum(section.max_in_flight for section in pools.values()),
        }
    )


def schedule_model(
    settings: Settings,
    name: str,
    latency: float,
    *,
    requests_per_minute: int | None = None,
    executions_per_minute: int | None = None,
) -> ScheduleModel:
    """The forecast's model of one provider: its limits (the configured ones unless the limiter
    learned others, passed in), concurrency, poll schedule and `latency`."""
    limits = settings.provider_limits(name)
    pools = pooled_limits(settings, name)
    return ScheduleModel(
        requests_per_minute=requests_per_minute or pools.requests_per_minute,
        executions_per_minute=executions_per_minute or pools.executions_per_minute,
        max_in_flight=pools.max_in_flight,
        window=limits.rate_window_seconds,
        latency=latency,
        synchronous=traits(name).synchronous,
        starts_count_as_requests=traits(name).starts_count_as_requests,
        poll_initial=limits.poll_initial,
        poll_factor=limits.poll_factor,
        poll_max=limits.poll_max,
    )


async def _price_pipeline(
    store: StoreApi,
    settings: Settings,
    drafts_left: list[JobSpec],
    finals: list[JobSpec],
    costs: dict[tuple[str, str | None, str | None], float | None],
    rate: float,
    source: str,
) -> PipelinePlan:
    """Drafts left × their price + rate × finals not in the cache × theirs, beside every final at
    once. A final's price is asked like any image's (the provider's estimate, else `costs`)."""
    keys = [cache_key(spec) for spec in finals]
    cached = await store.cache.cached_keys(keys)
    finals_left = [spec for spec, key in zip(finals, keys, strict=True) if key not in cached]
    for name in sorted({spec.provider for spec in finals_left}):
        missing = [s for s in finals_left if s.provider == name and (name, s.model, s.mode) not in costs]
        if missing:
            costs.update(await _model_costs(settings, name, missing))
    draft_costs = [costs.get((spec.provider, spec.model, spec.mode)) for spec in drafts_left]
    final_costs = [costs.get((spec.provider, spec.model, spec.mode)) for spec in finals_left]
    result = PipelinePlan(approve_rate=rate, approve_rate_source=source, drafts=len(drafts_left))
    result.expected_finals = round(rate * len(finals_left), 6)
    if None in draft_costs or None in final_costs:
        return result  # an unknown price: no total is honest
    every_final = sum(c or 0.0 for c in final_costs)
    result.drafts_credits = round(sum(c or 0.0 for c in draft_costs), 6)
    result.finals_credits = round(rate * every_final, 6)
    result.pipeline_credits = round(result.drafts_credits + result.finals_credits, 6)
    result.straight_to_finals = round(every_final, 6)
    result.saving = round(result.straight_to_finals - result.pipeline_credits, 6)
    return result


async def _model_costs(
    settings: Settings, name: str, specs: list[JobSpec]
) -> dict[tuple[str, str | None, str | None], float | None]:
    provider: Provider | None = None
    try:
        provider = build_provider(name, settings, UnlimitedGate())
    except ValueError as error:
        log.warning("%s: %s", name, error)
    found: dict[tuple[str, str | None, str | None], float | None] = {}
    try:
        for spec in specs:
            if (name, spec.model, spec.mode) not in found:
                found[(name, spec.model, spec.mode)] = await ask_estimate(provider, settings, spec)
    finally:
        if provider is not None:
            await provider.aclose()
    return found


def _provider_stops(
    settings: Settings, name: str, plan: ProviderPlan, costs: list[float | None], spent_today: float
) -> list[tuple[int, str]]:
    stops: list[tuple[int, str]] = []
    if plan.daily_remaining is not None and plan.daily_remaining < plan.jobs_left:
        left_today = plan.daily_remaining
        stops.append((left_today, f"{name}: daily execution cap ({left_today} starts left today)"))
    cap = settings.provider_limits(name).daily_credit_cap
    if cap is not None:
        after = _jobs_affordable(costs, cap - spent_today)
        if after < len(costs):
            stops.append((after, f"{name}: daily credit cap {cap:g} ({spent_today:g} spent today)"))
    if plan.balance is not None:
        after = _jobs_affordable(costs, plan.balance)
        if after < len(costs):
            stops.append((after, f"{name}: balance of {plan.balance:g} credits"))
    return stops


def _jobs_affordable(costs: list[float | None], credits: float) -> int:
    total = 0.0
    for index, cost in enumerate(costs):
        total += cost or 0.0
        if total > credits + 1e-9:
            return index
    return len(costs)
