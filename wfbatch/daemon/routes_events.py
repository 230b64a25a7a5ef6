"""`/v1/events`: server-sent events, one per change (`event: <kind>`, `data: <json>`).

Kinds: `job` ({id, batch_id, state[, review, file]}), `batch` (created, duplicate, paused,
resumed), `provider` (paused, blocked, resumed), `engine` (connected, paused, resumed,
reloaded), `inbox` (rejected files), and `resync` when this client fell behind and events were
dropped: re-read the state you show.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.routing import Route

from wfbatch.daemon.context import context_of
from wfbatch.protocol import routes

PING_SECONDS = 15


async def events(request: Request) -> EventSourceResponse:
    ctx = context_of(request)
    subscription = ctx.hub.subscribe()

    async def stream() -> AsyncIterator[ServerSentEvent]:
        try:
            yield ServerSentEvent(event="engine", data=json.dumps({"event": "connected"}))
            while True:
                event = await subscription.get()
                if event is None:
                    return
                yield ServerSentEvent(event=event.kind, data=json.dumps(event.data, default=str))
        finally:
            subscription.close()

    return EventSourceResponse(stream(), ping=PING_SECONDS)


ROUTES = [Route(routes.EVENTS, events, methods=["GET"])]
