"""An agent listener's MCP endpoint (``/mcp``, streamable HTTP) on the official ``mcp`` SDK server.

Tools:

- one per agent of the listener, named by its id, described by its description (or its A2A
  card's): ``{message, messages?}`` → the agent's answer as text, asked in process with the
  router skipped (:mod:`gateway.a2a.inprocess`: the agent's filters, retries, breakers, deadline
  and telemetry apply);
- ``ask``: the same question to the listener as a whole — plano's router chooses the agents;
- the tools of each upstream server of ``mcp_servers:`` (all of them, or the listener's
  ``mcp_servers`` list), named ``<server>__<tool>``, after the server's ``allow`` / ``deny``
  patterns: a denied tool is not listed and calling it is the protocol's "unknown tool" error
  (-32602), exactly as for a tool that does not exist. Results pass through unchanged.

Per key: on a listener with ``auth``, the calling key's ``mcp_tools`` patterns (and its ``agents``
list, for agent tools; ``ask`` needs them all) filter the tools the same way — a tool the key may
not call is not listed and calling it is -32602 "Unknown tool". The edge authenticated the request;
the key's record is looked up by the id it left on the scope (``plano.key_id``), per HTTP request, so
one session sees a revoked or narrowed key at its next request.

An agent that fails is a tool result with ``isError: true`` and the error's message (the
client's model can read it); an unreachable upstream server is an MCP error (-32603) naming it.
``tools/list`` lists the upstream servers live (one ``tools/list`` per server, in parallel); a
server that cannot be reached is left out of the list, with a warning, rather than failing it.

The SDK's session manager runs stateful (``mcp-session-id``) for clients that initialize a
session and serves the sessionless request era too; it is started on the first ``/mcp`` request
and stopped with the listener.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson

from gateway.a2a import inprocess
from gateway.listeners.http import request_id
from gateway.mcp_gateway.upstream import McpUpstream, McpUpstreamError

log = logging.getLogger("plano.mcp")

SEP = "__"
_MESSAGE_SCHEMA = {
    "type": "object",
    "properties": {
        "message": {"type": "string", "description": "The question or request, in plain language."},
        "messages": {"type": "array", "description": "Optional earlier turns as chat messages "
                     "({role, content}); 'message' is added as the last user turn.",
                     "items": {"type": "object"}},
    },
    "required": ["message"],
}


class McpGateway:
    def __init__(self, listener_app, config, listener, key_lookup=None) -> None:
        import mcp_types as types
        from mcp.server import Server
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

        self.types = types
        self.app = listener_app
        self.listener = listener
        self.key_lookup = key_lookup
        names = listener.mcp_servers
        metrics = listener_app.tel.metrics
        self.servers = {s.name: McpUpstream(s, listener_app.upstream, metrics) for s in config.mcp_servers or ()
                        if names is None or s.name in names}
        self.server = Server(f"plano-{listener.name}", version=_version(),
                             instructions=f"plano agent listener '{listener.name}': call an agent by name, or "
                                          "'ask' and plano routes the question to the right agents.",
                             on_list_tools=self._list_tools, on_call_tool=self._call_tool)
        self.server.middleware = []  # plano traces the request itself
        self.manager = StreamableHTTPSessionManager(app=self.server, stateless=False, json_response=False,
                                                    security_settings=None,
                                                    max_request_body_size=listener.max_body_bytes or 10 << 20)
        self._runner: asyncio.Task | None = None
        self._ready: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self.closed = False

    # -- HTTP ----------------------------------------------------------------------------

    async def __call__(self, scope, receive, send) -> None:
        if self.closed:  # a request that outlived its runtime's drain: the sessions are gone
            from gateway.listeners.http import JSON_CT, send_body

            await send_body(send, 503, orjson.dumps({"jsonrpc": "2.0", "id": None, "error": {
                "code": -32603, "message": "This MCP endpoint was reloaded; start a new session."}}), [JSON_CT])
            return
        await self._start()
        started = time.perf_counter()
        body = b""
        if scope["method"] == "POST":
            chunks = []
            while True:
                message = await receive()
                chunks.append(message.get("body", b""))
                if not message.get("more_body") or message["type"] == "http.disconnect":
                    break
            body = b"".join(chunks)
        method, tool = _method_of(body) if body else (scope["method"].lower(), None)
        rid = request_id(scope)
        tel = self.app.tel
        ctx = tel.start_request(self.app.name, "agent", scope["method"], "/mcp", scope["headers"], rid, handler="mcp")
        root = ctx.root
        if root.recording:
            root.rename(f"mcp {method}")
            root.update({"mcp.method": method, **({"mcp.tool": tool} if tool else {})})
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"traceparent", b"tracestate")]
        headers.append((b"traceparent", root.traceparent().encode()))
        inner = {**scope, "headers": headers, "path": "/mcp"}
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        status = {"code": 0}
        wrapped = ctx.wrap_send(send)

        async def watch(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await wrapped(message)

        outcome = "ok"
        try:
            await self.manager.handle_request(inner, replay, watch)
        except Exception:
            outcome = "error"
            raise
        finally:
            if outcome == "ok" and status["code"] >= 400:
                outcome = "error"
            ctx.finish(bytes_in=len(body))
            if tel.metrics is not None:
                tel.metrics.protocol("mcp", method, "server", outcome, time.perf_counter() - started)

    async def _start(self) -> None:
        if self._ready is not None:
            await self._ready.wait()
            return
        self._ready, self._stop = asyncio.Event(), asyncio.Event()

        async def run() -> None:
            async with self.manager.run():
                self._ready.set()
                await self._stop.wait()

        self._runner = asyncio.get_running_loop().create_task(run())
        await self._ready.wait()

    async def aclose(self) -> None:
        """Stop the session manager: its task group is cancelled, so every session's server task and open
        stream ends (called when the listener's runtime is retired by a reload, or at shutdown)."""
        if self.closed:
            return
        self.closed = True
        sessions = len(getattr(self.manager, "_server_instances", None) or ())
        if self._stop is not None:
            self._stop.set()
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)
            log.info("mcp: listener '%s': session manager stopped (%d session(s) closed)", self.listener.name,
                     sessions)
        await asyncio.gather(*(server.aclose() for server in self.servers.values()), return_exceptions=True)

    # -- tools ---------------------------------------------------------------------------

    def _agent_tools(self) -> list:
        types = self.types
        tools = []
        for agent in self.listener.agents or []:
            endpoint = self.app.endpoints.get(agent.id)
            description = agent.description or (endpoint.a2a.description if endpoint is not None and
                                                 endpoint.a2a is not None else None) or f"The agent '{agent.id}'."
            tools.append(types.Tool(name=agent.id, description=" ".join(description.split()),
                                    input_schema=_MESSAGE_SCHEMA))
        names = ", ".join(a.id for a in self.listener.agents or [])
        tools.append(types.Tool(name="ask", input_schema=_MESSAGE_SCHEMA,
                                description=f"Ask plano's '{self.listener.name}' agents; plano's router picks which "
                                            f"of them answer ({names})."))
        return tools

    def _key(self, ctx):
        """The calling key's record (None: the listener has no auth, or the key may call every tool)."""
        if self.key_lookup is None:
            return None
        request = getattr(ctx, "request", None)
        scope = getattr(request, "scope", None) or {}
        record = self.key_lookup(scope.get("plano.key_id"))
        if record is not None and record.mcp_tools is None and record.agents is None:
            return None
        return record

    def _may(self, record, name: str) -> bool:
        """May ``record`` list and call tool ``name``? Its ``mcp_tools`` patterns, and for an agent tool its
        ``agents`` list (``ask`` needs every agent: the router may pick any of them)."""
        if record is None:
            return True
        if not record.allows_tool(name):
            return False
        if record.agents is not None:
            if name == "ask":
                return all(a.id in record.agents for a in self.listener.agents or [])
            if name in self.app.endpoints:
                return name in record.agents
        return True

    async def _list_tools(self, ctx, params):
        types = self.types
        record = self._key(ctx)
        tools = [t for t in self._agent_tools() if self._may(record, t.name)]
        headers = _headers(ctx)
        servers = list(self.servers.values())
        listed = await asyncio.gather(*(s.list_tools(headers) for s in servers), return_exceptions=True)
        for server, found in zip(servers, listed):
            if isinstance(found, BaseException):
                log.warning("mcp server '%s' left out of tools/list: %s", server.name, found)
                continue
            for tool in found:
                data = {**tool, "name": f"{server.name}{SEP}{tool['name']}"}
                if not self._may(record, data["name"]):
                    continue
                try:
                    tools.append(types.Tool.model_validate(data))
                except Exception:  # noqa: BLE001 - a tool this SDK cannot represent is skipped
                    log.warning("mcp server '%s': tool '%s' skipped (invalid definition)", server.name, tool["name"])
        return types.ListToolsResult(tools=tools)

    async def _call_tool(self, ctx, params):
        from mcp.shared.exceptions import MCPError

        types = self.types
        name = params.name
        arguments = dict(params.arguments or {})
        headers = _headers(ctx)
        if not self._may(self._key(ctx), name):  # as for a tool that does not exist: nothing to learn
            raise MCPError(-32602, f"Unknown tool: {name}")
        if name == "ask" or name in self.app.endpoints:
            message = arguments.get("message")
            if not isinstance(message, str) or not message.strip():
                raise MCPError(-32602, f"Tool '{name}' needs a 'message' string.")
            history = arguments.get("messages") if isinstance(arguments.get("messages"), list) else []
            messages = [m for m in history if isinstance(m, dict) and isinstance(m.get("role"), str)]
            messages.append({"role": "user", "content": message})
            parts: list[str] = []
            try:
                await inprocess.ask(self.app, messages, headers, parts.append, agent=None if name == "ask" else name)
            except inprocess.ChatFailed as exc:
                return types.CallToolResult(content=[types.TextContent(text=f"HTTP {exc.status}: {exc.message}")],
                                            is_error=True)
            return types.CallToolResult(content=[types.TextContent(text="".join(parts))])
        server_name, sep, tool = name.partition(SEP)
        server = self.servers.get(server_name) if sep else None
        if server is None or not tool or not server.allowed(tool):
            raise MCPError(-32602, f"Unknown tool: {name}")
        try:
            result = await server.call_tool(tool, arguments, headers)
        except McpUpstreamError as exc:
            if exc.code == -32602:
                raise MCPError(-32602, f"Unknown tool: {name}") from None
            raise MCPError(-32603, str(exc)) from None
        return types.CallToolResult.model_validate(result)


def _headers(ctx) -> dict[str, str]:
    """Headers of the MCP HTTP request worth handing on: trace context and the request id (never
    credentials: the listener's edge already checked them, and upstream servers must not see them)."""
    request = getattr(ctx, "request", None)
    raw = getattr(request, "headers", None)
    if raw is None:
        return {}
    keep = ("traceparent", "tracestate", "x-request-id")
    return {k: raw[k] for k in keep if k in raw}


def _method_of(body: bytes) -> tuple[str, str | None]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "invalid", None
    if isinstance(data, list):
        return "batch", None
    if not isinstance(data, dict) or not isinstance(data.get("method"), str):
        return "response", None
    params = data.get("params")
    tool = params.get("name") if data["method"] == "tools/call" and isinstance(params, dict) else None
    return data["method"][:64], tool if isinstance(tool, str) else None


def _version() -> str:
    from gateway import __version__

    return __version__
