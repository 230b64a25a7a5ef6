"""Per-prompt progress from ComfyUI's `/ws?clientId=…` (providers.md §7.5): one listener per server,
started when the provider has a prompt there, reconnecting with back-off, closed by `aclose`.

The socket is a hint only. Events missed while it was down are gone and a server may have no `/ws`
at all (old, or behind a proxy that does not pass WebSockets): then there is no progress, one log
line says so, and `/history` polling still decides when a prompt is finished. Everything a server
sends is untrusted: frames over `FRAME_CAP` end the connection (the library refuses them before
they are held in memory; the listener connects again after a back-off), binary preview frames and
unknown types are skipped, step counts go through `JobProgress.of`, and only prompts this provider
watches on that server are remembered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

from wfbatch.core.progress import JobProgress
from wfbatch.core.tasks import cancel_and_wait

log = logging.getLogger("wfbatch.providers.comfyui")

FRAME_CAP = 1 << 20
"""Bytes of one message: ComfyUI's JSON events are small; its previews are small JPEGs."""
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
STABLE_AFTER = 10.0
"""A connection that lasted this long starts the back-off afresh (one that drops at once does not:
a server that closes every socket straight away is not hammered)."""
IDLE_LINGER = 60.0
"""Seconds without a watched prompt before the socket is closed: a GPU busy with one prompt after
another keeps its socket between them."""
RECV_TICK = 5.0
OPEN_TIMEOUT = 5.0
ENDED = frozenset({"finished", "failed", "interrupted"})
ENDING_KINDS = frozenset({"execution_success", "execution_error", "execution_interrupted"})

Connect = Callable[[str], Any]


def ws_url(server: str, client_id: str) -> str:
    """`http://host:8188[/prefix]` → `ws://host:8188[/prefix]/ws?clientId=…` (https → wss)."""
    parts = urlsplit(server)
    scheme = "wss" if parts.scheme == "https" else "ws"
    path = parts.path.rstrip("/") + "/ws"
    return urlunsplit((scheme, parts.netloc, path, urlencode({"clientId": client_id}), ""))


def _open(url: str) -> Any:
    # origin=None: no Origin header at all (§7.1: ComfyUI answers 403 when Origin and Host differ).
    # proxy=None: the server is the user's own, reached directly like the HTTP requests' loopback.
    return connect(
        url,
        origin=None,
        proxy=None,
        compression=None,
        max_size=FRAME_CAP,
        open_timeout=OPEN_TIMEOUT,
    )


class ServerProgress:
    """The progress of the prompts watched on one server, fed by that server's socket."""

    def __init__(
        self,
        server: str,
        client_id: str,
        node_names: Mapping[str, str],
        *,
        opener: Connect = _open,
    ) -> None:
        self.server = server
        self.url = ws_url(server, client_id)
        self._names = node_names
        self._open = opener
        self._watched: set[str] = set()
        self._latest: dict[str, JobProgress] = {}
        self._task: asyncio.Task[None] | None = None
        self._idle_since: float | None = None
        self._said_down = False
        self._current: str | None = None
        """The prompt this socket's events were last about, while it runs (see `handle`)."""
        self.connected = False

    # -- what the provider asks ------------------------------------------------------------------

    def watch(self, prompt_id: str) -> None:
        self._watched.add(prompt_id)
        self._idle_since = None
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"comfyui-ws {self.server}")

    def forget(self, prompt_id: str) -> None:
        self._watched.discard(prompt_id)
        self._latest.pop(prompt_id, None)
        if not self._watched:
            self._idle_since = time.monotonic()

    def of(self, prompt_id: str) -> JobProgress | None:
        return self._latest.get(prompt_id)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    # -- the socket ------------------------------------------------------------------------------

    def handle(self, frame: str | bytes) -> None:
        """One frame. Never raises: whatever the server sends, the worst is that it is ignored."""
        if not isinstance(frame, str):
            return  # a preview: 4-byte event type, 4-byte format, image bytes (§7.5)
        try:
            message = json.loads(frame)
        except (ValueError, RecursionError):
            return
        if not isinstance(message, dict) or not isinstance(message.get("data"), dict):
            return
        kind, data = message.get("type"), message["data"]
        prompt_id = data.get("prompt_id")
        if isinstance(prompt_id, str):
            ends = kind in ENDING_KINDS or (kind == "executing" and data.get("node") is None)
            self._current = None if ends else prompt_id
        elif kind == "progress":
            # Older servers' `progress` is only {value, max}: it is the step of the prompt that runs
            # for this socket's clientId, the last one its events named (until that one ended).
            prompt_id = self._current
        if not isinstance(kind, str) or not isinstance(prompt_id, str) or prompt_id not in self._watched:
            return
        after = _next(self._latest.get(prompt_id), kind, data, self._names)
        if after is not None:
            self._latest[prompt_id] = after

    async def _run(self) -> None:
        delay = BACKOFF_FIRST
        while not self._idle():
            opened_at = time.monotonic()
            try:
                async with self._open(self.url) as socket:
                    self._up()
                    await self._read(socket)
                    return  # idle: closed on purpose
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, WebSocketException) as error:
                self._down(error)
            except Exception:  # a bug here must cost the progress, never the provider's polling
                log.exception("comfyui: the progress listener for %s failed", self.server)
            finally:
                self.connected = False
            if time.monotonic() - opened_at >= STABLE_AFTER:
                delay = BACKOFF_FIRST
            await asyncio.sleep(delay)
            delay = min(BACKOFF_MAX, delay * 2)

    async def _read(self, socket: ClientConnection) -> None:
        while not self._idle():
            try:
                async with asyncio.timeout(RECV_TICK):  # not wait_for: see core.tasks.wait_event
                    frame = await socket.recv()
            except TimeoutError:
                continue  # nothing said: look whether anything is still watched
            self.handle(frame)

    def _idle(self) -> bool:
        return (
            not self._watched
            and self._idle_since is not None
            and time.monotonic() - self._idle_since >= IDLE_LINGER
        )

    def _up(self) -> None:
        self.connected = True
        self._current = None  # what ran meanwhile is unknown until an event names it
        if self._said_down:
            log.info("comfyui: progress from %s again", self.url)
            self._said_down = False

    def _down(self, error: Exception) -> None:
        if self._said_down:
            return  # said once per outage: a server without /ws would otherwise log every 30 s
        self._said_down = True
        if isinstance(error, InvalidStatus):
            why = f"HTTP {error.response.status_code} (no /ws here: an old server or a proxy?)"
        else:
            why = str(error) or type(error).__name__
        log.info("comfyui: no progress from %s: %s; polling alone tells when prompts finish", self.url, why)


def _next(
    before: JobProgress | None, kind: str, data: dict[str, Any], names: Mapping[str, str]
) -> JobProgress | None:
    """The prompt's progress after one event; None leaves it as it was."""
    step = before.step if before else None
    steps = before.steps if before else None
    ended = before is not None and before.phase in ENDED
    if kind == "execution_start":
        return JobProgress.of(phase="running")
    if kind == "executing":
        node = data.get("node")
        if node is None:  # the end (older servers' only end signal); comes after an error too
            return None if ended else JobProgress.of(step=step, steps=steps, phase="finished")
        name = _name(node, names)
        same = before is not None and before.node == name
        return JobProgress.of(
            step=step if same else None, steps=steps if same else None, node=name, phase="running"
        )
    if kind == "progress":
        node = _name(data.get("node"), names) or (before.node if before else None)
        return JobProgress.of(step=data.get("value"), steps=data.get("max"), node=node, phase="running")
    if kind == "execution_success":
        return JobProgress.of(step=step, steps=steps, phase="finished")
    if kind == "execution_error":
        return JobProgress.of(node=data.get("node_type"), phase="failed")
    if kind == "execution_interrupted":
        return JobProgress.of(node=data.get("node_type"), phase="interrupted")
    return None  # status, execution_cached, executed, and kinds newer servers add


def _name(node: Any, names: Mapping[str, str]) -> str | None:
    """A node id as people know it: its class ("KSampler"), else the id itself."""
    if isinstance(node, int) and not isinstance(node, bool):
        node = str(node)
    if not isinstance(node, str):
        return None
    return names.get(node, node)


class ProgressFeeds:
    """The listeners of one provider, one per server, made when a prompt is first watched there."""

    def __init__(self, client_id: str, node_names: Mapping[str, str], *, opener: Connect = _open) -> None:
        self._client_id = client_id
        self._names = dict(node_names)
        self._opener = opener
        self._servers: dict[str, ServerProgress] = {}

    def watch(self, server: str, prompt_id: str) -> None:
        feed = self._servers.get(server)
        if feed is None:
            feed = self._servers[server] = ServerProgress(
                server, self._client_id, self._names, opener=self._opener
            )
        feed.watch(prompt_id)

    def forget(self, server: str, prompt_id: str) -> None:
        feed = self._servers.get(server)
        if feed is not None:
            feed.forget(prompt_id)

    def of(self, server: str, prompt_id: str) -> JobProgress | None:
        feed = self._servers.get(server)
        return feed.of(prompt_id) if feed is not None else None

    def server(self, server: str) -> ServerProgress | None:
        return self._servers.get(server)

    async def aclose(self) -> None:
        for feed in self._servers.values():
            await feed.aclose()


def node_names(graph: Mapping[str, Any]) -> dict[str, str]:
    """Node id → class ("3" → "KSampler"): what the events' node ids mean in this graph."""
    return {
        str(node_id): node["class_type"]
        for node_id, node in graph.items()
        if isinstance(node, dict) and isinstance(node.get("class_type"), str)
    }
