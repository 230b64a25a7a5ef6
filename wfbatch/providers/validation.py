"""Per-provider checks of a job before it is enqueued: what the provider's API would refuse with a
(possibly paid) 400 is refused at parse time instead, naming the line and the allowed values."""

from __future__ import annotations

from collections.abc import Callable

from wfbatch.core.models import JobSpec
from wfbatch.providers.openai_rules import prompt_problem, validate_openai_entry
from wfbatch.providers.replicate_rules import validate_replicate_entry

SpecValidator = Callable[[JobSpec], list[str]]


def _openai(spec: JobSpec) -> list[str]:
    problems = validate_openai_entry(spec.model, spec.width, spec.height, spec.format.value, spec.params)
    too_long = prompt_problem(spec.model, spec.prompt)
    return problems + ([too_long] if too_long else [])


def _replicate(spec: JobSpec) -> list[str]:
    return validate_replicate_entry(spec.model, spec.width, spec.height, spec.params)


SPEC_VALIDATORS: dict[str, SpecValidator] = {"openai": _openai, "replicate": _replicate}
"""Provider name -> its checks. A provider without an entry accepts any size and params."""


def spec_problems(spec: JobSpec) -> list[str]:
    validate = SPEC_VALIDATORS.get(spec.provider)
    return [] if validate is None else validate(spec)
