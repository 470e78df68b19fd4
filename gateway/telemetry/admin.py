"""The admin HTTP server on ``admin.address:port``: metrics, health, key management, config, OpenAPI.

Open: ``GET /metrics`` (Prometheus), ``GET /healthz``, ``GET /openapi.json`` (plano's own
endpoints, :mod:`gateway.auth.openapi`). Behind the admin key (``PLANO_ADMIN_KEY``, else
``auth.admin_key``; ``Authorization: Bearer`` or ``x-api-key``, compared in constant time):
``GET/POST /admin/keys``, ``DELETE /admin/keys/{id}`` (revoke), ``GET /admin/keys/{id}/usage``,
``GET /admin/config`` (the effective config, every secret masked) and ``POST /admin/reload``
(the hot-reload hook: :func:`set_reload_hook`; by default it sends this process SIGHUP, which
the reload machinery handles). Without an admin key configured ``/admin/*`` answers 403.
The web console (:mod:`gateway.console`) is served under ``/console/`` behind the same key.

It runs in the supervising process as one daemon thread with a tiny blocking
HTTP server: scrapes are rare, so it stays off the workers' event loops, and
in multiprocess mode it is the one place that sums every worker's values.
Default ``127.0.0.1:9092`` (Plano's metrics port); ``PLANO_ADMIN_ADDRESS`` /
``PLANO_ADMIN_PORT`` override the config, and port ``0`` turns it off. A port
that is taken is a warning, never a failed start.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("plano.admin")

DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 9092


#: The config the admin API describes (set by :func:`admin_endpoint`, which the runner calls with it).
_CONFIG = None
#: ``callable() -> str`` run by ``POST /admin/reload`` (the hot-reload owner may replace it).
_RELOAD_HOOK = None
#: Largest request body the admin API reads.
MAX_BODY = 64 * 1024


def set_reload_hook(hook) -> None:
    """Install what ``POST /admin/reload`` does (returns a short status text, raises to report a failure)."""
    global _RELOAD_HOOK
    _RELOAD_HOOK = hook


def _default_reload() -> str:
    import signal

    os.kill(os.getpid(), signal.SIGHUP)  # the reload machinery re-reads and validates plano.yaml
    return "reload requested (SIGHUP); see the log or 'plano reload' for the outcome"


def admin_endpoint(config, environ=None) -> tuple[str, int]:
    global _CONFIG
    if config is not None:
        _CONFIG = config
    env = os.environ if environ is None else environ
    admin = getattr(config, "admin", None) if config is not None else None
    address = env.get("PLANO_ADMIN_ADDRESS") or (admin.address if admin else None) or DEFAULT_ADDRESS
    port = env.get("PLANO_ADMIN_PORT")
    if port is not None and port.strip() != "":
        try:
            return address, int(port)
        except ValueError:
            log.warning("PLANO_ADMIN_PORT=%r is not a port number; using the config", port)
    return address, (admin.port if admin else DEFAULT_PORT)


class _Handler(BaseHTTPRequestHandler):
    server_version = "plano-admin"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = 10  # seconds a connection may stay silent (no slow client holds a thread for long)

    # -- open endpoints ----------------------------------------------------------------------

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            from gateway.telemetry.metrics import exposition

            try:
                body, content_type = exposition()
            except Exception as exc:  # a broken scrape must not kill the server
                log.warning("metrics exposition failed: %s", exc)
                self._send(500, b"metrics unavailable\n", "text/plain")
                return
            self._send(200, body, content_type)
        elif path == "/healthz":
            self._send(200, b'{"status":"ok"}', "application/json")
        elif path == "/openapi.json":
            from gateway.auth.openapi import openapi

            self._json(200, openapi(self.server.config))
        elif path.startswith("/admin/"):
            self._admin("GET", path)
        elif path == "/console" or path.startswith("/console/"):
            from gateway.console import serve_console  # the web console (its own admin-key check)

            serve_console(self, "GET", path)
        else:
            self._error(404, "not_found", f"Unknown path {path[:200]}")

    def do_POST(self) -> None:
        self._other("POST")

    def do_DELETE(self) -> None:
        self._other("DELETE")

    def do_PUT(self) -> None:
        self._other("PUT")

    def do_PATCH(self) -> None:
        self._other("PATCH")

    def _other(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        if path.startswith("/admin/"):
            self._admin(method, path)
            return
        if path == "/console" or path.startswith("/console/"):
            from gateway.console import serve_console

            serve_console(self, method, path)
            return
        self._drain()
        if path in ("/metrics", "/healthz", "/openapi.json"):
            self._error(405, "method_not_allowed", f"Method {method} is not allowed on {path}")
        else:
            self._error(404, "not_found", f"Unknown path {path[:200]}")

    # -- the admin API -----------------------------------------------------------------------

    def _admin(self, method: str, path: str) -> None:
        body = self._body()
        if body is None:
            return
        expected = self.server.admin_key()
        if not expected:
            self._error(403, "admin_disabled", "The admin API is off: set PLANO_ADMIN_KEY (or auth.admin_key).")
            return
        presented = _presented_key(self.headers)
        if presented is None or not hmac.compare_digest(presented.encode("utf-8", "replace"),
                                                        expected.encode("utf-8")):
            self._error(401, "invalid_admin_key", "A valid admin key is required (Authorization: Bearer <key>).")
            return
        from gateway.auth.admin_store import KeyError_

        try:
            self._route(method, path, body)
        except KeyError_ as exc:
            self._error(exc.status, "invalid_request" if exc.status == 400 else "not_found" if exc.status == 404
                        else "conflict", exc.message)
        except Exception as exc:  # the store is down, a bug: never a stack trace or a secret to the caller
            log.warning("admin %s %s failed: %s", method, path, type(exc).__name__)
            self._error(503, "admin_unavailable", f"The admin API could not complete the request "
                        f"({type(exc).__name__}); see the gateway log.")

    def _route(self, method: str, path: str, body: bytes) -> None:
        parts = [p for p in path.split("/") if p][1:]  # after "admin"
        store = self.server.key_store()
        if parts == ["keys"] and method == "GET":
            self._json(200, {"object": "list", "store": store.where, "data": store.list()})
        elif parts == ["keys"] and method == "POST":
            try:
                spec = json.loads(body or b"{}")
            except ValueError:
                self._error(400, "invalid_json", "The request body is not valid JSON.")
                return
            self._json(201, store.create(spec))
        elif len(parts) == 2 and parts[0] == "keys" and method == "DELETE":
            self._json(200, store.revoke(parts[1]))
        elif len(parts) == 3 and parts[0] == "keys" and parts[2] == "usage" and method == "GET":
            self._json(200, store.usage(parts[1]))
        elif parts == ["config"] and method == "GET":
            from gateway.auth.masking import masked_config

            self._json(200, masked_config(self.server.config))
        elif parts == ["reload"] and method == "POST":
            hook = _RELOAD_HOOK or _default_reload
            try:
                status = hook()
            except Exception as exc:
                self._error(400, "reload_failed", str(exc)[:2000])
                return
            self._json(202, {"status": str(status or "reload requested")})
        else:
            known = parts[:1] in (["keys"], ["config"], ["reload"])
            self._error(405 if known else 404, "method_not_allowed" if known else "not_found",
                        f"{method} {path[:200]} is not an admin endpoint")

    # -- plumbing ----------------------------------------------------------------------------

    def _body(self) -> bytes | None:
        length = self.headers.get("content-length")
        if self.headers.get("transfer-encoding"):
            self._error(411, "length_required", "Send a Content-Length.")
            self.close_connection = True
            return None
        try:
            size = int(length) if length else 0
        except ValueError:
            size = -1
        if size < 0 or size > MAX_BODY:
            self._error(413 if size > MAX_BODY else 400, "invalid_request", "Bad or too large Content-Length.")
            self.close_connection = True
            return None
        return self.rfile.read(size) if size else b""

    def _drain(self) -> None:
        try:
            size = int(self.headers.get("content-length") or 0)
        except ValueError:
            size = 0
        if 0 < size <= MAX_BODY:
            self.rfile.read(size)
        elif size:
            self.close_connection = True

    def _json(self, status: int, payload) -> None:
        self._send(status, json.dumps(payload, default=str).encode(), "application/json")

    def _error(self, status: int, code: str, message: str) -> None:
        self._json(status, {"error": {"message": message, "type": "admin_error", "code": code, "param": None}})

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args) -> None:  # scrapes are not worth a log line
        return


def _presented_key(headers) -> str | None:
    auth = headers.get("authorization")
    if auth:
        auth = auth.strip()
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip() or None
    key = headers.get("x-api-key")
    return key.strip() or None if key else None


class _Server(ThreadingHTTPServer):
    """The admin server: carries the config and a lazily built key store."""

    config = None
    _store = None

    def admin_key(self) -> str | None:
        key = os.environ.get("PLANO_ADMIN_KEY")
        if key:
            return key
        auth = getattr(self.config, "auth", None)
        return getattr(auth, "admin_key", None) if auth is not None else None

    def key_store(self):
        if self._store is None:
            from gateway.auth.admin_store import AdminKeyStore

            self._store = AdminKeyStore(self.config)
        return self._store


class AdminServer:
    def __init__(self, address: str, port: int, config=None) -> None:
        self.address = address
        self.port = port
        self.config = config if config is not None else _CONFIG
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Bind and serve in a daemon thread; False (with a warning) when the port cannot be bound."""
        if self.port == 0:
            return False
        server_cls = _Server
        if ":" in self.address:
            import socket

            class _V6(_Server):
                address_family = socket.AF_INET6

            server_cls = _V6
        try:
            self._server = server_cls((self.address, self.port), _Handler)
            self._server.config = self.config
        except OSError as exc:
            log.warning("admin server cannot bind %s:%s (%s); /metrics is not served", self.address, self.port,
                        exc.strerror or exc)
            return False
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="plano-admin", daemon=True)
        self._thread.start()
        log.info("admin server on http://%s:%s (/metrics, /healthz, /openapi.json, /admin/*)", self.address, self.port)
        return True

    def close_in_child(self) -> None:
        """In a forked worker: drop the inherited listening socket (the thread did not survive the fork)."""
        if self._server is not None:
            try:
                self._server.socket.close()
            except OSError:  # pragma: no cover
                pass
            self._server = None

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
