"""Deadlines for tests that scale with the machine.

A test waits for what it expects (an event, a state, a file); a deadline only bounds how long it
waits before it reports a failure, so it costs nothing when the test passes. On a loaded CI machine
(pytest -n 4 on two busy cores) the same wait can take many times as long as on an idle laptop:

    from tests.deadlines import patience, scaled

    daemon.wait_until(ready, patience(10))    # a wait that ends as soon as it holds: never < 30 s
    httpx.Client(timeout=scaled(5))           # a bound that means something: only multiplied

Set WFBATCH_TEST_SLOWDOWN (a factor, default 1) to stretch every deadline, pytest's per-test
timeout included, on a machine slower still. It is read once, at import: the autouse fixture that
hides the developer's WFBATCH_* variables from a test runs later.
"""

from __future__ import annotations

import os

SLOWDOWN_VARIABLE = "WFBATCH_TEST_SLOWDOWN"
MIN_PATIENCE = 30.0
"""No wait for a condition gives up sooner: a passing test never waits it out, a loaded machine
needs it (a bucket-down delivery test once timed out at 10 s under `make test`)."""


def _slowdown() -> float:
    raw = os.environ.get(SLOWDOWN_VARIABLE, "").strip()
    if not raw:
        return 1.0
    try:
        factor = float(raw)
    except ValueError:
        raise ValueError(f"{SLOWDOWN_VARIABLE}={raw!r}: expected a number such as 2 or 4") from None
    if not factor >= 1.0:  # also refuses NaN
        raise ValueError(f"{SLOWDOWN_VARIABLE}={raw!r}: a slowdown factor is 1 or more")
    return factor


SLOWDOWN = _slowdown()


def scaled(seconds: float) -> float:
    """`seconds` on this machine: a bound whose size matters (a client timeout, a subprocess run)."""
    return seconds * SLOWDOWN


def patience(seconds: float = MIN_PATIENCE) -> float:
    """The deadline of a wait that ends as soon as its condition holds: at least MIN_PATIENCE."""
    return max(seconds, MIN_PATIENCE) * SLOWDOWN
