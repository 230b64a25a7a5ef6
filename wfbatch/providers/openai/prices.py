"""Default US-dollar prices per image for OpenAI's image models, by model, quality and size.

Source: OpenAI's pricing page (platform.openai.com/docs/pricing, "Image generation" per-image
table) as known on 2025-12-01; gpt-image-1.5 figures are from its launch announcement and less
certain. These are DEFAULTS: prices change, and `costs` under [openai] (US dollars per image by model,
or `default`) overrides this table. Models not listed here (gpt-image-2) have no default price:
set `costs` for them, or their spend is unknown to budgets.

`auto` quality is estimated at `high` (the server may choose it; a budget must not be overrun); the
charge booked after the answer uses the quality the answer reports.
"""

from __future__ import annotations

_GPT_SIZES = ("1024x1024", "1024x1536", "1536x1024")


def _gpt(
    low: tuple[float, float], medium: tuple[float, float], high: tuple[float, float]
) -> dict[str, dict[str, float]]:
    """(square, portrait/landscape) per quality."""
    table = {"low": low, "medium": medium, "high": high}
    return {
        q: {size: pair[0] if size == "1024x1024" else pair[1] for size in _GPT_SIZES}
        for q, pair in table.items()
    }


PRICES: dict[str, dict[str, dict[str, float]]] = {
    "gpt-image-1": _gpt((0.011, 0.016), (0.042, 0.063), (0.167, 0.25)),
    "gpt-image-1-mini": _gpt((0.005, 0.006), (0.011, 0.015), (0.036, 0.052)),
    "gpt-image-1.5": _gpt((0.009, 0.013), (0.034, 0.05), (0.133, 0.2)),
    "dall-e-3": {
        "standard": {"1024x1024": 0.04, "1024x1792": 0.08, "1792x1024": 0.08},
        "hd": {"1024x1024": 0.08, "1024x1792": 0.12, "1792x1024": 0.12},
    },
    "dall-e-2": {"standard": {"256x256": 0.016, "512x512": 0.018, "1024x1024": 0.02}},
}

_DEFAULT_QUALITY = {"dall-e-3": "standard", "dall-e-2": "standard"}


def table_price(model: str, quality: str | None, size: str) -> float | None:
    """The table's price of one image; None when the model, quality or size is not in it."""
    by_quality = PRICES.get(model)
    if by_quality is None:
        return None
    if quality in (None, "auto"):
        quality = _DEFAULT_QUALITY.get(model, "high")
    return by_quality.get(quality or "", {}).get(size)


AUTO_LIKELY = ("medium", "high")
"""What an `auto`-quality gpt-image request is charged as, as seen: medium mostly, high at most."""


def auto_quality_range(model: str, size: str) -> tuple[float, float] | None:
    """(low, high) price of an `auto`-quality image, where the server picks among qualities of
    different prices; None where `auto` has one price (dall-e: standard) or the table has none."""
    by_quality = PRICES.get(model)
    if by_quality is None or model in _DEFAULT_QUALITY:
        return None
    low, high = (by_quality.get(q, {}).get(size) for q in AUTO_LIKELY)
    if low is None or high is None:
        return None
    return low, high
