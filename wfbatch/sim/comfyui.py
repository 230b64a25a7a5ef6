"""ComfyUI's raw server routes (providers.md §7): `/prompt`, `/queue`, `/history`, `/view`,
`/interrupt`, `/system_stats`, each also under `/api`, plus `/_sim/restart` (forget queue and history
like a real restart) and `/_sim/graphs` (the graph received per prompt_id). No key, no limits."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wfbatch.sim.comfyui_server import ComfyServer, validation_errors
from wfbatch.sim.replies import json_reply

API = ""


def comfyui_routes(state: Any) -> list[Route]:
    server: ComfyServer = state.comfyui
    legacy = state.options.legacy_comfyui

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
        error, node_errors = validation_errors(graph, state.options.checkpoints)
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
        server.interrupt()
        return Response(status_code=200)

    async def system_stats(request: Request) -> Response:
        return json_reply({"system": {"comfyui_version": "0.3.40-sim", "os": "posix"}, "devices": []})

    async def restart(request: Request) -> Response:
        server.restart()
        return json_reply({"restarted": True, "restarts": server.restarts})

    async def graphs(request: Request) -> Response:
        with server._lock:
            return json_reply(dict(server.graphs))

    routes = []
    for prefix in ("", "/api"):
        routes += [
            Route(f"{prefix}/prompt", prompt, methods=["GET", "POST"]),
            Route(f"{prefix}/queue", queue, methods=["GET", "POST"]),
            Route(f"{prefix}/history/{{prompt_id}}", history_one, methods=["GET"]),
            Route(f"{prefix}/history", history, methods=["GET", "POST"]),
            Route(f"{prefix}/view", view, methods=["GET"]),
            Route(f"{prefix}/interrupt", interrupt, methods=["POST"]),
            Route(f"{prefix}/system_stats", system_stats, methods=["GET"]),
        ]
    return [
        *routes,
        Route("/_sim/restart", restart, methods=["POST"]),
        Route("/_sim/graphs", graphs, methods=["GET"]),
    ]
