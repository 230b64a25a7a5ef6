"""How an entry's width x height reaches a Replicate model (providers.md §3), shared by the client
and parse-time validation (importable without httpx).

Flux models take no pixel size: they take `aspect_ratio` (and `megapixels`) and make a fixed size
for each. A width x height that is one of those sizes is sent as its aspect ratio; any other is
refused at parse time, unless the entry says how to fit it (`params.aspect_ratio`, then the
model's size is accepted as it comes). Other models are sent `width` / `height`.

The flux size table is the one black-forest-labs/flux-schnell and flux-dev produce on Replicate
(1 and 0.25 megapixels; client-observed, not documented in the API).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

SizeMode = Literal["auto", "aspect_ratio", "width_height"]
DEFAULT_MODEL = "black-forest-labs/flux-schnell"

_ONE_MEGAPIXEL: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "16:9": (1344, 768),
    "21:9": (1536, 640),
    "3:2": (1216, 832),
    "2:3": (832, 1216),
    "4:5": (896, 1088),
    "5:4": (1088, 896),
    "3:4": (896, 1152),
    "4:3": (1152, 896),
    "9:16": (768, 1344),
    "9:21": (640, 1536),
}
FLUX_SIZES: dict[tuple[int, int], tuple[str, str]] = {
    **{size: (ratio, "1") for ratio, size in _ONE_MEGAPIXEL.items()},
    **{(w // 2, h // 2): (ratio, "0.25") for ratio, (w, h) in _ONE_MEGAPIXEL.items()},
}
"""(width, height) -> (aspect_ratio, megapixels)."""
ASPECT_RATIOS = tuple(_ONE_MEGAPIXEL)


def model_of(model: str | None, default_model: str = DEFAULT_MODEL) -> str:
    return (model or default_model).strip()


def takes_aspect_ratio(model: str, mode: SizeMode) -> bool:
    if mode != "auto":
        return mode == "aspect_ratio"
    return "flux" in model.split(":")[0].lower()


def size_input(
    model: str, width: int, height: int, params: Mapping[str, Any], mode: SizeMode = "auto"
) -> dict[str, Any] | str:
    """The input fields for the size, or the problem (one line) when the model cannot make it."""
    if not takes_aspect_ratio(model, mode):
        return {"width": width, "height": height}
    if params.get("aspect_ratio") is not None:
        return {}  # the entry says how to fit it: its params carry aspect_ratio (and megapixels)
    found = FLUX_SIZES.get((width, height))
    if found is None:
        sizes = ", ".join(f"{w}x{h}" for (w, h) in sorted(FLUX_SIZES, key=lambda s: (-s[0] * s[1], s)))
        return (
            f"size {width}x{height} is not one {model} makes (it takes an aspect ratio): "
            f"use one of {sizes}, or set params.aspect_ratio (one of {', '.join(ASPECT_RATIOS)})"
        )
    ratio, megapixels = found
    return {"aspect_ratio": ratio, "megapixels": megapixels}


def validate_replicate_entry(
    model: str | None, width: int, height: int, params: Mapping[str, Any]
) -> list[str]:
    """Parse-time check against the default settings (an entry without `model` is the default's)."""
    found = size_input(model_of(model), width, height, params)
    return [found] if isinstance(found, str) else []
