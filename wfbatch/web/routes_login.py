"""Login (the token from `wfbatch web` traded for a session cookie) and logout."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from wfbatch.web.access import SESSION_COOKIE, same_secret
from wfbatch.web.context import web_context
from wfbatch.web.guard import LOGIN_HINT, session_of


async def login(request: Request) -> Response:
    ctx = web_context(request)
    if not same_secret(request.query_params.get("token"), ctx.token):
        return Response(LOGIN_HINT, status_code=401, media_type="text/html")
    session, _ = ctx.sessions.create()
    # 303 to the gallery: the token leaves the address bar (and the history's last entry).
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict", path="/")
    return response


async def logout(request: Request) -> Response:
    ctx = web_context(request)
    ctx.sessions.end(session_of({"cookie": request.headers.get("cookie", "")}))
    response = JSONResponse({"message": "logged out"})
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


async def favicon(request: Request) -> Response:
    """Browsers ask for one on every page: a quiet empty answer rather than a 404 in the console."""
    return Response(status_code=204)


ROUTES = [
    Route("/login", login, methods=["GET"]),
    Route("/api/logout", logout, methods=["POST"]),
    Route("/favicon.ico", favicon, methods=["GET"]),
]
