"""The checks in front of every route (pure ASGI, so the event stream is not buffered):

1. the Host header names this server (127.0.0.1:PORT or localhost:PORT): a page on another site
   that rebinds its DNS name to 127.0.0.1 gets 403 before anything is read;
2. a live session cookie, except on /login: without it 401 (a page that says how to log in, or a
   JSON problem for the API);
3. on anything but GET/HEAD, an Origin of this server and the session's CSRF token in the
   `X-CSRF-Token` header: a form or script elsewhere changes nothing (403).
Every answer carries headers that keep the pages to themselves (CSP without inline scripts, no
framing, no referrer, no caching)."""

from __future__ import annotations

import json
from collections.abc import Callable
from http.cookies import CookieError, SimpleCookie
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wfbatch.web.access import (
    CSRF_HEADER,
    SESSION_COOKIE,
    Sessions,
    allowed_hosts,
    allowed_origins,
    same_secret,
)

OPEN_PATHS = frozenset({"/login"})
SAFE_METHODS = frozenset({"GET", "HEAD"})
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; img-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
     b"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]
LOGIN_HINT = (
    "<!doctype html><html><head><meta charset=utf-8><title>wfbatch: log in</title>"
    "<meta name=viewport content='width=device-width,initial-scale=1'></head><body>"
    "<h1>wfbatch</h1><p>Not logged in. Run <code>wfbatch web</code> on the machine the daemon runs on "
    "and open the login URL it prints (it sets a cookie for this browser).</p></body></html>"
)


def _headers(scope: Scope) -> dict[str, str]:
    return {key.decode("latin-1"): value.decode("latin-1") for key, value in scope.get("headers", [])}


def session_of(headers: dict[str, str]) -> str | None:
    cookie = SimpleCookie()
    try:
        cookie.load(headers.get("cookie", ""))
    except CookieError:
        return None
    morsel = cookie.get(SESSION_COOKIE)
    return morsel.value if morsel is not None else None


class Guard:
    def __init__(self, app: ASGIApp, sessions: Sessions, port: Callable[[], int]) -> None:
        """`port`: the port the server is bound to (known only once it listens when 0 was asked)."""
        self.app = app
        self.sessions = sessions
        self.port = port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        refusal = self._refusal(scope)
        if refusal is not None:
            status, body, content_type = refusal
            await send_secured({"type": "http.response.start", "status": status,
                                "headers": [(b"content-type", content_type)]})
            await send_secured({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send_secured)

    def _refusal(self, scope: Scope) -> tuple[int, bytes, bytes] | None:
        headers = _headers(scope)
        port = self.port()
        if headers.get("host", "") not in allowed_hosts(port):
            return _problem(403, f"refused: this server answers only to 127.0.0.1:{port}, localhost:{port}")
        path: str = scope.get("path", "")
        if path in OPEN_PATHS:
            return None
        csrf = self.sessions.csrf_of(session_of(headers))
        if csrf is None:
            if path.startswith("/api/") or "text/html" not in headers.get("accept", ""):
                return _problem(401, "not logged in: open the login URL `wfbatch web` prints")
            return 401, LOGIN_HINT.encode(), b"text/html; charset=utf-8"
        method: str = scope.get("method", "GET")
        if method not in SAFE_METHODS:
            if headers.get("origin") not in allowed_origins(port):
                return _problem(403, "refused: a change must come from this server's own pages (Origin)")
            if not same_secret(headers.get(CSRF_HEADER), csrf):
                return _problem(403, "refused: missing or wrong CSRF token (reload the page)")
        state: dict[str, Any] = scope.setdefault("state", {})
        state["csrf"] = csrf
        return None


def _problem(status: int, error: str) -> tuple[int, bytes, bytes]:
    return status, json.dumps({"error": error}).encode(), b"application/json"
