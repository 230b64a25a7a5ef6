"""Several keys on one simulator port (`wfbatch sim --accounts 3`, or `--api-key` given several
times): each key is an account of its own, with its own state — windows, quota, credit, executions,
queued faults and request counters — exactly as one simulator run with that single key. A request
goes to the state of the key it presents; a key no state knows goes to a stranger state that
accepts no key, so it gets the provider's own 401. `/_sim/*` reports and steers per key, naming a
key by its label (`key1`, `key2`, …: the order given), never by the key itself.

Requests without a key (a CDN download, a webhook trigger) go to each key's app in turn until one
does not answer 404: an image belongs to the account that made it."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wfbatch.sim.faults import presented_key
from wfbatch.sim.options import SimOptions
from wfbatch.sim.replies import json_reply
from wfbatch.sim.state import Clock, SimState


def generated_keys(count: int) -> tuple[str, ...]:
    """Keys for `--accounts N`: invented, of a form every simulated provider accepts."""
    return tuple(f"sk-sim-key{index + 1}" for index in range(count))


def label(index: int) -> str:
    return f"key{index + 1}"


class SimKeys:
    """One state per key, and the stranger's (any other key)."""

    def __init__(self, options: SimOptions, *, clock: Clock) -> None:
        if len(set(options.api_keys)) != len(options.api_keys):
            raise ValueError("the same key was given twice")
        self.options = options
        self.states: list[SimState] = [
            # Its own seed per key, so two accounts' latencies are not the same sequence.
            SimState(replace(options, api_keys=(), api_key=key, seed=options.seed + index), clock=clock)
            for index, key in enumerate(options.api_keys)
        ]
        # A key of the usual form that nobody holds: every key this state sees is refused as wrong.
        self.stranger = SimState(
            replace(options, api_keys=(), api_key=f"sk-{secrets.token_hex(16)}"), clock=clock
        )
        self._by_key = dict(zip(options.api_keys, self.states, strict=True))

    @property
    def labels(self) -> list[str]:
        return [label(index) for index in range(len(self.states))]

    def state_for(self, authorization: str | None) -> SimState | None:
        """The state of the key presented; the stranger's for any other; None when no key is."""
        key = presented_key(authorization) if authorization else ""
        if not key:
            return None
        return self._by_key.get(key, self.stranger)

    def chosen(self, account: Any) -> list[SimState]:
        """The states a control names: a label (`key2`), a 1-based index, or every one (None)."""
        if account is None:
            return list(self.states)
        for index, state in enumerate(self.states):
            if str(account) in (label(index), str(index + 1)):
                return [state]
        raise ValueError(f"no account {account!r}; known: {', '.join(self.labels)}")

    def stats(self) -> dict[str, Any]:
        """Every key's own stats under `accounts` (its label, never its key), the requests and
        429s summed, and what wrong keys sent."""
        accounts = [{"account": label(i), **state.stats()} for i, state in enumerate(self.states)]
        stranger = self.stranger.stats()
        return {
            "provider": self.options.provider,
            "requests": {
                "total": sum(a["requests"]["total"] for a in accounts) + stranger["requests"]["total"],
                "wrong_key": stranger["requests"]["total"],
            },
            "rate_limited": sum(int(a["rate_limited"]) for a in accounts),
            "accounts": accounts,
        }


class _KeyRouter:
    """Sends each API request to the app of the key it presents (see the module's docstring)."""

    def __init__(self, keys: SimKeys, apps: list[ASGIApp], stranger: ASGIApp) -> None:
        self.keys = keys
        self.apps = apps
        self.stranger = stranger
        self._app_of = {id(state): app for state, app in zip(keys.states, apps, strict=True)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.apps[0](scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        authorization = headers.get(b"authorization")
        state = self.keys.state_for(authorization.decode("latin-1") if authorization else None)
        if state is not None:
            app = self.stranger if state is self.keys.stranger else self._app_of[id(state)]
            await app(scope, receive, send)
            return
        await self._first_found(scope, receive, send)

    async def _first_found(self, scope: Scope, receive: Receive, send: Send) -> None:
        """No key: each key's app in turn, the first answer that is not a 404 (or the last one)."""
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break

        for position, app in enumerate(self.apps):
            if await self._try(app, scope, receive, send, body, last=position == len(self.apps) - 1):
                return

    @staticmethod
    async def _try(
        app: ASGIApp, scope: Scope, receive: Receive, send: Send, body: bytes, *, last: bool
    ) -> bool:
        """Whether `app` answered (not a 404, or it is the last one asked): then its answer was sent."""
        replayed = False
        passing = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # a disconnect, when the client goes
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def relay(message: Message) -> None:
            nonlocal passing
            if message["type"] == "http.response.start":
                passing = last or message["status"] != 404
            if passing:
                await send(message)

        await app(scope, replay, relay)
        return passing


def build_keyed_app(keys: SimKeys, build_app: Callable[[SimState], Starlette]) -> Starlette:
    """The per-key controls, then every key's own app behind the key router."""
    router = _KeyRouter(keys, [build_app(state) for state in keys.states], build_app(keys.stranger))

    async def stats(request: Request) -> Response:
        return json_reply(keys.stats())

    async def credits(request: Request) -> Response:
        try:
            data = await request.json()
            amount = float(data["amount"])
            chosen = keys.chosen(data.get("account"))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return json_reply({"error": f'expected {{"amount": N, "account"?: "key1"}}: {exc}'}, 400)
        balances = {label(keys.states.index(s)): s.top_up(amount) for s in chosen}
        return json_reply({"balances": balances})

    async def faults(request: Request) -> Response:
        try:
            data = await request.json()
            for state in keys.chosen(data.get("account")):
                if data.get("wire"):
                    state.wire.queue(str(data["kind"]), count=int(data.get("count", 1)))
                else:
                    state.queue_fault(
                        str(data["kind"]), route=data.get("route"), count=int(data.get("count", 1))
                    )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return json_reply(
                {"error": f'expected {{"kind", "route"?, "count"?, "wire"?, "account"?}}: {exc}'}, 400
            )
        return json_reply({"queued": True})

    controls = [
        Route("/_sim/stats", stats, methods=["GET"]),
        Route("/_sim/credits", credits, methods=["POST"]),
        Route("/_sim/topup", credits, methods=["POST"]),
        Route("/_sim/faults", faults, methods=["POST"]),
    ]
    app = Starlette(routes=controls)
    app.router.default = router  # anything that is not a control: the key's own app
    return app
