"""Small ASGI helpers shared by every listener: bodies with a size limit, responses, headers.

Listeners are raw ASGI on purpose: this is the hot path, and a framework's routing,
middleware stack and request objects cost measurable microseconds per request
(see bench/README.md). Everything here allocates as little as possible.
"""

from __future__ import annotations

from random import getrandbits as _getrandbits
from typing import Any, Awaitable, Callable

from gateway.listeners.errors import GatewayError

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON_CT = (b"content-type", b"application/json")

#: A listener's ``max_json_depth`` when its config does not say (see :mod:`gateway.auth.hardening`).
DEFAULT_MAX_JSON_DEPTH = 64
SSE_CT = (b"content-type", b"text/event-stream")


def header(scope: Scope, name: bytes) -> bytes | None:
    """First value of a request header (``name`` lower-case, as ASGI delivers them)."""
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def request_id(scope: Scope) -> str:
    """The client's ``x-request-id`` when it sent a sane one, else a fresh UUID4."""
    rid = header(scope, b"x-request-id")
    if rid and 0 < len(rid) <= 200 and rid.isascii():
        return rid.decode("ascii")
    return new_request_id()


def new_request_id() -> str:
    """A random UUID4 string, formatted by hand (``str(uuid.uuid4())`` is several times slower).

    Request ids must be unique, not secret: the bits come from the ``random`` module,
    which seeds itself from the OS and again in every forked worker, not from a
    ``getrandom`` system call per request.
    """
    h = (_getrandbits(128) & _UUID4_MASK | _UUID4_BITS).to_bytes(16).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_UUID4_MASK = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID4_BITS = (0x4000 << 64) | (0x8000 << 48)


async def read_body(scope: Scope, receive: Receive, limit: int, depth: int | None = None) -> bytes:
    """Read the whole request body, refusing more than ``limit`` bytes with a 413.

    A declared Content-Length over the limit is refused before reading more than the first
    message; the server discards the unread rest of the body, so the client still gets the 413.
    ``depth``: refuse (400 ``json_too_deep``) a JSON body nested deeper than this — the
    listener's ``max_json_depth``, checked here for listeners that have no edge middleware
    in front of them (see :func:`too_deep`).
    """
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body"):  # the whole body arrived in one message (small bodies: the common case)
        if len(body) > limit:
            raise _too_large(len(body), limit)
        if depth is not None and body.count(b"{") + body.count(b"[") > depth:
            too_deep(body, depth)
        return body
    # More is coming: a declared length over the limit is refused before reading the rest.
    declared = header(scope, b"content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise GatewayError(400, "Invalid Content-Length header", code="invalid_request") from None
        if size > limit:
            raise _too_large(size, limit)
    parts = [body]
    total = len(body)
    while message.get("more_body"):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise _too_large(total, limit)
        parts.append(chunk)
    body = b"".join(parts)
    if depth is not None and body.count(b"{") + body.count(b"[") > depth:
        too_deep(body, depth)
    return body


def too_deep(body: bytes, depth: int) -> None:
    """Raise the 400 for a body nested deeper than ``depth`` (the caller saw more brackets than
    ``depth``, the only case in which it can be; the exact measure is in :mod:`gateway.auth.hardening`)."""
    from gateway.auth.hardening import json_too_deep

    if json_too_deep(body, depth):
        raise GatewayError(400, f"The request body nests JSON deeper than this listener's limit of {depth} levels.",
                           code="json_too_deep")


class ClientDisconnected(Exception):
    """The client went away before the request was complete."""


def _too_large(size: int, limit: int) -> GatewayError:
    return GatewayError(
        413,
        f"Request body of {size} bytes exceeds this listener's limit of {limit} bytes",
        code="request_too_large",
    )


async def send_body(send: Send, status: int, body: bytes, headers: Headers) -> None:
    """Send a complete response with Content-Length.

    An error answer (status >= 400) is scrubbed of secrets first: an upstream that echoes the key
    plano sent it must not hand it to the client, and every complete answer of the model path
    leaves through here (success answers pass untouched, at the cost of one comparison).
    """
    if status >= 400:
        body = scrub_error_body(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def scrub_error_body(body: bytes) -> bytes:
    """``body`` without registered keys and credential-looking strings (see :mod:`gateway.telemetry.redact`)."""
    from gateway.telemetry.redact import redact_secrets

    text = body.decode("utf-8", "replace")
    clean = redact_secrets(text)
    return body if clean == text else clean.encode()


async def send_error(send: Send, err: GatewayError, rid: str | None = None) -> None:
    headers: Headers = [JSON_CT]
    if rid:
        headers.append((b"x-request-id", rid.encode()))
    if err.headers:
        headers.extend(err.headers)
    await send_body(send, err.status, err.openai_body(), headers)


async def healthz(scope: Scope, receive: Receive, send: Send) -> None:
    """200 ``{"status":"ok"}``; with ``x-plano-instance: <$PLANO_INSTANCE_ID>`` when this process was given an
    instance id (``plano up`` does), so a caller can tell this gateway from another process on the port."""
    headers = _health_headers
    if headers is None:
        headers = _health_headers_from_env()
    await send_body(send, 200, b'{"status":"ok"}', headers)


_health_headers: Headers | None = None


def _health_headers_from_env() -> Headers:
    global _health_headers
    import os

    instance = os.environ.get("PLANO_INSTANCE_ID", "")
    headers: Headers = [JSON_CT]
    if instance and len(instance) <= 128 and instance.isascii() and instance.isprintable():
        headers.append((b"x-plano-instance", instance.encode("ascii")))
    _health_headers = headers
    return headers


async def drain(receive: Receive) -> None:
    """Consume a request body we do not need (keeps the connection reusable)."""
    message = await receive()
    while message.get("more_body"):
        message = await receive()


_CORS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
    (b"access-control-allow-headers", b"Authorization, Content-Type"),
    (b"access-control-max-age", b"86400"),
]


async def cors_preflight(scope: Scope, receive: Receive, send: Send) -> None:
    """``OPTIONS /v1/models``: 204 with permissive CORS headers (as Plano answers)."""
    await send({"type": "http.response.start", "status": 204, "headers": _CORS})
    await send({"type": "http.response.body", "body": b""})


Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


async def dispatch(routes: dict[tuple[str, str], Handler], listener: str, scope: Scope, receive: Receive,
                   send: Send) -> None:
    """Exact (method, path) routing; 405 for a known path with another method, else 404."""
    handler = routes.get((scope["method"], scope["path"]))
    if handler is not None:
        await handler(scope, receive, send)
        return
    await drain(receive)
    if any(path == scope["path"] for _, path in routes):
        err = GatewayError(405, f"Method {scope['method']} is not allowed on {scope['path']}", code="method_not_allowed")
    else:
        err = GatewayError(404, f"Unknown path {scope['path']} on listener '{listener}'", code="not_found")
    await send_error(send, err)
