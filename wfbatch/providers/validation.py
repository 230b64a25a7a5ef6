"""Checks of a job before it is enqueued: what the provider's API would refuse with a (possibly
paid) 400 is refused at parse time instead, naming the line and the allowed values. Each provider's
own rules are in its package (`providers/<name>/validation.py`), found through the registry."""

from __future__ import annotations

from wfbatch.core.models import JobSpec
from wfbatch.providers.registry import REGISTRY, check_spec


def spec_problems(spec: JobSpec) -> list[str]:
    if any(not item.sha256 for item in spec.inputs):
        return []  # a bad input: its line is reported already (core.inputs), not again per provider
    problems = check_spec(spec)
    if spec.mode == "batch" and spec.provider in REGISTRY and not REGISTRY[spec.provider].traits.batch_api:
        with_batch = ", ".join(name for name, entry in REGISTRY.items() if entry.traits.batch_api)
        problems.append(f"mode 'batch' needs a provider with a batch API ({with_batch}), not {spec.provider}")
    return problems
