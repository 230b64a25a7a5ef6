"""ComfyUI's raw server API (providers.md §7): `POST /prompt`, poll `/queue` then `/history/{id}`,
download through `/view`. No key, no limits, no cost.

Nothing is run twice by wfbatch: the `prompt_id` is a UUID derived from the job's idempotency key,
so a re-send carries the same id, and before anything is sent it is looked for (§10, in this order,
or a prompt finishing between two calls looks lost): in `/queue` (wait for it), in `/history`
(collect it), its file through `/view` (take it). Only a prompt found nowhere is sent. Older servers
ignore a client's prompt_id: there the queue's `extra_data.wfbatch_prompt_id` and the job's unique
file name find it.

Several servers (`base_url` as a list): a job goes to the server with the fewest of this provider's
jobs and stays pinned there (the server is in its poll handle). ComfyUI keeps queue and history in
memory, so after a ComfyUI restart `poll` finds its prompt nowhere on the pinned server: it is then
looked for on every other server (a move made before a wfbatch crash is found again that way, since
`poll` cannot hand back a new handle), followed there if found, and only when every server answered
without it is it sent again, with the same id, to the least-loaded server (the one that was
executing when ComfyUI went down runs a second time; nothing else does). A move is remembered in
memory. A server that does not answer is only itself held: its jobs wait for it (whether they ran
there cannot be known) unless another server has them; new jobs go to the others; only when every
server is down does the provider report Unreachable.

After a download the prompt's history entry is deleted (§7.4): by then the engine has committed the
result's `/view` URLs (`JobRunner.settle` runs before `download`), and the file stays in ComfyUI's
output folder, where `/view` finds it by the job's unique prefix; history is only an index.

Progress (step x/y) comes from each server's `/ws` (`progress.py`), a hint beside the polling.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import httpx

from wfbatch.core.models import InputImage, JobSpec
from wfbatch.core.progress import JobProgress
from wfbatch.providers.base import (
    Finished,
    Image,
    Pending,
    RemoteHandle,
    RequestGate,
    RequestKind,
    ServerState,
    Submitted,
)
from wfbatch.providers.comfyui.answers import (
    Found,
    classify,
    failure,
    key_of,
    prompt_id_for,
    queued_ids,
)
from wfbatch.providers.comfyui.graph import Graph, Placement, builtin_graph, load_graph
from wfbatch.providers.comfyui.progress import ProgressFeeds, node_names
from wfbatch.providers.comfyui.settings import ComfyUISettings
from wfbatch.providers.config import host_of
from wfbatch.providers.errors import Permanent, ProviderError, Transient, Unreachable
from wfbatch.providers.http import HttpAnswer
from wfbatch.providers.http.layer import FormValue
from wfbatch.providers.http.provider import HttpProvider
from wfbatch.providers.inputs import file_name, input_bytes
from wfbatch.providers.media import sniff_image

log = logging.getLogger(__name__)

DOWN_FOR = 5.0
"""Seconds a server that did not answer is skipped for new jobs before it is tried again."""


class ComfyUIProvider(HttpProvider[ComfyUISettings]):
    """No key and no limits; several servers, each its own base URL (`settings.servers()`)."""

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
        super().__init__(settings, gate, transport=transport)
        self._client_id = uuid.uuid4().hex
        # The same client_id goes with every /prompt: ComfyUI sends a prompt's events only to the
        # socket with its prompt's client_id (§7.5).
        self._progress = ProgressFeeds(self._client_id, node_names(graph))
        self._active: dict[str, set[str]] = {server: set() for server in self._servers}
        """Job keys per server: what each GPU has of ours (least-loaded choice, status)."""
        self._down_until: dict[str, float] = {}
        self._down_since: dict[str, float] = {}
        """Wall time of the first failure of each server's current outage (cleared by an answer)."""
        self._moved: dict[str, tuple[str, str]] = {}
        """Job key -> (server, prompt id there) for jobs followed or re-sent away from the server
        their handle names. Memory only: after a crash the search in `poll` finds them again."""
        self._uploaded: dict[tuple[str, str], str] = {}
        """(server, sha256) -> the name its input folder has the picture under (`_upload`)."""
        self._server_ids: dict[str, str] = {}
        """Job key -> the id an old server (one that ignores a client's prompt_id) gave it, as seen
        in `/queue`: its history is under that id, so a reconciled job is polled by it."""

    def read_error(self, answer: HttpAnswer) -> ProviderError | None:
        return classify(answer)

    def __repr__(self) -> str:
        return f"ComfyUIProvider(servers={self._servers!r})"

    def load(self) -> dict[str, int]:
        """This provider's jobs per server (for status: what each GPU has)."""
        return {server: len(ids) for server, ids in self._active.items()}

    def servers(self) -> list[ServerState]:
        return [
            ServerState(
                host=host_of(server),
                up=server not in self._down_since,
                down_since=self._down_since.get(server),
                jobs=len(self._active.get(server, ())),
            )
            for server in self._servers
        ]

    async def submit(self, spec: JobSpec, idempotency_key: str) -> Submitted | Finished:
        """A first send (a start that may have gone through already comes to `reconcile` first)."""
        if spec.negative_prompt and not self._placement.needs_negative:
            # Sent anyway it would be dropped without a word: the image would not be what was asked.
            raise Permanent(
                "comfyui workflow has no negative prompt of its own (e.g. Flux: BasicGuider or a zeroed "
                "negative): remove negative_prompt, or set inputs.negative to a text input"
            )
        if spec.inputs and not self._placement.takes_image:
            raise Permanent(
                "comfyui workflow has no picture input (a LoadImage node): use a workflow with one, or set"
                " inputs.image to the node input that takes the uploaded file name"
            )
        handle = self._handle(spec, idempotency_key)
        up = self._up_servers()
        if not up:
            raise Unreachable(f"comfyui: no server answers ({', '.join(map(host_of, self._servers))})")
        server = self._least_loaded(up)
        sent_id = await self._send(
            server, str(handle["key"]), str(handle["prefix"]), dict(handle["values"]), handle.get("picture")
        )
        return self._submitted(server, sent_id, handle)

    async def reconcile(
        self, spec: JobSpec, idempotency_key: str, started_at: float | None
    ) -> Submitted | None:
        """A start that may have gone through (wfbatch crashed, or the answer was lost): the prompt
        is looked for on every server, down ones included. Found: followed. A server that does not
        answer may hold it in its queue, so the job is pinned there without a send: polling waits
        for that server, and sends it again only once every server has answered without it
        (ComfyUI costs nothing, but a prompt must not run twice). None: nobody has it, send it."""
        handle = self._handle(spec, idempotency_key)
        key, prefix = str(handle["key"]), str(handle["prefix"])
        silent: list[str] = []
        for server in self._servers:
            try:
                if await self._where(server, key, key, prefix) is not None:
                    return self._submitted(server, self._server_ids.get(key, key), handle)
            except Transient as error:
                if not error.connection_failed:
                    raise
                silent.append(server)
        if silent:
            log.info(
                "comfyui: %s may hold prompt %s but does not answer: the job waits for it",
                host_of(silent[0]),
                key,
            )
            return self._submitted(silent[0], key, handle)
        return None

    def _handle(self, spec: JobSpec, idempotency_key: str) -> RemoteHandle:
        """What the job is sent as, the same on every send: a prompt id derived from the job, a file
        prefix unique to it, and the values that fill the graph (seed fixed even when unasked)."""
        key = prompt_id_for(idempotency_key)
        seed = spec.seed if spec.seed is not None else uuid.UUID(key).int % 2**32
        values = {
            "prompt": spec.prompt,
            "negative": spec.negative_prompt or "",
            "seed": seed,
            "width": spec.width,
            "height": spec.height,
        }
        handle: RemoteHandle = {"prompt_id": key, "key": key, "prefix": f"wfbatch_{key}", "values": values}
        picture = spec.input_of("image")
        if picture is not None:
            # Uploaded to the server the prompt goes to, once per server and content (`_upload`).
            handle["picture"] = {
                "source": picture.source,
                "location": picture.location,
                "sha256": picture.sha256,
                "media_type": picture.media_type,
            }
        return handle

    async def poll(self, handle: RemoteHandle, *, priority: float = 0.0) -> Pending | Finished:
        key = key_of(handle)
        try:
            return await self._poll(handle, key)
        except Permanent:
            self._release(key, *self._location(key, handle))  # it failed there: no server has it
            raise

    async def _poll(self, handle: RemoteHandle, key: str) -> Pending | Finished:
        prefix = str(handle["prefix"])
        server, prompt_id = self._location(key, handle)
        self._active.setdefault(server, set()).add(key)
        self._progress.watch(server, prompt_id)
        answered = True
        try:
            where = await self._where(server, prompt_id, key, prefix)
        except Transient as error:
            if not error.connection_failed:
                raise
            answered, where = False, None
        if where is None:
            found, silent = await self._look_elsewhere(server, key, prefix)
            if found is not None:
                self._follow(key, handle, found.server, found.prompt_id)
                server, prompt_id, where = found.server, found.prompt_id, found.where
            elif not answered:
                since = time.strftime("%H:%M", time.localtime(self._down_since.get(server, time.time())))
                return Pending(
                    prompt_id,
                    f"server {host_of(server)} unreachable since {since}; its jobs wait for it "
                    "(whether they ran there cannot be known)",
                )
            elif silent:
                return Pending(
                    prompt_id,
                    f"{host_of(server)} no longer has it (restarted?) and {', '.join(map(host_of, silent))}"
                    " did not answer (may have it): waiting before sending it again",
                )
            else:
                # Every server answered without it: it never ran, or ran where its file would show.
                target = self._least_loaded(self._up_servers() or [server])
                sent_id = await self._send(target, key, prefix, dict(handle["values"]), handle.get("picture"))
                self._follow(key, handle, target, sent_id)
                moved = "" if target == server else f" to {host_of(target)}"
                return Pending(sent_id, f"re-sent{moved}: {host_of(server)} had lost it (restarted?)")
        if isinstance(where, str):
            return Pending(prompt_id, where)
        self._release(key, server, prompt_id)
        return where

    async def cancel(self, handle: RemoteHandle) -> bool:
        """Take the prompt out of the server's queue; if it is the one running, interrupt it (an
        old server interrupts whatever runs, so only when the running one is ours)."""
        key = key_of(handle)
        server, prompt_id = self._location(key, handle)
        send = self._http.send
        await send(RequestKind.OTHER, "POST", f"{server}/queue", json={"delete": [prompt_id]})
        queue = (await send(RequestKind.POLL, "GET", f"{server}/queue")).body
        running = queue.get("queue_running", []) if isinstance(queue, dict) else []
        if prompt_id in queued_ids({"queue_running": running}):
            await send(RequestKind.OTHER, "POST", f"{server}/interrupt", json={"prompt_id": prompt_id})
        self._release(key, server, prompt_id)
        return True

    async def download(self, finished: Finished) -> list[Image]:
        images = []
        for url in finished.urls:
            answer = await self._http.send(None, "GET", url, decode=False)
            media_type = sniff_image(answer.content)
            if media_type is None:
                raise Transient(f"comfyui: {answer.what} is not an image")
            images.append(Image(answer.content, media_type, dict(finished.metadata)))
        await self._forget(finished)
        return images

    async def estimate(self, spec: JobSpec) -> float | None:
        return 0.0

    def progress(self, handle: RemoteHandle) -> JobProgress | None:
        if "server" not in handle or "prompt_id" not in handle:
            return None
        return self._progress.of(*self._location(key_of(handle), handle))

    async def aclose(self) -> None:
        await self._progress.aclose()
        await super().aclose()

    # -- internals ---------------------------------------------------------------------------

    def _submitted(self, server: str, prompt_id: str, handle: RemoteHandle) -> Submitted:
        self._active[server].add(str(handle["key"]))
        self._progress.watch(server, prompt_id)
        return Submitted(remote_id=prompt_id, handle={**handle, "server": server, "prompt_id": prompt_id})

    def _follow(self, key: str, handle: RemoteHandle, server: str, prompt_id: str) -> None:
        """From now on the job is polled on `server` under `prompt_id` (in this process)."""
        before = self._location(key, handle)
        if before != (server, prompt_id):
            self._progress.forget(*before)
        self._progress.watch(server, prompt_id)
        for keys in self._active.values():
            keys.discard(key)
        self._active.setdefault(server, set()).add(key)
        if (server, prompt_id) == (handle["server"], handle["prompt_id"]):
            self._moved.pop(key, None)
        else:
            self._moved[key] = (server, prompt_id)

    def _location(self, key: str, handle: RemoteHandle) -> tuple[str, str]:
        """(server, prompt id there) of a job: where it was moved in this process, else its handle's."""
        return self._moved.get(key, (str(handle["server"]), str(handle["prompt_id"])))

    def _release(self, key: str, server: str, prompt_id: str) -> None:
        """The job has ended (or was taken back): no server has it any more."""
        for keys in self._active.values():
            keys.discard(key)
        self._moved.pop(key, None)
        self._server_ids.pop(key, None)
        self._progress.forget(server, prompt_id)

    def _least_loaded(self, servers: list[str]) -> str:
        return min(servers, key=lambda s: len(self._active.setdefault(s, set())))

    def _up_servers(self) -> list[str]:
        now = time.monotonic()
        return [s for s in self._servers if self._down_until.get(s, 0.0) <= now]

    async def _call(
        self, server: str, kind: RequestKind, method: str, path: str, **options: Any
    ) -> HttpAnswer:
        """One request to `server`, keeping its up/down state: a connection that fails marks it
        down (skipped for new jobs for DOWN_FOR s, shown as down until it answers again)."""
        try:
            answer = await self._http.send(kind, method, f"{server}{path}", **options)
        except Transient as error:
            if error.connection_failed:
                self._down_until[server] = time.monotonic() + DOWN_FOR
                self._down_since.setdefault(server, time.time())
            raise
        self._down_until.pop(server, None)
        self._down_since.pop(server, None)
        return answer

    async def _look_elsewhere(self, pinned: str, key: str, prefix: str) -> tuple[Found | None, list[str]]:
        """The job on a server other than `pinned` (it was moved there, perhaps by a wfbatch that
        crashed since), and the servers that could not be asked (down: they may have it)."""
        silent: list[str] = []
        up = self._up_servers()
        for server in self._servers:
            if server == pinned:
                continue
            if server not in up:
                silent.append(server)
                continue
            try:
                where = await self._where(server, key, key, prefix)
            except Transient as error:
                if not error.connection_failed:
                    raise
                silent.append(server)
                continue
            if where is not None:
                return Found(server, self._server_ids.get(key, key), where), silent
        return None, silent

    async def _forget(self, finished: Finished) -> None:
        """`POST /history {"delete": [id]}` (§7.4: keeps ComfyUI's history small). Best effort: a
        failure only leaves the entry (ComfyUI caps history at 10,000 itself)."""
        server = finished.metadata.get("server")
        if not isinstance(server, str) or finished.remote_id is None:
            return
        try:
            await self._call(
                server,
                RequestKind.OTHER,
                "POST",
                "/history",
                json={"delete": [finished.remote_id]},
                check=False,
            )
        except ProviderError as error:
            log.info(
                "comfyui: could not delete history of %s on %s: %s",
                finished.remote_id,
                host_of(server),
                error,
            )

    async def _upload(self, server: str, picture: dict[str, Any]) -> str:
        """`POST /upload/image` (§12.5) of a job's picture, once per server and content: named by
        its sha256, so the same bytes get the same name (ComfyUI keeps one copy and answers the
        name), and a later job reuses it without sending it again. The name to give `LoadImage`."""
        sha256 = str(picture["sha256"])
        known = self._uploaded.get((server, sha256))
        if known is not None:
            return known
        item = InputImage(
            role="image",
            source=str(picture["source"]),
            location=str(picture["location"]),
            sha256=sha256,
            media_type=str(picture.get("media_type") or "image/png"),
        )
        form: dict[str, FormValue] = {
            "image": (file_name(item), input_bytes(item), item.media_type),
            "type": "input",
        }
        answer = await self._call(server, RequestKind.OTHER, "POST", "/upload/image", form=form)
        body = answer.json_object()
        name, subfolder = body.get("name"), body.get("subfolder")
        if not isinstance(name, str) or not name:
            raise Transient("comfyui: /upload/image answered no file name", status=answer.status)
        stored = f"{subfolder}/{name}" if isinstance(subfolder, str) and subfolder else name
        self._uploaded[(server, sha256)] = stored
        return stored

    async def _send(
        self,
        server: str,
        prompt_id: str,
        prefix: str,
        values: dict[str, Any],
        picture: dict[str, Any] | None = None,
    ) -> str:
        if picture is not None:
            values["image"] = await self._upload(server, picture)
        self._progress.watch(server, prompt_id)  # before: its first events may beat the answer
        body = {
            "prompt": self._placement.fill(self._graph, values, prefix),
            "prompt_id": prompt_id,
            "client_id": self._client_id,
            "extra_data": {"wfbatch_prompt_id": prompt_id},
        }
        try:
            answer = await self._call(server, RequestKind.START, "POST", "/prompt", json=body)
        except BaseException:
            self._progress.forget(server, prompt_id)
            raise
        given = answer.json_object().get("prompt_id")
        # An old server ignores our id: its own is the one /queue and /history know.
        if isinstance(given, str) and given and given != prompt_id:
            self._progress.forget(server, prompt_id)
            return given
        return prompt_id

    async def _where(self, server: str, prompt_id: str, key: str, prefix: str) -> str | Finished | None:
        """ "queued" / "running" (wait), a finished result, or None (this server does not have it).
        `prompt_id` is the id on this server, `key` the job's own (an old server's queue echoes it
        in extra_data). Queue first, then history, then the file (§10: this order, or a prompt
        finishing between two calls looks lost). A failed execution raises Permanent."""
        queued = queued_ids((await self._call(server, RequestKind.POLL, "GET", "/queue")).body)
        own = queued.get(prompt_id) or queued.get(key)
        if own is not None:
            if own != key:
                self._server_ids[key] = own  # an old server's own id: its history is under it
            return "queued or running"
        history = (await self._call(server, RequestKind.POLL, "GET", f"/history/{prompt_id}")).body
        entry = history.get(prompt_id) if isinstance(history, dict) else None
        if isinstance(entry, dict):
            return self._result(server, prompt_id, entry)
        name = f"{prefix}_00001_.png"
        view = f"/view?{urlencode({'filename': name, 'subfolder': '', 'type': 'output'})}"
        found = await self._call(server, RequestKind.POLL, "GET", view, check=False, decode=False)
        if found.status == 200 and sniff_image(found.content) is not None:
            return Finished(
                remote_id=prompt_id, urls=(f"{server}{view}",), credits_used=0.0, metadata={"server": server}
            )
        return None

    def _result(self, server: str, prompt_id: str, entry: dict[str, Any]) -> Finished:
        failed = failure(entry)
        if failed is not None:
            # The prompt_id is what ComfyUI's own logs and /history know the run by: the request id.
            raise Permanent(f"comfyui: prompt {prompt_id} failed: {failed}", request_id=prompt_id)
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
            raise Permanent(
                f"comfyui: prompt {prompt_id} finished without a saved image (no SaveImage output)",
                request_id=prompt_id,
            )
        return Finished(remote_id=prompt_id, urls=tuple(urls), credits_used=0.0, metadata={"server": server})
