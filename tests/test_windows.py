"""[schedule] windows in wall-clock time of a zone, across midnight and daylight-saving changes
(Europe/Berlin: the last Sundays of March and October), on moments the test names (no clock)."""

from __future__ import annotations

import datetime as dt

import pytest

from wfbatch.core.windows import BadWindow, Schedule, parse_window

BERLIN = "Europe/Berlin"


def utc(*parts: int) -> float:
    return dt.datetime(*parts, tzinfo=dt.UTC).timestamp()  # type: ignore[misc]


def test_a_window_across_midnight_is_open_late_and_early_and_says_when_it_opens() -> None:
    night = Schedule.parse(["22:00-06:00"], BERLIN)
    assert night.is_open(utc(2026, 12, 7, 21, 30))  # 22:30 CET
    assert night.is_open(utc(2026, 12, 8, 4, 59))  # 05:59 CET
    assert not night.is_open(utc(2026, 12, 8, 5, 0))  # 06:00 CET: closed
    assert night.next_open(utc(2026, 12, 8, 11, 0)) == utc(2026, 12, 8, 21, 0)  # 22:00 CET
    assert night.next_open(utc(2026, 12, 7, 23, 0)) == utc(2026, 12, 7, 23, 0)  # open: now


def test_spring_forward_shortens_a_night_window_and_swallows_the_skipped_hour() -> None:
    # 2026-03-29 02:00 CET → 03:00 CEST (01:00 UTC).
    night = Schedule.parse(["22:00-06:00"], BERLIN)
    assert night.is_open(utc(2026, 3, 29, 3, 59))  # 05:59 CEST
    assert not night.is_open(utc(2026, 3, 29, 4, 0))  # 06:00 CEST: 7 hours after 22:00 CET
    assert night.next_open(utc(2026, 3, 29, 12, 0)) == utc(2026, 3, 29, 20, 0)  # 22:00 CEST
    skipped = Schedule.parse(["02:00-03:00"], BERLIN)
    # Never open that night: the next opening is Monday 02:00 CEST.
    assert skipped.next_open(utc(2026, 3, 28, 23, 30)) == utc(2026, 3, 30, 0, 0)
    # A window the jump lands inside opens at the jump itself.
    inside = Schedule.parse(["02:30-04:00"], BERLIN)
    assert inside.next_open(utc(2026, 3, 29, 0, 10)) == utc(2026, 3, 29, 1, 0)  # 03:00 CEST


def test_fall_back_repeats_the_hour_and_the_window_is_open_both_times() -> None:
    # 2026-10-25 03:00 CEST → 02:00 CET (01:00 UTC): 02:00-03:00 happens twice.
    repeated = Schedule.parse(["02:00-03:00"], BERLIN)
    assert repeated.next_open(utc(2026, 10, 24, 22, 0)) == utc(2026, 10, 25, 0, 0)  # 02:00 CEST
    assert repeated.is_open(utc(2026, 10, 25, 0, 30))  # 02:30 CEST
    assert repeated.is_open(utc(2026, 10, 25, 1, 30))  # 02:30 CET, the second time round
    assert not repeated.is_open(utc(2026, 10, 25, 2, 0))  # 03:00 CET
    night = Schedule.parse(["22:00-06:00"], BERLIN)
    assert night.is_open(utc(2026, 10, 25, 4, 59))  # 05:59 CET: a nine-hour night
    assert not night.is_open(utc(2026, 10, 25, 5, 0))


def test_no_windows_is_always_open_and_bad_ones_say_what_is_expected() -> None:
    assert Schedule.parse([]).is_open(utc(2026, 1, 1, 0, 0))
    assert Schedule.parse(["00:00-24:00"], BERLIN).is_open(utc(2026, 1, 1, 12, 0))
    with pytest.raises(BadWindow, match="22:00-06:00"):
        parse_window("10pm-6am")
    with pytest.raises(BadWindow, match="00:00 to 24:00"):
        parse_window("22:00-25:00")
    with pytest.raises(BadWindow, match="empty"):
        parse_window("06:00-06:00")
    with pytest.raises(BadWindow, match="time zone"):
        Schedule.parse(["22:00-06:00"], "Mars/Olympus")
