"""What wfbatch sends fal for one job (providers.md §2.2): the model input, as JSON. Pure, no I/O.

Text-to-image endpoints (flux and its kin) take `prompt`, `image_size` as `{width, height}`, `seed`,
`num_images` and `output_format`; the entry's `params` are merged last, so they can add what an
endpoint needs (`enable_safety_checker`, `num_inference_steps`, …) or replace any of these for
endpoints shaped otherwise.
"""

from __future__ import annotations

from typing import Any

from wfbatch.core.models import ImageFormat, JobSpec

# fal's flux endpoints make jpeg or png; a webp entry is asked for png (lossless) and converted here.
_FORMATS = {ImageFormat.JPEG: "jpeg", ImageFormat.PNG: "png", ImageFormat.WEBP: "png"}


def endpoint_of(spec: JobSpec, default_endpoint: str) -> str:
    return (spec.model or default_endpoint).strip("/")


def model_input(spec: JobSpec) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prompt": spec.prompt,
        "image_size": {"width": spec.width, "height": spec.height},
        "seed": spec.seed,
        "num_images": 1,
        "output_format": _FORMATS[spec.format],
    }
    if spec.negative_prompt:
        body["negative_prompt"] = spec.negative_prompt
    body.update(spec.params)
    return body


def app_root(endpoint: str) -> str:
    """`owner/name` of an endpoint id: status, result and cancel URLs never carry the subpath
    (`fal-ai/flux/dev` -> `fal-ai/flux`), providers.md §2.1."""
    return "/".join(endpoint.split("/")[:2])
