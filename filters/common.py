"""Shared kit of plano's built-in filters: payload shapes, text walking, transports, CLI.

A filter is a pure function ``(payload, path, headers) -> payload | Block`` (it may
also return an awaitable of that): ``payload`` is the parsed JSON the gateway sent,
``path`` the API path (``/v1/chat/completions``, ``/v1/messages``, ``/v1/responses``),
``headers`` a dict of lower-cased header names. It returns the payload to pass on
(often the same object, edited in place) or a :class:`Block` to stop the request.

The same function is served two ways (``filters/README.md``):

- **HTTP** (:func:`http_app`): ``POST {url}{api path}`` with the JSON payload; 2xx body
  replaces the payload, 4xx blocks. ``GET /healthz`` answers ``{"status": "ok"}``.
- **MCP** (:func:`mcp_app`): a FastMCP streamable-HTTP server at ``/mcp`` with one tool
  ``<id>(body: dict, path: str) -> dict``; a block raises ``ToolError``.

Filters see requests (a JSON body with ``messages``, or ``input`` for the Responses
API) and responses: a whole response object, or one streaming event per call
(``chat.completion.chunk``, an Anthropic stream event, a Responses stream event).
:func:`is_request` tells them apart; :func:`map_text` visits every piece of
conversational text in any of those shapes.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import inspect
import ipaddress
import logging
import os
import sys
import time
import traceback
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

log = logging.getLogger("plano.filters")

API_PATHS = ("/v1/chat/completions", "/v1/messages", "/v1/responses")
MAX_BODY = 32 * 1024 * 1024


# --------------------------------------------------------------------------- results


@dataclass
class Block:
    """A filter's decision to stop the request.

    ``status`` is the HTTP status the HTTP transport answers with (4xx: the gateway
    blocks and relays the message); ``body`` overrides the default OpenAI-shaped error
    ``{"error": {"message", "type": "invalid_request_error", "code"}}``. Over MCP the
    message becomes the ``ToolError`` text.
    """

    message: str
    status: int = 400
    code: str = "blocked"
    body: dict | None = None

    def json_body(self) -> dict:
        if self.body is not None:
            return self.body
        return {"error": {"message": self.message, "type": "invalid_request_error", "code": self.code}}


Result = Any  # the new payload, or a Block
FilterFn = Callable[[Any, str, dict], Result | Awaitable[Result]]


# --------------------------------------------------------------------------- shapes


def api_path(path: str) -> str:
    """The API part of a request path: ``/anonymize/v1/chat/completions`` -> ``/v1/chat/completions``."""
    for api in API_PATHS:
        if path.endswith(api):
            return api
    i = path.find("/v1/")
    return path[i:] if i >= 0 else path


def is_request(payload: Any) -> bool:
    """True for a request body (chat/messages ``messages``; Responses ``input``), False for responses/events."""
    if not isinstance(payload, dict):
        return False
    if "choices" in payload or "type" in payload and "messages" not in payload:
        return False
    if isinstance(payload.get("messages"), list):
        return True
    return "input" in payload and payload.get("object") != "response" and "output" not in payload


def response_kind(payload: Any) -> str:
    """``request``, ``chunk`` (one streaming event) or ``response`` (a whole response object)."""
    if is_request(payload):
        return "request"
    if not isinstance(payload, dict):
        return "response"
    if payload.get("object") == "chat.completion.chunk":
        return "chunk"
    choices = payload.get("choices")
    if isinstance(choices, list) and any(isinstance(c, dict) and "delta" in c for c in choices):
        return "chunk"
    kind = payload.get("type")
    if isinstance(kind, str) and kind != "message":  # Anthropic / Responses stream events
        return "chunk"
    return "response"


def request_id(headers: dict) -> str | None:
    return headers.get("x-request-id") or None


STREAM_MODE_HEADER = "x-plano-stream-mode"


def windowed(headers: dict) -> bool:
    """The gateway sends windows of accumulated (overlapping) text rather than one call per event.

    Stateful stream handling (carry buffers) assumes consecutive calls carry consecutive,
    non-overlapping text; a gateway in window mode says so with ``x-plano-stream-mode: window``
    (or the filter runs with ``--stateless-stream``), and filters then treat each call alone.
    """
    return headers.get(STREAM_MODE_HEADER, "").lower() == "window"


# Keys whose string values are conversational text, in any of the three API shapes and their
# streaming events (chat ``delta.content``, Anthropic ``delta.text`` / ``partial_json``,
# Responses ``delta`` / ``text`` / ``output``...).
TEXT_KEYS = frozenset({
    "content", "text", "arguments", "input", "instructions", "system", "output", "delta",
    "refusal", "partial_json", "reasoning_content", "thinking", "transcript", "prompt",
})
# Keys whose dict values are free-form (tool-call arguments): every string inside is text.
FREEFORM_KEYS = frozenset({"input", "arguments"})
# Keys never walked: configuration, identifiers, binary data.
SKIP_KEYS = frozenset({
    "tools", "tool_choice", "response_format", "metadata", "model", "usage", "logprobs", "image_url",
    "input_audio", "source", "signature", "encrypted_content", "stop", "logit_bias", "annotations",
    "include", "reasoning", "data",
})
_EVENT_INDEX_KEYS = ("index", "output_index", "content_index", "summary_index")

Channel = tuple


def map_text(payload: Any, fn: Callable[[str, Channel], str]) -> Any:
    """Call ``fn(text, channel)`` on every text string of a payload and store what it returns.

    Edits ``payload`` in place and returns it. ``channel`` names where the text sits,
    stable across the events of one stream: list items carrying an ``index`` are named
    ``#<index>`` (so ``choices/#0/delta/content`` is the same channel in every chunk),
    and an event's own ``index``/``output_index``/``content_index`` prefix it.
    """
    base: tuple = ()
    if isinstance(payload, dict):
        base = tuple(f"@{k}={payload[k]}" for k in _EVENT_INDEX_KEYS if isinstance(payload.get(k), int))
    _walk(payload, fn, base, False, False)
    return payload


def _walk(node: Any, fn, path: tuple, in_text: bool, free: bool) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if not free and key in SKIP_KEYS:
                continue
            if isinstance(value, str):
                if free or key in TEXT_KEYS:
                    new = fn(value, path + (key,))
                    if new is not value:
                        node[key] = new
            elif isinstance(value, (dict, list)):
                _walk(value, fn, path + (key,), key in TEXT_KEYS,
                      free or (key in FREEFORM_KEYS and isinstance(value, dict)))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, str):
                if in_text or free:
                    new = fn(item, path + (i,))
                    if new is not item:
                        node[i] = new
            elif isinstance(item, (dict, list)):
                name: Any = i
                if isinstance(item, dict) and isinstance(item.get("index"), int):
                    name = f"#{item['index']}"
                _walk(item, fn, path + (name,), in_text, free)


def texts(payload: Any) -> list[str]:
    """Every text string of a payload, in walk order."""
    out: list[str] = []
    map_text(payload, lambda t, _c: out.append(t) or t)
    return out


def set_at(payload: Any, channel: Channel, value: str) -> bool:
    """Append ``value`` to the string at ``channel`` in ``payload``, creating missing containers.

    Used to flush held-back stream text into the final chunk. Returns False if the
    channel cannot be placed in this payload.
    """
    node = payload
    parts = [p for p in channel if not (isinstance(p, str) and p.startswith("@"))]
    if not parts:
        return False
    for j, part in enumerate(parts):
        last = j == len(parts) - 1
        nxt = None if last else parts[j + 1]
        if isinstance(part, str) and part.startswith("#"):
            if not isinstance(node, list):
                return False
            idx = int(part[1:])
            found = next((x for x in node if isinstance(x, dict) and x.get("index") == idx), None)
            if found is None:
                found = {"index": idx}
                node.append(found)
            node = found
        elif isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                return False
            if last:
                if not isinstance(node[part], str):
                    return False
                node[part] += value
                return True
            node = node[part]
        else:
            if not isinstance(node, dict):
                return False
            if last:
                current = node.get(part)
                if current is None:
                    node[part] = value
                elif isinstance(current, str):
                    node[part] = current + value
                else:
                    return False
                return True
            if part not in node or node[part] is None:
                node[part] = [] if isinstance(nxt, str) and nxt.startswith("#") or isinstance(nxt, int) else {}
            node = node[part]
    return False


def channel_key(channel: Channel) -> str:
    return "/".join(str(p) for p in channel)


def finished_choices(payload: Any) -> list[int]:
    """Choice indexes a chat chunk finishes (``finish_reason`` set)."""
    out = []
    for pos, choice in enumerate(payload.get("choices") or []) if isinstance(payload, dict) else ():
        if isinstance(choice, dict) and choice.get("finish_reason"):
            out.append(choice.get("index", pos) if isinstance(choice.get("index", pos), int) else pos)
    return out


def is_delta_event(payload: Any) -> bool:
    """A streaming event carrying a piece of text (chat chunk, Anthropic ``content_block_delta``,
    Responses ``*.delta``), as opposed to whole-text events such as ``response.output_text.done``."""
    if not isinstance(payload, dict):
        return False
    if isinstance(payload.get("choices"), list):
        return response_kind(payload) == "chunk"
    kind = payload.get("type")
    return isinstance(kind, str) and (kind == "content_block_delta" or kind.endswith(".delta"))


def stream_finished(payload: Any) -> bool:
    """An Anthropic/Responses event that ends the stream (its held text cannot be emitted later)."""
    kind = payload.get("type") if isinstance(payload, dict) else None
    return kind in ("message_stop", "response.completed", "response.failed", "response.incomplete", "error")


# --------------------------------------------------------------------------- user turns


def _is_tool_turn(message: dict) -> bool:
    if message.get("role") == "tool" or message.get("type") == "function_call_output":
        return True
    content = message.get("content")
    return (message.get("role") == "user" and isinstance(content, list) and bool(content)
            and all(isinstance(p, dict) and p.get("type") == "tool_result" for p in content))


def _is_assistant_turn(message: dict) -> bool:
    return message.get("role") == "assistant" or message.get("type") in ("function_call", "reasoning")


def user_texts(payload: Any, *, scope: str = "latest", tool_results: bool = False) -> list[str]:
    """Texts of the latest user turn (``scope="latest"``) or of every user message (``"all"``).

    The latest turn is the user messages after the last assistant message (or the last
    user message if none follows it). ``tool_results`` adds tool-result messages of
    that turn (chat ``tool``, Anthropic ``tool_result``, Responses ``function_call_output``).
    """
    if not isinstance(payload, dict):
        return []
    messages = payload.get("messages")
    if not isinstance(messages, list):
        items = payload.get("input")
        if isinstance(items, str):
            return [items]
        messages = items if isinstance(items, list) else []
    messages = [m for m in messages if isinstance(m, dict)]
    if scope == "all":
        chosen = messages
    else:
        last_assistant = max((i for i, m in enumerate(messages) if _is_assistant_turn(m)), default=-1)
        chosen = messages[last_assistant + 1:]
        if not any(m.get("role") == "user" and not _is_tool_turn(m) for m in chosen):
            users = [m for m in messages if m.get("role") == "user" and not _is_tool_turn(m)]
            chosen = users[-1:] + chosen
    out: list[str] = []
    for message in chosen:
        if _is_tool_turn(message):
            if tool_results:
                out.extend(texts({"content": message.get("content"), "output": message.get("output")}))
        elif message.get("role", "user") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = [p for p in content if not (isinstance(p, dict) and p.get("type") == "tool_result")]
            out.extend(texts({"content": content}))
    return out


# --------------------------------------------------------------------------- stores


class TTLStore:
    """In-memory ``key -> state`` with a time-to-live and a size bound (least recently used evicted).

    Single-process: several gateway replicas must reach the same filter process (or use
    a shared store such as :class:`RedisStore`), see ``filters/README.md``.
    """

    def __init__(self, ttl: float = 600.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._data: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def get(self, key: str) -> Any:
        item = self._data.get(key)
        if item is None:
            return None
        expires, value = item
        if expires < time.monotonic():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    def put(self, key: str, value: Any) -> None:
        self._data[key] = (time.monotonic() + self.ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)
        if len(self._data) % 256 == 0:
            self._expire()

    def delete(self, key: str) -> None:
        self._data.pop(key, None)

    def _expire(self) -> None:
        now = time.monotonic()
        while self._data:
            key, (expires, _v) = next(iter(self._data.items()))
            if expires >= now:
                break
            del self._data[key]

    def __len__(self) -> int:
        return len(self._data)

    async def aget(self, key: str) -> Any:
        return self.get(key)

    async def aput(self, key: str, value: Any) -> None:
        self.put(key, value)


class RedisStore:
    """A shared ``key -> JSON state`` store on Redis (``redis://[:password@]host:port/db``,
    ``rediss://`` for TLS, ``unix://``), so several filter replicas can share PII mappings
    without sticky routing.

    Built on ``redis.asyncio`` with a bounded connection pool. The client is created on
    first use inside the running event loop (a filter process forks workers and starts its
    loop after the store is built) and again if the loop changes.
    """

    _SCHEMES = ("redis", "rediss", "unix")

    def __init__(self, url: str, ttl: float = 600.0, prefix: str = "plano:filters:", pool: int = 8,
                 timeout: float = 5.0) -> None:
        if "://" not in url:
            url = "redis://" + url
        scheme = url.split("://", 1)[0].lower()
        if scheme not in self._SCHEMES:
            raise ValueError(f"unsupported redis URL scheme {scheme!r} (use redis://, rediss:// or unix://)")
        from redis.asyncio.connection import parse_url

        parse_url(url)  # a malformed URL fails here, at start-up
        self.url = url
        self.ttl = ttl
        self.prefix = prefix
        self.timeout = timeout
        self._pool = pool
        self._client = None
        self._loop = None

    def _redis(self):
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            import redis.asyncio as aioredis

            self._client = aioredis.Redis.from_url(self.url, max_connections=self._pool,
                                                   socket_timeout=self.timeout,
                                                   socket_connect_timeout=self.timeout)
            self._loop = loop
        return self._client

    async def aget(self, key: str) -> Any:
        raw = await self._redis().get(self.prefix + key)
        return None if raw is None else orjson.loads(raw)

    async def aput(self, key: str, value: Any) -> None:
        await self._redis().set(self.prefix + key, orjson.dumps(value), px=max(1, int(self.ttl * 1000)))

    def get(self, key: str) -> Any:  # pragma: no cover - the sync path is for the in-memory store
        raise RuntimeError("RedisStore is async-only; call the filter's acall()")

    put = get

    async def close(self) -> None:
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.aclose()


# --------------------------------------------------------------------------- server-sent events


def map_sse(text: str, fn: Callable[[Any], Any]) -> str | Block:
    """Apply ``fn`` to each JSON ``data:`` event of an SSE body (for gateways that send raw chunks).

    Non-JSON data (``[DONE]``) and comment/other lines pass unchanged. A :class:`Block` from
    ``fn`` is returned as is.
    """
    out: list[str] = []
    for event in text.split("\n\n"):
        if not event.strip():
            out.append(event)
            continue
        lines = event.split("\n")
        data_lines = [ln[5:].lstrip(" ") for ln in lines if ln.startswith("data:")]
        if not data_lines:
            out.append(event)
            continue
        data = "\n".join(data_lines)
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            out.append(event)
            continue
        new = fn(obj)
        if isinstance(new, Block):
            return new
        others = [ln for ln in lines if not ln.startswith("data:")]
        out.append("\n".join(others + ["data: " + orjson.dumps(new).decode()]))
    return "\n\n".join(out)


# --------------------------------------------------------------------------- HTTP transport


def _error(message: str, status: int, code: str, kind: str = "invalid_request_error") -> tuple[int, bytes]:
    return status, orjson.dumps({"error": {"message": message, "type": kind, "code": code}})


async def _call(fn: FilterFn, payload: Any, path: str, headers: dict) -> Result:
    result = fn(payload, path, headers)
    if inspect.isawaitable(result):
        result = await result
    return result


def http_app(fn: FilterFn, *, name: str = "filter", on_shutdown: Callable[[], Awaitable[None]] | None = None):
    """A raw ASGI app serving ``fn``: ``POST <any prefix><api path>`` and ``GET /healthz``.

    Bodies are JSON (gzip accepted); a body of SSE text (``data: {...}`` events, as Plano
    sends output chunks) is filtered event by event and answered as SSE. Bad JSON gets
    400 with an OpenAI-shaped error; an exception in the filter gets 500.
    """
    json_headers = [(b"content-type", b"application/json")]
    sse_headers = [(b"content-type", b"text/event-stream")]

    async def send_body(send, status: int, body: bytes, headers=json_headers) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": headers + [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if on_shutdown is not None:
                        await on_shutdown()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if method == "GET" and path in ("/healthz", "/health", "/"):
            await send_body(send, 200, orjson.dumps({"status": "ok", "filter": name}))
            return
        if method != "POST":
            await send_body(send, *_error(f"{method} not allowed; POST a JSON payload", 405, "method_not_allowed"))
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            part = message.get("body", b"")
            size += len(part)
            if size > MAX_BODY:
                await send_body(send, *_error("payload too large", 413, "payload_too_large"))
                return
            chunks.append(part)
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            if raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
        except OSError:
            await send_body(send, *_error("invalid gzip body", 400, "invalid_body"))
            return
        path = api_path(path)
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            text = raw.decode("utf-8", "replace")
            if text.lstrip().startswith(("data:", "event:", ":")):
                await _serve_sse(fn, text, path, headers, send, send_body, sse_headers)
                return
            await send_body(send, *_error(f"Invalid JSON body: {exc}", 400, "invalid_json"))
            return
        try:
            result = await _call(fn, payload, path, headers)
        except Exception as exc:  # noqa: BLE001 - the gateway applies the filter's on_error policy to a 5xx
            log.error("%s failed: %s\n%s", name, exc, traceback.format_exc())
            await send_body(send, *_error(f"{name} failed: {exc}", 500, "filter_error", "server_error"))
            return
        if isinstance(result, Block):
            log.info("%s blocked request %s: %s", name, headers.get("x-request-id", "-"), result.message)
            await send_body(send, result.status, orjson.dumps(result.json_body()))
            return
        await send_body(send, 200, orjson.dumps(result))

    async def _serve_sse(fn, text, path, headers, send, send_body, sse_headers) -> None:
        results: list[Any] = []

        def collect(obj):  # run synchronously: map_sse is sync, so evaluate awaitables first
            results.append(obj)
            return obj

        map_sse(text, collect)
        mapped = []
        for obj in results:
            try:
                new = await _call(fn, obj, path, headers)
            except Exception as exc:  # noqa: BLE001 - reported as a 5xx
                await send_body(send, *_error(f"{name} failed: {exc}", 500, "filter_error", "server_error"))
                return
            if isinstance(new, Block):
                await send_body(send, new.status, orjson.dumps(new.json_body()))
                return
            mapped.append(new)
        it = iter(mapped)
        await send_body(send, 200, map_sse(text, lambda _obj: next(it)).encode(), sse_headers)

    return app


# --------------------------------------------------------------------------- MCP transport


def _fastmcp():
    """(server class, Context, ToolError, SDK major): FastMCP on mcp 1.x, MCPServer on 2.x."""
    try:
        from mcp.server.fastmcp import Context, FastMCP
        from mcp.server.fastmcp.exceptions import ToolError
        return FastMCP, Context, ToolError, 1
    except ImportError:
        from mcp.server.mcpserver import Context, MCPServer
        from mcp.server.mcpserver.exceptions import ToolError
        return MCPServer, Context, ToolError, 2


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def mcp_app(fn: FilterFn, tool: str, *, host: str = "127.0.0.1", description: str = "",
            stateless: bool = False, json_response: bool = False):
    """An ASGI app: the official MCP SDK's streamable-HTTP server at ``/mcp`` exposing ``fn``
    as the tool ``tool(body: dict, path: str) -> dict`` (a :class:`Block` raises ``ToolError``),
    plus ``GET /healthz``. Request headers (``x-request-id``) reach ``fn`` from the HTTP request
    carrying the tool call.
    """
    server_cls, context_cls, tool_error, major = _fastmcp()
    security = None
    if not _is_loopback(host):
        # Bound to a routable address (a container, a private network): the gateway connects with
        # its own Host header, so the SDK's localhost-only DNS-rebinding check would refuse it.
        from mcp.server.transport_security import TransportSecuritySettings
        security = TransportSecuritySettings(enable_dns_rebinding_protection=False)

    async def call_filter(body: dict, path: str, ctx) -> dict:
        headers: dict = {}
        try:
            request = getattr(ctx.request_context, "request", None)
            raw = getattr(request, "headers", None) or {}
            headers = {str(k).lower(): str(v) for k, v in raw.items()}
        except (AttributeError, ValueError):  # no HTTP request behind this call (in-memory transport)
            headers = {}
        result = await _call(fn, body, api_path(path or "/v1/chat/completions"), headers)
        if isinstance(result, Block):
            raise tool_error(result.message)
        return result

    call_filter.__name__ = tool
    call_filter.__doc__ = description or f"plano filter {tool}: returns the filtered payload."
    call_filter.__annotations__ = {"body": dict, "path": str, "ctx": context_cls, "return": dict}

    if major == 1:
        kwargs: dict[str, Any] = {"host": host, "stateless_http": stateless, "json_response": json_response,
                                  "log_level": "WARNING"}
        if security is not None:
            kwargs["transport_security"] = security
        params = inspect.signature(server_cls.__init__).parameters
        server = server_cls(tool, **{k: v for k, v in kwargs.items() if k in params or "settings" in params})
        server.tool(name=tool, description=call_filter.__doc__)(call_filter)
        inner = server.streamable_http_app()
    else:
        server = server_cls(tool, log_level="WARNING")
        server.tool(name=tool, description=call_filter.__doc__)(call_filter)
        inner = server.streamable_http_app(stateless_http=stateless, json_response=json_response,
                                           host=host, transport_security=security)

    health = orjson.dumps({"status": "ok", "filter": tool, "transport": "mcp"})

    async def app(scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] in ("/healthz", "/health"):
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(health)).encode())]})
            await send({"type": "http.response.body", "body": health})
            return
        if scope["type"] == "http" and scope["path"] in ("", "/"):
            # a filter url configured without its /mcp path reaches the MCP endpoint too
            scope = {**scope, "path": "/mcp", "raw_path": b"/mcp"}
        await inner(scope, receive, send)

    return app


# --------------------------------------------------------------------------- CLI


@dataclass
class Spec:
    """How one filter module is run from the command line."""

    name: str                                   # tool name / log name
    description: str
    default_port: int
    build: Callable[[argparse.Namespace], FilterFn]
    add_arguments: Callable[[argparse.ArgumentParser], None] = lambda p: None
    mcp: bool = True
    extra: dict = field(default_factory=dict)


def split_list(value: str | None) -> list[str]:
    if not value:
        return []
    return [v.strip() for v in value.split(",") if v.strip()]


def main(spec: Spec, argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m filters.{spec.name}", description=spec.description)
    parser.add_argument("--host", default=os.environ.get("FILTER_HOST", "127.0.0.1"), help="bind address (127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("FILTER_PORT", spec.default_port)),
                        help=f"port ({spec.default_port})")
    if spec.mcp:
        parser.add_argument("--mcp", action="store_true",
                            help="serve as an MCP streamable-HTTP server at /mcp instead of plain HTTP")
        parser.add_argument("--tool", default=spec.name, help=f"MCP tool name ({spec.name}); match the filter id")
        parser.add_argument("--stateless", action="store_true", help="MCP: stateless sessions")
        parser.add_argument("--json-response", action="store_true", help="MCP: answer JSON instead of SSE")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "info"),
                        choices=["debug", "info", "warning", "error"])
    spec.add_arguments(parser)
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fn = spec.build(args)

    async def shutdown() -> None:
        close = getattr(fn, "aclose", None)
        if close is not None:
            await close()

    if getattr(args, "mcp", False):
        app = mcp_app(fn, args.tool, host=args.host, description=spec.description,
                      stateless=args.stateless, json_response=args.json_response)
        mode = f"MCP tool '{args.tool}' at http://{args.host}:{args.port}/mcp"
    else:
        app = http_app(fn, name=spec.name, on_shutdown=shutdown)
        mode = f"HTTP at http://{args.host}:{args.port}"
    import uvicorn

    loop = "auto"
    try:
        import uvloop  # noqa: F401
        loop = "uvloop"
    except ImportError:
        pass
    log.info("%s filter serving %s", spec.name, mode)
    uvicorn.run(app, host=args.host, port=args.port, loop=loop, log_level="warning",
                access_log=False, lifespan="on", timeout_graceful_shutdown=5)
