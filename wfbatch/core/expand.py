"""From validated entries to job specs: defaults applied, variants expanded, seeds fixed."""

from __future__ import annotations

from dataclasses import dataclass

from wfbatch.core.hashing import default_seed
from wfbatch.core.models import DEFAULT_SIZE, ImageFormat, JobSpec, ParsedBatch, ParsedEntry


@dataclass(frozen=True)
class ExpandedJob:
    """One image to make, with the entry and file line it came from."""

    source: ParsedEntry
    spec: JobSpec


def expand_batch(batch: ParsedBatch, default_provider: str) -> list[ExpandedJob]:
    """Each entry becomes `variants` jobs. An entry without a seed gets one derived from its prompt and
    variant index: stable across runs (so a rerun is a cache hit) and distinct between variants."""
    provider_default = batch.provider or default_provider
    jobs: list[ExpandedJob] = []
    for parsed in batch.entries:
        entry = parsed.entry
        for variant in range(entry.variants):
            seed = entry.seed + variant if entry.seed is not None else default_seed(entry.prompt, variant)
            spec = JobSpec(
                provider=entry.provider or provider_default,
                prompt=entry.prompt,
                negative_prompt=entry.negative_prompt,
                model=entry.model,
                width=entry.width or DEFAULT_SIZE,
                height=entry.height or DEFAULT_SIZE,
                seed=seed % 2**32,
                variant=variant,
                params=dict(entry.params),
                format=entry.format or ImageFormat.PNG,
                quality=entry.quality,
                mode=entry.mode,
            )
            jobs.append(ExpandedJob(source=parsed, spec=spec))
    return jobs
