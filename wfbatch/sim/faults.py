"""How injected faults reach the wire.

A connection reset is real: the server protocol (see `server.py`) puts the connection's asyncio
transport into the ASGI scope; we set SO_LINGER to 0 and abort it, so the kernel sends a TCP RST
and the client sees "connection reset" (or "server disconnected") with no HTTP answer at all.
Served some other way (no transport in the scope), a reset is approximated by a bare 502.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

from starlette.responses import Response, StreamingResponse

TRANSPORT_SCOPE_KEY = "wfbatch.sim.transport"


async def drop_connection(scope: MutableMapping[str, Any]) -> bool:
    """Reset the client's TCP connection. False if this server cannot (no transport in scope)."""
    transport = scope.get(TRANSPORT_SCOPE_KEY)
    if not isinstance(transport, asyncio.Transport) or transport.is_closing():
        return False
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    # Let the server notice the lost connection, so it does not try to answer (nor log an error).
    for _ in range(3):
        await asyncio.sleep(0)
    return True


def truncate(body: bytes) -> bytes:
    """A malformed body: the first half of valid JSON."""
    return body[: max(1, len(body) // 2)]


ENDLESS_CHUNK = b"\0" * 65536


async def endless(first: bytes) -> AsyncIterator[bytes]:
    """The real answer, then zeros forever: a client must stop reading on its own."""
    yield first
    while True:
        yield ENDLESS_CHUNK
        await asyncio.sleep(0)


async def trickle(body: bytes, seconds: float) -> AsyncIterator[bytes]:
    """The real answer, one byte every `seconds`: every read succeeds, the whole never arrives."""
    for index in range(len(body)):
        yield body[index : index + 1]
        await asyncio.sleep(seconds)


def presented_key(authorization: str | None) -> str:
    """The secret part of an `Authorization` header (`Bearer sk-…` / `Key …`)."""
    return (authorization or "").split(" ", 1)[-1].strip()


def echo_key(body: bytes, key: str) -> bytes:
    """A careless server echoing the caller's key: into every id and every URL of a JSON answer."""
    try:
        data = json.loads(body)
    except ValueError:
        return body

    def walk(value: Any, name: str = "") -> Any:
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, name) for v in value]
        if isinstance(value, str) and value.startswith("http"):
            return value + ("&" if "?" in value else "?") + "key=" + key
        if isinstance(value, str) and name in ("id", "executionId"):
            return f"{value}-{key}"
        return value

    return json.dumps(walk(data)).encode()


def bad_charge(body: bytes, value: str) -> bytes:
    """Replace a reported `creditsUsed` with a hostile value ("-50", "NaN")."""
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if isinstance(data, dict) and "creditsUsed" in data:
        data["creditsUsed"] = value
    return json.dumps(data).encode()


HOSTILE = ("endless", "trickle", "echo_key", "credits_negative", "credits_nan")
"""Faults that rewrite a finished answer the way a hostile or broken server would."""


def hostile_reply(fault: str, reply: Response, authorization: str | None, trickle_seconds: float) -> Response:
    """`reply` as a hostile server would send it (see options.FAULT_KINDS)."""
    headers = {k: v for k, v in reply.headers.items() if k.lower() != "content-length"}
    body = bytes(reply.body)
    if fault == "endless":
        return StreamingResponse(endless(body), status_code=reply.status_code, headers=headers)
    if fault == "trickle":
        return StreamingResponse(
            trickle(body, trickle_seconds), status_code=reply.status_code, headers=headers
        )
    if fault == "echo_key":
        key = presented_key(authorization)
        headers["X-Request-Id"] = f"req_{key}"
        body = echo_key(body, key)
    else:
        body = bad_charge(body, "-50" if fault == "credits_negative" else "NaN")
    return Response(body, status_code=reply.status_code, headers=headers)


def hostile_file(fault: str, data: bytes, media_type: str, trickle_seconds: float) -> Response:
    """An image download that never ends, or arrives a byte at a time."""
    stream = endless(data) if fault == "endless" else trickle(data, trickle_seconds)
    return StreamingResponse(stream, media_type=media_type)
