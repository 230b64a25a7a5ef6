"""Figures as the pages show them (the TUI has its own; the web must not import it)."""

from __future__ import annotations

from datetime import datetime, timedelta


def duration(seconds: float | None) -> str:
    """`3h 05m`, `4m 10s`, `12s`; an em dash when unknown."""
    if seconds is None:
        return "—"
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def clock_time(moment: datetime) -> str:
    """A time ahead in local time: `02:00` within a day, else with its date (as `status` says)."""
    wall = moment.astimezone()
    if wall - datetime.now(wall.tzinfo) < timedelta(hours=23):
        return wall.strftime("%H:%M")
    return wall.strftime("%Y-%m-%d %H:%M")


def credits(value: float | None) -> str:
    if value is None:
        return "—"
    if value == 0:
        return "free"
    return f"{value:,.4f}".rstrip("0").rstrip(".")


def of_limit(used: int, limit: int | None) -> str:
    return f"{used}/{limit}" if limit is not None else f"{used}/∞"


def percent(part: int, whole: int) -> int:
    return round(100 * part / whole) if whole else 0
