"""A ComfyUI workflow in API format (providers.md §7.7), and where each job's values go in it.

Located by structure, once, when the provider starts: the sampler (`KSampler`, `KSamplerAdvanced`,
`SamplerCustom`, or Flux-style `SamplerCustomAdvanced`, whose conditioning comes through its `guider`
and its seed from the `noise` node's `noise_seed`); the text encoders its `positive` / `negative`
links lead to (walking upstream through conditioning nodes; every text of a multi-text encoder such
as `CLIPTextEncodeSDXL` or `CLIPTextEncodeFlux`); its seed; the latent (`EmptyLatentImage`,
`EmptySD3LatentImage`, …) its `latent_image` leads to; every `SaveImage`; the one `LoadImage`, where a
job's picture goes (uploaded first; a graph without one takes no picture). A widget fed by a link is
set on the node the link comes from. Anything ambiguous or missing is an error naming what to set in
`inputs` (`{"prompt": "6.text", ...}`), which always wins. The negative alone may be absent: a graph
whose negative is no text of its own (Flux's `BasicGuider`, a `ConditioningZeroOut` of the positive)
takes no negative prompt, and `needs_negative` says so before a job's negative would be lost.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SAMPLERS = ("KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced")
SLOTS = ("prompt", "negative", "seed", "width", "height", "image")
OPTIONAL_SLOTS = ("negative", "image")
"""A graph may have no negative prompt of its own, and no picture input (then it takes no image)."""
_TEXT_KEYS = ("text", "text_g", "string", "value")
MULTI_TEXT = {
    "CLIPTextEncodeSDXL": ("text_g", "text_l"),
    "CLIPTextEncodeFlux": ("clip_l", "t5xxl"),
    "CLIPTextEncodeSD3": ("clip_g", "clip_l", "t5xxl"),
    "CLIPTextEncodeHunyuanDiT": ("bert", "mt5xl"),
}
"""Core encoders with several text boxes (nodes_sdxl.py, nodes_flux.py, nodes_sd3.py, nodes_hunyuan.py):
the prompt goes into each, or the ones left keep the exported workflow's text."""
NO_NEGATIVE = "no negative prompt of its own"
_VALUE_KEYS = ("value", "string", "text", "int", "seed")
Graph = dict[str, dict[str, Any]]


class GraphError(ValueError):
    """The workflow cannot be used as it is: says what to fix (or what to set in `inputs`)."""


@dataclass(frozen=True)
class Target:
    node: str
    input: str

    def __str__(self) -> str:
        return f"{self.node}.{self.input}"


def builtin_graph(checkpoint: str) -> Graph:
    """ComfyUI's default text-to-image graph, core nodes only."""
    return {
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 0,
                "steps": 20,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "wfbatch", "images": ["8", 0]}},
    }


def load_graph(path: Path) -> Graph:
    try:
        data = json.loads(path.expanduser().read_text(encoding="utf-8"))
    except OSError as exc:
        raise GraphError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise GraphError(f"{path}: not JSON: {exc}") from None
    if isinstance(data, dict) and "nodes" in data and "links" in data:
        raise GraphError(
            f'{path}: this is the editor\'s save format; export the workflow with "Save (API Format)"'
        )
    if not isinstance(data, dict) or not data:
        raise GraphError(f"{path}: not an API-format workflow (an object of nodes keyed by id)")
    for node_id, node in data.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            raise GraphError(f'{path}: node {node_id} has no class_type: export with "Save (API Format)"')
        node.setdefault("inputs", {})
    return data


def _link(value: Any) -> str | None:
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str | int):
        return str(value[0])
    return None


@dataclass(frozen=True)
class Placement:
    """Where each slot goes, and the SaveImage nodes whose `filename_prefix` is set per job."""

    targets: dict[str, Target]
    outputs: tuple[str, ...]
    also: tuple[tuple[str, Target], ...] = ()
    """Further inputs set to a slot's value: the other texts of a multi-text encoder."""

    @property
    def needs_negative(self) -> bool:
        """False when the graph has nowhere to put a negative prompt."""
        return "negative" in self.targets

    @property
    def takes_image(self) -> bool:
        """True when the graph has a picture input (its `LoadImage`, or `inputs.image`)."""
        return "image" in self.targets

    @classmethod
    def locate(cls, graph: Graph, explicit: dict[str, str]) -> Placement:
        unknown = sorted(set(explicit) - set(SLOTS))
        if unknown:
            raise GraphError(f"comfyui inputs: unknown {', '.join(unknown)}; known: {', '.join(SLOTS)}")
        targets: dict[str, Target] = {}
        for slot, where in explicit.items():
            node, _, name = where.partition(".")
            if node not in graph or not name:
                raise GraphError(
                    f'comfyui inputs.{slot} = "{where}": no node {node!r} in the workflow (use "node.input")'
                )
            targets[slot] = Target(node, name)
        missing = [slot for slot in SLOTS if slot not in targets]
        also: list[tuple[str, Target]] = []
        if missing:
            found = _auto(graph)
            for slot in missing:
                if slot == "negative" and found.get(slot) == NO_NEGATIVE:
                    continue
                if slot == "image" and found.get(slot) is None:
                    continue  # no LoadImage: a text-to-image graph
                sized_by_picture = "image" in explicit or found.get("image") is not None
                if slot in ("width", "height") and found.get(slot) is None and sized_by_picture:
                    continue  # an image-to-image graph (no empty latent): the picture sets the size
                if isinstance(found.get(slot), str):
                    raise GraphError(f'comfyui workflow: {found[slot]}; set inputs.{slot} (e.g. "6.text")')
                target = found.get(slot)
                assert target is None or isinstance(target, Target)
                if target is None:
                    raise GraphError(
                        f"comfyui workflow: cannot find where the {slot} goes; set inputs.{slot}"
                    )
                targets[slot] = _through_links(graph, target)
                also += [(slot, _through_links(graph, other)) for other in _other_texts(graph, target, slot)]
        outputs = tuple(node_id for node_id, node in graph.items() if node["class_type"] == "SaveImage")
        if not outputs:
            raise GraphError("comfyui workflow: no SaveImage node, so nothing would be saved to download")
        return cls(targets, outputs, tuple(also))

    def fill(self, graph: Graph, values: dict[str, Any], prefix: str) -> Graph:
        filled = copy.deepcopy(graph)
        for slot, target in [*self.targets.items(), *self.also]:
            if slot in values:  # a job without a picture keeps the graph's own LoadImage file
                filled[target.node]["inputs"][target.input] = values[slot]
        for node_id in self.outputs:
            filled[node_id]["inputs"]["filename_prefix"] = prefix
        return filled


def _through_links(graph: Graph, target: Target) -> Target:
    """A widget converted to an input (fed by a primitive node) is set on that node instead."""
    for _ in range(8):
        source = _link(graph[target.node]["inputs"].get(target.input))
        if source is None or source not in graph:
            return target
        inputs = graph[source]["inputs"]
        key = next((k for k in _VALUE_KEYS if k in inputs and _link(inputs[k]) is None), None)
        if key is None:
            return target
        target = Target(source, key)
    return target


def _encoder(graph: Graph, start: str | None) -> Target | str | None:
    """Walk upstream from a sampler's conditioning input to the one text encoder it comes from."""
    seen: set[str] = set()
    frontier = [start] if start else []
    found: list[Target] = []
    while frontier:
        node_id = frontier.pop()
        if node_id in seen or node_id not in graph:
            continue
        seen.add(node_id)
        inputs = graph[node_id]["inputs"]
        kind = graph[node_id]["class_type"]
        text_key = next((k for k in (*MULTI_TEXT.get(kind, ()), *_TEXT_KEYS) if k in inputs), None)
        if text_key is not None and "Encode" in kind:
            found.append(Target(node_id, text_key))
            continue
        frontier += [link for value in inputs.values() if (link := _link(value)) is not None]
    if len(found) > 1:
        return f"several text encoders ({', '.join(t.node for t in found)}) feed one sampler input"
    return found[0] if found else None


def _other_texts(graph: Graph, target: Target, slot: str) -> list[Target]:
    """The texts of a multi-text encoder besides the located one (prompt and negative only)."""
    if slot not in ("prompt", "negative"):
        return []
    names = MULTI_TEXT.get(graph[target.node]["class_type"], ())
    inputs = graph[target.node]["inputs"]
    return [Target(target.node, name) for name in names if name != target.input and name in inputs]


def _conditioning(graph: Graph, inputs: dict[str, Any]) -> tuple[str | None, str | None, bool]:
    """(positive link, negative link, has a negative at all) of a sampler: its own inputs, or, for
    SamplerCustomAdvanced, its guider's (CFGGuider: positive/negative; BasicGuider: conditioning)."""
    if "positive" in inputs or "guider" not in inputs:
        return _link(inputs.get("positive")), _link(inputs.get("negative")), "negative" in inputs
    guider = _link(inputs.get("guider"))
    guided = graph[guider]["inputs"] if guider in graph else {}
    if "conditioning" in guided:
        return _link(guided.get("conditioning")), None, False
    return _link(guided.get("positive")), _link(guided.get("negative")), "negative" in guided


def _seed(graph: Graph, sampler: str) -> Target | None:
    inputs = graph[sampler]["inputs"]
    for name in ("seed", "noise_seed"):
        if name in inputs:
            return Target(sampler, name)
    noise = _link(inputs.get("noise"))  # SamplerCustomAdvanced: RandomNoise.noise_seed
    if noise in graph:
        for name in ("noise_seed", "seed"):
            if name in graph[noise]["inputs"]:
                return Target(noise, name)
    return None


def _auto(graph: Graph) -> dict[str, Target | str | None]:
    samplers = [nid for nid, node in graph.items() if node["class_type"] in SAMPLERS]
    if len(samplers) != 1:
        listed = ", ".join(samplers or SAMPLERS)
        why = f"several samplers ({listed})" if samplers else f"no sampler ({listed})"
        return {**dict.fromkeys(SLOTS, why), "image": _picture_input(graph)}
    sampler = samplers[0]
    inputs = graph[sampler]["inputs"]
    positive, negative_link, has_negative = _conditioning(graph, inputs)
    prompt = _encoder(graph, positive)
    negative = _encoder(graph, negative_link) if has_negative else NO_NEGATIVE
    if isinstance(prompt, Target) and negative == prompt:
        negative = NO_NEGATIVE  # e.g. Flux: negative = ConditioningZeroOut(the positive's encoder)
    elif has_negative and negative is None and negative_link is not None:
        negative = NO_NEGATIVE  # a zeroed or empty conditioning with no text encoder upstream
    found: dict[str, Target | str | None] = {
        "prompt": prompt,
        "negative": negative,
        "seed": _seed(graph, sampler),
    }
    found["image"] = _picture_input(graph)
    latent = _link(inputs.get("latent_image"))
    if latent in graph and {"width", "height"} <= set(graph[latent]["inputs"]):
        found["width"], found["height"] = Target(latent, "width"), Target(latent, "height")
    else:
        found["width"] = found["height"] = None
    return found


def _picture_input(graph: Graph) -> Target | str | None:
    """The one `LoadImage` node's file name input; None: the graph takes no picture."""
    loaders = [nid for nid, node in graph.items() if node["class_type"] == "LoadImage"]
    if len(loaders) > 1:
        return f"several LoadImage nodes ({', '.join(loaders)})"
    return Target(loaders[0], "image") if loaders else None
