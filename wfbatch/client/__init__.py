"""The daemon's client: HTTP/JSON over its Unix socket. The CLI and the TUI talk to the daemon only
through this package; it never imports the daemon, the engine or the store."""

from wfbatch.client.client import ApiError, DaemonClient, DaemonUnavailable, VersionMismatch
from wfbatch.client.locate import socket_path_for
from wfbatch.client.peer import UntrustedDaemon

__all__ = [
    "ApiError",
    "DaemonClient",
    "DaemonUnavailable",
    "UntrustedDaemon",
    "VersionMismatch",
    "socket_path_for",
]
