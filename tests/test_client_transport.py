"""`DaemonClient(transport=...)`: the real client over any httpx transport, as httpx's own clients
are. Here the real daemon app (its routes, its control, a real SQLite file) in-process through
`httpx.ASGITransport`, with no socket: the seam the TUI's tests use with a fixed-state fake."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from wfbatch.client import DaemonClient, DaemonUnavailable
from wfbatch.daemon.wiring import wire
from wfbatch.home import HomeLayout
from wfbatch.protocol import API_VERSION, JobState, PauseRequest, SubmitRequest
from wfbatch.settings import load_settings
from wfbatch.store import Store


async def test_the_client_runs_over_the_daemon_app_in_process(
    store: Store, layout: HomeLayout, home: Path
) -> None:
    parts = wire(load_settings(home, provider="local"), layout, store)
    transport = httpx.ASGITransport(app=parts.server.config.app)
    async with DaemonClient(home / "not-a-socket.sock", transport=transport) as client:
        assert (await client.health()).api_version == API_VERSION
        await client.pause(PauseRequest(scope="global", reason="test"))
        submitted = await client.submit(SubmitRequest(name="two.txt", content="a fox\na cat\n"))
        assert submitted.batch_id is not None and submitted.jobs == 2
        page = await client.jobs(states=[JobState.QUEUED], batch_id=submitted.batch_id)
        assert [job.state for job in page.items] == [JobState.QUEUED, JobState.QUEUED]
        assert (await client.status()).jobs[JobState.QUEUED] == 2


async def test_a_transport_that_cannot_connect_is_a_daemon_that_is_not_there(home: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("nothing listens", request=request)

    socket_path = home / "d.sock"
    async with DaemonClient(socket_path, transport=httpx.MockTransport(refuse)) as client:
        with pytest.raises(DaemonUnavailable) as raised:
            await client.status()
    assert raised.value.socket_path == socket_path
