"""What Stability's image endpoints accept (providers.md §12.2): image-to-image on `generate/ultra`
and `generate/sd3` (`mode=image-to-image`), and the upscalers `upscale/fast|conservative|creative`.
Pure, no I/O; the simulator keeps its own copy of these limits.

Choices (documented in the README):
- an entry's `image` goes to image-to-image: ultra or an sd3 model (core takes no image); Stability
  requires a `strength` with it, so the entry must give one (a finals `refine` defaults to
  REFINE_STRENGTH);
- a final `from_draft: "upscale"` uses `params.upscaler` (`fast` by default: 4x the approved
  picture for 2 credits; `conservative` 40; `creative` 60, asynchronous);
- an entry's `image` + `mask` (or `params.mode = "inpaint"`) goes to edit/inpaint (inpaint.py);
  a mask on an upscale or a refined final, and reference images (`images`), are refused at parse time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wfbatch.core.models import InputImage, JobSpec
from wfbatch.providers.stability.inpaint import GROW_MASK, MODE, inpaint_problems, is_inpaint

MAX_REQUEST_BYTES = 10 * 1024 * 1024
"""A request over 10 MiB is answered 413 (§12.2): the image is nearly all of it."""
UPSCALERS = ("fast", "conservative", "creative")
UPSCALE_CREDITS = {"fast": 2.0, "conservative": 40.0, "creative": 60.0}
REFINE_STRENGTH = 0.35
"""A refine keeps the approved picture's composition and redraws its detail at the final's model."""
CREATIVITY = (0.2, 0.5)
IMAGE_PARAMS = ("upscaler", "creativity", "mode", "grow_mask")


def upscaler_of(params: Mapping[str, Any]) -> str:
    value = params.get("upscaler")
    return value if isinstance(value, str) and value in UPSCALERS else "fast"


def takes_image(model: str) -> bool:
    return model == "ultra" or model.startswith("sd3")


def upscale_input_problem(upscaler: str, width: int, height: int) -> str | None:
    """Why the upscaler would refuse a picture of this size (None = fine)."""
    pixels = width * height
    if upscaler == "fast":
        if not (32 <= width <= 1536 and 32 <= height <= 1536) or pixels > 1_048_576:
            return f"upscale/fast takes 32 to 1536 px a side, at most 1,048,576 pixels, not {width}x{height}"
        return None
    if min(width, height) < 64:
        return f"upscale/{upscaler} takes at least 64 px a side, not {width}x{height}"
    if upscaler == "conservative":
        if pixels > 9_437_184 or max(width, height) > 2.5 * min(width, height):
            return f"upscale/conservative takes at most 9,437,184 pixels, ratio 2.5:1, not {width}x{height}"
        return None
    if pixels > 1_048_576:
        return f"upscale/creative takes at most 1,048,576 pixels, not {width}x{height}"
    return None


def image_problems(spec: JobSpec, model: str) -> list[str]:
    """Every reason Stability would refuse this job's pictures (empty = fine, or none sent)."""
    problems: list[str] = []
    params = spec.params
    upscaler = params.get("upscaler")
    if upscaler is not None and upscaler not in UPSCALERS:
        problems.append(f"params.upscaler {upscaler!r} is not one of {', '.join(UPSCALERS)}")
    creativity = params.get("creativity")
    if creativity is not None and (
        isinstance(creativity, bool)
        or not isinstance(creativity, int | float)
        or not CREATIVITY[0] <= creativity <= CREATIVITY[1]
    ):
        problems.append(f"params.creativity must be a number from {CREATIVITY[0]} to {CREATIVITY[1]}")
    mode = params.get("mode")
    if mode is not None and mode != MODE:
        problems.append(f'params.mode {mode!r}: the only choice is "{MODE}" (edit/inpaint)')
    if spec.input_of("images") is not None:
        problems.append("stability takes one image, not reference images (images)")
    if is_inpaint(spec):
        return problems + inpaint_problems(spec)
    if spec.input_of("mask") is not None:
        problems.append(
            "stability takes a mask only with an entry's own image (edit/inpaint), not on upscale or refine"
        )
    if params.get("grow_mask") is not None:
        low, high = GROW_MASK
        problems.append(f"params.grow_mask ({low} to {high}) is for an inpaint: an image with a mask")
    image = spec.input_of("image")
    if spec.operation == "upscale":
        if image is not None and image.width:
            problem = upscale_input_problem(upscaler_of(params), image.width, image.height)
            if problem:
                problems.append(problem)
        return problems + _size_problems(image)
    if image is None and spec.operation != "refine":
        return problems
    if not takes_image(model):
        problems.append(f"{model} takes no image: image-to-image needs ultra or an sd3 model (sd3.5-large)")
    if image is not None and spec.strength is None and spec.operation != "refine":
        problems.append("stability needs a strength (0 to 1) with an image: how far to move from it")
    sides = (image.width, image.height) if image is not None and image.width else None
    if image is not None and sides is not None and not (min(sides) >= 64 and max(sides) <= 16_384):
        problems.append(f"the image must be 64 to 16384 px a side, not {image.width}x{image.height}")
    if image is not None and image.width and model == "ultra" and image.width * image.height < 4096:
        problems.append("ultra takes an image of at least 4,096 pixels")
    return problems + _size_problems(image)


def _size_problems(image: InputImage | None) -> list[str]:
    if image is not None and image.size > MAX_REQUEST_BYTES - 64 * 1024:
        return [f"the image is {image.size / 1_048_576:.1f} MB: a Stability request is at most 10 MiB"]
    return []
