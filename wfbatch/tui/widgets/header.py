"""The header: connection, global pause, job counts, and one line per provider's limiter."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from wfbatch.protocol import Health, ProviderStatus, Status
from wfbatch.tui.formatting import duration, of_limit, provider_pause_text

STATE_ORDER = ("queued", "retrying", "submitting", "running", "done", "failed", "canceled")
STATE_STYLES = {"failed": "bold red", "done": "green", "running": "cyan", "submitting": "cyan"}


def provider_line(provider: ProviderStatus) -> Text:
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append(f"{provider.name}", style="bold")
    label = provider.label
    if label.startswith(provider.name):
        label = label[len(provider.name):].strip(" ()")
    if label:
        line.append(f" ({label})", style="dim")
    pause = provider_pause_text(provider)
    if pause:
        line.append(f"  ⏸ {pause}", style="bold red")
    elif provider.blocked_for > 0:
        why = provider.block_reason or "waiting"
        line.append(f"  ⧗ {why}, {duration(provider.blocked_for)}", style="yellow")
    line.append("  req/min ")
    line.append(of_limit(provider.requests_in_window, provider.requests_per_minute), style="bold")
    line.append("  exec/min ")
    line.append(of_limit(provider.executions_in_window, provider.executions_per_minute), style="bold")
    line.append("  in flight ")
    line.append(f"{provider.in_flight}/{provider.max_in_flight}", style="bold")
    line.append("  today ")
    line.append(of_limit(provider.daily_executions, provider.daily_cap), style="bold")
    line.append("  credits ")
    line.append("—" if provider.balance is None else f"{provider.balance:g}", style="bold")
    if provider.rate_limited:
        line.append(f"  429s {provider.rate_limited}", style="yellow")
    return line


class StatusHeader(Static):
    """Shows what `/v1/status` says; redrawn whenever a fresh status arrives."""

    def show(self, health: Health | None, status: Status | None, socket: str) -> None:
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append("● connected", style="bold green")
        if health is not None:
            text.append(f"  wfbatch {health.version} (pid {health.pid})", style="dim")
        text.append(f"  {socket}", style="dim")
        if status is None:
            self.update(text)
            return
        text.append("   ")
        if status.paused:
            reason = f": {status.pause_reason}" if status.pause_reason else ""
            text.append(f"⏸ ALL PAUSED{reason}", style="bold reverse yellow")
        else:
            text.append("▶ running", style="green")
        text.append("\njobs ")
        for state in STATE_ORDER:
            count = status.jobs.get(state, 0)
            style = STATE_STYLES.get(state, "") if count else "dim"
            text.append(f"{state} ", style="dim")
            text.append(f"{count}", style=style or "bold")
            text.append("  ")
        for provider in status.providers.values():
            text.append("\n")
            text.append_text(provider_line(provider))
        self.update(text)
