"""What ComfyUI's answers mean (providers.md §7): a refusal's message, the ids in `/queue`, why a
history entry failed, and the ids wfbatch derives for its prompts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from wfbatch.providers.base import Finished, RemoteHandle
from wfbatch.providers.errors import Permanent, ProviderError
from wfbatch.providers.http import HttpAnswer

NAMESPACE = uuid.UUID("5b0f3c52-6a55-4a8e-9a1e-3c0f1f6b2d11")


def prompt_id_for(idempotency_key: str) -> str:
    """The same key always gives the same prompt_id: a re-send is recognisable."""
    return str(uuid.uuid5(NAMESPACE, idempotency_key))


def key_of(handle: RemoteHandle) -> str:
    """The job's own (deterministic) prompt id: the one a re-send carries. Handles stored before it
    was kept have it in their file prefix."""
    key = handle.get("key")
    return str(key) if key else str(handle["prefix"]).removeprefix("wfbatch_")


@dataclass(frozen=True)
class Found:
    """Where a prompt is: its server, its id there, and what that server says of it."""

    server: str
    prompt_id: str
    where: str | Finished


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


def classify(answer: HttpAnswer) -> ProviderError | None:
    if answer.status == 400:
        return Permanent(
            f"comfyui refused the workflow: {refusal_message(answer.body, answer.status)}",
            status=400,
            request_id=answer.request_id,
        )
    return None


def queued_ids(queue: Any) -> dict[str, str]:
    """Every id a `/queue` item is known by -> the server's own id for it (index 1): the item's id
    itself, and our id in extra_data (index 3: an old server ignores a client's prompt_id)."""
    ids: dict[str, str] = {}
    if not isinstance(queue, dict):
        return ids
    for key in ("queue_running", "queue_pending"):
        items = queue.get(key)
        for item in items if isinstance(items, list) else []:
            if isinstance(item, list) and len(item) > 1:
                own = str(item[1])
                ids[own] = own
                extra = item[3] if len(item) > 3 and isinstance(item[3], dict) else {}
                if isinstance(extra.get("wfbatch_prompt_id"), str):
                    ids[extra["wfbatch_prompt_id"]] = own
    return ids


def failure(entry: dict[str, Any]) -> str | None:
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
