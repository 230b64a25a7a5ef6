"""The engine's side of the output folder: write each finished image, and keep each batch's
`manifest.json` and `contact-sheet.png` in step with the database without rewriting them per job."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal

from wfbatch.core.models import InputImage, JobSpec
from wfbatch.core.states import TERMINAL_STATES, ReviewStatus
from wfbatch.outputs import (
    CONTACT_SHEET_FILE_NAME,
    FILE_EXTENSIONS,
    MANIFEST_FILE_NAME,
    REVIEW_FOLDERS,
    Manifest,
    ManifestDelivery,
    ManifestEntry,
    ManifestError,
    ManifestInput,
    atomic_write_bytes,
    encode_image,
    image_file_name,
    review_path,
    write_contact_sheet,
    write_manifest,
)
from wfbatch.providers.base import Image
from wfbatch.store import BatchRow, DeliveryRow, JobRow, StoreApi

# A manifest is rewritten at most this often per batch, and never more often than 20× the time the
# last rewrite took: a 100k-job manifest must not eat the engine.
MIN_MANIFEST_INTERVAL = 1.0
CONTACT_SHEET_INTERVAL = 30.0

FinishedHook = Callable[[BatchRow, dict[str, int]], Awaitable[None]]
"""Told once a batch's jobs have all ended (again, after a retry), with its counts."""

WritesManifest = Callable[[str], Awaitable[bool]]
"""Whether this engine writes the batch's files now (engine/loop/fleet.py `writes_manifest`)."""

ChangedElsewhere = Callable[[], Awaitable[set[str]]]
"""Batches this engine writes whose jobs changed, another daemon's changes included."""


async def _always(batch_id: str) -> bool:
    return True


async def _nothing_else() -> set[str]:
    return set()


def final_mode(spec: JobSpec) -> Literal["upscale", "refine", "regenerate"]:
    """How a final was made from its draft, as its spec says (`JobSpec.operation`)."""
    if spec.operation == "upscale":
        return "upscale"
    if spec.operation == "refine":
        return "refine"
    return "regenerate"


def manifest_input(item: InputImage) -> ManifestInput:
    return ManifestInput(
        role=item.role,
        source=item.source,
        path=None if item.is_url else item.location,
        url=item.location if item.is_url else None,
        sha256=item.sha256,
        width=item.width or None,
        height=item.height or None,
    )


def _utc(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC)


def _id_or_none(job_id: int | None) -> str | None:
    return None if job_id is None else str(job_id)


def sheet_label(job: JobRow) -> str:
    """`12: a red fox in the snow` (`12 final: ...` for a final): the index alone told nobody which
    picture was which. The sheet cuts it to the cell's width."""
    stage = " final" if job.draft_of is not None else ""
    return f"{job.idx}{stage}: {' '.join(job.spec.prompt.split())}"


def sheet_items(jobs: list[JobRow], batch_dir: Path) -> list[tuple[str, Path]]:
    """The contact sheet's cells: each image, preceded by the picture its job started from (the
    entry's `image`, or a final's draft) in the cell beside it."""
    items: list[tuple[str, Path]] = []
    for job in jobs:
        if not job.file:
            continue
        picture = job.spec.input_of("image")
        if picture is not None and not picture.is_url:
            items.append((f"{job.idx} input: {picture.source}", Path(picture.location)))
        items.append((sheet_label(job), batch_dir / job.file))
    return items


def _delivered(row: DeliveryRow | None) -> ManifestDelivery | None:
    """The object in the bucket as last uploaded, or why there is none yet (None: nothing to say)."""
    if row is None or (row.have_url is None and row.state != "held"):
        return None
    return ManifestDelivery(
        url=row.have_url,
        etag=row.etag,
        at=_utc(row.delivered_at) if row.delivered_at is not None else None,
        presigned_url=row.presigned_url,
        presigned_until=_utc(row.presigned_until) if row.presigned_until is not None else None,
        state=row.state,
        error=row.error,
    )


class OutputWriter:
    def __init__(
        self,
        store: StoreApi,
        provider_label: Callable[[str], str],
        *,
        writes: WritesManifest = _always,
        changed_elsewhere: ChangedElsewhere = _nothing_else,
    ) -> None:
        self._store = store
        self._label = provider_label
        # Several daemons on one database share the output folder: one of them writes each batch's
        # manifest and contact sheet, from the database (so with every daemon's images), and the
        # others leave them alone, or two views would overwrite each other.
        self._writes = writes
        self._changed_elsewhere = changed_elsewhere
        self._dirty: set[str] = set()
        self._last_manifest: dict[str, float] = {}
        self._interval: dict[str, float] = {}
        self._last_sheet: dict[str, float] = {}
        self._lock = asyncio.Lock()
        self.finished_hooks: list[FinishedHook] = []
        self._finished: set[str] = set()

    async def write_image(
        self, batch: BatchRow, job: JobRow, image: Image, *, folder: ReviewStatus | None = None
    ) -> str:
        """Convert, embed metadata, write atomically into pending-review/ — a draft's final into
        approved/ (its draft was approved), and `folder`'s folder when given (a paid image that is
        not a success goes to rejected/); returns the path relative to the batch folder."""
        final = job.draft_of is not None
        if folder is None:
            folder = ReviewStatus.APPROVED if final else ReviewStatus.PENDING
        spec = job.spec
        metadata = {
            "prompt": spec.prompt,
            "negative_prompt": spec.negative_prompt or "",
            "seed": str(spec.seed),
            "model": spec.model or "",
            "provider": self._label(spec.provider),
            "cache_key": job.cache_key,
            "job_id": str(job.id),
            "batch_id": job.batch_id,
        }
        encoded = await asyncio.to_thread(encode_image, image.data, spec.format, spec.quality, metadata)
        if spec.name is not None:  # the batch's name template, rendered (and made safe) at acceptance
            name = f"{spec.name}.{FILE_EXTENSIONS[spec.format]}"
        else:
            name = image_file_name(job.idx, spec.prompt, spec.format, final=final)
        # review_path checks again that the name stays inside the batch folder.
        path = review_path(Path(batch.output_dir), folder, name)
        relative = f"{REVIEW_FOLDERS[folder]}/{name}"
        await asyncio.to_thread(atomic_write_bytes, path, encoded)
        self.mark_dirty(batch.id)
        return relative

    async def reconcile(self, since: float) -> None:
        """A kill -9 can come between a job's last change and its batch's manifest refresh: every
        batch changed since `since` whose manifest is older than its latest change (or that has no
        contact sheet) is rewritten at the next flush."""
        changed = await self._store.jobs.recently_changed_batches(since)
        for batch_id, latest in changed.items():
            batch = await self._store.batches.get_batch(batch_id)
            if batch is None:
                continue
            folder = Path(batch.output_dir)
            try:
                stale = (folder / MANIFEST_FILE_NAME).stat().st_mtime < latest
                stale = stale or not (folder / CONTACT_SHEET_FILE_NAME).exists()
            except OSError:
                stale = True
            if stale:
                self.mark_dirty(batch_id)

    def mark_dirty(self, batch_id: str) -> None:
        self._dirty.add(batch_id)

    async def flush(self, *, force: bool = False) -> None:
        """Rewrite the manifests (and, less often, contact sheets) of batches that changed."""
        async with self._lock:
            self._dirty |= await self._changed_elsewhere()
            now = time.monotonic()
            for batch_id in sorted(self._dirty):
                due = self._last_manifest.get(batch_id, 0.0) + self._interval.get(
                    batch_id, MIN_MANIFEST_INTERVAL
                )
                if not force and now < due:
                    continue
                # Taken off before the read, so a change made during the write marks it again; put
                # back when the write does not finish (a stop cancels the periodic flush mid-way),
                # or the final flush at shutdown would find nothing to write.
                self._dirty.discard(batch_id)
                try:
                    await self.write_batch_files(batch_id, force_sheet=force)
                except BaseException:
                    self._dirty.add(batch_id)
                    raise

    async def write_batch_files(self, batch_id: str, *, force_sheet: bool = True) -> None:
        batch = await self._store.batches.get_batch(batch_id)
        if batch is None or not await self._writes(batch_id):
            return  # another daemon writes it (and tells the finished hooks)
        started = time.monotonic()
        jobs = await self._store.jobs.jobs_for_batch(batch_id)
        manifest = self._manifest(batch, jobs, await self._store.outbox.for_batch(batch_id))
        batch_dir = Path(batch.output_dir)
        await asyncio.to_thread(write_manifest, batch_dir, manifest)
        finished = all(job.state in TERMINAL_STATES for job in jobs)
        sheet_due = self._last_sheet.get(batch_id, 0.0) + CONTACT_SHEET_INTERVAL <= time.monotonic()
        if force_sheet or finished or sheet_due:
            items = sheet_items(jobs, batch_dir)
            await asyncio.to_thread(write_contact_sheet, batch_dir, items)
            self._last_sheet[batch_id] = time.monotonic()
        elapsed = time.monotonic() - started
        self._last_manifest[batch_id] = time.monotonic()
        self._interval[batch_id] = max(MIN_MANIFEST_INTERVAL, 20 * elapsed)
        if not finished:
            self._finished.discard(batch_id)
        elif batch_id not in self._finished:
            # Once per finish in this process (after a restart, again: the hooks' own records
            # keep what they do from happening twice).
            self._finished.add(batch_id)
            try:
                for hook in self.finished_hooks:
                    await hook(batch, manifest.counts)
            except BaseException:
                self._finished.discard(batch_id)  # told again at the next write
                raise

    def _manifest(
        self, batch: BatchRow, jobs: list[JobRow], deliveries: dict[int | None, DeliveryRow]
    ) -> Manifest:
        counts: dict[str, int] = {}
        entries = []
        finals = {job.draft_of: job.id for job in jobs if job.draft_of is not None}
        for job in jobs:
            delivery = deliveries.get(job.id)
            counts[job.state.value] = counts.get(job.state.value, 0) + 1
            spec = job.spec
            error = (
                ManifestError(
                    http_status=job.error_status, message=job.error_message, request_id=job.error_request_id
                )
                if job.error_message
                else None
            )
            entries.append(
                ManifestEntry(
                    job_id=str(job.id),
                    index=job.idx,
                    user_id=job.user_id,
                    prompt=spec.prompt,
                    negative_prompt=spec.negative_prompt,
                    provider=spec.provider,
                    provider_label=self._label(spec.provider),
                    account=job.account,
                    model=spec.model,
                    seed=spec.seed,
                    width=spec.width,
                    height=spec.height,
                    variant=spec.variant,
                    params=spec.params,
                    tags=job.tags,
                    format=spec.format.value,
                    file=job.file,
                    status=job.state.value,
                    review=job.review.value,
                    cache_hit=job.cache_hit,
                    cache_key=job.cache_key,
                    attempts=job.attempts,
                    credits=job.credits,
                    remote_id=job.remote_id,
                    request_id=job.error_request_id or (job.result or {}).get("request_id"),
                    error=error,
                    possible_duplicate_charge=job.possible_duplicate_charge is not None,
                    possible_duplicate_charge_why=job.possible_duplicate_charge,
                    stage=job.stage,
                    final_job_id=_id_or_none(finals.get(job.id)),
                    draft_job_id=_id_or_none(job.draft_of),
                    final_mode=final_mode(spec) if job.draft_of is not None else None,
                    inputs=[manifest_input(item) for item in spec.inputs],
                    delivered=_delivered(delivery),
                    created_at=_utc(job.created_at),
                    finished_at=_utc(job.finished_at) if job.finished_at is not None else None,
                )
            )
        return Manifest(
            batch_id=batch.id,
            name=batch.name,
            created_at=_utc(batch.created_at),
            updated_at=dt.datetime.now(dt.UTC),
            counts=counts,
            entries=entries,
        )
