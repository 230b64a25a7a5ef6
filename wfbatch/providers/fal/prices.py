"""Default US-dollar prices for fal's default endpoints.

Source: fal.ai's public pricing / model pages as known on 2025-06-01. These are DEFAULTS, not
figures fal reports (no queue answer carries a cost, providers.md §2.8): `costs` under [fal]
(dollars per image by endpoint id, or `default`) overrides them. Endpoints not listed have no
default price, and their spend is unknown to budgets until `costs` names them.
"""

from __future__ import annotations

import math

PER_MEGAPIXEL: dict[str, float] = {
    "fal-ai/flux/schnell": 0.003,
    "fal-ai/flux/dev": 0.025,
}
"""Billed per megapixel of output, rounded up to a whole megapixel."""

PER_IMAGE: dict[str, float] = {
    "fal-ai/flux-pro/v1.1": 0.04,
}


def table_price(endpoint: str, width: int, height: int) -> float | None:
    if endpoint in PER_IMAGE:
        return PER_IMAGE[endpoint]
    rate = PER_MEGAPIXEL.get(endpoint)
    if rate is None:
        return None
    return round(rate * max(1, math.ceil(width * height / 1_000_000)), 6)
