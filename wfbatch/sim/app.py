"""The simulator's HTTP app: the chosen provider's route set (see `registry`), plus `/_sim/*`
controls (stats, top-up, queued faults) that are never rate-limited, and an `X-Request-Id` on
every response, errors included."""

from __future__ import annotations

import uuid

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wfbatch.sim.registry import SIM_PROVIDERS
from wfbatch.sim.replies import json_reply
from wfbatch.sim.state import SimState
from wfbatch.sim.wire import WireFaultMiddleware


class RequestIdMiddleware:
    """Adds a unique `X-Request-Id` (`req_…`) to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req_{uuid.uuid4().hex}"

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if "x-request-id" not in headers:  # an `echo_key` fault sets its own
                    headers.append("X-Request-Id", request_id)
            await send(message)

        await self.app(scope, receive, send_with_id)


def _controls(state: SimState) -> list[Route]:
    async def stats(request: Request) -> Response:
        return json_reply(state.stats())

    async def credits(request: Request) -> Response:
        """Wireflow credits, or OpenAI's quota (in images): raise it so a paused rerun can finish."""
        try:
            amount = float((await request.json())["amount"])
        except (ValueError, KeyError, TypeError):
            return json_reply({"error": 'expected {"amount": N}'}, 400)
        balance = state.top_up(amount)
        return json_reply({"balance": balance, "unlimited": balance is None})

    async def faults(request: Request) -> Response:
        try:
            data = await request.json()
            if data.get("wire"):  # a fault every provider's simulator takes (see wire.py)
                state.wire.queue(str(data["kind"]), count=int(data.get("count", 1)))
            else:
                state.queue_fault(str(data["kind"]), route=data.get("route"), count=int(data.get("count", 1)))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return json_reply({"error": f'expected {{"kind", "route"?, "count"?, "wire"?}}: {exc}'}, 400)
        return json_reply({"queued": True})

    return [
        Route("/_sim/stats", stats, methods=["GET"]),
        Route("/_sim/credits", credits, methods=["POST"]),
        Route("/_sim/topup", credits, methods=["POST"]),
        Route("/_sim/faults", faults, methods=["POST"]),
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "Internal server error"
    return json_reply({"error": detail}, status)


def build_app(state: SimState) -> Starlette:
    provider = SIM_PROVIDERS[state.options.provider]
    return Starlette(
        # Controls first: a provider's catch-all route (fal's `POST /{endpoint}`) must not hide them.
        routes=[*_controls(state), *provider.routes(state)],
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(
                WireFaultMiddleware,
                faults=state.wire,
                trickle_seconds=state.options.trickle_seconds,
                charge_fields=provider.charge_fields,
            ),
        ],
        exception_handlers={HTTPException: _http_error},
    )
