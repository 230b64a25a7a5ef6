"""Draft → final: an approved draft queues its final; a finished draft of an `auto_approve: "all"`
batch is approved by itself; a finished final may take its draft's place.

A final made `from_draft` (`upscale`, `refine`) takes the draft's own picture as its input, from
the cache or the output folder: its hash is in the final's cache key and the manifest.

A final is an ordinary job (limits, credits, budgets, retries, cache) inserted next to its draft
and linked to it (`draft_of`, unique): approving a draft twice, or from two places at once, queues
one final. Its cache key covers the final settings, so a final made before costs nothing again.
"""

from __future__ import annotations

import asyncio
import io
import logging
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from PIL import Image as PILImage

from wfbatch.core.hashing import cache_key, content_hash, spec_json_and_cache_key
from wfbatch.core.models import AutoApprove, InputImage
from wfbatch.core.states import Execution, JobState, ReviewStatus
from wfbatch.engine.events import EventSink
from wfbatch.engine.keyed_locks import KeyedLocks
from wfbatch.engine.loop.cache import ImageCache
from wfbatch.engine.loop.writer import OutputWriter
from wfbatch.outputs import UnsafePathError, move_for_review
from wfbatch.protocol import JobEvent
from wfbatch.settings import Settings
from wfbatch.store import BatchRow, JobRow, StoreApi

log = logging.getLogger("wfbatch.finals")


class Finals:
    def __init__(
        self,
        store: StoreApi,
        settings: Settings,
        writer: OutputWriter,
        *,
        emit: EventSink,
        wake: Callable[[], None],
        cache: ImageCache | None = None,
    ) -> None:
        self._store = store
        self._cache = cache
        self._settings = settings
        self._writer = writer
        self._emit = emit
        self._wake = wake
        self.review_locks = KeyedLocks()
        """Per job: every review decision (by hand through `Control.review`, automatic here) holds
        its job's lock from reading the job to recording where its image went."""

    async def queue(self, draft: JobRow) -> int | None:
        """Queue the final of `draft` (approved); its id, or None when `draft` is no draft or its
        final was queued before."""
        if draft.final_spec is None:
            return None
        final_spec, spec_json = draft.final_spec, None
        if final_spec.operation in ("upscale", "refine"):
            picture = await self._draft_picture(draft)
            if picture is None:
                log.warning(
                    "job %s: the draft's picture is gone (cache and output); its final is regenerated"
                    " from the prompt instead of made by %s", draft.id, final_spec.operation,
                )
                final_spec = replace(final_spec, operation=None)
            else:
                final_spec = replace(final_spec, inputs=(picture,))
            spec_json = spec_json_and_cache_key(final_spec)[0]
        final_spec_key = cache_key(final_spec)
        final_id = await self._store.drafts.queue_final(draft.id, uuid.uuid4().hex, final_spec_key, spec_json)
        if final_id is None:
            return None
        log.info("job %s: draft approved, final queued as job %s", draft.id, final_id)
        queued = JobEvent(
            id=final_id, batch_id=draft.batch_id, state=JobState.QUEUED, review=ReviewStatus.APPROVED
        )
        self._emit(queued)
        self._writer.mark_dirty(draft.batch_id)
        self._wake()
        return final_id

    async def _draft_picture(self, draft: JobRow) -> InputImage | None:
        """The draft's picture as a final's input: the original bytes the provider sent, from the
        cache (content-addressed, checked), else the file in the output folder; never fetched
        from the provider again."""
        location: Path | None = None
        found = await self._store.cache.get(draft.cache_key) if self._cache is not None else None
        if found is not None and self._cache is not None:
            sha256, media_type = found
            if await self._cache.read(sha256, media_type) is not None:
                location = self._cache.path_of(sha256, media_type)
        if location is None and draft.file is not None:
            batch = await self._store.batches.get_batch(draft.batch_id)
            if batch is not None:
                location = Path(batch.output_dir) / draft.file
        if location is None:
            return None
        return await asyncio.to_thread(_picture_at, location, draft.id)

    async def cancel_unstarted(self, draft: JobRow) -> int | None:
        """Cancel `draft`'s final if it has not started (so canceling it costs nothing); its id, or
        None. Checked and canceled in one store transaction: a final that started meanwhile has
        been sent and may be charged, and a review change never cancels it."""
        if draft.final_spec is None:
            return None
        return await self._store.drafts.cancel_unstarted_final(draft.id)

    async def requeue_canceled(self, draft: JobRow) -> int | None:
        """`draft` approved again: its final, canceled earlier, queued again; its id, or None. One
        that never started is queued afresh; one whose execution exists or may (canceled while it
        ran) is resumed, so its image is collected without paying again. A final still running or
        done is kept, and one whose execution ended without an image waits for a retry by hand."""
        final = await self._store.drafts.final_of(draft.id)
        if final is None or final.state is not JobState.CANCELED or final.execution is Execution.ENDED:
            return None
        retried = await self._store.jobs.requeue_for_retry([final.id])
        return retried[0] if retried else None

    async def finished(self, job: JobRow, batch: BatchRow) -> None:
        """`job` has just been recorded as done: approve a draft of an auto-approving batch, or let
        a final replace its draft when drafts are not kept."""
        try:
            if job.final_spec is not None and batch.auto_approve is AutoApprove.ALL:
                await self._approve_automatically(job, batch)
            elif job.draft_of is not None and not self._settings.drafts.keep_approved_drafts:
                await self._remove_draft(job.draft_of, batch)
        except (OSError, UnsafePathError) as error:
            # The image is written and recorded; what follows it can be done by hand (review again).
            log.warning("job %s: %s", job.id, error)

    async def _approve_automatically(self, draft: JobRow, batch: BatchRow) -> None:
        async with self.review_locks.hold(draft.id):
            current = await self._store.jobs.get_job(draft.id)
            if current is None or current.file is None or current.review is not ReviewStatus.PENDING:
                return  # reviewed by hand meanwhile: the person's decision stands
            relative = await asyncio.to_thread(
                move_for_review, Path(batch.output_dir), current.file, ReviewStatus.APPROVED
            )
            read = (ReviewStatus.PENDING.value, current.file)
            if not await self._store.outbox.review(
                draft.id, ReviewStatus.APPROVED.value, relative, None, deliver=False, read=read
            ):
                await self._put_back(draft.id, batch)
                return
            self._emit(
                JobEvent(
                    id=draft.id, batch_id=draft.batch_id, state=current.state, review=ReviewStatus.APPROVED,
                    file=relative,
                )
            )
            await self.queue(current)

    async def _put_back(self, job_id: int, batch: BatchRow) -> None:
        """Reviewed by someone else (another process on this HOME) while the image was being moved:
        their decision stands, and the image goes back to the folder it names."""
        current = await self._store.jobs.get_job(job_id)
        if current is not None and current.file is not None:
            await asyncio.to_thread(move_for_review, Path(batch.output_dir), current.file, current.review)

    async def _remove_draft(self, draft_id: int, batch: BatchRow) -> None:
        async with self.review_locks.hold(draft_id):  # a review moving the image meanwhile would lose it
            draft = await self._store.jobs.get_job(draft_id)
            if draft is None or draft.file is None or draft.review is not ReviewStatus.APPROVED:
                return
            path = Path(batch.output_dir) / draft.file
            await asyncio.to_thread(path.unlink, missing_ok=True)
            await self._store.jobs.update_job(draft_id, file=None)
        self._writer.mark_dirty(batch.id)
        self._emit(JobEvent(id=draft_id, batch_id=draft.batch_id, state=draft.state, review=draft.review))


_MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


def _picture_at(path: Path, draft_id: int) -> InputImage | None:
    """The draft's picture on disk as an input (its size from the file: an upscaler checks it)."""
    try:
        data = path.read_bytes()
        with PILImage.open(io.BytesIO(data)) as image:
            width, height = image.size
            media_type = _MEDIA_TYPES.get(image.format or "", "image/png")
    except (OSError, ValueError) as error:
        log.warning("job %s: the draft's picture %s cannot be read: %s", draft_id, path, error)
        return None
    return InputImage(
        role="image",
        source=f"draft:{draft_id}",
        location=str(path),
        sha256=content_hash(data),
        size=len(data),
        width=width,
        height=height,
        media_type=media_type,
    )
