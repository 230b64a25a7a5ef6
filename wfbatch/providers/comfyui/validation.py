"""ComfyUI's parse-time check of a job (the registry's `validator`)."""

from __future__ import annotations

from wfbatch.core.models import JobSpec


def spec_problems(spec: JobSpec) -> list[str]:
    # EmptyLatentImage takes sides that are multiples of 8, from 16 to 16384.
    return [
        f"comfyui: {side} {value} must be a multiple of 8 from 16 to 16384"
        for side, value in (("width", spec.width), ("height", spec.height))
        if value % 8 or not 16 <= value <= 16384
    ]
