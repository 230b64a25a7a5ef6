"""The multipart form wfbatch sends `POST /v2beta/stable-image/generate/{ultra|core|sd3}` (or the
upscale and edit/inpaint endpoints) for one job (providers.md §4.2, §12.2). Pure, no I/O."""

from __future__ import annotations

from wfbatch.core.models import JobSpec
from wfbatch.providers.stability import inpaint
from wfbatch.providers.stability.image_rules import REFINE_STRENGTH, image_problems, takes_image, upscaler_of
from wfbatch.providers.stability.rules import (
    SD3_PREFIX,
    aspect_ratio_for,
    endpoint_of,
    output_format_for,
    validate_stability_entry,
)


def model_of(spec: JobSpec, default_model: str) -> str:
    """The entry's model, else the section's; an image-to-image job whose section model takes no
    image (core) goes to ultra, as the parse-time check assumed."""
    model = spec.model or default_model
    if not spec.model and is_image_to_image(spec) and not takes_image(model):
        return "ultra"
    return model


def is_upscale(spec: JobSpec) -> bool:
    return spec.operation == "upscale"


def is_inpaint(spec: JobSpec) -> bool:
    return inpaint.is_inpaint(spec)


def takes_model(spec: JobSpec) -> bool:
    """Whether the endpoint is a model's (generate/*), not an upscaler or edit/inpaint."""
    return not is_upscale(spec) and not is_inpaint(spec)


def is_image_to_image(spec: JobSpec) -> bool:
    return takes_model(spec) and (spec.input_of("image") is not None or spec.operation == "refine")


def path_of(spec: JobSpec, model: str) -> str:
    """Where under `/v2beta/stable-image/` the job goes."""
    if is_upscale(spec):
        return f"upscale/{upscaler_of(spec.params)}"
    if is_inpaint(spec):
        return inpaint.PATH
    return f"generate/{endpoint_of(model)}"


def price_key(spec: JobSpec, model: str) -> str:
    """What the job is priced as: `upscale-fast` etc. for an upscale, `inpaint`, else its model."""
    if is_inpaint(spec):
        return inpaint.PRICE_KEY
    return f"upscale-{upscaler_of(spec.params)}" if is_upscale(spec) else model


def problems(spec: JobSpec, model: str) -> list[str]:
    """What Stability would refuse (checked at parse time; again here, so a job that got past an
    older check never costs a 400)."""
    sized_by_input = bool(spec.inputs) or spec.operation is not None
    rules_model = inpaint.RULES_MODEL if is_inpaint(spec) else model
    return validate_stability_entry(
        rules_model, spec.width, spec.height, spec.format.value, spec.seed, spec.prompt, spec.params,
        sized_by_input=sized_by_input,
    ) + image_problems(spec, model)


def form_fields(spec: JobSpec, model: str) -> dict[str, str]:
    """The text fields (the image file part is added by the client, which reads it)."""
    if is_upscale(spec):
        return _upscale_fields(spec, model)
    if is_inpaint(spec):
        return inpaint.inpaint_fields(spec)
    if is_image_to_image(spec):
        return _image_to_image_fields(spec, model)
    return _generate_fields(spec, model)


def _upscale_fields(spec: JobSpec, model: str) -> dict[str, str]:
    upscaler = upscaler_of(spec.params)
    output_format, _ = output_format_for("core", spec.format.value, spec.params)
    fields: dict[str, str] = {"output_format": output_format}
    if upscaler == "fast":
        return fields  # fast takes the image and the output format only
    fields["prompt"] = spec.prompt
    if spec.seed is not None:
        fields["seed"] = str(spec.seed)
    negative = spec.negative_prompt or spec.params.get("negative_prompt")
    if negative:
        fields["negative_prompt"] = str(negative)
    if spec.params.get("creativity") is not None:
        fields["creativity"] = str(spec.params["creativity"])
    if upscaler == "creative" and spec.params.get("style_preset") is not None:
        fields["style_preset"] = str(spec.params["style_preset"])
    return fields


def _image_to_image_fields(spec: JobSpec, model: str) -> dict[str, str]:
    fields = _generate_fields(spec, model)
    fields.pop("aspect_ratio", None)  # the picture's own shape: no ratio in image-to-image
    strength = spec.strength if spec.strength is not None else REFINE_STRENGTH
    fields["strength"] = f"{strength:g}"
    if endpoint_of(model) == SD3_PREFIX:
        fields["mode"] = "image-to-image"
    return fields


def _generate_fields(spec: JobSpec, model: str) -> dict[str, str]:
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
