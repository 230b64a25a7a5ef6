"""What wfbatch sends Wireflow to start one image, in each of the three modes:

- `execute`: the workflow's own graph with the job written into it (`{nodes, edges}`);
- `run`: `{"inputs": {nodeId: value}}` for the workflow's exposed inputs;
- `webhook`: free-form trigger data.
"""

from __future__ import annotations

import copy
from typing import Any

from wfbatch.core.models import JobSpec
from wfbatch.providers.errors import Permanent


def _settings_hint(name: str) -> str:
    return f"WFBATCH_WIREFLOW__{name.upper()}"


def _node(nodes: list[dict[str, Any]], node_id: str, setting: str) -> dict[str, Any]:
    for node in nodes:
        if str(node.get("id")) == node_id:
            return node
    raise Permanent(f"node {node_id!r} ({_settings_hint(setting)}) is not in the workflow graph")


def _params(node: dict[str, Any]) -> dict[str, Any]:
    """Where a node keeps its input values: `data.params` (generate:* nodes) or `data` itself
    (model:* nodes, the docs' second style), whichever holds the prompt."""
    data = node.get("data")
    if not isinstance(data, dict):
        data = node["data"] = {}
    params = data.get("params")
    if isinstance(params, dict) and ("prompt" in params or "prompt" not in data):
        return params
    if "prompt" in data:
        return data
    data["params"] = params = {}
    return params


def _has_prompt(node: dict[str, Any]) -> bool:
    data = node.get("data")
    if not isinstance(data, dict):
        return False
    params = data.get("params")
    return "prompt" in data or (isinstance(params, dict) and "prompt" in params)


def execute_body(
    graph: dict[str, Any], spec: JobSpec, *, prompt_node_id: str | None, seed_node_id: str | None
) -> dict[str, Any]:
    """A copy of the graph with the prompt (and whatever else the target node has room for)."""
    nodes: list[dict[str, Any]] = copy.deepcopy([n for n in graph["nodes"] if isinstance(n, dict)])
    edges = copy.deepcopy(graph.get("edges") or [])
    if prompt_node_id:
        target = _node(nodes, prompt_node_id, "prompt_node_id")
    else:
        found = next((n for n in nodes if _has_prompt(n)), None)
        if found is None:
            raise Permanent(
                f"no node in the workflow has a prompt field; set {_settings_hint('prompt_node_id')}"
            )
        target = found
    params = _params(target)
    params["prompt"] = spec.prompt
    if spec.negative_prompt is not None:
        for key in ("negative_prompt", "negativePrompt"):
            if key in params:
                params[key] = spec.negative_prompt
    for key, value in (("seed", spec.seed), ("width", spec.width), ("height", spec.height)):
        if key in params:
            params[key] = value
    if spec.model and isinstance(params.get("model"), str):
        params["model"] = spec.model
    if seed_node_id:
        seed_params = _params(_node(nodes, seed_node_id, "seed_node_id"))
        key = "seed" if "seed" in seed_params or "value" not in seed_params else "value"
        seed_params[key] = spec.seed
    params.update(spec.params)
    return {"nodes": nodes, "edges": edges}


def run_body(spec: JobSpec, *, prompt_node_id: str, seed_node_id: str | None) -> dict[str, Any]:
    """Inputs keyed by node id; `spec.params` may name further exposed inputs by node id."""
    inputs: dict[str, Any] = {prompt_node_id: spec.prompt}
    if seed_node_id:
        inputs[seed_node_id] = spec.seed
    inputs.update(spec.params)
    return {"inputs": inputs}


def trigger_body(spec: JobSpec) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prompt": spec.prompt,
        "negative_prompt": spec.negative_prompt,
        "seed": spec.seed,
        "width": spec.width,
        "height": spec.height,
    }
    body = {k: v for k, v in body.items() if v is not None}
    body.update(spec.params)
    return body
