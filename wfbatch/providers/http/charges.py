"""One rule for what a provider says it charged."""

from __future__ import annotations

import logging
import math
from typing import Any

log = logging.getLogger(__name__)


def parse_charge(value: Any, provider: str) -> float | None:
    """A charge the engine may book: a finite number >= 0 (a numeric string is accepted). Anything
    else — negative, NaN, infinite, text, a bool — is refused with a warning, and the engine falls
    back to its estimate: a hostile `creditsUsed: "-50"` must not refund a budget, nor "NaN" break
    the ledger."""
    if value is None:
        return None
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or not math.isfinite(number) or number < 0:
        log.warning("%s: ignoring an invalid charge %r; using the estimate instead", provider, value)
        return None
    return number
