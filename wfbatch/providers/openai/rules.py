"""What OpenAI's Images API accepts per model (providers.md §5.1), checked before anything is
enqueued: a size, format or parameter the model does not take is a line error at parse time, never
a paid 400.

Pure: no I/O, no settings. The simulator has its own copy of these rules (`wfbatch.sim` may not
import providers), so the two are checked against each other by the tests, not shared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_MODEL = "gpt-image-1"
"""The model a job without one is sent with. (The API's own default is dall-e-2; wfbatch always
names the model, so this is wfbatch's choice, until the provider's settings say otherwise.)"""

_GPT_SIZES = ((1024, 1024), (1536, 1024), (1024, 1536))
_GPT_QUALITIES = ("auto", "low", "medium", "high")
_GPT_PARAMS = ("quality", "background", "moderation", "output_compression", "user")
_BACKGROUNDS = ("auto", "transparent", "opaque")
_MODERATIONS = ("auto", "low")
_CHOICES = {"background": _BACKGROUNDS, "moderation": _MODERATIONS, "style": ("vivid", "natural")}
_MAX_FREE_SIDE, _MAX_FREE_PIXELS = 3840, 3840 * 2160


@dataclass(frozen=True)
class ModelRules:
    name: str
    gpt: bool
    sizes: tuple[tuple[int, int], ...]
    """Accepted (width, height); empty = any size within gpt-image-2's constraints."""
    qualities: tuple[str, ...]
    params: tuple[str, ...]
    """Keys an entry's `params` may carry for this model."""
    max_prompt: int


def _gpt(name: str, sizes: tuple[tuple[int, int], ...] = _GPT_SIZES) -> ModelRules:
    return ModelRules(name, True, sizes, _GPT_QUALITIES, _GPT_PARAMS, 32000)


MODELS: dict[str, ModelRules] = {
    m.name: m
    for m in (
        _gpt("gpt-image-1"),
        _gpt("gpt-image-1-mini"),
        _gpt("gpt-image-1.5"),
        _gpt("gpt-image-2", ()),
        _gpt("gpt-image-2-2026-04-21", ()),
        ModelRules(
            "dall-e-2",
            False,
            ((256, 256), (512, 512), (1024, 1024)),
            ("auto", "standard"),
            ("quality", "user"),
            1000,
        ),
        ModelRules(
            "dall-e-3",
            False,
            ((1024, 1024), (1792, 1024), (1024, 1792)),
            ("auto", "standard", "hd"),
            ("quality", "style", "user"),
            4000,
        ),
    )
}


def _listed(values: tuple[str, ...]) -> str:
    return ", ".join(values)


def _free_size_problem(width: int, height: int) -> str | None:
    if width % 16 or height % 16:
        return "width and height must be multiples of 16"
    if max(width, height) > 3 * min(width, height):
        return "the aspect ratio must be within 3:1"
    if max(width, height) > _MAX_FREE_SIDE or width * height > _MAX_FREE_PIXELS:
        return "the largest size is 3840x2160"
    return None


def _size_problem(rules: ModelRules, width: int, height: int) -> str | None:
    size = f"{width}x{height}"
    if not rules.sizes:
        problem = _free_size_problem(width, height)
        return None if problem is None else f"size {size} is not accepted by {rules.name}: {problem}"
    if (width, height) in rules.sizes:
        return None
    allowed = _listed(tuple(f"{w}x{h}" for w, h in rules.sizes))
    return f"size {size} is not one of {allowed} for {rules.name}"


def _choice(rules: ModelRules, params: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> str | None:
    value = params.get(key)
    if value is None or value in allowed:
        return None
    return f"{key} {value!r} is not one of {_listed(allowed)} for {rules.name}"


def _is_percent(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 100


def _params_problems(rules: ModelRules, fmt: str, params: Mapping[str, Any]) -> list[str]:
    problems = [
        f"parameter {key!r} is not accepted by {rules.name} (accepted: {_listed(rules.params)})"
        for key in params
        if key not in rules.params
    ]
    for key in rules.params:
        allowed = rules.qualities if key == "quality" else _CHOICES.get(key)
        problem = None if allowed is None else _choice(rules, params, key, allowed)
        if problem is not None:
            problems.append(problem)
    compression = params.get("output_compression")
    if "output_compression" in rules.params and compression is not None and not _is_percent(compression):
        problems.append(f"output_compression {compression!r} is not an integer from 0 to 100")
    if "background" in rules.params and params.get("background") == "transparent" and fmt == "jpeg":
        problems.append(f"a transparent background needs format png or webp, not jpeg ({rules.name})")
    return problems


def validate_openai_entry(
    model: str | None, width: int, height: int, format: str, params: Mapping[str, Any]
) -> list[str]:
    """Every problem that would make OpenAI refuse this job; empty when it would be accepted.
    `format` is the output file format (png, jpeg, webp); `params` the entry's provider params."""
    name = model or DEFAULT_MODEL
    rules = MODELS.get(name)
    if rules is None:
        return [f"model {name!r} is not one of {_listed(tuple(MODELS))} (openai)"]
    problems = []
    size = _size_problem(rules, width, height)
    if size is not None:
        problems.append(size)
    return problems + _params_problems(rules, format, params)


def prompt_problem(model: str | None, prompt: str) -> str | None:
    rules = MODELS.get(model or DEFAULT_MODEL)
    if rules is None or len(prompt) <= rules.max_prompt:
        return None
    return f"prompt is {len(prompt)} characters; {rules.name} takes at most {rules.max_prompt}"
