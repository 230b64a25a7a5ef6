"""What wfbatch sends `POST /images/generations` for one job (providers.md §5.1). Pure, no I/O.

One image per job (`n: 1`). GPT image models always answer base64 and refuse `response_format`;
dall-e models are asked for `b64_json` (a `url` would expire in 60 minutes and cost a second
request). The spec's seed and negative prompt have no OpenAI parameter: they are not sent, and the
result's metadata says so.
"""

from __future__ import annotations

from typing import Any

from wfbatch.core.models import ImageFormat, JobSpec
from wfbatch.providers.openai.edits import validate_edit
from wfbatch.providers.openai.rules import MODELS, prompt_problem

_COMPRESSIBLE = (ImageFormat.JPEG, ImageFormat.WEBP)


def model_of(spec: JobSpec, default_model: str) -> str:
    return spec.model or default_model


def problems(spec: JobSpec, model: str) -> list[str]:
    """What OpenAI would refuse (checked at parse time too; checked again so a job that got past an
    older check never costs a 400)."""
    found = validate_edit(spec, model)
    too_long = prompt_problem(model, spec.prompt)
    return found + ([too_long] if too_long else [])


def generation_body(spec: JobSpec, model: str) -> dict[str, Any]:
    rules = MODELS[model]
    body: dict[str, Any] = {
        "model": model,
        "prompt": spec.prompt,
        "n": 1,
        "size": f"{spec.width}x{spec.height}",
    }
    if rules.gpt:
        body["output_format"] = spec.format.value
        compression = spec.params.get("output_compression", spec.quality)
        if spec.format in _COMPRESSIBLE and compression is not None:
            body["output_compression"] = compression
    else:
        body["response_format"] = "b64_json"
    for key in rules.params:
        if key != "output_compression" and spec.params.get(key) is not None:
            body[key] = spec.params[key]
    return body


def ignored_fields(spec: JobSpec) -> list[str]:
    """Spec fields OpenAI has no parameter for (recorded in the result's metadata)."""
    ignored = ["seed"]
    if spec.negative_prompt:
        ignored.append("negative_prompt")
    if spec.strength is not None:
        ignored.append("strength")
    return ignored
