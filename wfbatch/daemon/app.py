"""The `/v1` API as a Starlette app: routes per concern, one error shape (`Problem`)."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from wfbatch.daemon import routes_commands, routes_events, routes_read
from wfbatch.daemon.context import DaemonContext
from wfbatch.daemon.responses import ApiProblem, problem_response
from wfbatch.engine.intake.control import CommandError, NotFound

log = logging.getLogger("wfbatch.daemon")


async def _api_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiProblem)
    return problem_response(exc.status, exc.error, exc.detail)


async def _command_error(request: Request, exc: Exception) -> Response:
    return problem_response(404 if isinstance(exc, NotFound) else 409, str(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return problem_response(exc.status_code, exc.detail)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return problem_response(500, "internal error in the wfbatch daemon (see its log)")


def build_app(ctx: DaemonContext) -> Starlette:
    app = Starlette(
        routes=[*routes_read.ROUTES, *routes_commands.ROUTES, *routes_events.ROUTES],
        exception_handlers={
            ApiProblem: _api_problem,
            CommandError: _command_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
    )
    app.state.ctx = ctx
    return app


