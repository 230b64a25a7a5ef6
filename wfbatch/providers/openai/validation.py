"""OpenAI's parse-time check of a job (the registry's `validator`): sizes, params, prompt length,
and an edit's pictures (`edits`)."""

from __future__ import annotations

from wfbatch.core.models import JobSpec
from wfbatch.providers.openai.edits import validate_edit
from wfbatch.providers.openai.rules import DEFAULT_MODEL, prompt_problem


def spec_problems(spec: JobSpec) -> list[str]:
    problems = validate_edit(spec, spec.model or DEFAULT_MODEL)
    too_long = prompt_problem(spec.model, spec.prompt)
    return problems + ([too_long] if too_long else [])
