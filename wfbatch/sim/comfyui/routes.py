"""ComfyUI's raw server routes (providers.md §7): `/prompt`, `/queue`, `/history`, `/view`,
`/upload/image` (`uploads`, §12.5), `/interrupt`, `/system_stats`, each also under `/api`, plus
`/_sim/restart` (forget queue and history like a real restart) and `/_sim/graphs` (the graph
received per prompt_id). No key, no limits.

`WS /ws?clientId=…` (unless `comfyui_ws` is off, like an old server or a proxy without WebSockets)
speaks §7.5: `status` on connect, then each prompt's events routed by the client_id it was sent
with, a `progress` per sampler step as the prompt advances, and now and then a binary preview
frame. Like ComfyUI it refuses a handshake whose Origin is not its Host (403) and drops its sockets
on a restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import uuid
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from wfbatch.sim.comfyui.options import ComfyUIOptions
from wfbatch.sim.comfyui.server import ComfyServer, Step, WsEvent, validation_errors
from wfbatch.sim.comfyui.uploads import upload_handler
from wfbatch.sim.replies import json_reply
from wfbatch.sim.state import SimState

API = ""
WS_TICK = 0.05
"""Seconds between two looks at the running prompt from a socket: finer than any step."""
PREVIEW_EVERY = 5
"""A binary preview frame every this many sampler steps."""
PREVIEW_IMAGE, JPEG = 1, 1
PREVIEW_BYTES = b"\xff\xd8\xff\xe0" + bytes(60) + b"\xff\xd9"
ALWAYS_BROADCAST = frozenset({"execution_interrupted"})
BROADCAST_WITHOUT_CLIENT = frozenset({"executing", "progress"})


def routed_to(event_client: str | None, kind: str, socket_client: str) -> bool:
    """§7.5: with a client_id only that socket hears a prompt; without one only `executing` and
    `progress` go to every socket (the rest to none); `execution_interrupted` goes to all."""
    if kind in ALWAYS_BROADCAST:
        return True
    if event_client is None:
        return kind in BROADCAST_WITHOUT_CLIENT
    return event_client == socket_client


def preview_frame() -> bytes:
    """4-byte big-endian event type, 4-byte image format, the image."""
    return struct.pack(">II", PREVIEW_IMAGE, JPEG) + PREVIEW_BYTES


class _Socket:
    """One `/ws` connection: what it has been told so far."""

    def __init__(self, websocket: WebSocket, server: ComfyServer, client_id: str) -> None:
        self.websocket = websocket
        self.server = server
        self.client_id = client_id
        self.seq = server.last_seq()
        self.restarts = server.restarts
        self.last_step: tuple[str, int] | None = None

    async def send_event(self, kind: str, data: dict[str, Any]) -> None:
        await self.websocket.send_text(json.dumps({"type": kind, "data": data}))

    async def hello(self) -> None:
        queued = len(self.server.queue_snapshot()["queue_pending"])
        step = self.server.step_now()
        status = {"exec_info": {"queue_remaining": queued + (1 if step else 0)}}
        await self.send_event("status", {"status": status, "sid": self.client_id})
        if step is not None and step.client_id == self.client_id:
            # A reconnect with the same clientId hears which node runs now (§7.5).
            await self.send_event("executing", {"node": step.node, "prompt_id": step.prompt_id})

    async def tell(self) -> None:
        events: list[WsEvent] = self.server.events_since(self.seq)
        for event in events:
            self.seq = event.seq
            if routed_to(event.client_id, event.type, self.client_id):
                await self.send_event(event.type, event.data)
        step: Step | None = self.server.step_now()
        if step is None or not routed_to(step.client_id, "progress", self.client_id):
            return
        if self.last_step == (step.prompt_id, step.value):
            return
        self.last_step = (step.prompt_id, step.value)
        data = {"value": step.value, "max": step.max, "prompt_id": step.prompt_id, "node": step.node}
        await self.send_event("progress", data)
        if step.value % PREVIEW_EVERY == 0:
            await self.websocket.send_bytes(preview_frame())


def _origin_refused(websocket: WebSocket) -> bool:
    """ComfyUI answers 403 when an Origin's host differs from Host (unless CORS is enabled)."""
    origin = websocket.headers.get("origin")
    return bool(origin) and urlsplit(origin).netloc != websocket.headers.get("host")


def comfyui_routes(state: SimState) -> list[BaseRoute]:
    server = state.book_as(ComfyServer)
    own = ComfyUIOptions.of(state.options)
    legacy = own.legacy_comfyui

    async def body_of(request: Request) -> Any:
        try:
            return json.loads(await request.body() or b"{}")
        except ValueError:
            return None

    async def prompt(request: Request) -> Response:
        state.count_request("prompt")
        if request.method == "GET":
            return json_reply(
                {"exec_info": {"queue_remaining": len(server.pending) + (1 if server.running else 0)}}
            )
        body = await body_of(request)
        graph = body.get("prompt") if isinstance(body, dict) else None
        error, node_errors = validation_errors(graph, own.checkpoints, server.inputs)
        if error:
            server.refused += 1
            reply: dict[str, Any] = {"node_errors": node_errors}
            reply["error"] = error["message"] if legacy else {**error, "details": "", "extra_info": {}}
            return json_reply(reply, 400)
        assert isinstance(body, dict) and isinstance(graph, dict)
        wanted = body.get("prompt_id")
        chosen = None if legacy or not isinstance(wanted, str) else wanted
        given = body.get("extra_data")
        extra: dict[str, Any] = given if isinstance(given, dict) else {}
        if isinstance(body.get("client_id"), str):
            extra = {**extra, "client_id": body["client_id"]}
        item = server.enqueue(graph, chosen, extra)
        return json_reply({"prompt_id": item.prompt_id, "number": item.number, "node_errors": {}})

    async def queue(request: Request) -> Response:
        state.count_request("queue")
        if request.method == "POST":
            body = await body_of(request)
            if isinstance(body, dict) and body.get("clear"):
                server.delete_pending([p.prompt_id for p in server.pending])
            elif isinstance(body, dict) and isinstance(body.get("delete"), list):
                server.delete_pending([str(i) for i in body["delete"]])
            return Response(status_code=200)
        return json_reply(server.queue_snapshot())

    async def history_one(request: Request) -> Response:
        state.count_request("history")
        return json_reply(server.history_of(request.path_params["prompt_id"]))

    async def history(request: Request) -> Response:
        state.count_request("history")
        if request.method == "POST":
            body = await body_of(request)
            with server._lock:
                if isinstance(body, dict) and body.get("clear"):
                    server.history.clear()
                elif isinstance(body, dict) and isinstance(body.get("delete"), list):
                    for prompt_id in body["delete"]:
                        server.history.pop(str(prompt_id), None)
            return Response(status_code=200)
        server.settle()
        return json_reply(dict(server.history))

    async def view(request: Request) -> Response:
        state.count_request("view")
        name = request.query_params.get("filename", "")
        kind = request.query_params.get("type", "output")
        if not name or name.startswith("/") or ".." in name or kind not in ("output", "input", "temp"):
            return Response(status_code=400)
        if request.query_params.get("subfolder", "") not in ("",):
            return Response(status_code=404)
        data = server.files.get(name)
        if data is None:
            return Response(status_code=404)
        return Response(data, media_type="image/png")

    async def interrupt(request: Request) -> Response:
        state.count_request("interrupt")
        body = await body_of(request)
        wanted = body.get("prompt_id") if isinstance(body, dict) and not legacy else None
        # Newer ComfyUI (server.py post_interrupt): with a prompt_id, only that prompt if it is the
        # one running ("is not currently running, skipping interrupt"); without, whatever runs.
        server.interrupt(str(wanted) if wanted else None)
        return Response(status_code=200)

    async def system_stats(request: Request) -> Response:
        return json_reply({"system": {"comfyui_version": "0.3.40-sim", "os": "posix"}, "devices": []})

    async def restart(request: Request) -> Response:
        server.restart()
        return json_reply({"restarted": True, "restarts": server.restarts})

    async def graphs(request: Request) -> Response:
        with server._lock:
            return json_reply(dict(server.graphs))

    async def ws(websocket: WebSocket) -> None:
        state.count_request("ws")
        if _origin_refused(websocket):
            await websocket.close()  # before accepting: uvicorn answers the handshake with 403
            return
        client_id = websocket.query_params.get("clientId") or uuid.uuid4().hex
        await websocket.accept()
        socket = _Socket(websocket, server, client_id)

        async def until_closed() -> None:
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass

        closed = asyncio.create_task(until_closed())
        try:
            await socket.hello()
            while not closed.done() and server.restarts == socket.restarts:
                await socket.tell()
                await asyncio.wait({closed}, timeout=WS_TICK)
            if not closed.done():
                await websocket.close(code=1012)  # "service restart", as a restarting server
        except (WebSocketDisconnect, OSError, RuntimeError):
            pass  # the client went away mid-send
        finally:
            closed.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await closed

    async def no_ws(websocket: WebSocket) -> None:
        # Refused like a route that is not there (uvicorn answers 403), but counted: tests check
        # that a client without /ws tries again only now and then.
        state.count_request("ws")
        await websocket.close()

    routes: list[BaseRoute] = []
    handler = ws if own.comfyui_ws else no_ws
    routes += [WebSocketRoute("/ws", handler), WebSocketRoute("/api/ws", handler)]
    for prefix in ("", "/api"):
        routes += [
            Route(f"{prefix}/prompt", prompt, methods=["GET", "POST"]),
            Route(f"{prefix}/queue", queue, methods=["GET", "POST"]),
            Route(f"{prefix}/history/{{prompt_id}}", history_one, methods=["GET"]),
            Route(f"{prefix}/history", history, methods=["GET", "POST"]),
            Route(f"{prefix}/view", view, methods=["GET"]),
            Route(f"{prefix}/upload/image", upload_handler(server), methods=["POST"]),
            Route(f"{prefix}/interrupt", interrupt, methods=["POST"]),
            Route(f"{prefix}/system_stats", system_stats, methods=["GET"]),
        ]
    return [
        *routes,
        Route("/_sim/restart", restart, methods=["POST"]),
        Route("/_sim/graphs", graphs, methods=["GET"]),
    ]
