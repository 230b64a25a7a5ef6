"""The daemon's parts, built and connected once per process: the event sink (the ETA tracker and
the hub behind `/v1/events`), the engine and its control, the inbox, and the API server."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn

from wfbatch.daemon.app import build_app
from wfbatch.daemon.connections import ConnectionGuard, connection_limit, guarded_protocol, raise_fd_limit
from wfbatch.daemon.context import DaemonContext
from wfbatch.daemon.hub import EventHub
from wfbatch.daemon.inbox import Inbox
from wfbatch.daemon.listener import BACKLOG
from wfbatch.daemon.progress import CompletionTracker
from wfbatch.daemon.sidecars import Sidecars
from wfbatch.engine.events import EventSink
from wfbatch.engine.intake.control import Control
from wfbatch.engine.loop.scheduler import Engine
from wfbatch.home import HomeLayout
from wfbatch.protocol import Event
from wfbatch.settings import Settings
from wfbatch.store import StoreApi, fleet_for

SERVER_STOP_TIMEOUT = 2.0
"""Seconds the API has to close its connections at shutdown."""


class ApiServer(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon orders the shutdown itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True)
class Parts:
    hub: EventHub
    sink: EventSink
    """Where every event goes: the ETA tracker, then the hub."""
    engine: Engine
    inbox: Inbox
    guard: ConnectionGuard
    server: ApiServer


def wire(settings: Settings, layout: HomeLayout, store: StoreApi, sidecars: Sidecars | None = None) -> Parts:
    hub = EventHub()
    tracker = CompletionTracker()

    def sink(event: Event) -> None:
        tracker.observe(event)
        hub.publish(event)

    fleet = fleet_for(store, settings.store.lease_timeout, lambda: engine.wake())
    engine = Engine(store, settings, layout, events=sink, fleet=fleet)
    control = Control(engine, events=sink)
    ctx = DaemonContext(
        engine=engine, control=control, hub=hub, tracker=tracker, sidecars=sidecars or Sidecars()
    )
    inbox = Inbox(
        layout, control, lambda: engine.settings, events=sink,
        on_outcome=lambda outcome: ctx.inbox_outcomes.update([outcome]),
    )
    guard = ConnectionGuard(max_connections=connection_limit(raise_fd_limit()))
    return Parts(hub, sink, engine, inbox, guard, _api_server(ctx, guard))


def _api_server(ctx: DaemonContext, guard: ConnectionGuard) -> ApiServer:
    return ApiServer(
        uvicorn.Config(
            build_app(ctx),
            http=guarded_protocol(guard),
            lifespan="off",
            ws="none",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=int(SERVER_STOP_TIMEOUT),
            timeout_keep_alive=30,
            # asyncio accepts up to `backlog` connections in one go before any protocol runs:
            # keep that burst as small as the listen queue.
            backlog=BACKLOG,
        )
    )
