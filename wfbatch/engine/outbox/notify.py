"""Telling people: a signed webhook and/or a command when a batch finishes, is held (budget, credit,
a bad key, an unreachable provider, a full disk) or — if asked — when jobs fail for good.

Each event is first queued in the store's outbox under a key (a batch finishing with these counts,
a hold for this reason), so it is sent once across restarts; a worker of its own sends it, with
retries and backoff, never in the engine's way. Each receiver (a webhook URL, a command) has a lane
of its own, one message at a time, and every send has a deadline for the whole exchange: a
receiver that answers slowly, or trickles its answer, delays only its own messages.

Webhooks follow Standard Webhooks: `webhook-id`, `webhook-timestamp` and
`webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`. No payload carries a secret,
and the command's environment has none of wfbatch's or AWS's variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from wfbatch.core.states import JobState
from wfbatch.core.tasks import wait_event
from wfbatch.engine.clock import Clock
from wfbatch.engine.loop.backoff import retry_delay
from wfbatch.engine.loop.holds import Holds
from wfbatch.engine.outbox.delivery import target_of
from wfbatch.engine.outbox.targets import Resolver, pin, system_resolver, target_policy
from wfbatch.settings import NotifySettings, Settings
from wfbatch.store import BatchRow, JobRow, Notice, NotificationRow, StoreApi

log = logging.getLogger("wfbatch.notify")

TICK = 1.0
HOLDS_EVERY = 2.0
MAX_JOBS_LISTED = 50
DUE_PER_ROUND = 100
# Variables a notify command never inherits: API keys, the webhook secret, S3 credentials.
_SECRET_PREFIXES = ("WFBATCH_", "AWS_")


def notify_config(settings: Settings, batch: BatchRow) -> NotifySettings:
    """The HOME's [notify] with the batch spec's overrides."""
    return settings.notify.model_copy(update=batch.notify or {})


def _active(config: NotifySettings) -> bool:
    return bool(config.webhook_url or config.command)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def _receiver(config: NotifySettings) -> str:
    """Who gets a message: messages for the same receiver go one at a time, in order."""
    return json.dumps([config.webhook_url, config.command])


@dataclass
class _Lane:
    """The messages waiting for one receiver, and the task sending them."""

    groups: deque[list[NotificationRow]] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None


class Notifier:
    def __init__(
        self,
        store: StoreApi,
        settings: Callable[[], Settings],
        holds: Holds,
        clock: Clock,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        resolve: Resolver = system_resolver,
    ) -> None:
        self._store = store
        self._outbox = store.outbox
        self._settings = settings
        self._holds = holds
        self._clock = clock
        self._rng = rng or random.Random()
        self._transport = transport
        self._resolve = resolve
        self._wake = asyncio.Event()
        self._held: dict[str, str] = {}
        self._failed_sent_at: dict[str, float] = {}
        self._lanes: dict[str, _Lane] = {}
        self._claimed: set[int] = set()
        """Rows handed to a lane and not yet recorded as sent, retried or failed."""

    def wake(self) -> None:
        self._wake.set()

    # -- events in ---------------------------------------------------------------------------

    async def batch_finished(self, batch: BatchRow, counts: dict[str, int]) -> None:
        if not _active(notify_config(self._settings(), batch)):
            return
        # Keyed by the counts: a batch that finishes again the same way (a retry that failed
        # again) is not announced twice; one that ends differently is.
        key = f"batch.finished:{batch.id}:{_digest(counts)}"
        await self._outbox.enqueue_notification(key, batch.id, "batch.finished", {"counts": counts})
        self.wake()

    async def budget_reserved(self, batch: BatchRow, provider: str, day: str) -> None:
        """After a reservation: a batch's budget or the provider's daily cap now `budget_alert` (0.8)
        spent or reserved is told once — before the hold, while there is time to raise it. Keyed by
        the limit (a raised budget can be told again) and, for the daily cap, by the day."""
        settings = self._settings()
        config = notify_config(settings, batch)
        if config.budget_alert is None or not _active(config):
            return
        alerts: list[tuple[str, str, float | None, Callable[[], Awaitable[float]]]] = [
            (
                f"batch:{batch.id}",
                "budget",
                batch.budget,
                lambda: self._store.ledger.batch_exposure(batch.id),
            ),
            (
                f"daily:{provider}:{day}",
                f"{provider}'s daily credit cap",
                settings.provider_limits(provider).daily_credit_cap,
                lambda: self._store.ledger.provider_exposure(provider, day),
            ),
        ]
        for scope, what, limit, exposure_of in alerts:
            if limit is None:
                continue
            exposure = await exposure_of()
            if exposure < config.budget_alert * limit - 1e-9:
                continue
            reason = (
                f"{what} {exposure / limit:.0%} spent or reserved: {exposure:g} of {limit:g} credits"
                f" (alert at {config.budget_alert:.0%})"
            )
            payload = {"reason": reason, "scope": scope.split(":")[0], "spent": exposure, "limit": limit}
            key = f"budget.alert:{scope}:{limit:g}"
            if await self._outbox.enqueue_notification(key, batch.id, "budget.alert", payload):
                self.wake()

    def failed_notice(self, job: JobRow, batch: BatchRow, fields: dict[str, Any]) -> Notice | None:
        """The `job.failed` notice for `job` failing with the error in `fields`, if anyone is to be
        told: the engine queues it in the transaction that fails the job, so a crash cannot lose it.
        Keyed by the run (generation, attempts): a retry that fails again is told again."""
        config = notify_config(self._settings(), batch)
        if not (config.job_failed and _active(config)):
            return None
        entry = {
            "job_id": job.id,
            "index": job.idx,
            "prompt": job.spec.prompt[:500],
            "error": fields.get("error_message"),
            "http_status": fields.get("error_status"),
        }
        return Notice(f"job.failed:{job.id}:{job.generation}:{job.attempts}", "job.failed", entry)

    async def check_holds(self) -> None:
        """A batch newly held (or held for a new reason) is announced once per reason."""
        queued = await self._store.jobs.queued_batch_providers()
        for batch_id in set(self._held) - set(queued):
            del self._held[batch_id]
        for batch_id, providers in queued.items():
            batch = await self._store.batches.get_batch(batch_id)
            if batch is None:
                continue
            reason = self._holds.held_for_notice(batch, providers)
            if reason is None:
                self._held.pop(batch_id, None)
                continue
            if self._held.get(batch_id) == reason:
                continue
            self._held[batch_id] = reason
            if _active(notify_config(self._settings(), batch)):
                key = f"batch.held:{batch_id}:{_digest(reason)}"
                await self._outbox.enqueue_notification(key, batch_id, "batch.held", {"reason": reason})
                self.wake()

    # -- the worker ---------------------------------------------------------------------------

    async def pending(self) -> int:
        """Notifications waiting to go out now or on a retry."""
        return await self._outbox.pending_notifications()

    async def run(self) -> None:
        async with httpx.AsyncClient(transport=self._transport, follow_redirects=False) as http:
            holds_at = 0.0
            try:
                while True:
                    self._wake.clear()
                    try:
                        if self._clock.monotonic() - holds_at >= HOLDS_EVERY:
                            holds_at = self._clock.monotonic()
                            await self.check_holds()
                        await self.send_due(http)
                    except Exception:
                        log.exception("notifications: unexpected error; trying again")
                    await wait_event(self._wake, TICK)
            finally:
                # A message cut short stays pending in the outbox: the next start sends it.
                lanes = [lane.task for lane in self._lanes.values() if lane.task is not None]
                for task in lanes:
                    task.cancel()
                await asyncio.gather(*lanes, return_exceptions=True)

    async def send_due(self, http: httpx.AsyncClient) -> None:
        """Hand every due message to its receiver's lane. Rows already in a lane are skipped, so
        a receiver with a long queue cannot fill every round and starve the others."""
        fetched = await self._outbox.due_notifications(
            self._clock.wall(), DUE_PER_ROUND + len(self._claimed)
        )
        rows = [row for row in fetched if row.id not in self._claimed][:DUE_PER_ROUND]
        failed: dict[str, list[NotificationRow]] = {}
        for row in rows:
            if row.type == "job.failed":
                failed.setdefault(row.batch_id, []).append(row)
            else:
                await self._queue([row], http)
        for batch_id, group in failed.items():
            # Rate-limited per batch; failures meanwhile go out together in the next one.
            batch = await self._store.batches.get_batch(batch_id)
            interval = notify_config(self._settings(), batch).job_failed_interval if batch else 0.0
            last = self._failed_sent_at.get(batch_id)
            if last is not None and self._clock.monotonic() - last < interval:
                continue
            self._failed_sent_at[batch_id] = self._clock.monotonic()
            await self._queue(group, http)

    async def _queue(self, rows: list[NotificationRow], http: httpx.AsyncClient) -> None:
        batch = await self._store.batches.get_batch(rows[0].batch_id)
        receiver = _receiver(notify_config(self._settings(), batch)) if batch is not None else ""
        self._claimed.update(row.id for row in rows)
        lane = self._lanes.setdefault(receiver, _Lane())
        lane.groups.append(rows)
        if lane.task is None:
            lane.task = asyncio.create_task(self._drain(receiver, lane, http), name="notify-lane")

    async def _drain(self, receiver: str, lane: _Lane, http: httpx.AsyncClient) -> None:
        try:
            while lane.groups:
                rows = lane.groups.popleft()
                try:
                    await self._send(rows, http)
                except Exception:
                    log.exception("notifications: unexpected error; trying again")
                finally:
                    self._claimed.difference_update(row.id for row in rows)
        finally:
            # No await between the empty queue and this: `_queue` never adds to a finished lane.
            for rows in lane.groups:
                self._claimed.difference_update(row.id for row in rows)
            if self._lanes.get(receiver) is lane:
                del self._lanes[receiver]

    async def _send(self, rows: list[NotificationRow], http: httpx.AsyncClient) -> None:
        first = rows[0]
        batch = await self._store.batches.get_batch(first.batch_id)
        if batch is None:
            for row in rows:
                await self._outbox.notification_failed(row, "the batch no longer exists")
            return
        config = notify_config(self._settings(), batch)
        payload = await self._payload(batch, rows)
        if config.command and first.attempts == 0:
            await self._run_command(config, payload)
        error = await self._post(config, first.key, payload, http) if config.webhook_url else None
        for row in rows:
            if error is None:
                await self._outbox.notification_sent(row.id)
            elif row.attempts + 1 >= config.max_attempts or error.startswith("refused"):
                log.warning("webhook %s for batch %s given up: %s", row.type, batch.id, error)
                await self._outbox.notification_failed(row, error)
            else:
                delay = retry_delay(row.attempts + 1, config.backoff_initial, config.backoff_max, self._rng)
                await self._outbox.notification_retry(row, self._clock.wall() + delay, error)

    async def _payload(self, batch: BatchRow, rows: list[NotificationRow]) -> dict[str, Any]:
        kind = rows[0].type
        counts = await self._store.counters.counts([batch.id])
        payload: dict[str, Any] = {
            "type": kind,
            "batch_id": batch.id,
            "name": batch.name,
            "counts": {state: n for state, n in counts.items() if n},
            "output_dir": batch.output_dir,
            "at": dt.datetime.fromtimestamp(self._clock.wall(), dt.UTC).isoformat(),
        }
        target = target_of(self._settings(), batch)
        if target is not None:
            backlog = await self._outbox.backlog(batch.id)
            payload["delivery"] = {"url": target.url(), **backlog}
        if kind == "batch.held":
            payload["reason"] = rows[0].payload.get("reason")
        if kind == "budget.alert":
            payload |= rows[0].payload
        if kind == "job.failed":
            payload["jobs"] = [row.payload for row in rows[:MAX_JOBS_LISTED]]
            payload["failed_jobs"] = len(rows)
        return payload

    async def _post(
        self, config: NotifySettings, key: str, payload: dict[str, Any], http: httpx.AsyncClient
    ) -> str | None:
        """POST the payload; None when the receiver took it, else why not ("refused ..." is final)."""
        assert config.webhook_url is not None
        # A batch's own webhook gets the HOME's signature only where the HOME allows it.
        target = await pin(config.webhook_url, target_policy(self._settings()).webhooks, self._resolve)
        if isinstance(target, str):
            return target
        body = json.dumps(payload, ensure_ascii=False)
        # The same id on every try of one message: the receiver can drop repeats.
        message_id = "msg_" + hashlib.sha256(key.encode()).hexdigest()[:24]
        now = dt.datetime.fromtimestamp(int(self._clock.wall()), dt.UTC)
        headers = {
            "content-type": "application/json",
            "user-agent": "wfbatch",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
        }
        if config.webhook_secret is not None:
            signer = Webhook(config.webhook_secret.get_secret_value())
            headers["webhook-signature"] = signer.sign(message_id, now, body)
        try:
            # httpx's timeout is per read: a receiver trickling its answer a byte at a time would
            # never hit it. The deadline covers the whole exchange, the answer's body included.
            async with asyncio.timeout(config.timeout):
                response = await http.post(
                    target.url,
                    content=body.encode(),
                    headers=headers | target.headers,
                    timeout=config.timeout,
                    extensions=target.extensions,
                )
        except TimeoutError:
            return f"no complete answer within {config.timeout:g} s"
        except httpx.HTTPError as error:
            return f"{type(error).__name__}: {error}"
        if 200 <= response.status_code < 300:
            return None
        if response.status_code in (408, 429) or response.status_code >= 500:
            return f"HTTP {response.status_code}"
        return f"refused: HTTP {response.status_code}"

    async def _run_command(self, config: NotifySettings, payload: dict[str, Any]) -> None:
        """Run the user's command by the shell with the facts in WFBATCH_*; a failure is logged."""
        assert config.command is not None
        counts = payload.get("counts", {})
        env = {k: v for k, v in os.environ.items() if not k.startswith(_SECRET_PREFIXES)}
        env |= {
            "WFBATCH_EVENT": payload["type"],
            "WFBATCH_BATCH_ID": payload["batch_id"],
            "WFBATCH_BATCH_NAME": payload["name"],
            "WFBATCH_OUTPUT_DIR": payload["output_dir"],
            "WFBATCH_COUNTS": json.dumps(counts),
            "WFBATCH_DONE": str(counts.get(JobState.DONE.value, 0)),
            "WFBATCH_FAILED": str(counts.get(JobState.FAILED.value, 0)),
            "WFBATCH_REASON": str(payload.get("reason") or ""),
            "WFBATCH_DELIVERY_URL": str((payload.get("delivery") or {}).get("url") or ""),
            "WFBATCH_PAYLOAD": json.dumps(payload, ensure_ascii=False),
        }
        try:
            process = await asyncio.create_subprocess_shell(
                config.command,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as error:
            log.warning("notify command could not start: %s", error)
            return
        try:
            _, stderr = await asyncio.wait_for(process.communicate(), config.timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            log.warning("notify command killed after %.0f s", config.timeout)
            return
        except asyncio.CancelledError:
            # The daemon is stopping: the command is not left running on its own. Its message is
            # still pending, so the next start runs it again.
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise
        if process.returncode:
            last = stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
            log.warning("notify command exited with %s: %s", process.returncode, last[0][:300])
