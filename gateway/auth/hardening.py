"""Request-shape limits at the edge: JSON nesting depth, and the error envelope per client API.

**JSON depth.** orjson refuses nesting beyond 1024 levels, but code that walks a request
recursively (filters, translators, redaction) would hit Python's recursion limit (1000)
first and fail with a 500. The edge refuses bodies nested deeper than the listener's
``max_json_depth`` (default 64) with a 400 before any of that runs. The check costs two
``bytes.count`` calls for a typical body (fewer brackets than the limit: it cannot be
deeper); only a body with more brackets than the limit is measured, with C-speed passes
(strings removed by one regex, everything but brackets dropped by ``bytes.translate``,
then innermost ``{}``/``[]`` pairs removed once per level).
"""

from __future__ import annotations

import re

import orjson

from gateway.listeners.http import DEFAULT_MAX_JSON_DEPTH  # noqa: F401 - re-exported for the edge

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_PAIR = re.compile(rb"\{\}|\[\]")
_KEEP = b"[]{}"
_DROP = bytes(b for b in range(256) if b not in _KEEP)


def json_too_deep(body: bytes, limit: int) -> bool:
    """True when ``body`` (JSON text) nests objects/arrays deeper than ``limit`` levels."""
    if body.count(b"{") + body.count(b"[") <= limit:
        return False
    brackets = _STRING.sub(b"", body).translate(None, _DROP)
    for _ in range(limit):
        if not brackets:
            return False
        brackets, n = _PAIR.subn(b"", brackets)
        if n == 0:  # unbalanced (invalid JSON): the parser will say so
            return False
    return bool(brackets)


try:  # the wire layer's helpers when present (Anthropic's envelope, per-status types)
    from gateway.wire.errors import anthropic_type as _anthropic_type
except Exception:  # pragma: no cover - older tree
    _anthropic_type = None

_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error"}


def error_body(err, path: str, rid: str | None = None) -> bytes:
    """``err`` (a GatewayError) in the envelope of the client API served at ``path``: Anthropic's
    ``{"type": "error", "error": {...}}`` for ``/v1/messages``, OpenAI's ``{"error": {...}}`` otherwise."""
    if path.startswith("/v1/messages"):
        kind = _anthropic_type(err.status) if _anthropic_type else _ANTHROPIC_TYPES.get(err.status, "api_error")
        body = {"type": "error", "error": {"type": kind, "message": err.message}}
        if rid:
            body["request_id"] = rid
        return orjson.dumps(body)
    return err.openai_body()
