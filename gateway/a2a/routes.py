"""An agent listener's protocol endpoints: A2A (card + JSON-RPC) and MCP.

Checked before the listener's own routes with one string test per request, so the chat path
pays nothing measurable; the SDK apps are built on their first request (``a2a-sdk`` for A2A,
``mcp`` for MCP: neither is imported by a listener nobody talks A2A or MCP to).

Each protocol request is a request of the listener's telemetry: its root span (named
``a2a <method>`` / ``mcp <method>``, with ``a2a.method`` / ``a2a.task_id`` or ``mcp.method`` /
``mcp.tool``) continues the caller's ``traceparent``, and the chat question it asks the
listener in process continues that span, so routing, agents and filters are its children.
``plano_protocol_requests_total{protocol, method, direction="server", outcome}`` counts them.
"""

from __future__ import annotations

import logging

from gateway.listeners.http import JSON_CT, header, request_id, send_body

log = logging.getLogger("plano.a2a")

_CARD_PATHS = ("/.well-known/agent-card.json", "/.well-known/agent.json")


class ProtocolRoutes:
    def __init__(self, app, config, listener) -> None:
        self.app = app
        self.config = config
        self.listener = listener
        self.a2a_on = bool(getattr(listener, "a2a", False))
        self.mcp_on = bool(getattr(listener, "mcp", False))
        self._a2a = None
        self._mcp = None
        #: The caller's key record by ``scope["plano.key_id"]`` (set by the auth runtime when the listener
        #: has ``auth``): the MCP endpoint lists and allows only the tools the key may call.
        self.key_lookup = None

    async def __call__(self, scope, receive, send) -> bool:
        """Serve the request if it is a protocol request (True), else leave it to the listener."""
        path = scope["path"]
        if self.a2a_on:
            if path in _CARD_PATHS and scope["method"] == "GET":
                await self.card(scope, send, legacy=path.endswith("agent.json"))
                return True
            if path in ("/a2a", "/a2a/"):
                await self.a2a(scope, receive, send)
                return True
        if self.mcp_on and (path == "/mcp" or path == "/mcp/"):
            await self.mcp(scope, receive, send)
            return True
        return False

    # -- A2A -----------------------------------------------------------------------------

    def _a2a_server(self):
        if self._a2a is None:
            try:
                from gateway.a2a.server import build_server

                self._a2a = build_server(self.app, self.listener, self.app.tel.metrics)
            except ImportError as exc:
                raise _Missing(f"A2A needs the a2a extra (pip install 'plano[a2a]'): {exc}") from None
        return self._a2a

    async def card(self, scope, send, *, legacy: bool) -> None:
        try:
            card, _, _ = self._a2a_server()
        except _Missing as exc:
            await _unavailable(send, str(exc))
            return
        from gateway.a2a.server import card_json

        host = (header(scope, b"host") or b"").decode("latin-1") or f"127.0.0.1:{scope['server'][1]}"
        proto = (header(scope, b"x-forwarded-proto") or scope.get("scheme", "http").encode()).decode("latin-1")
        body = card_json(card(f"{proto}://{host}"), legacy)
        await send_body(send, 200, body, [JSON_CT, (b"cache-control", b"no-cache")])

    async def a2a(self, scope, receive, send) -> None:
        import orjson

        from gateway.a2a.server import bind_span, method_of, now

        if scope["method"] != "POST":
            await send_body(send, 405, b'{"error": "use POST for A2A JSON-RPC"}', [JSON_CT, (b"allow", b"POST")])
            return
        try:
            _, rpc_app, _ = self._a2a_server()
        except _Missing as exc:
            await _unavailable(send, str(exc))
            return
        started = now()
        limit = self.listener.max_body_bytes or 10 * 1024 * 1024
        body, too_big = await _read_limited(scope, receive, limit)
        rid = request_id(scope)
        tel = self.app.tel
        ctx = tel.start_request(self.app.name, "agent", "POST", "/a2a", scope["headers"], rid, handler="a2a")
        method, task_id = ("invalid", None) if too_big else method_of(body)
        root = ctx.root
        if root.recording:
            root.rename(f"a2a {method}")
            root.update({"a2a.method": method, **({"a2a.task_id": task_id} if task_id else {})})
        status = {"code": 0}
        wrapped = ctx.wrap_send(send)

        async def watch(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await wrapped(message)

        outcome = "ok"
        try:
            if too_big:
                outcome = "too_large"
                error = {"jsonrpc": "2.0", "id": None, "error": {
                    "code": -32600, "message": f"Payload too large: the message is over this listener's limit of "
                                               f"{limit} bytes (max_body_bytes)."}}
                await send_body(watch, 200, orjson.dumps(error), [JSON_CT])
                return
            headers = [(k, v) for k, v in scope["headers"] if k not in (b"traceparent", b"tracestate")]
            headers.append((b"traceparent", root.traceparent().encode()))
            headers.append((b"x-request-id", rid.encode()))
            inner = {**scope, "headers": headers}
            replayed = False

            async def replay():
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            bind_span(root)
            await rpc_app(inner, replay, watch)
        except Exception:
            outcome = "error"
            raise
        finally:
            if outcome == "ok" and status["code"] >= 400:
                outcome = "error"
            ctx.finish(bytes_in=len(body))
            metrics = tel.metrics
            if metrics is not None:
                metrics.protocol("a2a", method, "server", outcome, now() - started)

    # -- MCP -----------------------------------------------------------------------------

    async def mcp(self, scope, receive, send) -> None:
        if self._mcp is None:
            try:
                from gateway.mcp_gateway.server import McpGateway
            except ImportError as exc:
                await _unavailable(send, f"MCP needs the mcp package (pip install mcp): {exc}")
                return
            self._mcp = McpGateway(self.app, self.config, self.listener, self.key_lookup)
        await self._mcp(scope, receive, send)

    async def aclose(self) -> None:
        """Stop the MCP session manager (its sessions end) and drain the A2A handler's running tasks:
        called when the runtime that built this listener is retired (reload) or shut down."""
        if self._mcp is not None:
            await self._mcp.aclose()
        if self._a2a is not None:
            handler = self._a2a[2]
            close = getattr(handler, "aclose", None)
            if close is not None:
                await close()


class _Missing(Exception):
    pass


async def _unavailable(send, message: str) -> None:
    import orjson

    await send_body(send, 501, orjson.dumps({"error": {"message": message, "type": "server_error",
                                                        "code": "not_installed", "param": None}}), [JSON_CT])


async def _read_limited(scope, receive, limit: int) -> tuple[bytes, bool]:
    """The body, or (what was read, True) once it is over ``limit`` (a declared length over it: nothing read)."""
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return b"", True
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks), False
