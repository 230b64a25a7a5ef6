"""`POST /images/edits` (providers.md §12.1): a job with an input picture (`image`, reference
`images`, a `mask`), or a final refined from its draft, goes there as multipart/form-data. Pure,
no I/O: the client reads the bytes (checked against their sha256) and hands them in.

The form: text fields as for a generation (`prompt`, `model`, `n` 1, `size`, `quality`,
`background`, `output_format`, `output_compression`, `input_fidelity`, `user`; dall-e-2 asks for
`b64_json`), then the pictures: one as `image`, several as repeated `image[]` parts (as the
published curl examples and openai-python send them), the `mask` as its own part. `moderation`
is JSON-only in the spec: an edit with it is refused at parse time. No `strength`: OpenAI has
none, so a refine's strength is not sent (the metadata says so).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wfbatch.core.models import JobSpec
from wfbatch.providers.openai.rules import MODELS, validate_openai_entry

EDIT_PARAMS = ("input_fidelity",)
"""Params only an edit takes (a generation refuses them)."""
FIDELITIES = ("high", "low")
MAX_IMAGES = 16
MAX_GPT_IMAGE_BYTES = 50 * 1024 * 1024
MAX_DALLE2_BYTES = 4 * 1024 * 1024
MAX_MASK_BYTES = 4 * 1024 * 1024


def is_edit(spec: JobSpec) -> bool:
    return bool(spec.inputs) or spec.operation in ("refine", "upscale")


def can_edit(model: str) -> bool:
    rules = MODELS.get(model)
    return rules is not None and (rules.gpt or model == "dall-e-2")


def generation_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The params a generation also takes (what the generation rules check)."""
    return {key: value for key, value in params.items() if key not in EDIT_PARAMS}


def edit_problems(spec: JobSpec, model: str) -> list[str]:
    """What `/images/edits` would refuse about this job (empty = fine)."""
    problems: list[str] = []
    if not is_edit(spec):
        if any(key in spec.params for key in EDIT_PARAMS):
            problems.append("params.input_fidelity is for edits only (an entry with an image)")
        return problems
    if spec.operation == "upscale":
        return ['openai has no upscaler: use "from_draft": "refine" (an edit at the final settings)']
    if not can_edit(model):
        editors = ", ".join(name for name in MODELS if can_edit(name))
        return [f"{model} cannot edit an image: use one of {editors}"]
    fidelity = spec.params.get("input_fidelity")
    if fidelity is not None:
        if fidelity not in FIDELITIES:
            problems.append(f"params.input_fidelity {fidelity!r} is not one of {', '.join(FIDELITIES)}")
        elif model in ("gpt-image-1-mini", "dall-e-2"):
            problems.append(f"{model} takes no input_fidelity")
    if "moderation" in spec.params:
        problems.append("params.moderation is not taken by an edit sent as multipart (/images/edits)")
    pictures = [item for item in spec.inputs if item.role in ("image", "images")]
    mask = spec.input_of("mask")
    if len(pictures) > MAX_IMAGES:
        problems.append(f"an edit takes at most {MAX_IMAGES} images, not {len(pictures)}")
    for item in pictures:
        if item.media_type not in ("", "image/png", "image/jpeg", "image/webp"):
            problems.append(f"{item.source}: an edit takes PNG, JPEG or WebP, not {item.media_type}")
        if item.size >= MAX_GPT_IMAGE_BYTES:
            problems.append(f"{item.source}: each image must be under 50 MB")
    if model == "dall-e-2":
        if len(pictures) > 1:
            problems.append("dall-e-2 edits one image, not several")
        for item in pictures:
            if item.media_type not in ("", "image/png") or item.size >= MAX_DALLE2_BYTES:
                problems.append(f"{item.source}: dall-e-2 takes one PNG under 4 MB")
            if item.width and item.width != item.height:
                shape = f"{item.width}x{item.height}"
                problems.append(f"{item.source}: dall-e-2 takes a square image, not {shape}")
    if mask is not None:
        if spec.input_of("image") is None:
            problems.append("a mask needs an image to apply to")
        if mask.media_type not in ("", "image/png") or mask.size >= MAX_MASK_BYTES:
            problems.append(f"{mask.source}: the mask must be a PNG under 4 MB")
        first = pictures[0] if pictures else None
        sized = first is not None and first.width and mask.width
        if first is not None and sized and (mask.width, mask.height) != (first.width, first.height):
            problems.append(
                f"the mask is {mask.width}x{mask.height} but the image is {first.width}x{first.height}: "
                "they must be the same size"
            )
    return problems


def validate_edit(spec: JobSpec, model: str) -> list[str]:
    """Every problem with an OpenAI job that may be an edit: the generation rules on the params a
    generation takes, and the edit's own."""
    problems = validate_openai_entry(
        model, spec.width, spec.height, spec.format.value, generation_params(spec.params)
    )
    return problems + edit_problems(spec, model)


def edit_fields(body: Mapping[str, Any], spec: JobSpec) -> list[tuple[str, str]]:
    """The text fields of the multipart edit: the generation's body (`request.generation_body`),
    each value as text, plus `input_fidelity`."""
    fields = [(name, _text(value)) for name, value in body.items() if name != "moderation"]
    fidelity = spec.params.get("input_fidelity")
    if fidelity is not None:
        fields.append(("input_fidelity", str(fidelity)))
    return fields


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
