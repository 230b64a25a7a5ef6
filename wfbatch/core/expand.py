"""From validated entries to job specs: defaults applied, variants expanded, seeds fixed."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, NamedTuple

from wfbatch.core.bulk_gc import collector_paused
from wfbatch.core.hashing import default_seed
from wfbatch.core.inputs import inputs_of
from wfbatch.core.models import (
    DEFAULT_SIZE,
    ImageFormat,
    InputImage,
    JobSpec,
    ParsedBatch,
    ParsedEntry,
    PromptEntry,
)

FROM_DRAFT_DEFAULT = "default"
"""A final spec's `operation` until the engine picks the best its provider offers (`final_modes`)."""

_PNG = ImageFormat.PNG  # an enum member read from its class is a descriptor call: once, not per job


class ExpandedJob(NamedTuple):
    """One image to make, with the entry and file line it came from. In a draft → final batch
    `spec` is the draft and `final` what its approval queues (same prompt, seed and variant).
    A NamedTuple: one is made per job, at a third of a frozen dataclass's cost."""

    source: ParsedEntry
    spec: JobSpec
    final: JobSpec | None = None


def expand_batch(batch: ParsedBatch, default_provider: str) -> list[ExpandedJob]:
    """Each entry becomes `variants` jobs. An entry without a seed gets one derived from its prompt and
    variant index: stable across runs (so a rerun is a cache hit) and distinct between variants."""
    with collector_paused():
        return _expand(batch, default_provider)


def _expand(batch: ParsedBatch, default_provider: str) -> list[ExpandedJob]:
    provider_default = batch.provider or default_provider
    stages = batch.stages
    jobs: list[ExpandedJob] = []
    for parsed in batch.entries:
        entry = parsed.entry
        inputs = inputs_of(entry, batch.inputs) if entry.image or entry.mask or entry.images else ()
        for variant in range(entry.variants):
            seed = entry.seed + variant if entry.seed is not None else default_seed(entry.prompt, variant)
            if stages is None:
                spec = _spec(entry, {}, provider_default, seed, variant, inputs)
                jobs.append(ExpandedJob(source=parsed, spec=spec))
                continue
            draft = _spec(entry, stages.draft, provider_default, seed, variant, inputs)
            final = _spec(entry, stages.final, provider_default, seed, variant, inputs)
            if stages.from_draft in ("upscale", "refine"):
                # Made from the draft's picture, known once the draft is approved (Finals.queue).
                final = replace(final, inputs=(), operation=stages.from_draft)
            elif stages.from_draft is None:
                final = replace(final, operation=FROM_DRAFT_DEFAULT)
            jobs.append(ExpandedJob(source=parsed, spec=draft, final=final))
    return jobs


def _spec(
    entry: PromptEntry,
    stage: dict[str, Any],
    provider_default: str,
    seed: int,
    variant: int,
    inputs: tuple[InputImage, ...] = (),
) -> JobSpec:
    """The entry's job spec with a stage's fields on top (a stage's params are merged into the
    entry's, the stage winning key by key: the entry may still say e.g. a style)."""

    if not stage:  # one stage (the common case): the entry's own fields, no per-field look-up
        return JobSpec(
            provider=entry.provider or provider_default,
            prompt=entry.prompt,
            negative_prompt=entry.negative_prompt,
            model=entry.model,
            width=entry.width or DEFAULT_SIZE,
            height=entry.height or DEFAULT_SIZE,
            seed=seed % 2**32,
            variant=variant,
            params=dict(entry.params),
            format=entry.format or _PNG,
            quality=entry.quality,
            mode=entry.mode,
            inputs=inputs,
            strength=entry.strength,
        )

    def pick(name: str) -> Any:
        return stage[name] if stage.get(name) is not None else getattr(entry, name)

    return JobSpec(
        provider=pick("provider") or provider_default,
        prompt=entry.prompt,
        negative_prompt=entry.negative_prompt,
        model=pick("model"),
        width=pick("width") or DEFAULT_SIZE,
        height=pick("height") or DEFAULT_SIZE,
        seed=seed % 2**32,
        variant=variant,
        params={**entry.params, **stage.get("params", {})},
        format=entry.format or ImageFormat.PNG,
        quality=pick("quality"),
        mode=pick("mode"),
        inputs=inputs,
        strength=pick("strength"),
    )
