"""What the web routes share, hung on the Starlette app's state."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.templating import Jinja2Templates

from wfbatch.client import DaemonClient
from wfbatch.web.access import Sessions


@dataclass
class WebContext:
    client: DaemonClient
    """The daemon's own API over its socket: the web app is one more client of it."""
    sessions: Sessions
    token: str
    output_root: Path
    """HOME/output: no image outside it is ever served."""
    templates: Jinja2Templates
    port: int = 0
    """Where the server listens, set once it is bound."""


def web_context(request: Request) -> WebContext:
    ctx = request.app.state.web
    if not isinstance(ctx, WebContext):  # pragma: no cover - a wiring mistake
        raise RuntimeError("the web app has no context")
    return ctx


def csrf_of(request: Request) -> str:
    """The session's CSRF token the guard found (pages put it in a meta tag for the scripts)."""
    value = request.scope.get("state", {}).get("csrf", "")
    return value if isinstance(value, str) else ""
