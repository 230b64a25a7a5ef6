"""The built-in workflow the simulator serves: `wf_demo`, a prompt input and a seed input wired into
one Text-to-Image node `n1` (which also carries `data.params.prompt`, so `/execute` callers can
write the prompt straight into it, as the docs' minimal example does)."""

from __future__ import annotations

import copy
from typing import Any

DEMO_WORKFLOW_ID = "wf_demo"
DEMO_WEBHOOK_ID = "wh_demo"
GENERATE_NODE_ID = "n1"
GENERATE_NODE_LABEL = "Text to Image"
PROMPT_INPUT_ID = "node-prompt"
SEED_INPUT_ID = "node-seed"


def _graph(workflow_id: str) -> dict[str, Any]:
    return {
        "id": workflow_id,
        "name": "Demo: text to image",
        "isActive": True,
        "webhookId": DEMO_WEBHOOK_ID if workflow_id == DEMO_WORKFLOW_ID else None,
        "nodes": [
            {
                "id": PROMPT_INPUT_ID,
                "type": "basedNode",
                "position": {"x": 0, "y": 0},
                "data": {
                    "label": "Prompt",
                    "category": "input",
                    "nodeType": "input:text",
                    "params": {"value": ""},
                    "inputs": [],
                    "outputs": [{"id": "text", "label": "Text", "type": "TEXT"}],
                },
            },
            {
                "id": SEED_INPUT_ID,
                "type": "basedNode",
                "position": {"x": 0, "y": 120},
                "data": {
                    "label": "Seed",
                    "category": "input",
                    "nodeType": "input:number",
                    "params": {"value": 42},
                    "inputs": [],
                    "outputs": [{"id": "number", "label": "Number", "type": "NUMBER"}],
                },
            },
            {
                "id": GENERATE_NODE_ID,
                "type": "basedNode",
                "position": {"x": 300, "y": 0},
                "data": {
                    "label": GENERATE_NODE_LABEL,
                    "category": "model",
                    "nodeType": "generate:flux_2",
                    "params": {
                        "prompt": "a lighthouse at dusk",
                        "negative_prompt": "",
                        "seed": 42,
                        "width": 1024,
                        "height": 1024,
                    },
                    "inputs": [
                        {"id": "prompt", "label": "Prompt", "type": "TEXT"},
                        {"id": "seed", "label": "Seed", "type": "NUMBER"},
                    ],
                    "outputs": [{"id": "image", "label": "Image", "type": "IMAGE"}],
                },
            },
        ],
        "edges": [
            {"id": "e1", "source": PROMPT_INPUT_ID, "target": GENERATE_NODE_ID, "targetHandle": "prompt"},
            {"id": "e2", "source": SEED_INPUT_ID, "target": GENERATE_NODE_ID, "targetHandle": "seed"},
        ],
    }


class WorkflowCatalog:
    """The workflows a simulator knows; each id gets a copy of the demo graph."""

    def __init__(self, workflow_ids: tuple[str, ...]) -> None:
        self._graphs = {wid: _graph(wid) for wid in workflow_ids}

    def get(self, workflow_id: str) -> dict[str, Any] | None:
        graph = self._graphs.get(workflow_id)
        return copy.deepcopy(graph) if graph is not None else None

    def by_webhook(self, webhook_id: str) -> dict[str, Any] | None:
        """Docs: the webhook id is issued per workflow, and the workflow id itself is also accepted."""
        for graph in self._graphs.values():
            if webhook_id in (graph["id"], graph["webhookId"]):
                return copy.deepcopy(graph)
        return None

    def ids(self) -> list[str]:
        return list(self._graphs)


def run_schema(graph: dict[str, Any]) -> dict[str, Any]:
    """`GET /workflows/{id}/run`, shaped like the docs' example."""
    wid = graph["id"]
    return {
        "data": {
            "workflowId": wid,
            "workflowName": graph["name"],
            "inputs": [
                {
                    "nodeId": PROMPT_INPUT_ID,
                    "label": "Prompt",
                    "type": "text",
                    "required": True,
                    "description": "What to draw",
                },
                {
                    "nodeId": SEED_INPUT_ID,
                    "label": "Seed",
                    "type": "number",
                    "required": False,
                    "default": 42,
                },
            ],
            "endpoint": f"/api/v1/workflows/{wid}/run",
            "method": "POST",
            "example": {"inputs": {PROMPT_INPUT_ID: "<text>", SEED_INPUT_ID: 42}},
        }
    }


def input_node_ids() -> tuple[str, ...]:
    return (PROMPT_INPUT_ID, SEED_INPUT_ID)
