"""`[schedule]` windows in the engine: outside its windows an account starts nothing (in-flight work
finishes and is collected as usual); a provider all of whose accounts are outside theirs is held,
and the hold says when the next window opens. The windows are read from the settings each time, so
a reload (SIGHUP) takes new ones at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from zoneinfo import ZoneInfo

from wfbatch.core.windows import Schedule
from wfbatch.engine.clock import Clock
from wfbatch.engine.events import EventSink
from wfbatch.engine.loop.pool import ProviderPool
from wfbatch.protocol import ProviderEvent
from wfbatch.settings import Settings


def _when(at: float, zone: ZoneInfo | None) -> str:
    """`22:00` today, else `Tue 22:00`, in the windows' zone (named: `22:00 CET`), else this
    machine's local time: the time the windows are written in."""
    moment = dt.datetime.fromtimestamp(at, dt.UTC)
    wall = moment.astimezone(zone) if zone is not None else moment.astimezone()
    today = dt.datetime.now(dt.UTC).astimezone(wall.tzinfo).date()
    shown = wall.strftime("%H:%M") if wall.date() == today else wall.strftime("%a %H:%M")
    return f"{shown} {wall.strftime('%Z')}" if zone is not None else shown


class Windows:
    def __init__(
        self, settings: Callable[[], Settings], pool: ProviderPool, clock: Clock, emit: EventSink
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._clock = clock
        self._emit = emit
        self._closed: set[str] = set()

    def _schedule(self, provider: str, account: str | None) -> Schedule | None:
        entry = self._settings().schedule.get(provider)
        return None if entry is None else entry.schedule(account)

    def account_open(self, provider: str, account: str) -> bool:
        schedule = self._schedule(provider, account)
        return schedule is None or schedule.is_open(self._clock.wall())

    def account_why(self, provider: str, account: str) -> str | None:
        """Why this account starts nothing now by its windows (None: it may), for its line in
        `status`: it sat there as `ready` while it started nothing."""
        schedule = self._schedule(provider, account)
        now = self._clock.wall()
        if schedule is None or schedule.is_open(now):
            return None
        opening = schedule.next_open(now)
        when = (
            "no window opens in the next days"
            if opening is None
            else f"opens at {_when(opening, schedule.zone)}"
        )
        return f"outside its [schedule] windows ({schedule.describe()}): {when}"

    def opens_at(self, provider: str) -> float | None:
        """When the provider may start work next, while every account of it is outside its
        windows; None while one may start now (or it has no windows)."""
        if self._settings().schedule.get(provider) is None:
            return None
        now = self._clock.wall()
        openings = []
        for account in self._pool.accounts(provider):
            schedule = self._schedule(provider, account.name)
            if schedule is None or schedule.is_open(now):
                return None
            opening = schedule.next_open(now)
            if opening is not None:
                openings.append(opening)
        return min(openings, default=None) or float("inf")

    def why(self, provider: str) -> str | None:
        """The provider's window hold, said plainly; None when it may start work."""
        opens = self.opens_at(provider)
        if opens is None:
            return None
        entry = self._settings().schedule[provider]
        shown = entry.schedule().describe() if entry.windows else "its accounts' windows"
        if opens == float("inf"):
            return f"outside its [schedule] windows ({shown}): no window opens in the next days"
        when = _when(opens, entry.schedule().zone)
        return f"outside its [schedule] windows ({shown}): the next opens at {when}"

    def observe(self, providers: list[str]) -> None:
        """Tell of each provider that left or entered its windows since the last look."""
        for name in providers:
            why = self.why(name)
            if why is not None and name not in self._closed:
                self._closed.add(name)
                opens = self.opens_at(name)
                details = {"kind": "window", "opens_at": opens if opens != float("inf") else None}
                self._emit(ProviderEvent(event="paused", provider=name, reason=why, details=details))
            elif why is None and name in self._closed:
                self._closed.discard(name)
                opened = "its [schedule] window opened"
                self._emit(ProviderEvent(event="resumed", provider=name, reason=opened))
