"""Moments a user types: a batch's `not_before` (`"2026-12-08T02:00:00+01:00"`) and `--at 02:00`."""

from __future__ import annotations

import datetime as dt
import re

_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")
EXAMPLE = "2026-12-08T02:00:00+01:00"


class BadMoment(ValueError):
    """Text that names no moment; the message says what is expected."""


def parse_moment(text: str) -> dt.datetime:
    """An ISO 8601 date-time; without an offset it is local time. Returned aware."""
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        got = text.strip()[:40]
        raise BadMoment(f"expected an ISO 8601 date-time such as {EXAMPLE}, got {got!r}") from None
    return moment if moment.tzinfo is not None else moment.astimezone()


def parse_at(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """`--at`: `HH:MM` is the next such local time (today, or tomorrow once it has passed); anything
    else is read as `parse_moment` reads it."""
    now = (now or dt.datetime.now()).astimezone()
    found = _CLOCK.match(text.strip())
    if found is None:
        try:
            return parse_moment(text)
        except BadMoment:
            raise BadMoment(
                f"expected HH:MM (the next such local time) or a date-time such as {EXAMPLE},"
                f" got {text.strip()[:40]!r}"
            ) from None
    hour, minute = int(found[1]), int(found[2])
    if hour > 23 or minute > 59:
        raise BadMoment(f"{text.strip()!r} is no time of day (00:00 to 23:59)")
    day = now.date()
    for _ in range(2):
        # Naive, then local: a time a daylight-saving change skips or repeats gets the zone's reading.
        moment = dt.datetime.combine(day, dt.time(hour, minute)).astimezone()
        if moment > now:
            return moment
        day += dt.timedelta(days=1)
    return moment
