"""How injected faults reach the wire.

A connection reset is real: the server protocol (see `server.py`) puts the connection's asyncio
transport into the ASGI scope; we set SO_LINGER to 0 and abort it, so the kernel sends a TCP RST
and the client sees "connection reset" (or "server disconnected") with no HTTP answer at all.
Served some other way (no transport in the scope), a reset is approximated by a bare 502.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import MutableMapping
from typing import Any

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
