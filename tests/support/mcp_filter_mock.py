"""An MCP filter server written with the official ``mcp`` SDK, run as a real process.

``python -m tests.support.mcp_filter_mock --port P [--stateless] [--json]`` serves
FastMCP (``MCPServer`` in mcp 2.x) over streamable HTTP at ``/mcp`` with uvicorn, in
the SDK's default stateful mode or ``stateless_http=True``, SSE or ``json_response``
answers. Tools take Plano's ``(body, path)`` and return the payload:

``rewrite``  every string: "colour" -> "color"
``guard``    raises ``ToolError`` when any string mentions "hack", else returns the body
``redact``   every string: ``sk-live-…`` keys -> "[REDACTED]"

``GET /stats`` answers how many ``initialize`` and ``tools/call`` requests arrived,
counted on the wire in front of the SDK app. :class:`McpFilterProcess` starts,
stops and restarts such a process from a test.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support.gateway import free_port
from tests.support.http_filter_mock import SECRET, map_strings, strings

REPO = Path(__file__).resolve().parents[2]


def build_app(stateless: bool, json_response: bool):
    try:  # mcp >= 2
        from mcp.server.mcpserver import MCPServer as FastMCP
        from mcp.server.mcpserver.exceptions import ToolError
        v2 = True
    except ImportError:  # mcp 1.x
        from mcp.server.fastmcp import FastMCP
        from mcp.server.fastmcp.exceptions import ToolError
        v2 = False

    if v2:
        server = FastMCP("plano-test-filters")
    else:
        server = FastMCP("plano-test-filters", stateless_http=stateless, json_response=json_response)

    @server.tool()
    async def rewrite(body: dict, path: str) -> dict:
        """Spelling normaliser."""
        return map_strings(body, lambda s: s.replace("colour", "color"))

    @server.tool()
    async def guard(body: dict, path: str) -> dict:
        """Blocks requests about hacking."""
        if any("hack" in s for s in strings(body)):
            raise ToolError("no hacking allowed (mcp guard)")
        return body

    @server.tool()
    async def redact(body: dict, path: str) -> dict:
        """Secret redactor."""
        return map_strings(body, lambda s: SECRET.sub("[REDACTED]", s))

    if v2:
        inner = server.streamable_http_app(stateless_http=stateless, json_response=json_response)
    else:
        inner = server.streamable_http_app()
    stats = {"initialize": 0, "tools_call": 0, "notifications": 0}

    async def app(scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/stats":
            body = json.dumps(stats).encode()
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
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
            method = json.loads(raw).get("method", "")
        except (ValueError, AttributeError):
            method = ""
        if method == "initialize":
            stats["initialize"] += 1
        elif method == "tools/call":
            stats["tools_call"] += 1
        elif method.startswith("notifications/"):
            stats["notifications"] += 1
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        await inner(scope, replay, send)

    return app


class McpFilterProcess:
    """One MCP filter server process on a fixed loopback port (kept across restarts)."""

    def __init__(self, *, stateless: bool = False, json_response: bool = False, workdir: Path) -> None:
        self.stateless = stateless
        self.json_response = json_response
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> McpFilterProcess:
        args = [sys.executable, "-m", "tests.support.mcp_filter_mock", "--port", str(self.port)]
        if self.stateless:
            args.append("--stateless")
        if self.json_response:
            args.append("--json")
        with open(self.workdir / f"mcp-{self.port}.log", "ab") as log:
            self.proc = subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        return self

    def wait(self, timeout: float = 30.0) -> McpFilterProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"MCP filter server exited with {self.proc.returncode}")
            try:
                self.stats()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("MCP filter server did not come up")

    def stats(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/stats", timeout=1) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def restart(self) -> McpFilterProcess:
        self.stop()
        return self.launch().wait()


def main() -> None:
    import uvicorn

    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--stateless", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    uvicorn.run(build_app(args.stateless, args.json), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
