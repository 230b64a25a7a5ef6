"""Delivery: each batch's images (and, once it finishes, its manifest) uploaded to an S3-compatible
bucket, by a worker of its own beside the job runner.

What should be in the bucket is recorded in the store with the change that causes it (a job done,
a review, a batch finished); the worker makes the bucket agree, one recorded step at a time. A
crash repeats at most one upload, to the same key. Errors go by class as a provider's do: the
network, a 5xx or throttling → tried again with backoff, as long as it takes; access denied, no
such bucket, no credentials → the delivery is held with the reason (never the job: its image
stays done, its file stays where it is) and tried again every `held_retry_seconds`, when the
configuration changes or when the daemon restarts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wfbatch.core.delivery import S3Location, parse_s3_url
from wfbatch.core.states import ReviewStatus
from wfbatch.core.tasks import wait_event
from wfbatch.engine.clock import Clock
from wfbatch.engine.loop.backoff import retry_delay
from wfbatch.engine.loop.writer import OutputWriter
from wfbatch.engine.outbox.targets import Resolver, delivery_problem, system_resolver
from wfbatch.outputs import make_slug
from wfbatch.outputs.bucket import BucketRefused, Buckets, BucketTransient, Endpoint, LocalFileGone
from wfbatch.settings import DeliverySettings, Settings
from wfbatch.store import MANIFEST, BatchRow, DeliveryRow, StoreApi

log = logging.getLogger("wfbatch.delivery")

IDLE_WAKE = 1.0


@dataclass(frozen=True)
class Target:
    """Where one batch's objects go."""

    config: DeliverySettings
    location: S3Location
    endpoint: Endpoint
    names: dict[str, str]

    def key(self, relative: str) -> str:
        return self.location.key(relative, **self.names)

    def url(self, relative: str = "") -> str:
        return f"s3://{self.location.bucket}/{self.key(relative)}"


def delivery_config(settings: Settings, batch: BatchRow) -> DeliverySettings | None:
    """The HOME's [delivery] with the batch spec's overrides; None when the batch uploads nothing."""
    config = settings.delivery.model_copy(update=batch.delivery or {})
    return config if config.url else None


def target_of(settings: Settings, batch: BatchRow) -> Target | None:
    config = delivery_config(settings, batch)
    if config is None or config.url is None:
        return None
    created = dt.datetime.fromtimestamp(batch.created_at, dt.UTC)
    return Target(
        config=config,
        location=parse_s3_url(config.url),
        endpoint=Endpoint(config.endpoint_url, config.region, config.timeout, config.deadline),
        # The batch's own date, not the upload's: a re-upload days later writes the same key.
        names={"batch": batch.id, "date": f"{created:%Y-%m-%d}", "name": make_slug(batch.name)},
    )


def _split_url(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


class DeliveryWorker:
    def __init__(
        self,
        store: StoreApi,
        settings: Callable[[], Settings],
        writer: OutputWriter,
        clock: Clock,
        rng: random.Random | None = None,
        resolve: Resolver = system_resolver,
    ) -> None:
        self._store = store
        self._deliveries = store.outbox
        self._resolve = resolve
        self._settings = settings
        self._writer = writer
        self._clock = clock
        self._rng = rng or random.Random()
        self._buckets = Buckets()
        self._wake = asyncio.Event()
        self._running: dict[int, asyncio.Task[None]] = {}
        # A destination that refused once (no bucket, access denied) is not asked again for every
        # image: its deliveries are held at once, until the configuration changes.
        self._refused: dict[tuple[Endpoint, str], str] = {}
        self._last_release = clock.wall()

    # -- what the engine and the commands call ------------------------------------------------

    def target(self, batch: BatchRow) -> Target | None:
        return target_of(self._settings(), batch)

    def uploads_as_done(self, batch: BatchRow) -> bool:
        """Is a finished image of this batch uploaded at once (`upload = "all"`)?"""
        config = delivery_config(self._settings(), batch)
        return config is not None and config.upload == "all"

    async def reviewed(
        self,
        job_id: int,
        batch: BatchRow,
        decision: ReviewStatus,
        relative: str,
        *,
        read: tuple[ReviewStatus, str] | None = None,
    ) -> bool:
        """Record a review (the image's new folder) and what it means for the bucket: moved to the
        new folder's key, or deleted (rejected; or not approved when only approved ones go up).
        `read`: the (review, file) the decision was made on; False (nothing recorded) when the
        job no longer has them."""
        config = delivery_config(self._settings(), batch)
        keep = decision is ReviewStatus.APPROVED or (
            decision is ReviewStatus.PENDING and config is not None and config.upload == "all"
        )
        recorded = await self._deliveries.review(
            job_id,
            decision.value,
            relative,
            relative if keep else None,
            deliver=config is not None,
            read=None if read is None else (read[0].value, read[1]),
        )
        if recorded:
            self.wake()
        return recorded

    async def batch_finished(self, batch: BatchRow, counts: dict[str, int]) -> None:
        """Every job of the batch has ended: its manifest goes up once its images are settled."""
        if self.target(batch) is not None:
            await self._deliveries.want_manifest(batch.id)
            self.wake()

    async def settings_changed(self) -> None:
        """New configuration: held deliveries try again, with clients made afresh."""
        await self._release_held("with the new configuration")

    async def _release_held(self, why: str) -> None:
        self._last_release = self._clock.wall()
        self._refused.clear()
        self._buckets.forget()
        released = await self._deliveries.release_held()
        if released:
            log.info("%d held deliveries are tried again %s", released, why)
        self.wake()

    async def _release_held_when_due(self) -> None:
        """A bucket created or a policy fixed outside wfbatch is noticed without a SIGHUP: held
        deliveries are tried again every `held_retry_seconds` (each a single request, then held
        again if nothing changed)."""
        every = self._settings().delivery.held_retry_seconds
        if every > 0 and self._clock.wall() - self._last_release >= every:
            await self._release_held(f"(every {every:g} s)")

    def wake(self) -> None:
        self._wake.set()

    # -- the worker ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver until cancelled; in-flight uploads are cancelled with it (and repeated next time)."""
        try:
            while True:
                self._wake.clear()
                try:
                    await self._release_held_when_due()
                    await self._start_due()
                except Exception:
                    log.exception("delivery: could not read the pending deliveries; trying again")
                delay = IDLE_WAKE
                next_due = await self._deliveries.next_due()
                if next_due is not None:
                    delay = max(0.01, min(delay, next_due - self._clock.wall()))
                await wait_event(self._wake, delay)
        finally:
            tasks = list(self._running.values())
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    async def pending(self) -> int:
        return (await self._deliveries.backlog())["pending"]

    async def _start_due(self) -> None:
        free = self._settings().delivery.max_concurrent - len(self._running)
        if free <= 0:
            return
        for row in await self._deliveries.due(self._clock.wall(), free, set(self._running)):
            task = asyncio.create_task(self._deliver(row), name=f"delivery-{row.id}")
            self._running[row.id] = task
            task.add_done_callback(functools.partial(self._done, row.id))

    def _done(self, row_id: int, _: object = None) -> None:
        self._running.pop(row_id, None)
        self.wake()

    async def _deliver(self, row: DeliveryRow) -> None:
        try:
            await self._deliver_one(row)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug must not stop deliveries: this one waits and is tried again.
            log.exception("delivery %s: unexpected error", row.id)
            why = "internal error in wfbatch (see the log)"
            await self._deliveries.retry_later(row, self._retry_at(row), why)

    async def _deliver_one(self, row: DeliveryRow) -> None:
        batch = await self._store.batches.get_batch(row.batch_id)
        target = self.target(batch) if batch is not None else None
        if batch is None or target is None:
            await self._deliveries.hold(row, "delivery is not configured for this batch any more")
            return
        # The HOME's credentials sign requests only to buckets and endpoints the HOME allows.
        url = target.config.url or ""  # set: a target has a url
        problem = await delivery_problem(url, target.endpoint.endpoint_url, self._settings(), self._resolve)
        if problem is not None and problem.startswith("refused"):
            await self._deliveries.hold(row, problem)
            return
        if problem is not None:
            await self._deliveries.retry_later(row, self._retry_at(row), problem)
            return
        destination = (target.endpoint, target.location.bucket)
        refused = self._refused.get(destination)
        if refused is not None:
            await self._deliveries.hold(row, refused)
            return
        try:
            await self._apply(row, batch, target)
        except BucketTransient as error:
            at = self._retry_at(row)
            log.info("delivery of %s (batch %s) will be tried again: %s", row.want, batch.id, error)
            await self._deliveries.retry_later(row, at, str(error))
        except BucketRefused as error:
            if not isinstance(error, LocalFileGone):
                self._refused[destination] = str(error)
            log.warning("delivery of %s (batch %s) held: %s", row.want, batch.id, error)
            await self._deliveries.hold(row, str(error))
        else:
            self._writer.mark_dirty(batch.id)

    async def _apply(self, row: DeliveryRow, batch: BatchRow, target: Target) -> None:
        """Make the bucket hold `row.want` (and nothing older of this row)."""
        buckets, endpoint = self._buckets, target.endpoint
        if row.want is None:
            if row.have_url is not None:
                await buckets.delete(endpoint, *_split_url(row.have_url))
            await self._deliveries.delivered(row, have_url=None, etag=None)
            return
        if row.kind == MANIFEST:
            # The manifest as it is now: every image of the batch is settled by this time.
            await self._writer.write_batch_files(batch.id, force_sheet=False)
        key = target.key(row.want)
        etag = await buckets.put(endpoint, target.location.bucket, key, Path(batch.output_dir) / row.want)
        url = target.url(row.want)
        presigned, until = None, None
        seconds = target.config.presign_seconds
        if seconds and row.kind != MANIFEST:
            presigned = await buckets.presign(endpoint, target.location.bucket, key, seconds)
            until = self._clock.wall() + seconds
        if row.have_url is not None and row.have_url != url:
            # Moved (a review): the new object is in place before the old one goes.
            await buckets.delete(endpoint, *_split_url(row.have_url))
        await self._deliveries.delivered(
            row, have_url=url, etag=etag, presigned_url=presigned, presigned_until=until
        )

    def _retry_at(self, row: DeliveryRow) -> float:
        config = self._settings().delivery
        delay = retry_delay(min(row.attempts + 1, 30), config.backoff_initial, config.backoff_max, self._rng)
        return self._clock.wall() + delay
