"""One JSON line per request, written by a background thread so the event loop never waits on I/O.

The request path formats its line (one ``orjson.dumps``, ~2 µs) and appends it
to a deque: no syscall, no thread wake-up. The writer thread wakes every 100 ms
and writes what piled up with one ``os.write`` on an ``O_APPEND`` descriptor, so
lines from several worker processes never interleave mid-line. The writer does
no Python work beyond that: a second busy Python thread in a worker fights the
event loop for the GIL (waking it per request cost ~10% throughput in a wrk run). Destination: ``PLANO_ACCESS_LOG``
(a file path; ``-`` or unset = stderr; ``off`` disables it).

Line fields: ``time`` (UTC, ms), ``type`` ("access"), ``listener``, ``method``, ``path``,
``status``, ``duration_ms``, ``upstream``, ``model``, ``agents``, ``request_id``,
``trace_id``, ``bytes_in``, ``bytes_out`` (and ``error`` when the request failed, including a
stream that broke after its 200 went out: ``status`` is what the client was sent, ``error`` says
how it ended).
Client-controlled strings (path, model) go through the secret scrubber.
"""

from __future__ import annotations

import collections
import logging
import os
import sys
import threading
import time

import orjson

from gateway.telemetry.redact import redact_secrets

log = logging.getLogger("plano.access")

_MAX_PENDING = 100_000  # beyond this, lines are dropped rather than growing memory without bound
FLUSH_EVERY = 0.1

FIELDS = ("time", "type", "listener", "method", "path", "status", "duration_ms", "upstream", "model", "agents",
          "request_id", "trace_id", "bytes_in", "bytes_out")


def destination(environ=None) -> str | None:
    """The configured target: ``None`` (off), ``"-"`` (stderr) or a file path."""
    env = os.environ if environ is None else environ
    value = (env.get("PLANO_ACCESS_LOG") or "-").strip()
    if value.lower() in ("off", "0", "false", "no", "none", ""):
        return None
    return value


class AccessLog:
    def __init__(self, target: str | None = "-") -> None:
        self.target = target
        self.enabled = target is not None
        self._pending: collections.deque = collections.deque()
        self._stop = threading.Event()
        self._dropped = 0
        self._fd = -1
        self._own_fd = False
        self._thread: threading.Thread | None = None
        if self.enabled:
            self._open()

    def _open(self) -> None:
        if self.target in ("-", "stderr"):
            self._fd = sys.stderr.fileno() if hasattr(sys.stderr, "fileno") else 2
        else:
            os.makedirs(os.path.dirname(os.path.abspath(self.target)) or ".", exist_ok=True)
            self._fd = os.open(self.target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            self._own_fd = True
        self._thread = threading.Thread(target=self._run, name="plano-access-log", daemon=True)
        self._thread.start()

    def write(self, t: float, listener: str, method: str, path: str, status: int | None, duration_ms: float,
              upstream: str | None, model: str | None, agents, request_id: str, trace_id: str, bytes_in: int,
              bytes_out: int, error: str | None = None) -> None:
        """Format one line and queue it (called on the event loop; no I/O)."""
        if not self.enabled:
            return
        if len(self._pending) >= _MAX_PENDING:
            self._dropped += 1
            return
        self._pending.append(format_line((t, listener, method, path, status, duration_ms, upstream, model, agents,
                                          request_id, trace_id, bytes_in, bytes_out, error)))

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_EVERY):
            self._drain()
        self._drain()

    def _drain(self) -> None:
        pending = self._pending
        while pending:
            lines = []
            pop = pending.popleft
            try:
                for _ in range(4096):
                    lines.append(pop())
            except IndexError:
                pass
            if lines:
                self._emit(b"".join(lines))

    def _emit(self, data: bytes) -> None:
        try:
            while data:
                written = os.write(self._fd, data)
                data = data[written:]
        except OSError:  # a closed stderr / full disk must not take the worker down
            pass

    def close(self, timeout: float = 2.0) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout)
        self._thread = None
        if self._own_fd:
            try:
                os.close(self._fd)
            except OSError:  # pragma: no cover
                pass
        if self._dropped:
            log.warning("access log dropped %d lines (writer could not keep up)", self._dropped)


_clean: dict[str, str] = {}
_second = [0, ""]


def _scrubbed(text: str) -> str:
    """Paths and model names repeat: scrub each distinct value once (bounded cache)."""
    found = _clean.get(text)
    if found is None:
        found = redact_secrets(text)
        if len(_clean) < 4096:
            _clean[text] = found
    return found


def _timestamp(t: float) -> str:
    second = int(t)
    if _second[0] != second:
        _second[0] = second
        _second[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{_second[1]}.{int(t * 1000) % 1000:03d}Z"


def format_line(entry: tuple) -> bytes:
    (t, listener, method, path, status, duration_ms, upstream, model, agents, request_id, trace_id, bytes_in,
     bytes_out, error) = entry
    record = {
        "time": _timestamp(t),
        "type": "access",
        "listener": listener,
        "method": method,
        "path": _scrubbed(path) if path else path,
        "status": status,
        "duration_ms": round(duration_ms, 3),
        "upstream": upstream,
        "model": _scrubbed(model) if model else model,
        "agents": list(agents) if agents else None,
        "request_id": request_id,
        "trace_id": trace_id or None,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
    }
    if error:
        record["error"] = redact_secrets(error)[:300]
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
