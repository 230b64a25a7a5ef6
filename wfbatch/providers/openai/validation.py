"""OpenAI's parse-time check of a job (the registry's `validator`): sizes, params, prompt length."""

from __future__ import annotations

from wfbatch.core.models import JobSpec
from wfbatch.providers.openai.rules import prompt_problem, validate_openai_entry


def spec_problems(spec: JobSpec) -> list[str]:
    problems = validate_openai_entry(spec.model, spec.width, spec.height, spec.format.value, spec.params)
    too_long = prompt_problem(spec.model, spec.prompt)
    return problems + ([too_long] if too_long else [])
