"""ComfyUI's in-memory world (providers.md §7): one executor running one prompt at a time, the
pending queue, the history, and the output folder. Prompts advance lazily (whenever anyone looks),
like the Wireflow simulator's executions. `restart()` forgets the queue and the history like a real
restart; files already written stay. What `/ws` tells (providers.md §7.5) is kept as a bounded log
of events (`events_since`) plus the running prompt's sampler step computed from the clock
(`step_now`). No I/O; thread-safe."""

from __future__ import annotations

import copy
import random
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wfbatch.sim.images import render_image
from wfbatch.sim.options import SimOptions

EVENT_LOG = 10_000
"""Events kept for the sockets to read: one that falls further behind misses some (like a real
socket that was down)."""
DEFAULT_STEPS = 20
OUTPUT_NODES = frozenset({"SaveImage", "PreviewImage"})
KNOWN_NODES = frozenset(
    {
        "KSampler",
        "KSamplerAdvanced",
        "CheckpointLoaderSimple",
        "EmptyLatentImage",
        "CLIPTextEncode",
        "ConditioningCombine",
        "VAEDecode",
        "VAEEncode",
        "VAELoader",
        "LoadImage",
        "ImageScale",
        "LoraLoader",
        "PrimitiveNode",
        *OUTPUT_NODES,
    }
)


@dataclass
class Prompt:
    number: int
    prompt_id: str
    graph: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]
    queued_at: float
    started_at: float | None = None
    ready_at: float | None = None

    def queue_item(self) -> list[Any]:
        return [self.number, self.prompt_id, self.graph, self.extra_data, self.outputs]

    @property
    def client_id(self) -> str | None:
        given = self.extra_data.get("client_id")
        return given if isinstance(given, str) else None


@dataclass(frozen=True)
class WsEvent:
    """One `/ws` text message, with the client_id of the prompt it is about (None: sent without)."""

    seq: int
    client_id: str | None
    type: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Step:
    """The running prompt's sampler, as far as it has come now."""

    prompt_id: str
    client_id: str | None
    node: str | None
    value: int
    max: int


@dataclass
class ComfyServer:
    options: SimOptions
    clock: Callable[[], float]
    pending: list[Prompt] = field(default_factory=list)
    running: Prompt | None = None
    history: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    """Output folder: file name -> PNG bytes. Survives a restart."""
    graphs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """prompt_id -> the graph last received for it (tests check the prompt and seed reached it)."""
    inputs: dict[str, bytes] = field(default_factory=dict)
    """The input folder (`/upload/image`): `subfolder/name` -> bytes. Survives a restart."""
    uploads: list[dict[str, Any]] = field(default_factory=list)
    """Every upload: the name stored, the bytes' sha256, whether it was written (`uploads`)."""
    executions_by_prompt_id: Counter[str] = field(default_factory=Counter)
    executions_by_text: Counter[str] = field(default_factory=Counter)
    restarts: int = 0
    cut_off: list[str] = field(default_factory=list)
    """prompt_ids that were executing when a restart struck (the only ones allowed to run twice)."""
    interrupted: int = 0
    refused: int = 0
    _number: int = 0
    _free_at: float = 0.0
    events: deque[WsEvent] = field(default_factory=lambda: deque(maxlen=EVENT_LOG))
    _seq: int = 0
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _rng: random.Random = field(default_factory=lambda: random.Random("comfyui"))

    # -- the queue ---------------------------------------------------------------------------

    def enqueue(self, graph: dict[str, Any], prompt_id: str | None, extra_data: dict[str, Any]) -> Prompt:
        with self._lock:
            self.settle()
            self._number += 1
            outputs = [nid for nid, node in graph.items() if node.get("class_type") in OUTPUT_NODES]
            item = Prompt(
                self._number, prompt_id or str(uuid.uuid4()), graph, extra_data, outputs, self.clock()
            )
            self.graphs[item.prompt_id] = copy.deepcopy(graph)
            self.pending.append(item)
            self.settle()
            return item

    def settle(self) -> None:
        now = self.clock()
        with self._lock:
            while True:
                if self.running is None:
                    if not self.pending:
                        return
                    item = self.pending.pop(0)
                    item.started_at = max(self._free_at, item.queued_at)
                    item.ready_at = item.started_at + self._rng.uniform(*self.options.latency)
                    self.running = item
                    self._emit(item, "execution_start", {})
                    self._emit(item, "execution_cached", {"nodes": []})
                    self._emit(item, "executing", {"node": sampler_id(item.graph)})
                    self.executions_by_prompt_id[item.prompt_id] += 1
                    self.executions_by_text[positive_text(item.graph) or ""] += 1
                assert self.running.ready_at is not None
                if self.running.ready_at > now:
                    return
                self._free_at = self.running.ready_at
                self._finish(self.running, interrupted=False)
                self.running = None

    def _finish(self, item: Prompt, *, interrupted: bool) -> None:
        text = positive_text(item.graph) or ""
        marker = self.options.fail_marker
        messages: list[Any] = [["execution_start", {"prompt_id": item.prompt_id}]]
        if interrupted or (marker is not None and marker in text):
            kind = "execution_interrupted" if interrupted else "execution_error"
            detail = {"prompt_id": item.prompt_id, "node_id": sampler_id(item.graph), "node_type": "KSampler"}
            if not interrupted:
                detail.update(
                    exception_type="RuntimeError", exception_message="simulated failure in the sampler"
                )
            messages.append([kind, detail])
            self._emit(item, kind, detail)
            self._emit(item, "executing", {"node": None})
            self.history[item.prompt_id] = {
                "prompt": item.queue_item(),
                "outputs": {},
                "status": {"status_str": "error", "completed": False, "messages": messages},
                "meta": {},
            }
            return
        outputs: dict[str, Any] = {}
        width, height = latent_size(item.graph)
        seed = sampler_seed(item.graph)
        for node_id in item.outputs:
            node = item.graph[node_id]
            prefix = str(node.get("inputs", {}).get("filename_prefix", "ComfyUI"))
            kind = "output" if node["class_type"] == "SaveImage" else "temp"
            name = self._next_name(prefix)
            self.files[name] = render_image(item.prompt_id, text, seed, (width, height))
            outputs[node_id] = {"images": [{"filename": name, "subfolder": "", "type": kind}]}
        for node_id, output in outputs.items():
            self._emit(item, "executing", {"node": node_id})
            self._emit(item, "executed", {"node": node_id, "output": output})
        messages.append(["execution_success", {"prompt_id": item.prompt_id}])
        self._emit(item, "execution_success", {})
        self._emit(item, "executing", {"node": None})
        self.history[item.prompt_id] = {
            "prompt": item.queue_item(),
            "outputs": outputs,
            "status": {"status_str": "success", "completed": True, "messages": messages},
            "meta": {},
        }

    def _next_name(self, prefix: str) -> str:
        """SaveImage's naming: `<prefix>_<counter:05>_.png`, the counter one past the highest on disk."""
        counter = 1
        while f"{prefix}_{counter:05}_.png" in self.files:
            counter += 1
        return f"{prefix}_{counter:05}_.png"

    # -- what /ws tells -----------------------------------------------------------------------

    def _emit(self, item: Prompt, kind: str, data: dict[str, Any]) -> None:
        self._seq += 1
        # An interrupt is broadcast whoever sent the prompt (§7.5): it carries no client_id here.
        client_id = None if kind == "execution_interrupted" else item.client_id
        self.events.append(WsEvent(self._seq, client_id, kind, {**data, "prompt_id": item.prompt_id}))

    def events_since(self, seq: int) -> list[WsEvent]:
        with self._lock:
            self.settle()
            return [event for event in self.events if event.seq > seq]

    def last_seq(self) -> int:
        with self._lock:
            return self._seq

    def step_now(self) -> Step | None:
        """The running prompt's sampler step: the share of its run time gone by, in steps."""
        with self._lock:
            self.settle()
            item = self.running
            if item is None or item.started_at is None or item.ready_at is None:
                return None
            node = sampler_id(item.graph)
            steps = sampler_steps(item.graph)
            span = item.ready_at - item.started_at
            done = 1.0 if span <= 0 else (self.clock() - item.started_at) / span
            value = max(1, min(steps, int(done * steps) + 1))  # ComfyUI counts 1..max
            return Step(item.prompt_id, item.client_id, node, value, steps)

    # -- controls ----------------------------------------------------------------------------

    def interrupt(self, prompt_id: str | None = None) -> None:
        """Stop the running prompt; with `prompt_id`, only if that is the one running."""
        with self._lock:
            self.settle()
            if self.running is not None and prompt_id in (None, self.running.prompt_id):
                self.interrupted += 1
                self._free_at = self.clock()
                self._finish(self.running, interrupted=True)
                self.running = None
                self.settle()

    def delete_pending(self, ids: list[str]) -> None:
        with self._lock:
            self.pending = [p for p in self.pending if p.prompt_id not in ids]

    def restart(self) -> None:
        """A real restart: the queue, the running prompt and the history are gone; files stay."""
        with self._lock:
            self.settle()  # prompts advance lazily: what was executing is known only after this
            if self.running is not None:
                self.cut_off.append(self.running.prompt_id)
            self.pending, self.running, self.history = [], None, {}
            self._free_at = self.clock()
            self.restarts += 1

    def queue_snapshot(self) -> dict[str, list[list[Any]]]:
        with self._lock:
            self.settle()
            running = [self.running.queue_item()] if self.running else []
            return {"queue_running": running, "queue_pending": [p.queue_item() for p in self.pending]}

    def history_of(self, prompt_id: str) -> dict[str, Any]:
        with self._lock:
            self.settle()
            entry = self.history.get(prompt_id)
            return {prompt_id: entry} if entry is not None else {}

    def stats(self) -> dict[str, Any]:
        with self._lock:
            self.settle()
            return {
                "executions": sum(self.executions_by_prompt_id.values()),
                "executions_by_prompt_id": dict(self.executions_by_prompt_id),
                "executions_by_prompt": dict(self.executions_by_text),
                "queued": len(self.pending),
                "running": self.running.prompt_id if self.running else None,
                "history": len(self.history),
                "files": len(self.files),
                "restarts": self.restarts,
                "cut_off": list(self.cut_off),
                "interrupted": self.interrupted,
                "refused": self.refused,
                "rate_limited": 0,
                "uploads": list(self.uploads),
            }

    def report(self) -> dict[str, Any]:
        """Its part of `/_sim/stats`."""
        return {"rate_limited": 0, "comfyui": self.stats()}

    def top_up(self, amount: float) -> float | None:
        """A local server has no account: always unlimited."""
        return None


# -- reading a graph -----------------------------------------------------------------------------


def _node(graph: dict[str, Any], link: Any) -> dict[str, Any] | None:
    if isinstance(link, list) and link and isinstance(graph.get(str(link[0])), dict):
        found: dict[str, Any] = graph[str(link[0])]
        return found
    return None


def sampler_id(graph: dict[str, Any]) -> str | None:
    for node_id, node in graph.items():
        if node.get("class_type") in ("KSampler", "KSamplerAdvanced"):
            return node_id
    return None


def sampler_steps(graph: dict[str, Any]) -> int:
    sampler = graph.get(sampler_id(graph) or "")
    steps = sampler.get("inputs", {}).get("steps") if sampler else None
    return steps if isinstance(steps, int) and 1 <= steps <= 10_000 else DEFAULT_STEPS


def positive_text(graph: dict[str, Any]) -> str | None:
    sampler = graph.get(sampler_id(graph) or "")
    encoder = _node(graph, sampler.get("inputs", {}).get("positive")) if sampler else None
    text = encoder.get("inputs", {}).get("text") if encoder else None
    return text if isinstance(text, str) else None


def sampler_seed(graph: dict[str, Any]) -> int | None:
    sampler = graph.get(sampler_id(graph) or "")
    inputs = sampler.get("inputs", {}) if sampler else {}
    seed = inputs.get("seed", inputs.get("noise_seed"))
    return seed if isinstance(seed, int) else None


def latent_size(graph: dict[str, Any]) -> tuple[int, int]:
    sampler = graph.get(sampler_id(graph) or "")
    latent = _node(graph, sampler.get("inputs", {}).get("latent_image")) if sampler else None
    inputs = latent.get("inputs", {}) if latent else {}
    width, height = inputs.get("width", 512), inputs.get("height", 512)
    return (width if isinstance(width, int) else 512, height if isinstance(height, int) else 512)


def validation_errors(
    graph: Any, checkpoints: tuple[str, ...], folder: dict[str, bytes] | None = None
) -> tuple[dict[str, str], dict[str, Any]]:
    """(error, node_errors) as ComfyUI's `validate_prompt` would report them; ({}, {}) if valid.
    `folder`: the input folder a `LoadImage` reads from."""
    if not isinstance(graph, dict) or not graph:
        return {"type": "no_prompt", "message": "No prompt provided"}, {}
    for node in graph.values():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            message = "Cannot execute because a node is missing the class_type property."
            return {"type": "invalid_prompt", "message": message}, {}
        if node["class_type"] not in KNOWN_NODES:
            message = f"Cannot execute because node {node['class_type']} does not exist."
            return {"type": "invalid_prompt", "message": message}, {}
    if not any(node["class_type"] in OUTPUT_NODES for node in graph.values()):
        return {"type": "prompt_no_outputs", "message": "Prompt has no outputs"}, {}
    node_errors: dict[str, Any] = {}
    inputs_folder = folder or {}
    for node_id, node in graph.items():
        errors = []
        inputs = node.get("inputs", {}) if isinstance(node.get("inputs"), dict) else {}
        for name, value in inputs.items():
            if isinstance(value, list) and (not value or str(value[0]) not in graph):
                errors.append(
                    {"type": "bad_linked_input", "message": f"Bad linked input {name}", "details": name}
                )
        if node["class_type"] == "CheckpointLoaderSimple" and inputs.get("ckpt_name") not in checkpoints:
            errors.append(
                {
                    "type": "value_not_in_list",
                    "message": "Value not in list",
                    "details": f"ckpt_name: '{inputs.get('ckpt_name')}' not in {list(checkpoints)}",
                }
            )
        if node["class_type"] == "LoadImage" and not _loadable(inputs.get("image"), inputs_folder):
            errors.append(
                {
                    "type": "custom_validation_failed",
                    "message": "Custom validation failed for node",
                    "details": f"image - Invalid image file: {inputs.get('image')}",
                }
            )
        if node["class_type"] == "EmptyLatentImage":
            for side in ("width", "height"):
                value = inputs.get(side)
                if isinstance(value, int) and (value % 8 or not 16 <= value <= 16384):
                    errors.append(
                        {
                            "type": "value_not_valid",
                            "message": f"{side} must be a multiple of 8",
                            "details": side,
                        }
                    )
        if errors:
            node_errors[node_id] = {
                "errors": errors,
                "dependent_outputs": [],
                "class_type": node["class_type"],
            }
    if node_errors:
        return {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
        }, node_errors
    return {}, {}


def _loadable(name: Any, folder: dict[str, bytes]) -> bool:
    """A `LoadImage` name the input folder has (` [input]` may be said; other folders are not kept)."""
    if not isinstance(name, str):
        return False
    return name.removesuffix(" [input]") in folder


def loaded_images(graph: dict[str, Any], folder: dict[str, bytes]) -> list[bytes]:
    """The pictures a graph's `LoadImage` nodes read (for rendering from them)."""
    found = []
    for node in graph.values():
        name = node.get("inputs", {}).get("image") if node.get("class_type") == "LoadImage" else None
        if isinstance(name, str) and name.removesuffix(" [input]") in folder:
            found.append(folder[name.removesuffix(" [input]")])
    return found
