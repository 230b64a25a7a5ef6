"""Default credits per image for Stability's models (1 credit = $0.01).

Source: platform.stability.ai/pricing as copied in providers.md §4.5 on 2025-12-01 (marked
"assumed" there: third-party copies of the pricing page). These are DEFAULTS: `costs` under
[stability] (credits by model, or `default`) overrides them. A model not listed has no default
price: set `costs` for it, or budgets cannot count it.
"""

from __future__ import annotations

PRICES_AS_OF = "2025-12-01"
CREDITS: dict[str, float] = {
    "ultra": 8.0,
    "core": 3.0,
    "sd3.5-large": 6.5,
    "sd3.5-large-turbo": 4.0,
    "sd3.5-medium": 3.5,
    # The upscalers (providers.md §12.2, "doc" via the v2beta OpenAPI copy): priced per request.
    "upscale-fast": 2.0,
    "upscale-conservative": 40.0,
    "upscale-creative": 60.0,
    # edit/inpaint: providers.md §12.2 names the endpoint but lists no credits; 3 per request is the
    # public pricing page's figure (assumed, not in the OpenAPI copy).
    "inpaint": 3.0,
}


def table_credits(model: str) -> float | None:
    return CREDITS.get(model)
