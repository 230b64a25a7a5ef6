"""Parse-time checks of OpenAI jobs (wfbatch/providers/openai/rules.py), and the rules held against
the simulator's independent copy: what one accepts, the other accepts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from wfbatch.core.models import ImageFormat, JobSpec
from wfbatch.providers.openai.rules import MODELS, validate_openai_entry
from wfbatch.providers.validation import spec_problems
from wfbatch.sim.openai.request import ApiError, parse_generation


def test_defaults_are_accepted() -> None:
    assert validate_openai_entry(None, 1024, 1024, "png", {}) == []
    assert validate_openai_entry("dall-e-3", 1792, 1024, "png", {"style": "natural", "quality": "hd"}) == []
    assert validate_openai_entry("gpt-image-2", 1536, 864, "webp", {"background": "transparent"}) == []


@pytest.mark.parametrize(
    ("model", "width", "height", "fmt", "params", "expected"),
    [
        (
            None,
            1000,
            1000,
            "png",
            {},
            "size 1000x1000 is not one of 1024x1024, 1536x1024, 1024x1536 for gpt-image-1",
        ),
        (
            "dall-e-2",
            1024,
            1536,
            "png",
            {},
            "size 1024x1536 is not one of 256x256, 512x512, 1024x1024 for dall-e-2",
        ),
        (
            "gpt-image-2",
            1000,
            1000,
            "png",
            {},
            "size 1000x1000 is not accepted by gpt-image-2: width and height",
        ),
        ("gpt-image-2", 3200, 1056, "png", {}, "aspect ratio"),
        ("gpt-image-2", 3856, 2160, "png", {}, "the largest size is 3840x2160"),
        (
            "gpt-image-1",
            1024,
            1024,
            "png",
            {"quality": "hd"},
            "quality 'hd' is not one of auto, low, medium, high",
        ),
        (
            "dall-e-3",
            1024,
            1024,
            "png",
            {"quality": "high"},
            "quality 'high' is not one of auto, standard, hd",
        ),
        (
            "gpt-image-1",
            1024,
            1024,
            "png",
            {"style": "vivid"},
            "parameter 'style' is not accepted by gpt-image-1",
        ),
        ("dall-e-2", 1024, 1024, "png", {"background": "opaque"}, "parameter 'background' is not accepted"),
        ("gpt-image-1", 1024, 1024, "jpeg", {"background": "transparent"}, "needs format png or webp"),
        ("gpt-image-1", 1024, 1024, "jpeg", {"output_compression": 101}, "output_compression 101"),
        (
            "gpt-image-1",
            1024,
            1024,
            "png",
            {"moderation": "none"},
            "moderation 'none' is not one of auto, low",
        ),
        ("dall-e-4", 1024, 1024, "png", {}, "model 'dall-e-4' is not one of gpt-image-1"),
    ],
)
def test_what_the_model_refuses_is_named_with_the_allowed_values(
    model: str | None, width: int, height: int, fmt: str, params: dict[str, Any], expected: str
) -> None:
    problems = validate_openai_entry(model, width, height, fmt, params)
    assert len(problems) == 1 and expected in problems[0], problems


def test_only_openai_jobs_are_checked() -> None:
    spec = JobSpec("wireflow", "x", None, None, 1000, 1000, 1, 0)
    assert spec_problems(spec) == []
    long_prompt = JobSpec("openai", "x" * 1001, None, "dall-e-2", 1024, 1024, 1, 0, format=ImageFormat.PNG)
    assert spec_problems(long_prompt) == ["prompt is 1001 characters; dall-e-2 takes at most 1000"]


SIZES = [
    (w, h)
    for w in (256, 512, 1000, 1024, 1536, 1792, 2160, 3840, 3856)
    for h in (256, 864, 1024, 1536, 1792, 2160)
]


@pytest.mark.parametrize("model", sorted(MODELS))
def test_rules_agree_with_the_simulator_on_sizes(model: str) -> None:
    for width, height in SIZES:
        ours = validate_openai_entry(model, width, height, "png", {})
        body = json.dumps({"model": model, "prompt": "x", "size": f"{width}x{height}"}).encode()
        theirs = parse_generation(body)
        assert (ours == []) == (not isinstance(theirs, ApiError)), (model, width, height, ours, theirs)
