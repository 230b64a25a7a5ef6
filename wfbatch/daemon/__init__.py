"""The daemon: the engine, an inbox watcher and the `/v1` HTTP API on a private Unix socket.

`run_daemon` is what `wfbatch daemon` runs; `build_app` is the API alone (for in-process tests).
"""

from wfbatch.daemon.app import build_app
from wfbatch.daemon.listener import SocketPathError, bind_unix_socket, check_socket_path
from wfbatch.daemon.runner import run_daemon

__all__ = ["SocketPathError", "bind_unix_socket", "build_app", "check_socket_path", "run_daemon"]
