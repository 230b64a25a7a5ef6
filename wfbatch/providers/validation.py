"""Per-provider checks of a job before it is enqueued: what the provider's API would refuse with a
(possibly paid) 400 is refused at parse time instead, naming the line and the allowed values."""

from __future__ import annotations

from collections.abc import Callable

from wfbatch.core.models import JobSpec
from wfbatch.providers.openai_rules import prompt_problem, validate_openai_entry
from wfbatch.providers.registry import REGISTRY
from wfbatch.providers.replicate_rules import validate_replicate_entry
from wfbatch.providers.stability_rules import validate_stability_entry

SpecValidator = Callable[[JobSpec], list[str]]


def _openai(spec: JobSpec) -> list[str]:
    problems = validate_openai_entry(spec.model, spec.width, spec.height, spec.format.value, spec.params)
    too_long = prompt_problem(spec.model, spec.prompt)
    return problems + ([too_long] if too_long else [])


def _replicate(spec: JobSpec) -> list[str]:
    return validate_replicate_entry(spec.model, spec.width, spec.height, spec.params)



def _stability(spec: JobSpec) -> list[str]:
    # The section's default model is not known here (no settings at parse time): an entry without a
    # model is checked against core's rules, which are sd3's plus webp; submit checks again.
    return validate_stability_entry(
        spec.model or "core", spec.width, spec.height, spec.format.value, spec.seed, spec.prompt, spec.params
    )


def _comfyui(spec: JobSpec) -> list[str]:
    # EmptyLatentImage takes sides that are multiples of 8, from 16 to 16384.
    return [
        f"comfyui: {side} {value} must be a multiple of 8 from 16 to 16384"
        for side, value in (("width", spec.width), ("height", spec.height))
        if value % 8 or not 16 <= value <= 16384
    ]


SPEC_VALIDATORS: dict[str, SpecValidator] = {
    "openai": _openai,
    "replicate": _replicate,
    "stability": _stability,
    "comfyui": _comfyui,
}
"""Provider name -> its checks. A provider without an entry accepts any size and params."""


def spec_problems(spec: JobSpec) -> list[str]:
    validate = SPEC_VALIDATORS.get(spec.provider)
    problems = [] if validate is None else validate(spec)
    if spec.mode == "batch" and spec.provider in REGISTRY and not REGISTRY[spec.provider].traits.batch_api:
        with_batch = ", ".join(name for name, entry in REGISTRY.items() if entry.traits.batch_api)
        problems.append(f"mode 'batch' needs a provider with a batch API ({with_batch}), not {spec.provider}")
    return problems
