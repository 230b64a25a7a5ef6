"""Stability's parse-time check of a job (the registry's `validator`)."""

from __future__ import annotations

from wfbatch.core.models import JobSpec
from wfbatch.providers.stability.image_rules import image_problems
from wfbatch.providers.stability.inpaint import RULES_MODEL, is_inpaint
from wfbatch.providers.stability.rules import validate_stability_entry


def spec_problems(spec: JobSpec) -> list[str]:
    # The section's default model is not known here (no settings at parse time): an entry without a
    # model is checked against core's rules, which are sd3's plus webp; submit checks again. An
    # image job without a model is checked against ultra's (core takes no image).
    sized_by_input = bool(spec.inputs) or spec.operation is not None
    model = spec.model or ("ultra" if sized_by_input and spec.operation != "upscale" else "core")
    rules_model = RULES_MODEL if is_inpaint(spec) else model  # edit/inpaint takes no model
    return validate_stability_entry(
        rules_model, spec.width, spec.height, spec.format.value, spec.seed, spec.prompt, spec.params,
        sized_by_input=sized_by_input,
    ) + image_problems(spec, model)
