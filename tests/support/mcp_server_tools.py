"""An upstream MCP server with a few tools, built with the official ``mcp`` SDK, run as a real process.

``python -m tests.support.mcp_server_tools --port P --kind math|text [--stateless] [--json]``:

``math``: ``add(a, b)``, ``multiply(a, b)``, ``drop_tables()`` (a tool a gateway should deny)
``text``: ``upper(text)``, ``reverse(text)``, ``shout_secret()``

``GET /stats`` answers the tool names called (counted on the wire) and the sessions ended by a client's
``DELETE`` (``deleted``); ``GET /healthz`` 200.
"""

from __future__ import annotations

import argparse
import json


def build_app(kind: str, stateless: bool, json_response: bool):
    from mcp.server.mcpserver import MCPServer

    server = MCPServer(f"plano-test-{kind}")
    if kind == "math":
        @server.tool()
        async def add(a: int, b: int) -> int:
            """Add two integers."""
            return a + b

        @server.tool()
        async def multiply(a: int, b: int) -> int:
            """Multiply two integers."""
            return a * b

        @server.tool()
        async def drop_tables() -> str:
            """Drops every table (dangerous)."""
            return "dropped"
    else:
        @server.tool()
        async def upper(text: str) -> str:
            """Upper-case a text."""
            return text.upper()

        @server.tool()
        async def reverse(text: str) -> str:
            """Reverse a text."""
            return text[::-1]

        @server.tool()
        async def shout_secret() -> str:
            """Reveals a secret."""
            return "the secret"

    inner = server.streamable_http_app(stateless_http=stateless, json_response=json_response)
    called: list[str] = []
    deleted: list[str] = []

    async def app(scope, receive, send):
        if scope["type"] == "http" and scope["path"] in ("/stats", "/healthz"):
            body = json.dumps({"called": called, "deleted": deleted}).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        if scope["type"] == "http" and scope["method"] == "DELETE":
            sid = next((v.decode() for k, v in scope["headers"] if k == b"mcp-session-id"), "")
            deleted.append(sid)
        if scope["type"] != "http" or scope["method"] != "POST":
            await inner(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        try:
            data = json.loads(raw)
            if data.get("method") == "tools/call":
                called.append(data["params"]["name"])
        except (ValueError, AttributeError, KeyError, TypeError):
            pass
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        await inner(scope, replay, send)

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--kind", choices=["math", "text"], default="math")
    parser.add_argument("--stateless", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import uvicorn

    uvicorn.run(build_app(args.kind, args.stateless, args.json), host="127.0.0.1", port=args.port,
                log_level="warning")


if __name__ == "__main__":
    main()
