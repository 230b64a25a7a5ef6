"""Wireflow's route set (providers.md §1): its API under `/api/v1` and a fake CDN for the images.

Every API route goes through `_Api.route`, which applies, in order: auth → injected fault (before
the handler) → idempotency replay (starts only) → rate windows → handler → injected fault (after the
handler: malformed body, lost answer) → `X-RateLimit-*` headers. `X-Request-Id` is added to every
response, errors included, by the app's `RequestIdMiddleware`.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from wfbatch.sim.faults import HOSTILE, drop_connection, hostile_file, hostile_reply, truncate
from wfbatch.sim.limits import WindowVerdict
from wfbatch.sim.replies import error_reply, json_reply, number
from wfbatch.sim.state import SimState
from wfbatch.sim.wireflow import views
from wfbatch.sim.wireflow.book import (
    CreditShortfall,
    Execution,
    StartRoute,
    StoredReply,
    WireflowBook,
    fingerprint,
)
from wfbatch.sim.wireflow.options import WireflowOptions
from wfbatch.sim.wireflow.workflows import (
    GENERATE_NODE_ID,
    GENERATE_NODE_LABEL,
    PROMPT_INPUT_ID,
    SEED_INPUT_ID,
    run_schema,
)

API = "/api/v1"
_REPLAY_SKIP_HEADERS = {"content-length", "x-request-id"}


@dataclass(frozen=True)
class Call:
    """One API request after the common checks: its body and the server time it is handled at."""

    request: Request
    body: bytes
    now: float
    idempotency_key: str | None

    @property
    def root(self) -> str:
        return str(self.request.base_url).rstrip("/")

    def param(self, name: str) -> str:
        return str(self.request.path_params[name])

    def json(self) -> Any:
        """The parsed body, or None when it is not JSON."""
        try:
            return json.loads(self.body) if self.body else {}
        except ValueError:
            return None


Handler = Callable[[Call], Response]


def _canonical(body: bytes) -> bytes:
    """Same JSON, same bytes: key order and spacing must not make a re-send look different."""
    try:
        return json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        return body


def _with_limits(reply: Response, verdict: WindowVerdict) -> Response:
    reply.headers.update(verdict.headers())
    return reply


class _Api:
    def __init__(self, state: SimState) -> None:
        self.state = state
        self.book = state.book_as(WireflowBook)
        self.style = WireflowOptions.of(state.options).error_style

    # -- the common pipeline -----------------------------------------------------------------

    def route(
        self, name: str, handler: Handler, *, start: StartRoute | None = None, auth: bool = True
    ) -> Callable[[Request], Awaitable[Response]]:
        st, book = self.state, self.book

        async def endpoint(request: Request) -> Response:
            st.count_request(name)
            now = st.clock()
            book.settle(now)
            book.arrive(now)
            peek = book.peek_start if start else book.peek_request
            if auth:
                message = st.auth_error(request.headers.get("authorization"))
                if message is not None:
                    return _with_limits(error_reply(401, message, self.style), peek(now))
            fault = st.draw_fault(name, is_start=start is not None)
            if fault in ("500", "502", "503", "reset"):
                st.record_fault(fault)
                if fault == "reset" and await drop_connection(request.scope):
                    return Response(status_code=502)  # never sent: the connection is gone
                return _with_limits(self._server_error(502 if fault == "reset" else int(fault)), peek(now))
            if fault == "slow":
                st.record_fault(fault)
                await asyncio.sleep(st.options.slow_seconds)
                now = st.clock()
                book.settle(now)
            body = await request.body()
            if start is not None:
                reply = self._start(request, handler, body, now)
            else:
                verdict, refused = book.check_request(now)
                if refused is not None:
                    return self._too_many(refused, verdict, now)
                reply = _with_limits(handler(Call(request, body, now, None)), verdict)
            if fault == "malformed":
                st.record_fault(fault)
                return Response(
                    truncate(bytes(reply.body)),
                    status_code=reply.status_code,
                    headers={k: v for k, v in reply.headers.items() if k != "content-length"},
                )
            if fault in ("lost_5xx", "lost_reset"):
                # The execution exists (and is remembered under its key); only the answer is lost.
                st.record_fault(fault)
                if fault == "lost_reset" and await drop_connection(request.scope):
                    return Response(status_code=502)
                return _with_limits(self._server_error(502), peek(st.clock()))
            if fault in HOSTILE:
                st.record_fault(fault)
                return hostile_reply(
                    fault, reply, request.headers.get("authorization"), st.options.trickle_seconds
                )
            return reply

        return endpoint

    def _start(self, request: Request, handler: Handler, body: bytes, now: float) -> Response:
        """Idempotency replay, then the execution windows, then the handler. Synchronous on purpose:
        nothing else runs on the loop between the checks and the creation."""
        book = self.book
        key = request.headers.get("idempotency-key") or None
        fp = fingerprint(request.method, request.url.path, _canonical(body))
        if key is not None:
            recalled = book.recall(key, fp, now)
            if recalled == "conflict":
                conflict = error_reply(
                    409,
                    "Idempotency-Key was already used with a different request",
                    self.style,
                    code="idempotency_key_reused",
                )
                return _with_limits(conflict, book.peek_start(now))
            if isinstance(recalled, StoredReply):
                replay = Response(
                    recalled.body,
                    status_code=recalled.status,
                    headers={**recalled.headers, "Idempotent-Replayed": "true"},
                )
                return _with_limits(replay, book.peek_start(now))
        workflow_id = request.path_params.get("workflow_id")
        verdict, refused = book.check_start(now, workflow_id)
        if refused is not None:
            return self._too_many(refused, verdict, now)
        reply = handler(Call(request, body, now, key))
        if 200 <= reply.status_code < 300:
            verdict = book.hit_start(now, workflow_id)
            if key is not None:
                headers = {k: v for k, v in reply.headers.items() if k.lower() not in _REPLAY_SKIP_HEADERS}
                book.remember(key, StoredReply(fp, reply.status_code, bytes(reply.body), headers, now))
        return _with_limits(reply, verdict)

    def _too_many(self, message: str, verdict: WindowVerdict, now: float) -> Response:
        retry_after = max(1, math.ceil(verdict.retry_after))
        self.book.announce_retry(now + retry_after)
        headers = {**verdict.headers(), "Retry-After": str(retry_after)}
        # Docs' example: the body's `retryAfter` is an epoch timestamp, unlike the header.
        return error_reply(429, message, self.style, headers=headers, retryAfter=math.ceil(verdict.reset_at))

    def _server_error(self, status: int) -> Response:
        if status == 502:
            # What a proxy in front of an API sends: HTML, not JSON.
            return Response(
                "<html><body><h1>502 Bad Gateway</h1></body></html>", status_code=502, media_type="text/html"
            )
        message = "Internal server error" if status == 500 else "Service temporarily unavailable"
        return error_reply(status, message, self.style)

    def _error(self, status: int, message: str, **context: Any) -> Response:
        return error_reply(status, message, self.style, **context)

    # -- workflows ---------------------------------------------------------------------------

    def list_workflows(self, call: Call) -> Response:
        graphs = [self.book.catalog.get(wid) or {} for wid in self.book.catalog.ids()]
        items = [{"id": g["id"], "name": g["name"], "isActive": g["isActive"]} for g in graphs]
        return json_reply({"data": items, "meta": {"total": len(items)}})

    def get_workflow(self, call: Call) -> Response:
        graph = self.book.catalog.get(call.param("workflow_id"))
        if graph is None:
            return self._error(404, "Workflow not found")
        return json_reply({"data": graph})

    def get_run_schema(self, call: Call) -> Response:
        graph = self.book.catalog.get(call.param("workflow_id"))
        if graph is None:
            return self._error(404, "Workflow not found")
        return json_reply(run_schema(graph))

    def estimate(self, call: Call) -> Response:
        # INVENTED shape: the client notes only say "per-node predicted credits, estimateComplete".
        if self.book.catalog.get(call.param("workflow_id")) is None:
            return self._error(404, "Workflow not found")
        cost = number(self.state.options.cost)
        nodes = [{"nodeId": GENERATE_NODE_ID, "nodeLabel": GENERATE_NODE_LABEL, "credits": cost}]
        complete = not WireflowOptions.of(self.state.options).estimate_incomplete
        return json_reply({"data": {"estimateComplete": complete, "totalCredits": cost, "nodes": nodes}})

    # -- starts ------------------------------------------------------------------------------

    def _launch(self, call: Call, workflow_id: str, route: StartRoute, **fields: Any) -> Execution | Response:
        created = self.book.create_execution(
            workflow_id=workflow_id, route=route, idempotency_key=call.idempotency_key, now=call.now, **fields
        )
        if isinstance(created, CreditShortfall):
            required, available = number(created.required), number(created.available)
            return self._error(
                402,
                f"Insufficient credits. Required: {required}, Available: {available}",
                insufficientCredits=True,
                requiredCredits=required,
                availableCredits=available,
                breakdown=[
                    {"nodeId": GENERATE_NODE_ID, "nodeLabel": GENERATE_NODE_LABEL, "credits": required}
                ],
            )
        return created

    def execute(self, call: Call) -> Response:
        workflow_id = call.param("workflow_id")
        if self.book.catalog.get(workflow_id) is None:
            return self._error(404, "Workflow not found")
        data = call.json()
        if not isinstance(data, dict):
            return self._error(400, "Invalid JSON body")
        missing = [f for f in ("nodes", "edges") if f not in data]
        if missing:
            return self._error(400, f"Missing required fields: {', '.join(missing)}")
        nodes, edges = data["nodes"], data["edges"]
        if not isinstance(nodes, list) or not isinstance(edges, list):
            return self._error(400, "Invalid node structure: nodes and edges must be arrays")
        if not nodes:
            return self._error(400, "At least one node must be provided")
        if not all(isinstance(n, dict) and n.get("id") for n in nodes):
            return self._error(400, "All nodes must have an id")
        if len(nodes) > 100 or len(edges) > 500:
            return self._error(400, "Workflow too large: at most 100 nodes and 500 edges")
        fields = _generation_fields(nodes)
        launched = self._launch(call, workflow_id, "execute", **fields)
        if isinstance(launched, Response):
            return launched
        body = {
            "workflowId": workflow_id,
            "batchId": launched.batch_id,
            "executionRuns": [views.execution_run(call.root, launched)],
        }
        location = f"{call.root}{API}/workflows/executions/{launched.id}/poll"
        return json_reply(body, 201, {"Location": location})

    def run(self, call: Call) -> Response:
        workflow_id = call.param("workflow_id")
        if self.book.catalog.get(workflow_id) is None:
            return self._error(404, "Workflow not found")
        data = call.json()
        if not isinstance(data, dict) or not isinstance(data.get("inputs"), dict):
            return self._error(400, "Missing required fields: inputs")
        inputs: dict[str, Any] = data["inputs"]
        unknown = sorted(set(inputs) - {PROMPT_INPUT_ID, SEED_INPUT_ID})
        if unknown:
            return self._error(400, f"Unknown input node(s): {', '.join(unknown)}")
        prompt = inputs.get(PROMPT_INPUT_ID)
        if not isinstance(prompt, str) or not prompt.strip():
            return self._error(400, f"Missing required input: Prompt ({PROMPT_INPUT_ID})")
        seed = inputs.get(SEED_INPUT_ID, 42)
        if not isinstance(seed, int) or isinstance(seed, bool):
            return self._error(400, f"Input {SEED_INPUT_ID} must be a number")
        launched = self._launch(call, workflow_id, "run", prompt=prompt, seed=seed)
        if isinstance(launched, Response):
            return launched
        # Client notes: `/run` answers `{data: {executionId, status}}`, status in lower case.
        return json_reply({"data": {"executionId": launched.id, "status": "running"}}, 202)

    def trigger(self, call: Call) -> Response:
        graph = self.book.catalog.by_webhook(call.param("webhook_id"))
        if graph is None:
            return self._error(404, "Webhook not found")
        data = call.json()
        if not isinstance(data, dict):
            return self._error(400, "Invalid JSON body")
        # Trigger data is free-form; a missing prompt falls back to the one saved in the graph.
        fields = _generation_fields(graph["nodes"])
        fields.update(_pick_fields(data))
        launched = self._launch(call, graph["id"], "trigger", **fields)
        if isinstance(launched, Response):
            return launched
        body = {
            "executionId": launched.id,
            "status": "queued",
            "message": "Workflow execution queued successfully",
        }
        return json_reply(body, 202)

    def trigger_check(self, call: Call) -> Response:
        graph = self.book.catalog.by_webhook(call.param("webhook_id"))
        if graph is None:
            return self._error(404, "Webhook not found")
        return json_reply(
            {
                "workflowId": graph["id"],
                "name": graph["name"],
                "isActive": True,
                "message": "Webhook is configured. Use POST to trigger execution.",
            }
        )

    # -- executions and account --------------------------------------------------------------

    def poll(self, call: Call) -> Response:
        execution = self.book.execution(call.param("execution_id"))
        if execution is None:
            return self._error(404, "Execution not found")
        return json_reply(views.poll_body(call.root, execution))

    def details(self, call: Call) -> Response:
        execution = self.book.execution(call.param("execution_id"))
        if execution is None:
            return self._error(404, "Execution not found")
        return json_reply(views.details_body(call.root, execution))

    def usage(self, call: Call) -> Response:
        # INVENTED shape: the client notes only say this returns the credit balance.
        book = self.book
        available = book.available_credits()
        return json_reply(
            {
                "data": {
                    "balance": None if book.balance is None else number(book.balance),
                    "availableCredits": None if available is None else number(available),
                    "heldCredits": number(book.held),
                    "creditsUsed": number(book.charged),
                    "plan": WireflowOptions.of(self.state.options).plan.value,
                    "unlimited": book.balance is None,
                }
            }
        )


def _pick_fields(data: dict[str, Any]) -> dict[str, Any]:
    """prompt / negative prompt / seed / size from a node's params (or a trigger body)."""
    fields: dict[str, Any] = {}
    if isinstance(data.get("prompt"), str):
        fields["prompt"] = data["prompt"]
    negative = data.get("negative_prompt", data.get("negativePrompt"))
    if isinstance(negative, str):
        fields["negative_prompt"] = negative
    for name in ("seed", "width", "height"):
        value = data.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            fields[name] = value
    return fields


def _generation_fields(nodes: list[Any]) -> dict[str, Any]:
    """The first node carrying a prompt (in `data.params` or in `data`) defines the image."""
    for node in nodes:
        data = node.get("data") if isinstance(node, dict) else None
        if not isinstance(data, dict):
            continue
        params = data.get("params")
        for source in (params, data):
            if isinstance(source, dict) and "prompt" in source:
                fields = _pick_fields(source)
                fields.setdefault("prompt", "")
                return fields
    return {"prompt": ""}


# -- outside the API: fake CDN and simulator controls ------------------------------------------


async def _cdn(request: Request) -> Response:
    return RedirectResponse(f"/files/{request.path_params['name']}", status_code=302)


def _files(state: SimState) -> Callable[[Request], Awaitable[Response]]:
    book = state.book_as(WireflowBook)

    async def files(request: Request) -> Response:
        name = str(request.path_params["name"])
        queued = state.take_queued_fault("files")
        if queued in ("endless", "trickle"):
            state.record_fault(queued)
            first = book.image(name.removesuffix(".png")) or b""
            return hostile_file(queued, first, "image/png", state.options.trickle_seconds)
        fault = state.draw_cdn_fault()
        if fault == "cdn_503":
            return Response("Service Unavailable", status_code=503, media_type="text/plain")
        if fault == "cdn_empty":
            return Response(b"", media_type="image/png")
        if fault == "cdn_html":
            return Response("<html><body>Access denied</body></html>", media_type="text/html")
        png = book.image(name.removesuffix(".png")) if name.endswith(".png") else None
        if png is None:
            return Response("Not Found", status_code=404, media_type="text/plain")
        return Response(png, media_type="image/png", headers={"Cache-Control": "public, max-age=86400"})

    return files


def wireflow_routes(state: SimState) -> list[Route]:
    api = _Api(state)
    r = api.route
    wf, ex, wh = "/workflows/{workflow_id}", "/workflows/executions/{execution_id}", "/workflow/{webhook_id}"
    return [
        Route(f"{API}{ex}/poll", r("poll", api.poll), methods=["GET"]),
        Route(f"{API}{ex}", r("details", api.details), methods=["GET"]),
        Route(f"{API}/workflows", r("workflows", api.list_workflows), methods=["GET"]),
        Route(f"{API}{wf}", r("workflow", api.get_workflow), methods=["GET"]),
        Route(f"{API}{wf}/execute", r("execute", api.execute, start="execute"), methods=["POST"]),
        Route(f"{API}{wf}/run", r("run_schema", api.get_run_schema), methods=["GET"]),
        Route(f"{API}{wf}/run", r("run", api.run, start="run"), methods=["POST"]),
        Route(f"{API}{wf}/estimate", r("estimate", api.estimate), methods=["POST"]),
        Route(f"{API}{wh}/trigger", r("trigger", api.trigger, start="trigger", auth=False), methods=["POST"]),
        Route(f"{API}{wh}/trigger", r("trigger_check", api.trigger_check, auth=False), methods=["GET"]),
        Route(f"{API}/developer/usage", r("usage", api.usage), methods=["GET"]),
        Route("/cdn/{name}", _cdn, methods=["GET"]),
        Route("/files/{name}", _files(state), methods=["GET"]),
    ]
