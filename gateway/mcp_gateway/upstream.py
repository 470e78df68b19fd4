"""plano's MCP client for ``mcp_servers:`` entries: ``tools/list`` and ``tools/call``.

Hand-written JSON-RPC over :class:`gateway.upstream.Upstream`, like the MCP filters
(:mod:`gateway.filters.mcp`), so these calls share plano's one outbound layer (pool, breaker,
timeouts) instead of the SDK client's own HTTP stack. One session per server per worker,
opened on first use; a server that forgot it (HTTP 404) gets a new one, transparently, once.
Answers may be JSON or SSE. Tool results pass through unchanged.
"""

from __future__ import annotations

import asyncio
import fnmatch
import itertools
import time

import orjson

from gateway import __version__
from gateway.filters.mcp import PROTOCOL_VERSION, _read_reply, mcp_endpoint
from gateway.upstream import Pool, UpstreamError, timeout_policy


class McpUpstreamError(Exception):
    """The server could not be reached or answered with an error (``code`` is the JSON-RPC one, if any)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class McpUpstream:
    """One upstream MCP server."""

    def __init__(self, spec, upstream, metrics=None) -> None:
        self.name = spec.name
        self.spec = spec
        self.upstream = upstream
        self.metrics = metrics
        self.url = mcp_endpoint(spec.url)
        self.pool = Pool(f"mcp:{spec.name}", [self.url])
        self.timeout = float(spec.timeout or 30.0)
        self.target = f"mcp server '{spec.name}'"
        self._session: tuple[str | None, str] | None = None  # (session id, protocol version)
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)

    def allowed(self, tool: str) -> bool:
        """The server's ``deny`` patterns win over its ``allow`` patterns (absent: everything)."""
        if any(fnmatch.fnmatchcase(tool, p) for p in self.spec.deny or ()):
            return False
        allow = self.spec.allow
        return allow is None or any(fnmatch.fnmatchcase(tool, p) for p in allow)

    async def list_tools(self, headers: dict[str, str]) -> list[dict]:
        tools: list[dict] = []
        cursor = None
        for _ in range(50):  # pages
            params = {"cursor": cursor} if cursor else {}
            result = await self.request("tools/list", params, headers)
            tools += [t for t in result.get("tools") or () if isinstance(t, dict) and isinstance(t.get("name"), str)]
            cursor = result.get("nextCursor")
            if not cursor:
                break
        return [t for t in tools if self.allowed(t["name"])]

    async def call_tool(self, tool: str, arguments: dict, headers: dict[str, str]) -> dict:
        return await self.request("tools/call", {"name": tool, "arguments": arguments}, headers)

    async def request(self, method: str, params: dict, headers: dict[str, str]) -> dict:
        started = time.perf_counter()
        outcome = "error"
        try:
            async with asyncio.timeout(self.timeout):
                session = await self._open(None)
                try:
                    result = await self._rpc(session, method, params, headers)
                except _Lost:
                    session = await self._open(session)
                    result = await self._rpc(session, method, params, headers)
            outcome = "ok"
            return result
        except TimeoutError:
            outcome = "timeout"
            raise McpUpstreamError(f"{self.target} did not answer {method} within {self.timeout:g}s") from None
        finally:
            if self.metrics is not None:
                self.metrics.protocol("mcp", method, "upstream", outcome, time.perf_counter() - started)

    async def aclose(self) -> None:
        """End this worker's session with the server (HTTP DELETE, as the transport asks a client leaving
        to do), best effort within 2 s: a reloaded listener leaves no session behind on the server."""
        session, self._session = self._session, None
        if session is None or not session[0]:
            return
        headers = {"mcp-session-id": session[0], "mcp-protocol-version": session[1]}
        try:
            async with asyncio.timeout(2.0):
                async with self.upstream.call(self.pool, [self.url], headers=headers, body=None, method="DELETE",
                                              timeout=timeout_policy(2.0, 1.0), target=self.target) as resp:
                    await resp.read()
        except Exception:  # noqa: BLE001 - the server's idle timeout ends it anyway
            pass

    async def _open(self, stale):
        async with self._lock:
            if self._session is not None and self._session is not stale:
                return self._session
            init = {"protocolVersion": PROTOCOL_VERSION, "capabilities": {},
                    "clientInfo": {"name": "plano", "version": __version__}}
            session_id, reply = await self._post("initialize", init, {}, None)
            result = _result(reply, "initialize", self.target)
            version = result.get("protocolVersion") if isinstance(result.get("protocolVersion"), str) else \
                PROTOCOL_VERSION
            self._session = (session_id, version)
            await self._post("notifications/initialized", None, {}, self._session, notify=True)
            return self._session

    async def _rpc(self, session, method: str, params: dict, headers: dict[str, str]) -> dict:
        _, reply = await self._post(method, params, headers, session)
        return _result(reply, method, self.target)

    async def _post(self, method: str, params, headers: dict[str, str], session, *, notify: bool = False):
        message = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        if not notify:
            message["id"] = next(self._ids)
        out = {**(self.spec.headers or {}), **headers, "accept": "application/json, text/event-stream",
               "content-type": "application/json"}
        if session is not None:
            out["mcp-protocol-version"] = session[1]
            if session[0]:
                out["mcp-session-id"] = session[0]
        try:
            async with self.upstream.call(self.pool, None, headers=out, body=orjson.dumps(message),
                                          timeout=timeout_policy(None, 5.0), target=self.target) as resp:
                if resp.status == 404 and session is not None and session[0]:
                    await resp.read()
                    raise _Lost()
                if resp.status >= 300:
                    data = await resp.read()
                    raise McpUpstreamError(f"{self.target} answered {method} with HTTP {resp.status}: "
                                           f"{data[:200].decode('utf-8', 'replace')}")
                if notify:
                    await resp.read()
                    return None, None
                try:
                    reply = await _read_reply(resp, message["id"])
                except Exception as exc:  # noqa: BLE001 - FilterFailed and friends
                    raise McpUpstreamError(f"{self.target}: {exc}") from None
                return resp.headers.get("mcp-session-id"), reply
        except UpstreamError as err:
            raise McpUpstreamError(str(err)) from None


class _Lost(Exception):
    pass


def _result(reply, method: str, target: str) -> dict:
    if not isinstance(reply, dict):
        raise McpUpstreamError(f"{target} sent no answer to {method}")
    error = reply.get("error")
    if error is not None:
        code = error.get("code") if isinstance(error, dict) else None
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise McpUpstreamError(f"{target} answered {method} with error {code}: {str(message)[:300]}", code)
    result = reply.get("result")
    if not isinstance(result, dict):
        raise McpUpstreamError(f"{target} answered {method} without a result object")
    return result
