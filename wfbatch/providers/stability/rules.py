"""What Stability's v2beta generate endpoints accept (providers.md §4.2), checked before anything is
enqueued: a size, format or parameter Stability cannot take is a line error at parse time.

Sizes: Stability takes no width/height, only an `aspect_ratio` from a fixed list, and picks the
pixels itself. An entry's width×height is accepted when it *is* one of those ratios (1920x1080 is
16:9, 1344x768 is Stability's own 16:9 size); any other size is refused unless the entry says how
to map it: `params.aspect_ratio: "16:9"` (that ratio, as given) or `params.fit: "aspect_ratio"` (the
nearest documented ratio). The image saved is the size Stability made; the result's metadata says
which ratio was asked for.

Pure: no I/O, no settings. The simulator keeps its own copy of the contract (it may not import
providers); the tests check the two against each other.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

ASPECT_RATIOS: tuple[str, ...] = ("16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21")
PIXEL_SIZES: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "16:9": (1344, 768),
    "21:9": (1536, 640),
    "2:3": (832, 1216),
    "3:2": (1216, 832),
    "4:5": (896, 1088),
    "5:4": (1088, 896),
    "9:16": (768, 1344),
    "9:21": (640, 1536),
}
"""The pixel size Stability makes for each ratio (about one megapixel, sides multiples of 64): an
entry asking for exactly one of these needs no `fit`."""
ENDPOINT_MODELS = ("ultra", "core")
SD3_PREFIX = "sd3"
STYLE_PRESETS = [
    "3d-model",
    "analog-film",
    "anime",
    "cinematic",
    "comic-book",
    "digital-art",
    "enhance",
    "fantasy-art",
    "isometric",
    "line-art",
    "low-poly",
    "modeling-compound",
    "neon-punk",
    "origami",
    "photographic",
    "pixel-art",
    "tile-texture",
]
OUTPUT_FORMATS = ("png", "jpeg", "webp")
SD3_OUTPUT_FORMATS = ("png", "jpeg")
MAX_SEED = 4_294_967_294
MAX_PROMPT = 10_000
PARAMS = (
    "fit", "aspect_ratio", "style_preset", "output_format", "negative_prompt", "cfg_scale",
    "upscaler", "creativity", "mode", "grow_mask",
)
FIT_CHOICES = ("aspect_ratio",)


def endpoint_of(model: str) -> str:
    """`ultra`, `core` or `sd3` (every sd3 model goes to the sd3 endpoint with `model=`)."""
    return model if model in ENDPOINT_MODELS else SD3_PREFIX


def model_problem(model: str) -> str | None:
    if model in ENDPOINT_MODELS or model.startswith(SD3_PREFIX):
        return None
    return f"no model {model!r}: Stability has ultra, core or an sd3 model such as sd3.5-large"


def exact_ratio(width: int, height: int) -> str | None:
    """The documented ratio width×height is, or Stability's own pixel size for; None otherwise."""
    for ratio, size in PIXEL_SIZES.items():
        if size == (width, height):
            return ratio
    if width <= 0 or height <= 0:
        return None
    reduced = Fraction(width, height)
    for ratio in ASPECT_RATIOS:
        a, b = (int(part) for part in ratio.split(":"))
        if Fraction(a, b) == reduced:
            return ratio
    return None


def nearest_ratio(width: int, height: int) -> str:
    """The documented ratio closest to width/height (compared on a log scale: 2:1 and 1:2 are as far
    from 1:1)."""
    wanted = math.log(max(1, width) / max(1, height))

    def distance(ratio: str) -> float:
        a, b = (int(part) for part in ratio.split(":"))
        return abs(math.log(a / b) - wanted)

    return min(ASPECT_RATIOS, key=distance)


def aspect_ratio_for(width: int, height: int, params: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(ratio to send, problem). An explicit `params.aspect_ratio` wins; then an exact ratio; then,
    with `params.fit: "aspect_ratio"`, the nearest one."""
    explicit = params.get("aspect_ratio")
    if explicit is not None:
        if explicit not in ASPECT_RATIOS:
            return None, f"params.aspect_ratio {explicit!r} is not one of {', '.join(ASPECT_RATIOS)}"
        return str(explicit), None
    exact = exact_ratio(width, height)
    if exact is not None:
        return exact, None
    if params.get("fit") == "aspect_ratio":
        return nearest_ratio(width, height), None
    return None, (
        f"cannot make {width}x{height}: Stability takes only the aspect ratios {', '.join(ASPECT_RATIOS)}"
        f' (e.g. {PIXEL_SIZES["1:1"][0]}x{PIXEL_SIZES["1:1"][1]}, 1344x768); set params.fit = "aspect_ratio"'
        " for the nearest one, or params.aspect_ratio"
    )


def output_format_for(model: str, fmt: str, params: Mapping[str, Any]) -> tuple[str, str | None]:
    """What Stability is asked to encode: `params.output_format`, else the entry's format when the
    model makes it, else png (wfbatch converts to the entry's format when writing)."""
    allowed = SD3_OUTPUT_FORMATS if endpoint_of(model) == SD3_PREFIX else OUTPUT_FORMATS
    explicit = params.get("output_format")
    if explicit is not None:
        if explicit not in allowed:
            return "png", f"params.output_format {explicit!r}: {model} makes only {', '.join(allowed)}"
        return str(explicit), None
    return (fmt if fmt in allowed else "png"), None


def validate_stability_entry(
    model: str,
    width: int,
    height: int,
    fmt: str,
    seed: int | None,
    prompt: str,
    params: Mapping[str, Any],
    *,
    sized_by_input: bool = False,
) -> list[str]:
    """Every reason Stability would refuse this entry (empty = fine). `sized_by_input`: the picture
    takes its shape from an input (image-to-image, upscale), so no aspect ratio is asked for."""
    problems: list[str] = []
    bad_model = model_problem(model)
    if bad_model:
        return [bad_model]
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        problems.append(f"Stability does not take params {', '.join(unknown)}; it takes {', '.join(PARAMS)}")
    if params.get("fit") is not None and params.get("fit") not in FIT_CHOICES:
        problems.append(f'params.fit {params.get("fit")!r}: the only choice is "aspect_ratio"')
    _, ratio_problem = (None, None) if sized_by_input else aspect_ratio_for(width, height, params)
    if ratio_problem:
        problems.append(ratio_problem)
    _, format_problem = output_format_for(model, fmt, params)
    if format_problem:
        problems.append(format_problem)
    preset = params.get("style_preset")
    if preset is not None and preset not in STYLE_PRESETS:
        problems.append(f"params.style_preset {preset!r} is not one of {', '.join(STYLE_PRESETS)}")
    cfg = params.get("cfg_scale")
    if cfg is not None:
        if endpoint_of(model) != SD3_PREFIX:
            problems.append("params.cfg_scale is for sd3 models only")
        elif isinstance(cfg, bool) or not isinstance(cfg, int | float) or not 1 <= cfg <= 10:
            problems.append(f"params.cfg_scale must be a number from 1 to 10, not {cfg!r}")
    if seed is not None and seed > MAX_SEED:
        problems.append(f"seed {seed} is over Stability's maximum {MAX_SEED}")
    if not prompt.strip() or len(prompt) > MAX_PROMPT:
        problems.append(f"stability takes a prompt of 1 to {MAX_PROMPT} characters, not {len(prompt)}")
    return problems
