"""The daemon's answers the pages need, fetched through its `/v1` API (the same routes the CLI
and the TUI use: a review here moves the files exactly as one there)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from wfbatch.client import DaemonClient
from wfbatch.protocol import JobDetail, JobSummary

DETAIL_CONCURRENCY = 8
"""Job details fetched at once for one page: enough to hide the socket's latency, few enough to
leave the daemon's connections to the engine's own clients."""


async def details(client: DaemonClient, job_ids: Iterable[int]) -> dict[int, JobDetail]:
    gate = asyncio.Semaphore(DETAIL_CONCURRENCY)

    async def one(job_id: int) -> JobDetail:
        async with gate:
            return await client.job(job_id)

    found = await asyncio.gather(*(one(job_id) for job_id in job_ids))
    return {detail.id: detail for detail in found}


async def jobs_in(
    client: DaemonClient,
    *,
    states: Sequence[str],
    batch_id: str | None = None,
    text: str | None = None,
    review: str | None = None,
    limit: int,
    cursor: str | None = None,
) -> tuple[list[JobSummary], str | None]:
    page = await client.jobs(
        states=states, batch_id=batch_id, text=text, review=review, limit=limit, cursor=cursor
    )
    return page.items, page.next_cursor
