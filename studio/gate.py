"""The login boundary: a logged-out request gets the login form and nothing else.

Gradio guards its data routes (/config, /gradio_api/info, /queue/...) with a login check, but its page route `/`
still embeds the whole API description (every endpoint, with dropdown choices such as adapter names and dataset
paths) in the HTML it serves a logged-out visitor. `LoginGate` sits in front of every route of Gradio's app:
while the app asks for a login (Gradio's `auth` is set) and the request carries no live session cookie, it lets
through only the login form's own needs (static assets, the login POST, Gradio's startup ping), answers `/`
with a login page rendered from Gradio's template with an empty config, and answers everything else 401.
/healthz (numbers only) stays public; /metrics checks its own credentials; /v1 and /api/v1 check API keys.

Installed through `launch(app_kwargs={"middleware": [gate_middleware(...)]})`, so it guards the very first request.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request

from engines.paths import is_inside

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]

API = "/gradio_api"
# What a logged-out browser needs to draw and submit the login form (code and theme only, no app data).
PUBLIC_EXACT = frozenset({
    "/login", "/login/", "/logout", "/favicon.ico", "/theme.css", "/robots.txt", "/manifest.json",
    f"{API}/theme.css", f"{API}/login_check", f"{API}/login_check/",
    f"{API}/startup-events",  # Gradio's own launch() pings it without a cookie to start its queue
    "/healthz", "/metrics",  # numbers only; /metrics asks for an account's credentials itself
})
PUBLIC_PREFIXES = ("/assets/", "/static/", "/svelte/", "/pwa_icon")
# The APIs: every route there asks for an API key itself (api.auth). Their description and docs page need a live
# session (a logged-in browser) or a key, so a logged-out visitor learns nothing from them either.
API_PREFIXES = ("/v1/", "/api/v1/")
API_DOCS = frozenset({"/api/v1/docs", "/api/v1/openapi.json"})
LOGIN_PAGES = frozenset({"/", ""})
STILL_ALLOWED_TTL_S = 5.0  # how long "this session's user is still enabled" is trusted before asking again
LOGIN_CHECK_TTL_S = 2.0  # how often a studio without logins looks whether its first account appeared


def _gradio_app(scope: Scope) -> Any:
    return scope.get("app")  # Starlette puts the outermost app (Gradio's App) here before any middleware runs


def _session_user(app: Any, conn: HTTPConnection) -> tuple[str | None, str | None]:
    """(token, user name) of a live Gradio session cookie, else (None, None)."""
    cookie_id = getattr(app, "cookie_id", None)
    tokens = getattr(app, "tokens", None)
    if not cookie_id or tokens is None:
        return None, None
    for name in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"):
        token = conn.cookies.get(name)
        if token and token in tokens:
            return token, tokens[token]
    return None, None


def login_page(request: Request, app: Any) -> Any:
    """Gradio's own index page with the config it gives a logged-out visitor, and no API description."""
    from gradio import route_utils
    from gradio.routes import templates

    blocks = app.get_blocks()
    root = route_utils.get_root_url(request=request, route_path="/",
                                    root_path=app.root_path or request.scope.get("root_path") or blocks.custom_mount_path)
    config = {"auth_required": True, "auth_message": blocks.auth_message, "space_id": blocks.space_id, "root": root,
              "page": {"": {"layout": {}}}, "pages": [""], "components": [], "dependencies": [], "current_page": ""}
    template = "frontend/share.html" if blocks.share else "frontend/index.html"
    return templates.TemplateResponse(request=request, name=template,
                                      context={"base_url": "./", "config": config, "gradio_api_info": {}})


class LoginGate:
    """ASGI middleware in front of Gradio's routes; see the module docstring.

    `auth` and `login_now` let a studio started without accounts ask for logins as soon as the first account exists
    (added in the UI or from the command line): from then on Gradio's `auth` is set, and it is never switched off."""

    def __init__(self, app: ASGIApp, still_allowed: Callable[[str], Any] | None = None,
                 auth: Callable[[str, str], Any] | None = None, login_now: Callable[[], bool] | None = None,
                 private_roots: tuple[Path, ...] = ()) -> None:
        self.app = app
        self.private_roots = private_roots
        self.still_allowed = still_allowed
        self.auth = auth
        self.login_now = login_now
        self._checked: dict[str, tuple[float, Any]] = {}
        self._token_version: dict[str, str] = {}  # session token → the credentials version it logged in with
        self._login_checked = (float("-inf"), False)

    def _switch_on(self, app: Any) -> bool:
        """Whether Gradio asks for logins now; turns it on once accounts appeared (checked every few seconds)."""
        if getattr(app, "auth", None) is not None or getattr(app, "auth_dependency", None) is not None:
            return True
        if self.auth is None or self.login_now is None:
            return False
        now = time.monotonic()
        if now - self._login_checked[0] > LOGIN_CHECK_TTL_S:
            self._login_checked = (now, bool(self.login_now()))
        if self._login_checked[1]:
            app.auth = self.auth  # Gradio's routes read it on every request
        return self._login_checked[1]

    def _user_ok(self, name: str, token: str) -> bool:
        """Whether a session may still act: its user is enabled and their password has not changed since the session
        began (a reset ends stolen sessions). Checked again every few seconds; a new session is checked at once."""
        if self.still_allowed is None:
            return True
        now = time.monotonic()
        hit = self._checked.get(name)
        first_sight = token not in self._token_version
        if hit is None or first_sight or now - hit[0] > STILL_ALLOWED_TTL_S:
            hit = (now, self.still_allowed(name))
            self._checked[name] = hit
        if not hit[1]:
            return False
        if first_sight:
            self._token_version[token] = hit[1]
        return self._token_version[token] == hit[1] if isinstance(hit[1], str) else True

    def _private_file(self, scope: Scope) -> bool:
        """A direct `file=` request for something in the studio's own folders (a person's exported chats, an archive).

        Gradio copies every file a handler returns into its own cache and the page fetches that copy, so nothing
        there is ever needed by path: refusing it keeps one logged-in person from guessing another's export."""
        if not self.private_roots:
            return False
        path = unquote(scope.get("path", "") + "?" + scope.get("query_string", b"").decode("latin-1"))
        _, sep, target = path.partition("file=")
        if not sep:
            return False
        return is_inside(target.split("?", 1)[0], self.private_roots)

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and self._private_file(scope):
            from starlette.responses import Response

            await Response("Not found", status_code=404)(scope, receive, send)
            return
        app = _gradio_app(scope)
        if scope["type"] not in ("http", "websocket") or app is None or not self._switch_on(app):
            await self.app(scope, receive, send)  # no login asked: nothing to guard
            return
        conn = HTTPConnection(scope)
        token, user = _session_user(app, conn)
        if token is not None and self._user_ok(user, token):
            await self.app(scope, receive, send)
            return
        if token is not None:
            app.tokens.pop(token, None)  # a disabled account's (or a reset password's) session ends here
            self._token_version.pop(token, None)
        path = scope.get("path", "")
        if path.startswith(API_PREFIXES) and (path not in API_DOCS or b"authorization" in dict(scope.get("headers") or [])):
            await self.app(scope, receive, send)
            return
        if path in PUBLIC_EXACT or path.startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        request = Request(scope, receive)
        if path in LOGIN_PAGES and request.method in ("GET", "HEAD"):
            response = login_page(request, app)
        else:
            from starlette.responses import Response

            body = json.dumps({"detail": {"error": "Not authenticated", "auth_message": "Log in first."}})
            response = Response(body, status_code=401, media_type="application/json")
        await response(scope, receive, send)


def gate_middleware(still_allowed: Callable[[str], Any] | None = None, *, auth: Callable[[str, str], Any] | None = None,
                    login_now: Callable[[], bool] | None = None, private_roots: tuple[Path, ...] = ()) -> Middleware:
    """The gate for `launch(app_kwargs={"middleware": [...]})`: `still_allowed(name)` (falsy: disabled; a string:
    the credentials version) ends disabled users' sessions and sessions older than a password change;
    with `auth` (Gradio's login check) and `login_now()`, logins start being asked once the first account exists."""
    return Middleware(LoginGate, still_allowed=still_allowed, auth=auth, login_now=login_now, private_roots=private_roots)
