"""`/v1/metrics`: Prometheus text exposition (format 0.0.4), written by hand."""

from __future__ import annotations

import statistics

from wfbatch.daemon.context import DaemonContext
from wfbatch.daemon.views import provider_names

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
    for name, limiter in limiters.items():
        out.sample("wfbatch_provider_requests_total", limiter.requests_sent, provider=name)
    out.family(
        "wfbatch_rate_limited_total", "counter", "429 answers from each provider since the daemon started."
    )
    for name, limiter in limiters.items():
        out.sample("wfbatch_rate_limited_total", limiter.rate_limited, provider=name)
    credits = await ctx.store.counters.credits_used_by("provider")
    out.family("wfbatch_credits_used_total", "counter", "Credits charged by each provider for finished jobs.")
    for name in names:
        out.sample("wfbatch_credits_used_total", credits.get(name, 0.0), provider=name)
    out.family("wfbatch_in_flight", "gauge", "Remote executions in flight.")
    for name, limiter in limiters.items():
        out.sample("wfbatch_in_flight", limiter.in_flight, provider=name)
    out.family("wfbatch_provider_paused", "gauge", "1 when nothing new starts on the provider.")
    for name, limiter in limiters.items():
        out.sample("wfbatch_provider_paused", 1 if limiter.snapshot().paused else 0, provider=name)
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
