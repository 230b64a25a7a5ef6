"""Replicate's parse-time check of a job (the registry's `validator`): sizes and params."""

from __future__ import annotations

from wfbatch.core.models import JobSpec
from wfbatch.providers.replicate.rules import validate_replicate_entry


def spec_problems(spec: JobSpec) -> list[str]:
    return validate_replicate_entry(spec.model, spec.width, spec.height, spec.params)
