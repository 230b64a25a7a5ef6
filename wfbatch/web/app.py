"""The web app as a Starlette app: the guard in front, pages, actions and static files behind."""

from __future__ import annotations

import logging
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from wfbatch.client import ApiError, DaemonClient, DaemonUnavailable
from wfbatch.web import routes_actions, routes_gallery, routes_login, routes_queue
from wfbatch.web.access import Sessions
from wfbatch.web.context import WebContext
from wfbatch.web.guard import Guard

log = logging.getLogger("wfbatch.web")
HERE = Path(__file__).parent


def _problem(status: int, error: str) -> Response:
    return JSONResponse({"error": error}, status_code=status)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _problem(exc.status, exc.error)


async def _unavailable(request: Request, exc: Exception) -> Response:
    return _problem(503, "the daemon is stopping or gone; reload once it runs again")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _problem(exc.status_code, str(exc.detail))


async def _internal(request: Request, exc: Exception) -> Response:
    log.error("web: %s %s failed", request.method, request.url.path, exc_info=exc)
    return _problem(500, "internal error in the wfbatch web app (see the daemon's log)")


def build_web_app(client: DaemonClient, *, token: str, output_root: Path) -> tuple[Starlette, WebContext]:
    """The app and its context (set `context.port` once the server is bound: the guard needs it)."""
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    ctx = WebContext(
        client=client, sessions=Sessions(), token=token, output_root=output_root, templates=templates
    )
    app = Starlette(
        routes=[
            *routes_login.ROUTES,
            *routes_gallery.ROUTES,
            *routes_queue.ROUTES,
            *routes_actions.ROUTES,
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        ],
        exception_handlers={
            ApiError: _api_error,
            DaemonUnavailable: _unavailable,
            HTTPException: _http_error,
            Exception: _internal,
        },
    )
    app.state.web = ctx
    app.add_middleware(Guard, sessions=ctx.sessions, port=lambda: ctx.port)
    return app, ctx
