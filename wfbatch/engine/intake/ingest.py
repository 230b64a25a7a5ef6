"""A validated prompt file becomes one batch and its jobs, in one transaction."""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from wfbatch.core.bulk_gc import collector_paused
from wfbatch.core.expand import ExpandedJob, expand_batch
from wfbatch.core.hashing import batch_identity, spec_json_and_cache_key
from wfbatch.core.models import AutoApprove, ParsedBatch
from wfbatch.core.parsing import LineError, PromptFileError
from wfbatch.engine.intake.final_modes import final_modes
from wfbatch.home import HomeLayout
from wfbatch.outputs import claim_batch_dir, release_batch_dir
from wfbatch.providers.registry import KNOWN_PROVIDERS
from wfbatch.providers.validation import spec_problems
from wfbatch.store import BatchRow, NewJob, Reuse, StoreApi


class UnknownProviderInFile(ValueError):
    """Entries of a prompt file name a provider wfbatch does not have."""

    def __init__(self, source_name: str, problems: list[tuple[int, str]]) -> None:
        self.source_name = source_name
        self.problems = problems
        lines = "\n".join(f"{source_name}:{line}: unknown provider {name!r}" for line, name in problems[:50])
        super().__init__(f"{lines}\n(known providers: {', '.join(KNOWN_PROVIDERS)})")


def entry_problems(expanded: Sequence[ExpandedJob]) -> list[LineError]:
    """What each line's provider would refuse (size, format, params for its model), one error per
    line and problem: variants of a line share them. Takes the file's expansion (`expand_batch`),
    made once per file by the caller."""
    seen: set[tuple[int, str]] = set()
    errors: list[LineError] = []
    for job in expanded:
        stages = [("", job.spec)] if job.final is None else [("draft: ", job.spec), ("final: ", job.final)]
        for stage, spec in stages:
            for message in spec_problems(spec):
                shown = f"{stage}{spec.provider}: {message}"
                if (job.source.line, shown) not in seen:
                    seen.add((job.source.line, shown))
                    errors.append(LineError(job.source.line, None, shown))
    return errors


@dataclass(frozen=True)
class Ingested:
    batch: BatchRow
    jobs: int
    resumed: bool
    """`batch` is an earlier batch of the same content (see `reuse`): nothing new was enqueued."""


def new_batch_id() -> str:
    """Time-ordered and unique: `b` + unix seconds in hex + random."""
    return f"b{int(time.time()):x}{secrets.token_hex(3)}"


def new_job(index: int, job: ExpandedJob) -> NewJob:
    spec_json, key = spec_json_and_cache_key(job.spec)
    return NewJob(
        # 128 random bits as 32 hex digits, like uuid4().hex, at a third of its cost per job.
        uid=secrets.token_hex(16),
        idx=index,
        line=job.source.line,
        user_id=job.source.entry.id,
        spec=job.spec,
        tags=list(job.source.entry.tags),
        cache_key=key,
        priority=job.source.entry.priority,
        spec_json=spec_json,
        final_spec=job.final,
    )


async def ingest(
    store: StoreApi,
    layout: HomeLayout,
    parsed: ParsedBatch,
    raw: bytes,
    default_provider: str,
    *,
    reuse: Reuse = Reuse.UNFINISHED,
    expanded: Sequence[ExpandedJob] | None = None,
    identity: str | None = None,
) -> Ingested:
    """Enqueue `parsed` (the content of `raw`) as one batch, or return the earlier batch of the same
    content identity that `reuse` allows (`resumed`): the look-up and the insert are one
    transaction, so identical files sent at once are enqueued once. Raises `PromptFileError` for
    lines their provider would refuse, `UnknownProviderInFile` for providers wfbatch does not have;
    nothing is enqueued then.

    `expanded` and `identity` are what the caller made of this file already (`check_prompts`
    expands and checks it, the inbox hashes it first): each is made once per file. Given
    `expanded`, its entry problems were checked by whoever expanded it."""
    if identity is None:
        identity = batch_identity(raw, parsed.file_format, default_provider)
    if expanded is None:
        expanded = final_modes(expand_batch(parsed, default_provider))
        problems = entry_problems(expanded)
        if problems:
            raise PromptFileError(parsed.source_name, problems)
    unknown = [
        (job.source.line, spec.provider)
        for job in expanded
        for spec in (job.spec, job.final)
        if spec is not None and spec.provider not in KNOWN_PROVIDERS
    ]
    if unknown:
        raise UnknownProviderInFile(parsed.source_name, unknown)
    batch_id = new_batch_id()
    created = dt.datetime.now(dt.UTC)
    output_dir = claim_batch_dir(layout.output, created, parsed.name, batch_id)
    batch = BatchRow(
        id=batch_id,
        name=parsed.name,
        source_name=parsed.source_name,
        content_hash=identity,
        provider=parsed.provider or default_provider,
        cache_enabled=parsed.cache,
        budget=parsed.budget,
        output_dir=str(output_dir),
        paused=False,
        created_at=created.timestamp(),
        auto_approve=parsed.stages.auto_approve if parsed.stages else AutoApprove.NONE,
        delivery=parsed.delivery,
        notify=parsed.notify,
        priority=parsed.priority,
        weight=parsed.weight,
        not_before=parsed.not_before,
    )
    with collector_paused():
        jobs = [new_job(index, job) for index, job in enumerate(expanded, start=1)]
    try:
        existing = await store.batches.insert_batch(batch, jobs, reuse=reuse)
    except Exception:  # not a cancellation: the insert may still commit in the store's thread
        # Not committed: the folder must not outlive it (a poison file retried would leave one each time).
        release_batch_dir(output_dir, batch_id)
        raise
    if existing is not None:
        release_batch_dir(output_dir, batch_id)
        counts = await store.counters.counts([existing.id])
        return Ingested(batch=existing, jobs=sum(counts.values()), resumed=True)
    return Ingested(batch=batch, jobs=len(jobs), resumed=False)
