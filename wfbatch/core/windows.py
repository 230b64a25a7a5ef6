"""Time windows a provider (or one of its accounts) may start work in: `"22:00-06:00"`, in wall-clock
time of a zone (the machine's local time unless one is named).

A window is wall-clock time: on the night a daylight-saving change skips 02:00-03:00, a window of
02:00-03:00 never opens, and "22:00-06:00" lasts seven hours; on the night the hour repeats, 02:00-03:00
is open both times round. An end at or before the start runs across midnight; "00:00-24:00" is the
whole day.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
SEARCH_DAYS = 9
"""How far ahead the next opening is looked for: every window opens within a day or two."""
QUARTER_HOUR = 15 * 60


class BadWindow(ValueError):
    """A window or time zone that cannot be read; the message says what is expected."""


@dataclass(frozen=True)
class Window:
    start: int
    """Minutes after local midnight."""
    end: int
    """Minutes after local midnight (24:00 is 1440); at or before `start`: across midnight."""

    def holds(self, minute: float) -> bool:
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    def __str__(self) -> str:
        return f"{self.start // 60:02d}:{self.start % 60:02d}-{self.end // 60:02d}:{self.end % 60:02d}"


def parse_window(text: str) -> Window:
    found = _WINDOW.match(text)
    if found is None:
        raise BadWindow(f"expected a window such as \"22:00-06:00\", got {text[:40]!r}")
    start_h, start_m, end_h, end_m = (int(part) for part in found.groups())
    if start_h > 23 or start_m > 59 or end_m > 59 or end_h > 24 or (end_h == 24 and end_m):
        raise BadWindow(f"{text.strip()!r}: times of day are 00:00 to 24:00")
    start, end = start_h * 60 + start_m, end_h * 60 + end_m
    if start == end:
        raise BadWindow(f"{text.strip()!r} is empty: its start and end are the same time")
    return Window(start, end)


def zone_of(name: str | None) -> ZoneInfo | None:
    """An IANA zone ("Europe/Berlin"); None: the machine's local time."""
    if name is None:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadWindow(f"unknown time zone {name[:60]!r} (an IANA name such as \"Europe/Berlin\")") from None


@dataclass(frozen=True)
class Schedule:
    """When starts are allowed: inside any of `windows` (none: always)."""

    windows: tuple[Window, ...]
    zone: ZoneInfo | None = None

    @classmethod
    def parse(cls, windows: Sequence[str], timezone: str | None = None) -> Schedule:
        return cls(tuple(parse_window(text) for text in windows), zone_of(timezone))

    def _local(self, at: float) -> dt.datetime:
        moment = dt.datetime.fromtimestamp(at, dt.UTC)
        return moment.astimezone(self.zone) if self.zone is not None else moment.astimezone()

    def is_open(self, at: float) -> bool:
        if not self.windows:
            return True
        wall = self._local(at)
        minute = wall.hour * 60 + wall.minute + wall.second / 60 + wall.microsecond / 60e6
        return any(window.holds(minute) for window in self.windows)

    def next_open(self, at: float) -> float | None:
        """The first moment from `at` on inside a window: `at` when open now; None when no window
        opens within the search (one a daylight-saving gap swallows every day, say)."""
        if self.is_open(at):
            return at
        # A window opens where the local time reaches its start, or where a daylight-saving change
        # jumps into it: those happen on a quarter hour of UTC in every zone there is.
        candidates = set()
        day = self._local(at).date()
        for offset in range(-1, SEARCH_DAYS):
            for window in self.windows:
                naive = dt.datetime.combine(day + dt.timedelta(days=offset), dt.time()) + dt.timedelta(
                    minutes=window.start
                )
                for fold in (0, 1):
                    wall = naive.replace(fold=fold)
                    aware = wall.replace(tzinfo=self.zone) if self.zone is not None else wall.astimezone()
                    candidates.add(aware.timestamp())
        first = at - at % QUARTER_HOUR + QUARTER_HOUR
        candidates.update(first + step * QUARTER_HOUR for step in range(SEARCH_DAYS * 96))
        for moment in sorted(c for c in candidates if c > at):
            if self.is_open(moment):
                return moment
        return None

    def describe(self) -> str:
        """`22:00-06:00 Europe/Berlin` (`local time` without a zone)."""
        where = self.zone.key if self.zone is not None else "local time"
        return f"{', '.join(str(window) for window in self.windows)} {where}"
