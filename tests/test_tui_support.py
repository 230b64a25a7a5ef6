"""Support for the TUI tests: a fixed fake daemon state (snapshots only) and a real daemon process.

The fake stands in only where a real part cannot be deterministic (limiter gauges, timings, pids
in a screenshot); behaviour is tested against the real daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

from tests.deadlines import patience, scaled
from wfbatch.client.client import DaemonClient, DaemonUnavailable
from wfbatch.protocol import (
    Attempt,
    BatchSummary,
    CancelRequest,
    CommandResult,
    EngineEvent,
    ErrorInfo,
    Event,
    Health,
    Hold,
    JobDetail,
    JobSummary,
    Page,
    PauseRequest,
    ProviderStatus,
    RetryRequest,
    ReviewRequest,
    Status,
)

T0 = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC

FAKE_SOCKET = Path("/run/user/1000/wfbatch/3f2a9c1d7e4b.sock")


def _counts(**given: int) -> dict[str, int]:
    states = ("queued", "submitting", "running", "retrying", "done", "failed", "canceled")
    return {s: given.get(s, 0) for s in states}


def _job(job_id: int, batch_id: str, state: str, prompt: str, **extra: Any) -> JobSummary:
    fields: dict[str, Any] = {
        "id": job_id, "batch_id": batch_id, "index": job_id, "line": job_id, "state": state,
        "review": "pending", "prompt": prompt, "provider": "wireflow" if batch_id == "b2" else "local",
        "attempts": 1, "updated_at": T0 + job_id,
    }
    fields.update(extra)
    return JobSummary(**fields)


class FakeDaemon:
    """Implements the calls of `DaemonClient` with fixed answers, and records the commands."""

    def __init__(self, *, unavailable: bool = False) -> None:
        self.unavailable = unavailable
        self.commands: list[Any] = []
        self._never = asyncio.Event()
        self.jobs_list = [
            _job(1, "b1", "queued", "a lighthouse at dusk, oil painting", attempts=0),
            _job(2, "b1", "retrying", "a fox in the snow, 35mm photo", attempts=2,
                 error=ErrorInfo(http_status=503, message="upstream busy", request_id="req_7f3a")),
            _job(3, "b2", "running", "isometric city block, pastel", remote_id="exe_42"),
            _job(4, "b2", "failed", "a FAILME portrait in the style of a famous painter", attempts=3,
                 error=ErrorInfo(http_status=422, message="content policy: named artist style",
                                 request_id="req_9c1e0b", error_class="permanent")),
            _job(5, "b2", "failed", "a very long prompt " * 6, attempts=5,
                 error=ErrorInfo(http_status=500, message="internal error", request_id="req_0a77d2")),
            _job(6, "b1", "done", "a quiet harbour, watercolor", file="pending-review/0006.png"),
            _job(7, "b3", "done", "neon koi pond, night", file="approved/0007.png", review="approved",
                 cache_hit=True),
        ]

    async def _check(self) -> None:
        if self.unavailable:
            raise DaemonUnavailable(FAKE_SOCKET)

    @property
    def socket_path(self) -> Path:
        return FAKE_SOCKET

    async def health(self) -> Health:
        await self._check()
        return Health(ok=True, version="0.1.0", api_version=1, pid=4242, started_at=T0, home="/srv/wfbatch")

    async def status(self) -> Status:
        await self._check()
        providers = {
            "local": ProviderStatus(
                name="local", label="built-in offline renderer", requests_in_window=41,
                requests_per_minute=600, executions_in_window=12, executions_per_minute=120,
                in_flight=2, max_in_flight=4, daily_executions=310,
            ),
            "wireflow": ProviderStatus(
                name="wireflow", label="Wireflow", requests_in_window=10, requests_per_minute=10,
                executions_in_window=3, executions_per_minute=5, in_flight=0, max_in_flight=2,
                daily_executions=48, daily_cap=500, balance=3, paused="out of credits",
                pause_details={"kind": "credits", "required": 10, "available": 3},
            ),
        }
        batches = [
            BatchSummary(id="b1", name="landscapes", source_name="landscapes.txt", provider="local",
                         created_at=T0, output_dir="/srv/out/b1", paused=False,
                         counts=_counts(queued=40, retrying=1, done=58, failed=1), total=100,
                         eta_seconds=95),
            BatchSummary(id="b2", name="portraits", source_name="portraits.jsonl", provider="wireflow",
                         created_at=T0, output_dir="/srv/out/b2", paused=True,
                         counts=_counts(running=1, done=6, failed=2, queued=11), total=20, eta_seconds=None),
            BatchSummary(id="b3", name="koi", source_name="koi.csv", provider="local", created_at=T0,
                         output_dir="/srv/out/b3", paused=False, counts=_counts(done=12), total=12),
        ]
        holds = [
            Hold(scope="provider", target="wireflow", kind="credits", reason="out of credits",
                 lift="top up the account, then `wfbatch resume --provider wireflow`"),
            Hold(scope="batch", target="b2", kind="pause", reason="paused by the user",
                 lift="`wfbatch resume --batch b2`"),
        ]
        return Status(version="0.1.0", jobs=_counts(queued=51, retrying=1, running=1, done=76, failed=3),
                      paused=False, providers=providers, batches=batches, holds=holds, eta_seconds=95)

    async def jobs(
        self,
        *,
        states: Sequence[str] = (),
        batch_id: str | None = None,
        text: str | None = None,
        review: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[JobSummary]:
        await self._check()
        items = [
            j for j in self.jobs_list
            if (not states or j.state in states)
            and (batch_id is None or j.batch_id == batch_id)
            and (text is None or text.lower() in j.prompt.lower())
            and (review is None or j.review == review)
        ]
        return Page[JobSummary](items=items[:limit])

    async def job(self, job_id: int) -> JobDetail:
        await self._check()
        summary = next(j for j in self.jobs_list if j.id == job_id)
        history = [
            Attempt(at=T0 + 10, kind="start", outcome="permanent", http_status=422,
                    message="content policy: named artist style", request_id="req_9c1e0b"),
        ] if summary.state == "failed" else []
        return JobDetail(
            **summary.model_dump(), seed=7, width=512, height=512, variant=0, format="png",
            params={"steps": 30}, output_dir="/srv/out", attempts_history=history,
        )

    async def _command(self, request: Any) -> CommandResult:
        await self._check()
        self.commands.append(request)
        return CommandResult(job_ids=[], message="ok")

    async def retry(self, request: RetryRequest) -> CommandResult:
        return await self._command(request)

    async def cancel(self, request: CancelRequest) -> CommandResult:
        return await self._command(request)

    async def edit(self, job_id: int, prompt: str) -> CommandResult:
        return await self._command(("edit", job_id, prompt))

    async def pause(self, request: PauseRequest) -> CommandResult:
        return await self._command(("pause", request))

    async def resume(self, request: PauseRequest) -> CommandResult:
        return await self._command(("resume", request))

    async def review(self, request: ReviewRequest) -> CommandResult:
        return await self._command(request)

    async def events(self) -> AsyncIterator[Event]:
        await self._check()
        await self._never.wait()
        yield EngineEvent(event="connected")  # pragma: no cover - never reached

    async def aclose(self) -> None:
        return None


# -- a real daemon ---------------------------------------------------------------------------------


def short_socket_dir() -> Path:
    """A socket path must stay under 108 bytes; pytest's tmp_path can be longer than that."""
    return Path(tempfile.mkdtemp(prefix="wfb-", dir="/tmp"))


class DaemonProcess:
    """`wfbatch daemon` as a subprocess on a temporary HOME and socket."""

    def __init__(self, home: Path, socket_path: Path, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.socket_path = socket_path
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.log = home.parent / f"{home.name}-daemon.log"

    def start(self, timeout: float = patience(15.0)) -> None:
        """Start and wait for health, from synchronous code."""
        self.spawn()
        asyncio.run(self.wait_healthy(within=timeout))

    def spawn(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        # Only what the test sets: never the developer's WFBATCH_* variables or runtime dir.
        env = {k: v for k, v in os.environ.items() if not k.startswith("WFBATCH_") and k != "XDG_RUNTIME_DIR"}
        env.update(self.env)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "wfbatch", "daemon", "--home", str(self.home),
                 "--socket", str(self.socket_path)],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )

    async def wait_healthy(self, within: float = 15.0) -> None:
        deadline = time.monotonic() + patience(within)
        async with DaemonClient(self.socket_path, timeout=scaled(2.0)) as client:
            while True:
                try:
                    await client.health()
                    return
                except DaemonUnavailable:
                    if self.process is not None and self.process.poll() is not None:
                        raise RuntimeError(f"daemon exited: {self.log.read_text()[-2000:]}") from None
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"daemon not healthy: {self.log.read_text()[-2000:]}") from None
                    await asyncio.sleep(0.1)

    def stop(self, timeout: float = patience(10.0)) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(scaled(5))
        self.process = None


@contextlib.contextmanager
def daemon_process(home: Path, env: dict[str, str] | None = None) -> Iterator[DaemonProcess]:
    socket_dir = short_socket_dir()
    daemon = DaemonProcess(home, socket_dir / "d.sock", env)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()
        with contextlib.suppress(OSError):
            for child in socket_dir.iterdir():
                child.unlink()
            socket_dir.rmdir()


async def wait_until(predicate: Any, within: float = 10.0, interval: float = 0.05) -> Any:
    """Poll an async or sync predicate until it returns something truthy, for at most
    `patience(within)` s (a deadline that scales with the machine)."""
    deadline = time.monotonic() + patience(within)
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(interval)
