"""Stability's `POST /v2beta/stable-image/edit/inpaint` (providers.md §12.2): an entry's `image`
repainted where its `mask` is white (or, without a mask, where the image is transparent). Pure, no
I/O; the simulator keeps its own copy of these limits.

Choices (documented in the README):
- an entry with `image` + `mask` goes here; image-only inpaint (Stability then reads the image's
  alpha channel) only with an explicit `params.mode = "inpaint"`, so a plain image entry keeps
  meaning image-to-image;
- the mask must be the image's size: checked at parse time, naming both sizes;
- inpaint takes no model and no strength: an entry giving a `strength` is refused (it would be
  silently dropped otherwise);
- limits as Stability's edit endpoints publish them: each side at least 64 px, 4,096 to 9,437,184
  pixels (assumed: from the public docs, not the OpenAPI copy providers.md cites); `grow_mask` 0 to
  100 (assumed: the current docs' range; older copies say 0 to 20, so a value over 20 may meet a 400,
  which fails the job with Stability's message).
"""

from __future__ import annotations

from wfbatch.core.models import JobSpec
from wfbatch.providers.stability.rules import output_format_for

PATH = "edit/inpaint"
PRICE_KEY = "inpaint"
MODE = "inpaint"
GROW_MASK = (0, 100)
MIN_SIDE = 64
PIXELS = (4_096, 9_437_184)
MAX_REQUEST_BYTES = 10 * 1024 * 1024
RULES_MODEL = "core"
"""Whose output formats and params an inpaint follows (png/jpeg/webp, no cfg_scale)."""


def is_inpaint(spec: JobSpec) -> bool:
    """An entry's own picture with a mask (or `params.mode = "inpaint"`); never a final made from its
    draft (`operation` set), whose picture is not the one a mask was drawn for."""
    if spec.operation is not None:
        return False
    return spec.input_of("mask") is not None or spec.params.get("mode") == MODE


def inpaint_problems(spec: JobSpec) -> list[str]:
    """Every reason edit/inpaint would refuse this job (empty = fine)."""
    problems: list[str] = []
    image = spec.input_of("image")
    mask = spec.input_of("mask")
    if image is None:
        return ["an inpaint (a mask, or params.mode = \"inpaint\") needs an image to repaint"]
    if spec.strength is not None:
        problems.append("stability's edit/inpaint takes no strength: the mask says where to repaint")
    if mask is None and image.media_type == "image/jpeg":
        problems.append(
            f"{image.source}: without a mask, inpaint repaints the image's transparent part,"
            " and a JPEG has none; give a mask"
        )
    pixels = image.width * image.height
    if image.width and (min(image.width, image.height) < MIN_SIDE or not PIXELS[0] <= pixels <= PIXELS[1]):
        problems.append(
            f"inpaint takes an image at least {MIN_SIDE} px a side and {PIXELS[0]:,} to {PIXELS[1]:,}"
            f" pixels, not {image.width}x{image.height}"
        )
    sized = mask is not None and mask.width and image.width
    if mask is not None and sized and (mask.width, mask.height) != (image.width, image.height):
        problems.append(
            f"the mask {mask.source} is {mask.width}x{mask.height} but the image {image.source} is"
            f" {image.width}x{image.height}: they must be the same size"
        )
    grow = spec.params.get("grow_mask")
    low, high = GROW_MASK
    if grow is not None and (isinstance(grow, bool) or not isinstance(grow, int) or not low <= grow <= high):
        problems.append(f"params.grow_mask must be a whole number from {low} to {high}, not {grow!r}")
    sent = image.size + (mask.size if mask is not None else 0)
    if sent > MAX_REQUEST_BYTES - 64 * 1024:
        problems.append(
            f"the image and mask are {sent / 1_048_576:.1f} MB: a Stability request is at most 10 MiB"
        )
    return problems


def inpaint_fields(spec: JobSpec) -> dict[str, str]:
    """The text fields (the client adds the `image` and `mask` file parts)."""
    output_format, _ = output_format_for(RULES_MODEL, spec.format.value, spec.params)
    fields: dict[str, str] = {"prompt": spec.prompt, "output_format": output_format}
    if spec.seed is not None:
        fields["seed"] = str(spec.seed)
    negative = spec.negative_prompt or spec.params.get("negative_prompt")
    if negative:
        fields["negative_prompt"] = str(negative)
    if spec.params.get("grow_mask") is not None:
        fields["grow_mask"] = str(spec.params["grow_mask"])
    if spec.params.get("style_preset") is not None:
        fields["style_preset"] = str(spec.params["style_preset"])
    return fields
