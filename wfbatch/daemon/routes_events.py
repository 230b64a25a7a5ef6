"""`/v1/events`: server-sent events, one per change (`event: <kind>`, `data: <json>`).

The kinds and their fields are the models of `wfbatch.protocol.events`; `resync` tells a client
that fell behind and lost events to re-read the state it shows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.routing import Route

from wfbatch.daemon.context import context_of
from wfbatch.protocol import EngineEvent, event_json, routes

PING_SECONDS = 15


async def events(request: Request) -> EventSourceResponse:
    ctx = context_of(request)
    subscription = ctx.hub.subscribe()

    async def stream() -> AsyncIterator[ServerSentEvent]:
        try:
            yield ServerSentEvent(event="engine", data=event_json(EngineEvent(event="connected")))
            while True:
                event = await subscription.get()
                if event is None:
                    return
                yield ServerSentEvent(event=event.kind, data=event_json(event))
        finally:
            subscription.close()

    return EventSourceResponse(stream(), ping=PING_SECONDS)


ROUTES = [Route(routes.EVENTS, events, methods=["GET"])]
