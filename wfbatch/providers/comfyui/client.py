"""ComfyUI's raw server API (providers.md §7): `POST /prompt`, poll `/queue` then `/history/{id}`,
download through `/view`. No key, no limits, no cost.

Nothing is run twice by wfbatch: the `prompt_id` is a UUID derived from the job's idempotency key,
so a re-send carries the same id, and before anything is sent it is looked for (§10, in this order,
or a prompt finishing between two calls looks lost): in `/queue` (wait for it), in `/history`
(collect it), its file through `/view` (take it). Only a prompt found nowhere is sent. ComfyUI keeps
queue and history in memory, so after a ComfyUI restart `poll` finds its prompt nowhere: it sends it
again on the same server with the same id (the one that was executing when ComfyUI went down runs a
second time; nothing else does). Older servers ignore a client's prompt_id: there the queue's
`extra_data.wfbatch_prompt_id` and the job's unique file name find it.

Several servers (`base_url` as a list): a job goes to the server with the fewest of this provider's
jobs and stays pinned there (the server is in its poll handle). A server that does not answer is
only itself held: its jobs poll as "server unreachable" until it is back and are reconciled there;
new jobs go to the others; only when every server is down does the provider report Unreachable.

Progress (step x/y) comes from each server's `/ws` (`progress.py`), a hint beside the polling.
"""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from wfbatch.core.models import JobSpec
from wfbatch.core.progress import JobProgress
from wfbatch.providers.base import (
    Finished,
    Image,
    Pending,
    ProviderDefaults,
    RemoteHandle,
    RequestGate,
    RequestKind,
    Submitted,
)
from wfbatch.providers.comfyui.graph import Graph, Placement, builtin_graph, load_graph
from wfbatch.providers.comfyui.progress import ProgressFeeds, node_names
from wfbatch.providers.errors import Permanent, ProviderError, Transient, Unreachable
from wfbatch.providers.http import HttpAnswer, HttpLayer, HttpLimits
from wfbatch.providers.media import sniff_image
from wfbatch.settings import ComfyUISettings

NAMESPACE = uuid.UUID("5b0f3c52-6a55-4a8e-9a1e-3c0f1f6b2d11")
DOWN_FOR = 5.0
"""Seconds a server that did not answer is skipped for new jobs before it is tried again."""


def prompt_id_for(idempotency_key: str) -> str:
    """The same key always gives the same prompt_id: a re-send is recognisable."""
    return str(uuid.uuid5(NAMESPACE, idempotency_key))


def refusal_message(body: Any, status: int) -> str:
    """ComfyUI's 400: `error` (an object, or a string on old servers) and each node's errors."""
    parts: list[str] = []
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        parts.append(str(error.get("message") or error.get("type") or "refused"))
    elif isinstance(error, str):
        parts.append(error)
    nodes = body.get("node_errors") if isinstance(body, dict) else None
    if isinstance(nodes, dict):
        for node_id, node in nodes.items():
            errors = node.get("errors") if isinstance(node, dict) else None
            for item in errors if isinstance(errors, list) else []:
                if isinstance(item, dict):
                    detail = f": {item['details']}" if item.get("details") else ""
                    kind = node.get("class_type", "?") if isinstance(node, dict) else "?"
                    parts.append(f"node {node_id} ({kind}): {item.get('message', 'invalid')}{detail}")
    return "; ".join(parts)[:800] or f"HTTP {status}"


def _classify(answer: HttpAnswer) -> ProviderError | None:
    if answer.status == 400:
        return Permanent(
            f"comfyui refused the workflow: {refusal_message(answer.body, answer.status)}",
            status=400,
            request_id=answer.request_id,
        )
    return None


def _queued_ids(queue: Any) -> set[str]:
    """prompt ids (index 1) and our own ids in extra_data (index 3) of `/queue`'s items."""
    ids: set[str] = set()
    if not isinstance(queue, dict):
        return ids
    for key in ("queue_running", "queue_pending"):
        items = queue.get(key)
        for item in items if isinstance(items, list) else []:
            if isinstance(item, list) and len(item) > 1:
                ids.add(str(item[1]))
                extra = item[3] if len(item) > 3 and isinstance(item[3], dict) else {}
                if isinstance(extra.get("wfbatch_prompt_id"), str):
                    ids.add(extra["wfbatch_prompt_id"])
    return ids


def _failure(entry: dict[str, Any]) -> str | None:
    """Why a finished history entry failed, or None if it succeeded."""
    status = entry.get("status")
    if not isinstance(status, dict):
        return None  # old servers have no status: the outputs tell
    messages = status.get("messages")
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, list) and len(message) == 2 and isinstance(message[1], dict):
            kind, data = message
            if kind == "execution_error":
                where = f"node {data.get('node_id')} ({data.get('node_type')})"
                kind_of = data.get("exception_type", "error")
                return f"{where}: {kind_of}: {data.get('exception_message', '')}".strip()
            if kind == "execution_interrupted":
                return f"interrupted at node {data.get('node_id')} ({data.get('node_type')})"
    if status.get("status_str") == "error":
        return "execution failed"
    return None


class ComfyUIProvider(ProviderDefaults):
    name = "comfyui"

    def __init__(
        self,
        settings: ComfyUISettings,
        gate: RequestGate,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        graph = load_graph(settings.workflow) if settings.workflow else builtin_graph(settings.checkpoint)
        self._graph: Graph = graph
        self._placement = Placement.locate(graph, settings.inputs)  # a GraphError says what to set
        self._servers = settings.servers()
        self._http = HttpLayer(
            self.name, gate, HttpLimits.of(settings), classify=_classify, transport=transport
        )
        self._client_id = uuid.uuid4().hex
        # The same client_id goes with every /prompt: ComfyUI sends a prompt's events only to the
        # socket with its prompt's client_id (§7.5).
        self._progress = ProgressFeeds(self._client_id, node_names(graph))
        self._active: dict[str, set[str]] = {server: set() for server in self._servers}
        self._down_until: dict[str, float] = {}
        what = settings.workflow.name if settings.workflow else f"built-in graph, {settings.checkpoint}"
        hosts = ", ".join(urlsplit(s).netloc or s for s in self._servers)
        self.label = f"comfyui ({what} at {hosts})"

    def __repr__(self) -> str:
        return f"ComfyUIProvider(servers={self._servers!r})"

    def load(self) -> dict[str, int]:
        """This provider's jobs per server (for status: what each GPU has)."""
        return {server: len(ids) for server, ids in self._active.items()}

    async def submit(self, spec: JobSpec, idempotency_key: str) -> Submitted | Finished:
        prompt_id = prompt_id_for(idempotency_key)
        prefix = f"wfbatch_{prompt_id}"
        seed = spec.seed if spec.seed is not None else uuid.UUID(prompt_id).int % 2**32
        values = {
            "prompt": spec.prompt,
            "negative": spec.negative_prompt or "",
            "seed": seed,
            "width": spec.width,
            "height": spec.height,
        }
        handle: RemoteHandle = {"prompt_id": prompt_id, "prefix": prefix, "values": values}
        up = self._up_servers()
        for server in up:  # a re-send after a crash: the prompt may be on any server already
            try:
                if await self._where(server, prompt_id, prefix) is not None:
                    return self._submitted(server, prompt_id, handle)
            except Transient as error:
                if not error.connection_failed:
                    raise
                self._mark_down(server)
        up = self._up_servers()
        if not up:
            raise Unreachable(f"comfyui: no server answers ({', '.join(self._servers)})")
        server = min(up, key=lambda s: len(self._active[s]))
        sent_id = await self._send(server, prompt_id, prefix, values)
        return self._submitted(server, sent_id, handle)

    async def poll(self, handle: RemoteHandle, *, priority: float = 0.0) -> Pending | Finished:
        server = str(handle["server"])
        prompt_id = str(handle["prompt_id"])
        self._active.setdefault(server, set()).add(prompt_id)
        self._progress.watch(server, prompt_id)
        try:
            where = await self._where(server, prompt_id, str(handle["prefix"]))
            if where is None:
                # Known nowhere: ComfyUI restarted (queue and history are memory only). Same id.
                await self._send(server, prompt_id, str(handle["prefix"]), dict(handle["values"]))
                return Pending(prompt_id, "re-sent: the server had lost it (restarted?)")
        except Transient as error:
            if not error.connection_failed:
                raise
            self._mark_down(server)
            return Pending(prompt_id, f"server {server} unreachable; waiting for it")
        if isinstance(where, str):
            return Pending(prompt_id, where)
        self._active[server].discard(prompt_id)
        self._progress.forget(server, prompt_id)
        return where

    async def cancel(self, handle: RemoteHandle) -> bool:
        """Take the prompt out of the server's queue; if it is the one running, interrupt it (an
        old server interrupts whatever runs, so only when the running one is ours)."""
        server, prompt_id = str(handle["server"]), str(handle["prompt_id"])
        send = self._http.send
        await send(RequestKind.OTHER, "POST", f"{server}/queue", json={"delete": [prompt_id]})
        queue = (await send(RequestKind.POLL, "GET", f"{server}/queue")).body
        running = queue.get("queue_running", []) if isinstance(queue, dict) else []
        if prompt_id in _queued_ids({"queue_running": running}):
            await send(RequestKind.OTHER, "POST", f"{server}/interrupt", json={"prompt_id": prompt_id})
        self._active.setdefault(server, set()).discard(prompt_id)
        self._progress.forget(server, prompt_id)
        return True

    async def download(self, finished: Finished) -> list[Image]:
        images = []
        for url in finished.urls:
            answer = await self._http.send(None, "GET", url, decode=False)
            media_type = sniff_image(answer.content)
            if media_type is None:
                raise Transient(f"comfyui: {answer.what} is not an image")
            images.append(Image(answer.content, media_type, dict(finished.metadata)))
        return images

    async def estimate(self, spec: JobSpec) -> float | None:
        return 0.0

    def progress(self, handle: RemoteHandle) -> JobProgress | None:
        return self._progress.of(str(handle.get("server")), str(handle.get("prompt_id")))

    async def aclose(self) -> None:
        await self._progress.aclose()
        await self._http.aclose()

    # -- internals ---------------------------------------------------------------------------

    def _submitted(self, server: str, prompt_id: str, handle: RemoteHandle) -> Submitted:
        self._active[server].add(prompt_id)
        self._progress.watch(server, prompt_id)
        return Submitted(remote_id=prompt_id, handle={**handle, "server": server, "prompt_id": prompt_id})

    def _up_servers(self) -> list[str]:
        now = time.monotonic()
        return [s for s in self._servers if self._down_until.get(s, 0.0) <= now]

    def _mark_down(self, server: str) -> None:
        self._down_until[server] = time.monotonic() + DOWN_FOR

    async def _send(self, server: str, prompt_id: str, prefix: str, values: dict[str, Any]) -> str:
        self._progress.watch(server, prompt_id)  # before: its first events may beat the answer
        body = {
            "prompt": self._placement.fill(self._graph, values, prefix),
            "prompt_id": prompt_id,
            "client_id": self._client_id,
            "extra_data": {"wfbatch_prompt_id": prompt_id},
        }
        try:
            answer = await self._http.send(RequestKind.START, "POST", f"{server}/prompt", json=body)
        except BaseException:
            self._progress.forget(server, prompt_id)
            raise
        given = answer.json_object().get("prompt_id")
        # An old server ignores our id: its own is the one /queue and /history know.
        if isinstance(given, str) and given and given != prompt_id:
            self._progress.forget(server, prompt_id)
            return given
        return prompt_id

    async def _where(self, server: str, prompt_id: str, prefix: str) -> str | Finished | None:
        """ "queued" / "running" (wait), a finished result, or None (this server does not have it).
        Queue first, then history, then the file (§10: this order, or a prompt finishing between
        two calls looks lost). A failed execution raises Permanent."""
        queue = (await self._http.send(RequestKind.POLL, "GET", f"{server}/queue")).body
        if prompt_id in _queued_ids(queue):
            return "queued or running"
        history = (await self._http.send(RequestKind.POLL, "GET", f"{server}/history/{prompt_id}")).body
        entry = history.get(prompt_id) if isinstance(history, dict) else None
        if isinstance(entry, dict):
            return self._result(server, prompt_id, entry)
        name = f"{prefix}_00001_.png"
        url = f"{server}/view?{urlencode({'filename': name, 'subfolder': '', 'type': 'output'})}"
        found = await self._http.send(RequestKind.POLL, "GET", url, check=False, decode=False)
        if found.status == 200 and sniff_image(found.content) is not None:
            return Finished(remote_id=prompt_id, urls=(url,), credits_used=0.0, metadata={"server": server})
        return None

    def _result(self, server: str, prompt_id: str, entry: dict[str, Any]) -> Finished:
        failed = _failure(entry)
        if failed is not None:
            self._active.get(server, set()).discard(prompt_id)
            self._progress.forget(server, prompt_id)
            raise Permanent(f"comfyui: prompt {prompt_id} failed: {failed}")
        urls = []
        outputs = entry.get("outputs")
        for output in outputs.values() if isinstance(outputs, dict) else []:
            images = output.get("images") if isinstance(output, dict) else None
            for image in images if isinstance(images, list) else []:
                if (
                    isinstance(image, dict)
                    and image.get("type", "output") == "output"
                    and image.get("filename")
                ):
                    query = {
                        "filename": str(image["filename"]),
                        "subfolder": str(image.get("subfolder") or ""),
                        "type": "output",
                    }
                    urls.append(f"{server}/view?{urlencode(query)}")
        if not urls:
            self._active.get(server, set()).discard(prompt_id)
            self._progress.forget(server, prompt_id)
            raise Permanent(
                f"comfyui: prompt {prompt_id} finished without a saved image (no SaveImage output)"
            )
        return Finished(remote_id=prompt_id, urls=tuple(urls), credits_used=0.0, metadata={"server": server})
