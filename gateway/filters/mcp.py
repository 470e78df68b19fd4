"""The MCP filter protocol (``type: mcp``, the default): one tool call per payload.

Streamable HTTP, hand-written over the shared :class:`~gateway.upstream.Upstream`
(it is a handful of JSON-RPC messages; the SDK client would bring its own HTTP
stack and a task group per session). ``initialize`` → ``notifications/initialized``
→ ``tools/call {name: tool, arguments: {body, path}}``.

Unlike Plano, which opens a new MCP session for every filter on every request, a
session is opened once per filter per worker and reused: concurrent first calls
wait for one ``initialize``; a stateless server (no ``mcp-session-id``) just skips
the header. When the server no longer knows the session (HTTP 404, or an older
SDK's 400 naming the session) or the reused connection is gone (server restart),
the session is re-opened once, transparently, and the call retried.

Answers may be JSON or SSE (the JSON-RPC response with our id is picked out of the
events). ``isError: true`` blocks (HTTP 400 to the client, with the tool's text);
otherwise the new payload is ``structuredContent.result`` (the SDKs' wrapping of
non-object returns), else ``structuredContent``, else the JSON in ``content[0].text``.
HTTP errors of the transport, JSON-RPC errors and unusable results are failures (the
policy decides), never blocks: only the tool itself says no.

The endpoint is the url's path, or ``/mcp`` when it has none (Plano always uses ``/mcp``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from urllib.parse import urlsplit, urlunsplit

import orjson

from gateway import __version__
from gateway.filters.http import filter_message, transport_failure
from gateway.filters.outcome import FilterBlocked, FilterFailed
from gateway.filters.spec import FilterSpec
from gateway.listeners.sse import EventAligner, event_data, split_events
from gateway.upstream import SINGLE, Pool, Upstream, UpstreamError, timeout_policy

log = logging.getLogger("plano.filters")

PROTOCOL_VERSION = "2025-03-26"  # streamable HTTP; the server may answer with another, which we then speak
_ACCEPT = "application/json, text/event-stream"
_BASE_HEADERS = {"accept": _ACCEPT, "content-type": "application/json"}


def mcp_endpoint(url: str) -> str:
    parts = urlsplit(url)
    path = parts.path if parts.path not in ("", "/") else "/mcp"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


class _Session:
    __slots__ = ("id", "version")

    def __init__(self, session_id: str | None, version: str) -> None:
        self.id = session_id
        self.version = version

    def headers(self, base: dict[str, str]) -> dict[str, str]:
        out = {**base, "accept": _ACCEPT, "content-type": "application/json", "mcp-protocol-version": self.version}
        if self.id:
            out["mcp-session-id"] = self.id
        return out


class _SessionLost(Exception):
    """The server forgot the session, or the connection it lived on is gone: re-open once."""


class McpFilter:
    __slots__ = ("_ids", "_lock", "_session", "initializations", "policy", "pool", "retry", "spec", "target",
                 "upstream", "url")

    def __init__(self, spec: FilterSpec, upstream: Upstream) -> None:
        self.spec = spec
        self.upstream = upstream
        self.url = mcp_endpoint(spec.url)
        # The filter's timeout bounds the whole exchange (asyncio.timeout below); per HTTP call only connect.
        self.policy = timeout_policy(None, min(5.0, spec.timeout))
        self.target = f"filter '{spec.id}'"
        self.pool = Pool(f"filter:{spec.id}", [self.url])  # replaced by the registry's shared pool
        self.retry = SINGLE
        self.initializations = 0
        self._session: _Session | None = None
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)

    @property
    def endpoint(self) -> str:
        """The MCP endpoint its pool calls."""
        return self.url

    async def call(self, payload: dict, path: str, headers: dict[str, str],
                   limit: float | None = None) -> tuple[dict, int]:
        """The new payload and 200; raises FilterBlocked / FilterFailed."""
        timeout = self.spec.timeout if limit is None else max(min(self.spec.timeout, limit), 0.001)
        arguments = {"name": self.spec.tool, "arguments": {"body": payload, "path": path}}
        try:
            async with asyncio.timeout(timeout):
                result = await self._call_tool(arguments, headers)
        except TimeoutError:
            raise FilterFailed("timeout", f"did not answer within {timeout:g}s") from None
        return tool_payload(result, self.spec.tool), 200

    async def _call_tool(self, params: dict, headers: dict[str, str]) -> dict:
        session = self._session
        fresh = session is None
        if fresh:
            session = await self._open(None)
        try:
            return await self._request(session, "tools/call", params, headers, retry=True, reused=not fresh)
        except _SessionLost:
            log.info("filter=%s MCP session lost; re-initializing", self.spec.id)
            session = await self._open(session)
            return await self._request(session, "tools/call", params, headers, retry=False, reused=False)

    async def _open(self, stale: _Session | None) -> _Session:
        """The shared session: opened by the first caller, the others wait for it."""
        async with self._lock:
            current = self._session
            if current is not None and current is not stale:
                return current
            self._session = None
            session = await self._initialize()
            self._session = session
            return session

    async def _initialize(self) -> _Session:
        message = {"jsonrpc": "2.0", "id": next(self._ids), "method": "initialize", "params": {
            "protocolVersion": PROTOCOL_VERSION, "capabilities": {},
            "clientInfo": {"name": "plano", "version": __version__}}}
        session_id, reply = await self._post(message, _BASE_HEADERS)
        result = _result(reply, "initialize")
        version = result.get("protocolVersion")
        session = _Session(session_id, version if isinstance(version, str) and version else PROTOCOL_VERSION)
        await self._post({"jsonrpc": "2.0", "method": "notifications/initialized"}, session.headers(_BASE_HEADERS))
        self.initializations += 1
        log.debug("filter=%s MCP session opened (%s, protocol %s)", self.spec.id,
                  "stateful" if session_id else "stateless", session.version)
        return session

    async def _request(self, session: _Session, method: str, params: dict, headers: dict[str, str], *,
                       retry: bool, reused: bool) -> dict:
        message = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        try:
            _, reply = await self._post(message, session.headers(headers), session_id=session.id if retry else None)
        except FilterFailed as failure:
            if retry and reused and failure.kind in ("connect", "broken"):
                raise _SessionLost() from None
            raise
        return _result(reply, method)

    async def _post(self, message: dict, headers: dict[str, str],
                    session_id: str | None = None) -> tuple[str | None, dict | None]:
        """POST one JSON-RPC message; (the session id the server gave, the response with our id or None)."""
        try:
            async with self.upstream.call(self.pool, None, headers=headers, body=orjson.dumps(message),
                                          timeout=self.policy, policy=self.retry, target=self.target) as resp:
                status = resp.status
                if status >= 300:
                    data = await resp.read()
                    if session_id and (status == 404 or (status == 400 and b"session" in data.lower())):
                        raise _SessionLost()
                    raise FilterFailed("status", f"answered HTTP {status}: {filter_message(data, status)}", status)
                if "id" not in message:  # a notification: 202 and no body
                    await resp.read()
                    return None, None
                reply = await _read_reply(resp, message["id"])
                return resp.headers.get("mcp-session-id"), reply
        except UpstreamError as err:
            raise transport_failure(err, None) from None


async def _read_reply(resp, request_id) -> dict:
    """The JSON-RPC response to ``request_id`` from a JSON or an SSE answer."""
    if "text/event-stream" in resp.headers.get("content-type", ""):
        aligner = EventAligner()
        async for chunk in resp.chunks():
            ready = aligner.feed(chunk)
            if ready:
                for block in split_events(ready):
                    reply = _match(event_data(block), request_id)
                    if reply is not None:
                        return reply
        reply = _match(event_data(aligner.pending.strip()), request_id) if aligner.pending.strip() else None
        if reply is None:
            raise FilterFailed("protocol", "ended its MCP event stream without answering")
        return reply
    reply = _match(await resp.read(), request_id)
    if reply is None:
        raise FilterFailed("protocol", "sent an MCP answer without a JSON-RPC response")
    return reply


def _match(data: bytes | None, request_id) -> dict | None:
    if not data:
        return None
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    for item in parsed if isinstance(parsed, list) else (parsed,):
        if isinstance(item, dict) and item.get("id") == request_id and ("result" in item or "error" in item):
            return item
    return None


def _result(reply: dict | None, method: str) -> dict:
    if reply is None:
        raise FilterFailed("protocol", f"sent no answer to MCP {method}")
    error = reply.get("error")
    if error is not None:
        message = error.get("message") if isinstance(error, dict) else None
        raise FilterFailed("protocol", f"answered MCP {method} with an error: {str(message or error)[:300]}")
    result = reply.get("result")
    if not isinstance(result, dict):
        raise FilterFailed("protocol", f"answered MCP {method} without a result object")
    return result


def tool_payload(result: dict, tool: str) -> dict:
    """The new payload from a ``tools/call`` result (or FilterBlocked when the tool says no)."""
    if result.get("isError") is True:
        raise FilterBlocked(400, _tool_error_text(result, tool))
    structured = result.get("structuredContent")
    if isinstance(structured, dict):
        inner = structured["result"] if len(structured) == 1 and "result" in structured else structured
        if isinstance(inner, dict):
            return inner
        raise FilterFailed("invalid", "returned structured content that is not a JSON object")
    text = _first_text(result)
    if text is None:
        raise FilterFailed("invalid", "returned no content")
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise FilterFailed("invalid", "returned text that is not JSON") from None
    if not isinstance(parsed, dict):
        raise FilterFailed("invalid", "returned JSON that is not an object")
    return parsed


def _first_text(result: dict) -> str | None:
    content = result.get("content")
    if isinstance(content, list) and content and isinstance(content[0], dict):
        text = content[0].get("text")
        if isinstance(text, str):
            return text
    return None


def _tool_error_text(result: dict, tool: str) -> str:
    text = (_first_text(result) or "the filter refused the request").strip()
    prefix = f"Error executing tool {tool}: "  # how the Python SDK wraps a ToolError's message
    text = text.removeprefix(prefix)
    return text[:500]
