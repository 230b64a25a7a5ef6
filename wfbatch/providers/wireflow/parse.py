"""Tolerant readers for Wireflow's answers (providers.md §1): the docs, the client notes and the
helper script disagree on shapes (`data` wrappers, `executionRuns[0].id` vs `executionId`, status
case, where image URLs live, `error` as a string or an object), so every reader accepts all of them.

Pure functions over decoded JSON; nothing here does I/O.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from wfbatch.providers.http.charges import parse_charge
from wfbatch.providers.media import sniff_image

__all__ = ["sniff_image"]  # re-exported: the client reads images through this module

_EPOCH_THRESHOLD = 1_000_000_000  # numbers above this are Unix timestamps, not durations
_WRAPPERS = ("data", "workflow", "graph", "definition")


def as_dict(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def layers(body: Any) -> list[dict[str, Any]]:
    """The body and, if present, its `data` wrapper: where every field may be found."""
    root = as_dict(body)
    if root is None:
        return []
    inner = as_dict(root.get("data"))
    return [root, inner] if inner is not None else [root]


def _first_run(layer: Mapping[str, Any]) -> dict[str, Any] | None:
    runs = as_list(layer.get("executionRuns"))
    return as_dict(runs[0]) if runs else None


def execution_id(body: Any) -> str | None:
    """`executionRuns[0].id`, `executionId`, `data.executionId`, or a bare `id`."""
    for key in ("executionRuns", "executionId", "execution_id", "id"):
        for layer in layers(body):
            value: Any = layer.get(key)
            if key == "executionRuns":
                run = _first_run(layer)
                value = run.get("id") if run else None
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
                return str(value)
    return None


def status(body: Any) -> str | None:
    """`.status` or `.data.status` (else the first execution run's), upper-cased."""
    for layer in layers(body):
        value = layer.get("status")
        if isinstance(value, str) and value.strip():
            return value.strip().upper()
    for layer in layers(body):
        run = _first_run(layer)
        if run and isinstance(run.get("status"), str):
            return str(run["status"]).strip().upper()
    return None


def _node_runs(layer: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    results = as_dict(layer.get("nodeResults")) or {}
    sources = [results.get("nodeRuns"), layer.get("nodeRuns")]
    sources += [(as_dict(run) or {}).get("nodeRuns") for run in as_list(layer.get("executionRuns"))]
    for source in sources:
        for run in as_list(source):
            if isinstance(run, dict):
                yield run


def image_urls(body: Any) -> list[str]:
    """Every image URL the answer mentions, deduplicated, in order: node runs' `output.images`,
    `nodeStates[].outputUrl(s)`, then `finalOutput.url`."""
    found: list[Any] = []
    for layer in layers(body):
        for run in _node_runs(layer):
            output = as_dict(run.get("output")) or {}
            for image in as_list(output.get("images")):
                found.append(image.get("url") if isinstance(image, dict) else image)
        for state in as_list(layer.get("nodeStates")):
            if isinstance(state, dict):
                found.append(state.get("outputUrl"))
                found.extend(as_list(state.get("outputUrls")))
        final = layer.get("finalOutput")
        if isinstance(final, dict):
            found.append(final.get("url"))
            found.extend(as_list(final.get("urls")))
        else:
            found.append(final)
    urls = [u for u in found if isinstance(u, str) and u.strip()]
    return list(dict.fromkeys(u.strip() for u in urls))


def credits_used(body: Any) -> float | None:
    """The charge the answer reports, if it is a usable one (see `parse_charge`)."""
    for layer in layers(body):
        for key in ("creditsUsed", "credits_used", "creditsCharged"):
            if layer.get(key) is not None:
                return parse_charge(layer.get(key), "wireflow")
    return None


def _error_text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, dict):
        for key in ("message", "error", "detail", "code", "type"):
            text = _error_text(value.get(key))
            if text:
                return text
    return None


def failure_message(body: Any) -> str:
    """Why a FAILED execution failed: the failing node's `error` (the reason first, then which
    node: a list cut to its width must still show why), else the top-level `error`."""
    for layer in layers(body):
        nodes = [*as_list(layer.get("nodeStates")), *_node_runs(layer)]
        for node in nodes:
            if isinstance(node, dict):
                text = _error_text(node.get("error"))
                if text:
                    name = node.get("label") or node.get("nodeLabel") or node.get("nodeId") or "?"
                    return f"{text} (node {name})"
    for layer in layers(body):
        text = _error_text(layer.get("error"))
        if text:
            return text
    return "execution failed (no error message given)"


def error_message(body: Any) -> str | None:
    """The message of an error answer: `error` as a string or as `{type, code, message}`."""
    for layer in layers(body):
        for key in ("error", "message", "detail"):
            text = _error_text(layer.get(key))
            if text:
                return text
    return None


def error_fields(body: Any) -> list[dict[str, Any]]:
    """Where an error's context fields may be: the body, its `data`, and an `error` object."""
    found = layers(body)
    for layer in list(found):
        error = as_dict(layer.get("error"))
        if error is not None:
            found.append(error)
    return found


def is_out_of_credits(body: Any) -> bool:
    for layer in error_fields(body):
        if layer.get("insufficientCredits") is True:
            return True
        if layer.get("type") == "insufficient_credits_error" or layer.get("code") in (
            "insufficient_credits",
            "insufficient_quota",
        ):
            return True
    return False


_CREDITS_IN_MESSAGE = re.compile(r"Required:\s*([\d.]+)\D+Available:\s*([\d.]+)", re.IGNORECASE)


def credit_figures(body: Any, message: str) -> tuple[float | None, float | None, list[dict[str, Any]]]:
    """(required, available, breakdown) of a 402, falling back to the numbers in its message."""
    required = available = None
    breakdown: list[dict[str, Any]] = []
    for layer in error_fields(body):
        required = required if required is not None else number(layer.get("requiredCredits"))
        available = available if available is not None else number(layer.get("availableCredits"))
        breakdown = breakdown or [b for b in as_list(layer.get("breakdown")) if isinstance(b, dict)]
    match = _CREDITS_IN_MESSAGE.search(message)
    if match:
        required = required if required is not None else number(match.group(1).rstrip("."))
        available = available if available is not None else number(match.group(2).rstrip("."))
    return required, available, breakdown


def _seconds_until(value: Any, now: float) -> float | None:
    """A delay from a duration in seconds, a Unix timestamp (s or ms), an HTTP date or ISO time."""
    seconds = number(value)
    if seconds is not None:
        if seconds > _EPOCH_THRESHOLD * 1000:
            seconds /= 1000.0
        return max(0.0, seconds - now if seconds > _EPOCH_THRESHOLD else seconds)
    if isinstance(value, str) and value.strip():
        try:
            moment = email.utils.parsedate_to_datetime(value.strip())
        except (TypeError, ValueError):
            try:
                moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                return None
        if moment.tzinfo is not None:
            return max(0.0, moment.timestamp() - now)
    return None


def retry_after(headers: Mapping[str, str], body: Any, now: float) -> float | None:
    """`Retry-After` (seconds), else the body's `retryAfter` (epoch in the docs' example; a duration
    is accepted too), else `X-RateLimit-Reset − now`, else None."""
    delay = _seconds_until(headers.get("retry-after"), now)
    if delay is not None:
        return delay
    for layer in error_fields(body):
        for key in ("retryAfter", "retry_after"):
            delay = _seconds_until(layer.get(key), now)
            if delay is not None:
                return delay
    return _seconds_until(headers.get("x-ratelimit-reset"), now)


def find_graph(body: Any, depth: int = 0) -> dict[str, Any] | None:
    """The `{nodes, edges}` of a workflow answer, possibly wrapped in `data`/`workflow`/`graph`."""
    root = as_dict(body)
    if root is None or depth > 3:
        return None
    nodes = root.get("nodes")
    if isinstance(nodes, list) and nodes and all(isinstance(n, dict) for n in nodes):
        return root
    for key in _WRAPPERS:
        found = find_graph(root.get(key), depth + 1)
        if found is not None:
            return found
    return None


def balance(body: Any) -> float | None:
    for layer in layers(body):
        for key in ("balance", "credits", "availableCredits", "creditBalance", "remainingCredits"):
            value = number(layer.get(key))
            if value is not None:
                return value
    return None


def estimate(body: Any) -> float | None:
    """Sum of per-node credits; None unless the answer says the estimate is complete."""
    for layer in layers(body):
        if layer.get("estimateComplete") is not True:
            continue
        for key in ("nodes", "breakdown", "nodeEstimates", "estimates", "perNode"):
            items = layer.get(key)
            if isinstance(items, dict):
                values = [number(v) for v in items.values()]
            elif isinstance(items, list):
                values = [_item_credits(item) for item in items]
            else:
                continue
            if values and all(v is not None for v in values):
                return sum(v for v in values if v is not None)
        for key in ("totalCredits", "total", "credits", "estimatedCredits"):
            value = number(layer.get(key))
            if value is not None:
                return value
    return None


def _item_credits(item: Any) -> float | None:
    if not isinstance(item, dict):
        return number(item)
    for key in ("credits", "estimatedCredits", "cost"):
        value = number(item.get(key))
        if value is not None:
            return value
    return None
