"""Default US-dollar prices per image for Replicate's default (official) models.

Source: Replicate's public model / pricing pages as known on 2025-06-01 (official models are
priced per output image). These are DEFAULTS, not figures Replicate reports (no answer carries a
cost, providers.md §3.6): `costs` under [replicate] (dollars per image by model, or `default`)
overrides them. Models not listed (and pinned versions of community models, billed by GPU time)
have no default price.
"""

from __future__ import annotations

PER_IMAGE: dict[str, float] = {
    "black-forest-labs/flux-schnell": 0.003,
    "black-forest-labs/flux-dev": 0.025,
    "black-forest-labs/flux-1.1-pro": 0.04,
}


def table_price(model: str) -> float | None:
    return PER_IMAGE.get(model.split(":")[0])
