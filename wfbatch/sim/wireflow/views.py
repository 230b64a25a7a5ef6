"""Executions as the API shows them: the `executionRuns[]` item of `/execute`, the poll body and
the (invented) details body."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from wfbatch.sim.replies import number
from wfbatch.sim.wireflow.book import Execution
from wfbatch.sim.wireflow.workflows import GENERATE_NODE_ID, GENERATE_NODE_LABEL


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def image_url(root: str, execution: Execution) -> str:
    """Images live on the simulator's own "CDN" path, which redirects to the file (like a CDN)."""
    return f"{root}/cdn/{execution.id}.png"


def _node_run(root: str, execution: Execution) -> dict[str, Any]:
    run: dict[str, Any] = {"nodeId": GENERATE_NODE_ID, "status": execution.status}
    if execution.status == "COMPLETED":
        run["output"] = {
            "images": [
                {"url": image_url(root, execution), "width": execution.width, "height": execution.height}
            ]
        }
    elif execution.status == "FAILED":
        run["error"] = execution.failure
    return run


def _node_state(root: str, execution: Execution) -> dict[str, Any]:
    url = image_url(root, execution) if execution.status == "COMPLETED" else None
    return {
        "nodeId": GENERATE_NODE_ID,
        "label": GENERATE_NODE_LABEL,
        "status": execution.status,
        "error": execution.failure if execution.status == "FAILED" else None,
        "outputUrl": url,
        "outputUrls": [url] if url else [],
    }


def execution_run(root: str, execution: Execution) -> dict[str, Any]:
    """One item of `executionRuns[]` (docs' `/execute` example)."""
    return {
        "id": execution.id,
        "startTime": iso(execution.created_at),
        "endTime": iso(execution.ended_at),
        "status": execution.status,
        "error": None,
        "nodeRuns": [_node_run(root, execution)],
        "batchId": execution.batch_id,
        "runIndexInBatch": 0,
        "inputIndex": 0,
    }


def poll_body(root: str, execution: Execution) -> dict[str, Any]:
    """Docs' poll shape plus the client-observed `nodeStates` and `finalOutput`."""
    body: dict[str, Any] = {
        "executionId": execution.id,
        "status": execution.status,
        "nodeResults": {"nodeRuns": [_node_run(root, execution)]},
        "nodeStates": [_node_state(root, execution)],
    }
    if execution.status == "COMPLETED":
        body["finalOutput"] = {"url": image_url(root, execution)}
        # INVENTED: the docs do not say whether (or where) a poll reports credits used.
        body["creditsUsed"] = number(execution.credits_used or 0.0)
    elif execution.status == "FAILED":
        body["error"] = f"Node {GENERATE_NODE_ID} ({GENERATE_NODE_LABEL}) failed: {execution.failure}"
        body["creditsUsed"] = 0
    return body


def details_body(root: str, execution: Execution) -> dict[str, Any]:
    """`GET /workflows/executions/{id}`: the docs name the route only. Every field is INVENTED."""
    return {
        "data": {
            "id": execution.id,
            "workflowId": execution.workflow_id,
            "status": execution.status,
            "startTime": iso(execution.created_at),
            "endTime": iso(execution.ended_at),
            "durationMs": None
            if execution.ended_at is None
            else round((execution.ended_at - execution.created_at) * 1000),
            "trigger": execution.route,
            "nodeRuns": [_node_run(root, execution)],
            "creditsUsed": None if execution.credits_used is None else number(execution.credits_used),
            "creditsHeld": number(execution.cost) if execution.status == "RUNNING" else 0,
            "error": execution.failure if execution.status == "FAILED" else None,
        }
    }
