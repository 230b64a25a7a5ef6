"""Stability's parse-time check of a job (the registry's `validator`)."""

from __future__ import annotations

from wfbatch.core.models import JobSpec
from wfbatch.providers.stability.rules import validate_stability_entry


def spec_problems(spec: JobSpec) -> list[str]:
    # The section's default model is not known here (no settings at parse time): an entry without a
    # model is checked against core's rules, which are sd3's plus webp; submit checks again.
    return validate_stability_entry(
        spec.model or "core", spec.width, spec.height, spec.format.value, spec.seed, spec.prompt, spec.params
    )
