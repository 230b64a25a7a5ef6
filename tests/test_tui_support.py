"""Support for the TUI tests: a fixed fake daemon state (snapshots only) and a real daemon process.

The fake stands in only where a real part cannot be deterministic (limiter gauges, timings, pids
in a screenshot) or cannot be made to fail (an HTTP 500); behaviour is tested against the real
daemon. Either way the app talks through the real `DaemonClient`: the fake is its transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel

from tests.deadlines import patience, scaled
from wfbatch.client.client import DaemonClient, DaemonUnavailable
from wfbatch.protocol import (
    Attempt,
    BatchSummary,
    CancelRequest,
    CommandResult,
    EditRequest,
    ErrorInfo,
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
    routes,
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


class FakeAnswer(Exception):
    """Raised by a `FakeDaemon` call to answer with an HTTP error instead (a 500, say)."""

    def __init__(self, status: int, error: str) -> None:
        self.status = status
        self.error = error
        super().__init__(error)


_JOB = re.compile(r"^/v1/jobs/(?P<job_id>\d+)(?P<edit>/edit)?$")


class FakeDaemon:
    """A daemon with fixed answers behind an `httpx.MockTransport`: the app runs the real
    `DaemonClient` (`client()`) over it, its requests, parsing and errors unchanged, with no
    socket. Each route is answered by the method of its name (override one to change an answer;
    raise `FakeAnswer` for an HTTP error); the commands it is sent are recorded in `commands`."""

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

    def client(self) -> DaemonClient:
        """The real client, talking to this fake instead of a socket."""
        return DaemonClient(FAKE_SOCKET, transport=httpx.MockTransport(self._handle))

    # -- the HTTP side ------------------------------------------------------------------------

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        if self.unavailable:
            raise httpx.ConnectError("nothing listens", request=request)
        try:
            if request.url.path == routes.EVENTS:
                return httpx.Response(
                    200, headers={"content-type": "text/event-stream"}, content=self._no_events()
                )
            answer = await self._answer(request)
        except FakeAnswer as error:
            return httpx.Response(error.status, json={"error": error.error, "detail": None})
        return httpx.Response(200, json=answer.model_dump(mode="json"))

    async def _answer(self, request: httpx.Request) -> BaseModel:
        path, params = request.url.path, request.url.params
        body = json.loads(request.content) if request.method == "POST" else {}
        if path == routes.HEALTH:
            return await self.health()
        if path == routes.STATUS:
            return await self.status()
        if path == routes.JOBS:
            return await self.jobs(
                states=[s for s in params.get("state", "").split(",") if s],
                batch_id=params.get("batch"), text=params.get("q"), review=params.get("review"),
                limit=int(params.get("limit", "100")),
            )
        commands: dict[str, Callable[[dict[str, Any]], Awaitable[CommandResult]]] = {
            routes.JOBS_RETRY: lambda b: self._command(RetryRequest.model_validate(b)),
            routes.JOBS_CANCEL: lambda b: self._command(CancelRequest.model_validate(b)),
            routes.PAUSE: lambda b: self._command(("pause", PauseRequest.model_validate(b))),
            routes.RESUME: lambda b: self._command(("resume", PauseRequest.model_validate(b))),
            routes.REVIEW: lambda b: self._command(ReviewRequest.model_validate(b)),
        }
        if path in commands:
            return await commands[path](body)
        match = _JOB.match(path)
        if match is None:
            raise FakeAnswer(404, "not found")
        job_id = int(match["job_id"])
        if match["edit"]:
            return await self._command(("edit", job_id, EditRequest.model_validate(body).prompt))
        return await self.job(job_id)

    async def _no_events(self) -> AsyncIterator[bytes]:
        await self._never.wait()
        yield b""  # pragma: no cover - never reached

    # -- the answers --------------------------------------------------------------------------

    async def health(self) -> Health:
        return Health(ok=True, version="0.1.0", api_version=1, pid=4242, started_at=T0, home="/srv/wfbatch")

    async def status(self) -> Status:
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
        limit: int = 100,
    ) -> Page[JobSummary]:
        items = [
            j for j in self.jobs_list
            if (not states or j.state in states)
            and (batch_id is None or j.batch_id == batch_id)
            and (text is None or text.lower() in j.prompt.lower())
            and (review is None or j.review == review)
        ]
        return Page[JobSummary](items=items[:limit])

    async def job(self, job_id: int) -> JobDetail:
        summary = next((j for j in self.jobs_list if j.id == job_id), None)
        if summary is None:
            raise FakeAnswer(404, f"no job {job_id}")
        history = [
            Attempt(at=T0 + 10, kind="start", outcome="permanent", http_status=422,
                    message="content policy: named artist style", request_id="req_9c1e0b"),
        ] if summary.state == "failed" else []
        return JobDetail(
            **summary.model_dump(), seed=7, width=512, height=512, variant=0, format="png",
            params={"steps": 30}, output_dir="/srv/out", attempts_history=history,
        )

    async def _command(self, request: Any) -> CommandResult:
        self.commands.append(request)
        return CommandResult(job_ids=[], message="ok")


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
