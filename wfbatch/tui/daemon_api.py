"""What the TUI needs from the daemon: the calls of `DaemonClient`, as a protocol.

The app is written against this protocol, so tests can hand it a fixed fake state for snapshots
while behaviour tests use the real `DaemonClient` on a real daemon.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Protocol

from wfbatch.protocol import (
    CancelRequest,
    CommandResult,
    Event,
    Health,
    JobDetail,
    JobSummary,
    Page,
    PauseRequest,
    RetryRequest,
    ReviewRequest,
    Status,
)


class DaemonApi(Protocol):
    @property
    def socket_path(self) -> Path: ...

    async def health(self) -> Health: ...

    async def status(self) -> Status: ...

    async def jobs(
        self,
        *,
        states: Sequence[str] = (),
        batch_id: str | None = None,
        text: str | None = None,
        review: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[JobSummary]: ...

    async def job(self, job_id: int) -> JobDetail: ...

    async def retry(self, request: RetryRequest) -> CommandResult: ...

    async def cancel(self, request: CancelRequest) -> CommandResult: ...

    async def edit(self, job_id: int, prompt: str) -> CommandResult: ...

    async def pause(self, request: PauseRequest) -> CommandResult: ...

    async def resume(self, request: PauseRequest) -> CommandResult: ...

    async def review(self, request: ReviewRequest) -> CommandResult: ...

    def events(self) -> AsyncIterator[Event]: ...

    async def aclose(self) -> None: ...
