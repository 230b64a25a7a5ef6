"""What wfbatch sends Replicate to create one prediction, and how a listed prediction is matched
against it after a lost answer (providers.md §3.1, §10). Pure, no I/O."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from wfbatch.core.models import ImageFormat, JobSpec
from wfbatch.providers.errors import Permanent
from wfbatch.providers.replicate.rules import SizeMode, model_of, size_input, takes_aspect_ratio

# flux models make webp, jpg or png; the output file is converted locally whatever comes back.
_FORMATS = {ImageFormat.JPEG: "jpg", ImageFormat.PNG: "png", ImageFormat.WEBP: "webp"}


def create_target(model: str, base: str) -> tuple[str, dict[str, Any]]:
    """(URL, body without input): `owner/name` -> the model's predictions route; `owner/name:version`
    (or a bare version id) -> `POST /predictions` with `version`."""
    if ":" in model:
        return f"{base}/predictions", {"version": model.split(":", 1)[1]}
    if "/" not in model:
        return f"{base}/predictions", {"version": model}
    owner, name = model.split("/", 1)
    return f"{base}/models/{owner}/{name}/predictions", {}


def model_input(spec: JobSpec, default_model: str, mode: SizeMode) -> dict[str, Any]:
    model = model_of(spec.model, default_model)
    size = size_input(model, spec.width, spec.height, spec.params, mode)
    if isinstance(size, str):
        raise Permanent(f"replicate: {size}")
    body: dict[str, Any] = {"prompt": spec.prompt, "seed": spec.seed, **size}
    if takes_aspect_ratio(model, mode):
        body["num_outputs"] = 1
        body["output_format"] = _FORMATS[spec.format]
    if spec.negative_prompt:
        body["negative_prompt"] = spec.negative_prompt
    body.update(spec.params)
    return body


def parse_time(value: Any) -> float | None:
    """`created_at` (RFC 3339, `Z` or an offset, any fraction) as Unix seconds."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:  # Python 3.11 reads at most 6 fraction digits
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


def matches(prediction: Any, sent: dict[str, Any], since: float | None) -> bool:
    """The prediction was created (after `since`) with exactly the input we would send."""
    if not isinstance(prediction, dict) or not isinstance(prediction.get("id"), str):
        return False
    listed = prediction.get("input")
    if not isinstance(listed, dict) or any(listed.get(key) != value for key, value in sent.items()):
        return False
    if since is None:
        return True
    created = parse_time(prediction.get("created_at"))
    return created is not None and created >= since
