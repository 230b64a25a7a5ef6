"""The multipart form wfbatch sends `POST /v2beta/stable-image/generate/{ultra|core|sd3}` for one
job (providers.md §4.2). Pure, no I/O."""

from __future__ import annotations

from wfbatch.core.models import JobSpec
from wfbatch.providers.stability.rules import (
    SD3_PREFIX,
    aspect_ratio_for,
    endpoint_of,
    output_format_for,
    validate_stability_entry,
)


def model_of(spec: JobSpec, default_model: str) -> str:
    return spec.model or default_model


def problems(spec: JobSpec, model: str) -> list[str]:
    """What Stability would refuse (checked at parse time; again here, so a job that got past an
    older check never costs a 400)."""
    return validate_stability_entry(
        model, spec.width, spec.height, spec.format.value, spec.seed, spec.prompt, spec.params
    )


def form_fields(spec: JobSpec, model: str) -> dict[str, str]:
    ratio, _ = aspect_ratio_for(spec.width, spec.height, spec.params)
    output_format, _ = output_format_for(model, spec.format.value, spec.params)
    fields: dict[str, str] = {"prompt": spec.prompt, "output_format": output_format}
    if ratio is not None:
        fields["aspect_ratio"] = ratio
    if spec.seed is not None:
        fields["seed"] = str(spec.seed)
    negative = spec.negative_prompt or spec.params.get("negative_prompt")
    if negative and not model.endswith("turbo"):  # turbo models take no negative prompt (§4.2)
        fields["negative_prompt"] = str(negative)
    if spec.params.get("style_preset") is not None:
        fields["style_preset"] = str(spec.params["style_preset"])
    if endpoint_of(model) == SD3_PREFIX:
        fields["model"] = model
        fields["mode"] = "text-to-image"
        if spec.params.get("cfg_scale") is not None:
            fields["cfg_scale"] = str(spec.params["cfg_scale"])
    return fields
