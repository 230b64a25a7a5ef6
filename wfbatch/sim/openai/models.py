"""What OpenAI's Images API accepts per model (providers.md §5.1), as the simulator enforces it.

Written from the published contract on purpose, not shared with `wfbatch.providers`: the client's
own rules are checked against this independent copy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GPT_SIZES = ("auto", "1024x1024", "1536x1024", "1024x1536")
GPT_QUALITIES = ("auto", "low", "medium", "high")
OUTPUT_FORMATS = ("png", "jpeg", "webp")
BACKGROUNDS = ("auto", "transparent", "opaque")
MODERATIONS = ("auto", "low")
RESPONSE_FORMATS = ("url", "b64_json")
STYLES = ("vivid", "natural")

GPT_ONLY_FIELDS = (
    "output_format",
    "output_compression",
    "background",
    "moderation",
    "stream",
    "partial_images",
)
"""Parameters only GPT image models take; sent without a model, they select gpt-image-1."""

_FREE_SIZE = re.compile(r"^([1-9][0-9]{1,4})x([1-9][0-9]{1,4})$")
MAX_FREE_PIXELS = 3840 * 2160
MAX_FREE_SIDE = 3840


@dataclass(frozen=True)
class ModelRules:
    name: str
    gpt: bool
    sizes: tuple[str, ...]
    """Accepted sizes; empty for a model that takes any WxH within `free_size_problem`."""
    qualities: tuple[str, ...]
    max_prompt: int
    max_n: int

    def size_problem(self, size: str) -> str | None:
        if self.sizes:
            return None if size in self.sizes else f"Supported values are: {_quoted(self.sizes)}."
        if size == "auto":
            return None
        return free_size_problem(size)


def free_size_problem(size: str) -> str | None:
    """gpt-image-2: any WxH with both sides multiples of 16, ratio within 3:1, at most 3840x2160."""
    match = _FREE_SIZE.match(size)
    if match is None:
        return "Expected 'auto' or WIDTHxHEIGHT."
    width, height = int(match[1]), int(match[2])
    if width % 16 or height % 16:
        return "Width and height must both be multiples of 16."
    if max(width, height) > 3 * min(width, height):
        return "The aspect ratio must be between 1:3 and 3:1."
    if max(width, height) > MAX_FREE_SIDE or width * height > MAX_FREE_PIXELS:
        return "The maximum size is 3840x2160."
    return None


def _quoted(values: tuple[str, ...]) -> str:
    quoted = [f"'{v}'" for v in values]
    return ", ".join(quoted[:-1]) + f", and {quoted[-1]}" if len(quoted) > 1 else quoted[0]


def supported(values: tuple[str, ...]) -> str:
    """The real API's phrasing: "Supported values are: 'a', 'b', and 'c'."."""
    return f"Supported values are: {_quoted(values)}."


def _gpt(name: str, sizes: tuple[str, ...] = GPT_SIZES) -> ModelRules:
    return ModelRules(name, True, sizes, GPT_QUALITIES, 32000, 10)


MODELS: dict[str, ModelRules] = {
    m.name: m
    for m in (
        _gpt("gpt-image-1"),
        _gpt("gpt-image-1-mini"),
        _gpt("gpt-image-1.5"),
        _gpt("gpt-image-2", ()),
        _gpt("gpt-image-2-2026-04-21", ()),
        ModelRules("dall-e-2", False, ("256x256", "512x512", "1024x1024"), ("auto", "standard"), 1000, 10),
        ModelRules(
            "dall-e-3", False, ("1024x1024", "1792x1024", "1024x1792"), ("auto", "standard", "hd"), 4000, 1
        ),
    )
}

OUTPUT_TOKENS_1024 = {"low": 272, "medium": 1056, "high": 4160}
"""gpt-image-1 output image tokens for a 1024x1024 image per quality (providers.md §5.5). Other
sizes are scaled by area: an assumption, the published table is per size."""


def resolved_size(rules: ModelRules, size: str | None) -> tuple[int, int]:
    """The pixel size an answer has: `auto` (or nothing) means a square 1024."""
    if size is None or size == "auto":
        return 1024, 1024
    width, _, height = size.partition("x")
    return int(width), int(height)


def resolved_quality(rules: ModelRules, quality: str | None) -> str:
    if quality is None or quality == "auto":
        return "medium" if rules.gpt else "standard"
    return quality


def output_tokens(quality: str, width: int, height: int) -> int:
    return round(OUTPUT_TOKENS_1024.get(quality, OUTPUT_TOKENS_1024["medium"]) * width * height / 1024**2)
