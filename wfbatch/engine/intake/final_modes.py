"""How each final of a draft → final batch is made from its approved draft, once its provider is
known: a spec that leaves `from_draft` out gets the best its provider offers."""

from __future__ import annotations

from dataclasses import replace

from wfbatch.core.expand import FROM_DRAFT_DEFAULT, ExpandedJob
from wfbatch.providers.registry import REGISTRY


def final_modes(expanded: list[ExpandedJob]) -> list[ExpandedJob]:
    """Each final that left `from_draft` to wfbatch made the way its provider does best
    (`ProviderTraits.final_from_draft`); `regenerate` is no operation at all (today's finals, whose
    cache keys stay as they were)."""
    out: list[ExpandedJob] = []
    for job in expanded:
        final = job.final
        if final is not None and final.operation in (FROM_DRAFT_DEFAULT, "regenerate"):
            mode = final.operation
            if mode == FROM_DRAFT_DEFAULT:
                entry = REGISTRY.get(final.provider)
                mode = entry.traits.final_from_draft if entry is not None else "regenerate"
            if mode == "regenerate":
                final = replace(final, operation=None)
            else:
                final = replace(final, operation=mode, inputs=())
            job = job._replace(final=final)
        out.append(job)
    return out
