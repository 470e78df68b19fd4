"""The admin HTTP server: ``GET /metrics`` (Prometheus) and ``GET /healthz`` on ``admin.address:port``.

It runs in the supervising process as one daemon thread with a tiny blocking
HTTP server: scrapes are rare, so it stays off the workers' event loops, and
in multiprocess mode it is the one place that sums every worker's values.
Default ``127.0.0.1:9092`` (Plano's metrics port); ``PLANO_ADMIN_ADDRESS`` /
``PLANO_ADMIN_PORT`` override the config, and port ``0`` turns it off. A port
that is taken is a warning, never a failed start.
"""

from __future__ import annotations

import logging
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("plano.admin")

DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 9092


def admin_endpoint(config, environ=None) -> tuple[str, int]:
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
        else:
            self._send(404, b"not found\n", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args) -> None:  # scrapes are not worth a log line
        return


class AdminServer:
    def __init__(self, address: str, port: int) -> None:
        self.address = address
        self.port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Bind and serve in a daemon thread; False (with a warning) when the port cannot be bound."""
        if self.port == 0:
            return False
        server_cls = ThreadingHTTPServer
        if ":" in self.address:
            import socket

            class _V6(ThreadingHTTPServer):
                address_family = socket.AF_INET6

            server_cls = _V6
        try:
            self._server = server_cls((self.address, self.port), _Handler)
        except OSError as exc:
            log.warning("admin server cannot bind %s:%s (%s); /metrics is not served", self.address, self.port,
                        exc.strerror or exc)
            return False
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="plano-admin", daemon=True)
        self._thread.start()
        log.info("admin server on http://%s:%s (/metrics, /healthz)", self.address, self.port)
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
