"""`/v1/metrics`: Prometheus text exposition (format 0.0.4), written by hand."""

from __future__ import annotations

import statistics

from wfbatch.daemon.context import DaemonContext
from wfbatch.daemon.views import account_statuses, provider_names

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
QUANTILES = (0.5, 0.9, 0.99)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, **labels: str) -> None:
        shown = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        self.lines.append(f"{name}{{{shown}}} {value:g}" if shown else f"{name} {value:g}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


async def _accounts(ctx: DaemonContext, out: _Exposition, names: list[str]) -> None:
    """Per account (provider + account) for the providers that have several; never a key. Accounts
    sharing a quota pool share its limiter, so its requests, 429s and in-flight are the pool's
    (the `pool` label says which)."""
    pool = ctx.engine.pool
    rows = [(name, account) for name in names for account in account_statuses(ctx, name)]
    if not rows:
        return
    limiters = {
        (name, account.name): pool.account_limiter(name, account.name) for name, account in rows
    }
    families = (
        ("wfbatch_account_requests_total", "counter", "HTTP requests sent through the account's quota pool."),
        ("wfbatch_account_rate_limited_total", "counter", "429 answers to the account's quota pool."),
        ("wfbatch_account_in_flight", "gauge", "Executions in flight in the account's quota pool."),
        ("wfbatch_account_held", "gauge", "1 when the account starts nothing (a bad key, no credit, a cap)."),
        ("wfbatch_account_credits_used_total", "counter", "Credits charged on the account."),
    )
    charged = {
        (name, account.name): await ctx.store.ledger.charged(provider=name, account=account.name)
        for name, account in rows
    }
    for metric, kind, help_text in families:
        out.family(metric, kind, help_text)
        for name, account in rows:
            limiter = limiters[(name, account.name)]
            value = {
                "wfbatch_account_requests_total": limiter.requests_sent,
                "wfbatch_account_rate_limited_total": limiter.rate_limited,
                "wfbatch_account_in_flight": account.in_flight,
                "wfbatch_account_held": 1 if account.state == "held" else 0,
                "wfbatch_account_credits_used_total": charged[(name, account.name)],
            }[metric]
            out.sample(metric, value, provider=name, account=account.name, pool=account.pool)


def _quantile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


async def render_metrics(ctx: DaemonContext) -> str:
    out = _Exposition()
    counts = await ctx.store.counters.counts()
    out.family("wfbatch_jobs", "gauge", "Jobs by state.")
    for state, n in counts.items():
        out.sample("wfbatch_jobs", n, state=state)

    by_provider = await ctx.store.counters.counts_by("provider")
    names = await provider_names(ctx, by_provider)
    limiters = {name: ctx.engine.pool.limiter(name) for name in names}
    out.family(
        "wfbatch_provider_requests_total",
        "counter",
        "HTTP requests sent to each provider since the daemon started.",
    )
    pooled = ctx.engine.pool.pool_limiters.items()
    pools = {name: [limiter for (of, _), limiter in pooled if of == name] for name in names}
    for name, limiter in limiters.items():
        # With several accounts, the requests go through their pools' limiters.
        sent = limiter.requests_sent + sum(pool.requests_sent for pool in pools[name])
        out.sample("wfbatch_provider_requests_total", sent, provider=name)
    out.family(
        "wfbatch_rate_limited_total", "counter", "429 answers from each provider since the daemon started."
    )
    for name, limiter in limiters.items():
        limited = limiter.rate_limited + sum(pool.rate_limited for pool in pools[name])
        out.sample("wfbatch_rate_limited_total", limited, provider=name)
    credits = await ctx.store.counters.credits_used_by("provider")
    out.family("wfbatch_credits_used_total", "counter", "Credits charged by each provider for finished jobs.")
    for name in names:
        out.sample("wfbatch_credits_used_total", credits.get(name, 0.0), provider=name)
    out.family("wfbatch_in_flight", "gauge", "Remote executions in flight.")
    for name, limiter in limiters.items():
        in_flight = limiter.in_flight + sum(pool.in_flight for pool in pools[name])
        out.sample("wfbatch_in_flight", in_flight, provider=name)
    out.family("wfbatch_provider_paused", "gauge", "1 when nothing new starts on the provider.")
    for name, limiter in limiters.items():
        out.sample("wfbatch_provider_paused", 1 if limiter.snapshot().paused else 0, provider=name)
    await _accounts(ctx, out, names)
    out.family("wfbatch_paused", "gauge", "1 when the whole daemon is paused.")
    out.sample("wfbatch_paused", 1 if ctx.engine.holds.everything() is not None else 0)

    count, total, recent = await ctx.store.counters.queue_waits()
    out.family("wfbatch_queue_wait_seconds", "summary", "Seconds from enqueue to a job's first start.")
    if recent:
        for q in QUANTILES:
            out.sample("wfbatch_queue_wait_seconds", _quantile(recent, q), quantile=f"{q:g}")
    out.sample("wfbatch_queue_wait_seconds_sum", total)
    out.sample("wfbatch_queue_wait_seconds_count", count)

    out.family("wfbatch_inbox_files_total", "counter", "Files taken from the inbox, by outcome.")
    for outcome in ("accepted", "duplicate", "rejected"):
        out.sample("wfbatch_inbox_files_total", ctx.inbox_outcomes.get(outcome, 0), outcome=outcome)
    out.family("wfbatch_event_subscribers", "gauge", "Clients following /v1/events.")
    out.sample("wfbatch_event_subscribers", len(ctx.hub))
    return out.text()
