"""Process logging: one line per record, level from ``LOG_LEVEL``, never a secret.

* ``LOG_LEVEL`` = debug | info (default) | warning | error.
* ``LOG_FORMAT=json`` writes one JSON object per record (``time``, ``level``,
  ``logger``, ``message``, ``request_id``, ``trace_id``, ``exc``); the default is
  human text ``[time][LEVEL] logger: message``.
* Every record passes :class:`RedactFilter` on the way out: anything that looks
  like a key, a ``Bearer`` token or an ``Authorization`` value — and every
  literal secret the config holds — is replaced by ``[REDACTED]``, whoever
  logged it (our code, uvicorn, aiohttp, the OpenTelemetry SDK).
* ``request_id`` / ``trace_id`` come from the request being handled
  (:mod:`gateway.telemetry.context`), so log lines join up with access-log
  lines and traces.

Per-request access logs are separate: :mod:`gateway.telemetry.access_log`.
"""

from __future__ import annotations

import logging
import os
import sys
import time

TEXT_FORMAT = "[%(asctime)s][%(levelname)s] %(name)s: %(message)s"


class RedactFilter(logging.Filter):
    """Scrub credentials from the formatted message, exception text and stack; add request/trace ids."""

    def filter(self, record: logging.LogRecord) -> bool:
        from gateway.telemetry.context import ids
        from gateway.telemetry.redact import redact_secrets

        try:
            message = record.getMessage()
        except Exception:  # a bad format string still gets logged, scrubbed
            message = f"{record.msg} {record.args}"
        record.msg = redact_secrets(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_secrets(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_secrets(record.stack_info)
        if not hasattr(record, "request_id"):
            record.request_id, record.trace_id = ids()
        return True


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        import orjson

        out = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", "")
        if rid:
            out["request_id"] = rid
        tid = getattr(record, "trace_id", "")
        if tid:
            out["trace_id"] = tid
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        return orjson.dumps(out, default=str).decode()


def log_level(environ=None) -> int:
    env = os.environ if environ is None else environ
    level = env.get("LOG_LEVEL", "info").strip().upper()
    if level == "WARN":
        level = "WARNING"
    value = logging.getLevelName(level)
    return value if isinstance(value, int) else logging.INFO


def make_handler(stream=None, environ=None) -> logging.Handler:
    env = os.environ if environ is None else environ
    handler = logging.StreamHandler(stream or sys.stderr)
    if env.get("LOG_FORMAT", "").strip().lower() == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactFilter())
    return handler


def setup_logging(stream=None) -> None:
    handler = make_handler(stream)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(log_level())
    logging.getLogger("uvicorn.error").setLevel(max(root.level, logging.WARNING))
