"""The review gallery and queue in the browser, served by the daemon process on 127.0.0.1.

It is one more client of the daemon's `/v1` API (over its socket, through `DaemonClient`): a review,
retry or cancel here is the very command the CLI and the TUI send. `server.web_sidecar` is what the
daemon runs when `[web] enabled = true`; `access` holds the login token and the session checks."""

from wfbatch.web.access import read_server_file, read_token
from wfbatch.web.app import build_web_app
from wfbatch.web.server import web_sidecar

__all__ = ["build_web_app", "read_server_file", "read_token", "web_sidecar"]
