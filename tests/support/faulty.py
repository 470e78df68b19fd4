"""Upstreams for fault-injection tests that a test can kill or that never answer.

- :class:`EchoAgentProcess`: a minimal OpenAI chat-completions agent in a process of
  its own (``python -m tests.support.faulty --port N``), so a test can SIGKILL it
  mid-load the way a crashed instance dies: no graceful shutdown, sockets closed
  by the kernel.
- :class:`Blackhole`: a TCP server on loopback (background thread) that accepts
  connections, reads what it is sent and never answers; it counts connections, so
  a test can tell how many requests the gateway really has hanging upstream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import threading
import time
from pathlib import Path

from tests.support.service import ServiceProcess


class EchoAgentProcess(ServiceProcess):
    """This module run as a process: answers every chat completion with ``echo: <last user text>``."""

    def __init__(self, workdir: Path, *, port: int | None = None) -> None:
        super().__init__("tests.support.faulty", [], workdir, label="echo agent", port=port)

    def start(self) -> "EchoAgentProcess":
        self.launch()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"echo agent exited with {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("echo agent did not start listening")

    def kill(self) -> None:
        """SIGKILL: the instance dies at once, like a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:  # type: ignore[override]
        self.kill()
        if self._log is not None:
            self._log.close()
            self._log = None


class Blackhole:
    """Accepts TCP connections and never answers (see the module docstring)."""

    def __init__(self) -> None:
        self.accepted = 0
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._writers: set = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Blackhole":
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._hold, "127.0.0.1", 0, backlog=4096))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True, name="blackhole")
        self._thread.start()
        ready.wait(10)
        return self

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.add(writer)
        try:
            while await reader.read(65536):
                pass
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def stop(self) -> None:
        if self._loop is None:
            return

        async def shutdown() -> None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            me = asyncio.current_task()
            for task in asyncio.all_tasks():
                if task is not me:
                    task.cancel()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


# ----------------------------------------------------------------------------- the process


def _serve(port: int) -> None:
    from aiohttp import web

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        text = ""
        for message in reversed(body.get("messages", [])):
            if message.get("role") == "user":
                text = str(message.get("content"))
                break
        return web.json_response({
            "id": "chatcmpl-echo", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "echo"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": f"echo: {text}"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text=json.dumps({"status": "ok"}), content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    _serve(parser.parse_args().port)
