"""The header: connection, global pause, job counts, one line per provider's limiter, and one for
the servers of a provider that has several (ComfyUI, one per GPU).

It shows what it is given (`health`, `status`, `socket`: reactive attributes the screen sets) and
fits its lines to the width: each line is made of parts ranked by use, and the least useful go
first (the socket path before the pause, the 429 count before the limits).
"""

from __future__ import annotations

from datetime import UTC, datetime

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from wfbatch.protocol import Health, JobState, ProviderStatus, Status
from wfbatch.protocol.states import ORDER, STYLE
from wfbatch.tui.formatting import duration, of_limit, provider_pause_text

ALWAYS_SHOWN = frozenset({JobState.QUEUED, JobState.RUNNING, JobState.DONE, JobState.FAILED})
"""Counted in the header even at 0; the other states only while some job is in them."""

Part = tuple[Text, int]
"""A piece of a line and its rank: the lowest rank is dropped first when the line is too long."""


def fit_line(parts: list[Part], width: int) -> Text:
    """The parts that fit in `width` cells, in their order, dropping the lowest-ranked first; the
    two ranked highest stay, the line cut with an ellipsis if even they are too long. (Dropping down
    to one left a held provider at 80 columns as a bare "wireflow": its hold, longer than the
    line, went with everything else.)"""
    kept = list(parts)
    while len(kept) > 2 and sum(t.cell_len for t, _ in kept) > width:
        kept.remove(min(kept, key=lambda part: part[1]))
    line = Text(no_wrap=True, overflow="ellipsis")
    for text, _ in kept:
        line.append_text(text)
    line.truncate(max(1, width), overflow="ellipsis")
    return line


def _part(text: str, style: str = "") -> Text:
    return Text(text, style=style)


def _labelled(label: str, value: str, value_style: str = "bold") -> Text:
    return Text.assemble((label, ""), (value, value_style))


def provider_parts(provider: ProviderStatus) -> list[Part]:
    label = provider.label
    if label.startswith(provider.name):
        label = label[len(provider.name):].strip(" ()")
    parts: list[Part] = [(_part(provider.name, "bold"), 100)]
    if label:
        parts.append((_part(f" ({label})", "dim"), 10))
    pause = provider_pause_text(provider)
    if pause:
        parts.append((_part(f"  ⏸ {pause}", "bold red"), 90))
    elif provider.blocked_for > 0:
        why = provider.block_reason or "waiting"
        parts.append((_part(f"  ⧗ {why}, {duration(provider.blocked_for)}", "yellow"), 80))
    elif (wait := provider.start_wait()) is not None:
        parts.append((_part(f"  ⧗ next start in {duration(wait[0])}: {wait[1]}", "yellow"), 80))
    if provider.accounts:
        parts.append((_part(f"  {accounts_summary(provider)}", "cyan"), 85))
    parts += [
        (_labelled("  req/min ", of_limit(provider.requests_in_window, provider.requests_per_minute)), 60),
        (_labelled("  exec/min ", of_limit(provider.executions_in_window, provider.executions_per_minute)),
         50),
        (_labelled("  in flight ", f"{provider.in_flight}/{provider.max_in_flight}"), 70),
        (_labelled("  today ", of_limit(provider.daily_executions, provider.daily_cap)), 40),
        (_labelled("  balance ", balance_text(provider)), 30),
    ]
    if provider.rate_limited:
        parts.append((_part(f"  429s {provider.rate_limited}", "yellow"), 20))
    return parts


ACCOUNT_WORDS = {
    "authentication": "disabled",
    "credits": "no credit",
    "unreachable": "unreachable",
    "daily_cap": "at daily cap",
    "daily_credit_cap": "at credit cap",
    "window": "outside window",
}
"""How the header names why an account is held (its `kind`), in the summary's counts."""


def accounts_summary(provider: ProviderStatus) -> str:
    """`3 accounts: 2 ok, 1 disabled`: the accounts of a provider that has several, by state (the
    full list, one line each, is on `?`)."""
    counts: dict[str, int] = {}
    for account in provider.accounts:
        if account.state == "held":
            word = ACCOUNT_WORDS.get(account.kind or "", "held")
        else:
            word = "ok" if account.state == "ready" else "waiting"
        counts[word] = counts.get(word, 0) + 1
    order = ["ok", "waiting", *ACCOUNT_WORDS.values(), "held"]
    shown = ", ".join(f"{counts[word]} {word}" for word in order if word in counts)
    return f"{len(provider.accounts)} accounts: {shown}"


def balance_text(provider: ProviderStatus, now: datetime | None = None) -> str:
    """`929 (2m ago)`: what the provider said is left, and how old that is (read every few
    minutes, not live); an em dash where the provider cannot tell."""
    if provider.balance is None:
        return "—"
    shown = f"{provider.balance:.6g}"
    if provider.balance_at is None:
        return shown
    age = ((now or datetime.now(UTC)) - provider.balance_at).total_seconds()
    return shown if age < 60 else f"{shown} ({duration(age)} ago)"


def server_parts(provider: ProviderStatus) -> list[Part]:
    """The line under a provider with several servers; one that is down outranks those up."""
    parts: list[Part] = [(_part("  servers:", "dim"), 100)]
    for index, server in enumerate(provider.servers):
        style = "green" if server.up else "bold red"
        parts.append((_part(f"  {server.describe()}", style), (80 if server.up else 95) - index))
    return parts


def connection_parts(health: Health | None, status: Status | None, socket: str) -> list[Part]:
    parts: list[Part] = [(_part("● connected", "bold green"), 100)]
    if health is not None:
        parts.append((_part(f"  wfbatch {health.version}", "dim"), 20))
        parts.append((_part(f" (pid {health.pid})", "dim"), 15))
    parts.append((_part(f"  {socket}", "dim"), 10))
    if status is not None:
        if status.paused:
            reason = f": {status.pause_reason}" if status.pause_reason else ""
            parts.append((_part(f"   ⏸ ALL PAUSED{reason}", "bold reverse yellow"), 90))
        else:
            parts.append((_part("   ▶ running", "green"), 50))
    return parts


def counts_parts(status: Status) -> list[Part]:
    parts: list[Part] = [(_part("jobs", "dim"), 100)]
    for rank, state in zip(range(90, 0, -10), ORDER, strict=False):
        count = status.jobs.get(state, 0)
        if not count and state not in ALWAYS_SHOWN:
            continue
        style = STYLE.get(state, "") if count else "dim"
        text = Text.assemble(("  ", ""), (f"{state} ", "dim"), (str(count), style or "bold"))
        parts.append((text, rank + (100 if count else 0)))
    return parts


class StatusHeader(Widget):
    """Shows what `/v1/status` says; redrawn when the screen sets a fresh status or on resize."""

    DEFAULT_CSS = "StatusHeader { height: auto; }"

    health: reactive[Health | None] = reactive(None, layout=True)
    status: reactive[Status | None] = reactive(None, always_update=True, layout=True)
    socket: reactive[str] = reactive("")

    def render(self) -> Text:
        width = max(1, self.content_region.width or self.size.width or 80)
        lines = [fit_line(connection_parts(self.health, self.status, self.socket), width)]
        if self.status is not None:
            lines.append(fit_line(counts_parts(self.status), width))
            for p in self.status.providers.values():
                lines.append(fit_line(provider_parts(p), width))
                if p.servers:
                    lines.append(fit_line(server_parts(p), width))
        return Text("\n").join(lines)
