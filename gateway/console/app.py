"""Routing, authentication and response headers of the console (see :mod:`gateway.console`).

| path | |
|---|---|
| ``/console/`` | traffic: requests, errors and latency per listener, LLM traffic by model, recent requests and errors |
| ``/console/traces`` · ``/console/traces/{id}`` | recent traces · one trace's span tree (routing, filters, agents, LLM calls) |
| ``/console/routing`` | router decisions with their confidence and candidates, decision counts, route share |
| ``/console/tasks`` · ``/console/tasks/{id}`` | tasks of every agent listener · one task's steps and webhook deliveries |
| ``/console/keys`` | virtual keys (never their secrets) and their usage |
| ``/console/login`` · ``/console/logout`` | the admin-key form (sets the session cookie) · log out |

Every page but the login form and the two static files answers **401** without the admin key
(header or session cookie), **403** when no admin key is configured (as ``/admin/*`` does).
Responses carry a strict Content-Security-Policy (scripts and styles from this origin only, no
framing), ``no-store`` caching and ``nosniff``; a POST whose ``Origin`` is another site is refused.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from gateway.console import render, session, sources

log = logging.getLogger("plano.console")

STATIC = Path(__file__).resolve().parent / "static"
STATIC_FILES = {"console.css": "text/css; charset=utf-8", "console.js": "text/javascript; charset=utf-8"}
MAX_FORM = 16 * 1024
SECURITY_HEADERS = (
    ("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),  # not no-referrer: with it, browsers send "Origin: null" on form posts
    ("Cache-Control", "no-store"),
)
_TRACE_ID = re.compile(r"^[0-9a-f]{8,32}$")
_TASK_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


def handle(handler, method: str, path: str) -> None:
    try:
        _handle(handler, method, path)
    except Exception as exc:  # a bug or a broken source: a plain 500, never a stack trace or a secret
        log.warning("console %s %s failed: %s", method, path[:200], type(exc).__name__, exc_info=True)
        _send(handler, 500, render.message_page("Error", f"The console could not render this page "
                                                         f"({type(exc).__name__}); see the gateway log."))


def _handle(handler, method: str, path: str) -> None:
    if path == "/console":
        return _redirect(handler, "/console/")
    if method not in ("GET", "POST"):
        _drain(handler)
        return _send(handler, 405, render.message_page("Method not allowed", f"{method} is not used here."),
                     extra=(("Allow", "GET, POST"),))
    if path.startswith("/console/static/"):
        return _static(handler, method, path[len("/console/static/"):])
    admin_key = handler.server.admin_key()
    if not admin_key:
        _drain(handler)
        return _send(handler, 403, render.message_page(
            "Console off", "The console is off: set PLANO_ADMIN_KEY (or auth.admin_key) and restart plano."))
    if method == "POST":
        if not _same_origin(handler):
            _drain(handler)
            return _send(handler, 403, render.message_page("Refused", "A form from another site was refused."))
        if path == "/console/login":
            return _login(handler, admin_key)
        if path == "/console/logout":
            _drain(handler)
            session.revoke(session.cookie_value(handler.headers.get("cookie")))
            return _redirect(handler, "/console/login", cookie=session.clear_cookie())
        _drain(handler)
        return _send(handler, 405, render.message_page("Method not allowed", "The console is read-only."),
                     extra=(("Allow", "GET"),))
    if path == "/console/login":
        if _authenticated(handler, admin_key):
            return _redirect(handler, "/console/")
        return _send(handler, 200, render.login(next_path=_next(_query(handler).get("next"))))
    if not _authenticated(handler, admin_key):
        return _send(handler, 401, render.login("Log in with the admin key to see this page.", _next(handler.path)),
                     extra=(("WWW-Authenticate", 'Bearer realm="plano-console"'),))
    _page(handler, path)


# --------------------------------------------------------------------------- pages


def _page(handler, path: str) -> None:
    config = handler.server.config
    parts = [p for p in path.split("/") if p][1:]  # after "console"
    if not parts:
        data = sources.traffic(config)
        return _send(handler, 200, render.page("Traffic", "traffic", render.traffic(data), refresh=5))
    head = parts[0]
    if head == "traces" and len(parts) == 1:
        found, why = sources.traces(config)
        return _send(handler, 200, render.page("Traces", "traces", render.traces(found, why), refresh=5))
    if head == "traces" and len(parts) == 2 and _TRACE_ID.match(parts[1]):
        found, why = sources.traces(config, trace_id=parts[1], limit=1)
        if not found:
            return _send(handler, 404, render.page("Trace not found", "traces", render.note(
                why or f"The trace receiver has no trace {parts[1]} (it keeps the most recent ones only).")))
        return _send(handler, 200, render.page("Trace", "traces", render.trace_detail(found[0])))
    if head == "routing" and len(parts) == 1:
        data = sources.traffic(config)
        found, why = sources.traces(config)
        body = render.routing(data["snapshot"], sources.routing_spans(found), why)
        return _send(handler, 200, render.page("Routing", "routing", body, refresh=5))
    if head == "tasks" and len(parts) == 1:
        found, why = sources.tasks(config)
        return _send(handler, 200, render.page("Tasks", "tasks", render.tasks(found, why), refresh=3))
    if head == "tasks" and len(parts) == 2 and _TASK_ID.match(parts[1]):
        found, why = sources.task(config, parts[1])
        if found is None:
            return _send(handler, 404, render.page("Task not found", "tasks", render.note(why)))
        live = found.get("status") in ("pending", "running", "waiting")
        return _send(handler, 200, render.page("Task", "tasks", render.task_detail(found), refresh=2 if live else 0))
    if head == "keys" and len(parts) == 1:
        store = handler.server.key_store()
        found, why = sources.keys(store)
        return _send(handler, 200, render.page("Virtual keys", "keys", render.keys(found, why, store.where),
                                               refresh=10))
    _send(handler, 404, render.page("Not found", "", render.note(f"There is no console page at {path[:200]}.")))


# --------------------------------------------------------------------------- auth


def _authenticated(handler, admin_key: str) -> bool:
    from gateway.telemetry.admin import _presented_key

    presented = _presented_key(handler.headers)
    if presented is not None:
        return session.key_matches(presented, admin_key)
    return session.valid(session.cookie_value(handler.headers.get("cookie")), admin_key)


def _login(handler, admin_key: str) -> None:
    body = _form(handler)
    if body is None:
        return _send(handler, 413, render.message_page("Too large", "The login form was too large."))
    key = (body.get("key") or [""])[0].strip()
    target = _next((body.get("next") or [None])[0])
    if not session.key_matches(key or None, admin_key):
        log.warning("console: a login with a wrong admin key from %s", handler.client_address[0])
        return _send(handler, 401, render.login("That is not the admin key.", target))
    _redirect(handler, target, cookie=session.set_cookie(session.issue(admin_key)))


def _next(value) -> str:
    """Where to go after logging in: a console path only (no open redirect)."""
    if not isinstance(value, str):
        return "/console/"
    parts = urlsplit(value)
    path = parts.path
    if (parts.scheme or parts.netloc or not path.startswith("/console/") or "//" in path or "\\" in value
            or path.startswith(("/console/login", "/console/logout"))):
        return "/console/"
    return path


def _same_origin(handler) -> bool:
    origin = handler.headers.get("origin")
    if not origin:  # not a browser form (curl), or a browser that sends none: SameSite guards the cookie
        return True
    if origin == "null":  # sandboxed or opaque origins
        return False
    host = handler.headers.get("host")
    return bool(host) and urlsplit(origin).netloc.lower() == host.strip().lower()


# --------------------------------------------------------------------------- plumbing


def _query(handler) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(handler.path).query).items()}


def _form(handler) -> dict | None:
    try:
        size = int(handler.headers.get("content-length") or 0)
    except ValueError:
        size = -1
    if size < 0 or size > MAX_FORM or handler.headers.get("transfer-encoding"):
        handler.close_connection = True
        return None
    data = handler.rfile.read(size) if size else b""
    return parse_qs(data.decode("utf-8", "replace"), max_num_fields=20)


def _drain(handler) -> None:
    try:
        size = int(handler.headers.get("content-length") or 0)
    except ValueError:
        size = 0
    if 0 < size <= MAX_FORM:
        handler.rfile.read(size)
    elif size or handler.headers.get("transfer-encoding"):
        handler.close_connection = True


def _static(handler, method: str, name: str) -> None:
    if method != "GET" or name not in STATIC_FILES:
        _drain(handler)
        return _send(handler, 404, render.message_page("Not found", "No such file."))
    body = (STATIC / name).read_bytes()
    _send(handler, 200, body, STATIC_FILES[name], cache="no-cache")


def _redirect(handler, location: str, cookie: str | None = None) -> None:
    extra = [("Location", location)]
    if cookie:
        extra.append(("Set-Cookie", cookie))
    _send(handler, 303, b"", "text/plain; charset=utf-8", extra=extra)


def _send(handler, status: int, body, content_type: str = "text/html; charset=utf-8", *, extra=(),
          cache: str = "no-store") -> None:
    data = body.encode("utf-8") if isinstance(body, str) else body
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(data)))
    for name, value in SECURITY_HEADERS:
        handler.send_header(name, cache if name == "Cache-Control" else value)
    for name, value in extra:
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)
