#!/usr/bin/env python3
"""Hot reload under load: swap an agent's URL while clients keep sending, count failures.

Two echo agents (A and B, aiohttp on loopback, each naming itself in its answer) behind a plano
agent listener; ``-c`` clients send chat requests back to back for ``--duration`` seconds
while the config's agent URL is switched A → B → A … every ``--every`` seconds with
``plano reload``. Reports requests, failures (any non-200 or connection error), reloads done,
and how many answers came from each agent (both must be non-zero: the swaps took effect).

    .venv/bin/python bench/reload_under_load.py [-c 10] [--duration 30] [--every 3] [--workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_agent(name: str, port: int) -> None:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"id": "x", "object": "chat.completion", "created": 0, "model": name,
                                  "choices": [{"index": 0, "finish_reason": "stop",
                                               "message": {"role": "assistant", "content": f"agent {name}"}}]})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    def run() -> None:
        loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", handle)
        app.router.add_get("/healthz", health)
        runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()


def config(agent_url: str, port: int, model_port: int) -> dict:
    return {
        "version": "v0.4.0",
        "agents": [{"id": "echo", "url": agent_url}],
        "model_providers": [{"model": "openai/none", "access_key": "sk-x", "base_url": "http://127.0.0.1:9/v1",
                             "default": True}],
        "listeners": [
            {"type": "agent", "name": "team", "port": port, "address": "127.0.0.1",
             "agents": [{"id": "echo", "description": "answers everything", "default": True}]},
            {"type": "model", "name": "llm", "port": model_port, "address": "127.0.0.1"},
        ],
    }


async def load(url: str, clients: int, duration: float, counts: dict, failures: list) -> None:
    body = {"model": "x", "messages": [{"role": "user", "content": "hello"}]}
    end = time.monotonic() + duration
    async with aiohttp.ClientSession() as session:
        async def client() -> None:
            while time.monotonic() < end:
                try:
                    async with session.post(url, json=body) as resp:
                        data = await resp.json(content_type=None)
                        if resp.status != 200:
                            failures.append(resp.status)
                            continue
                        text = data["choices"][0]["message"]["content"]
                        counts[text] = counts.get(text, 0) + 1
                except Exception as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")

        await asyncio.gather(*(client() for _ in range(clients)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--clients", type=int, default=10)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--every", type=float, default=3.0)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    a_port, b_port, port, model_port = free_port(), free_port(), free_port(), free_port()
    start_agent("A", a_port)
    start_agent("B", b_port)
    tmp = Path(tempfile.mkdtemp(prefix="plano-reload-"))
    cfg = tmp / "plano.yaml"
    cfg.write_text(yaml.safe_dump(config(f"http://127.0.0.1:{a_port}", port, model_port)))
    env = {**os.environ, "PLANO_HOME": str(tmp / "home"), "PLANO_ACCESS_LOG": "off"}
    gw = subprocess.Popen([sys.executable, "-m", "gateway", "up", str(cfg), "--foreground", "--workers",
                           str(args.workers)], cwd=ROOT, env=env, start_new_session=True,
                          stdout=subprocess.DEVNULL, stderr=open(tmp / "gateway.log", "wb"))
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("gateway did not start; see " + str(tmp / "gateway.log"))
                time.sleep(0.05)
        counts: dict = {}
        failures: list = []
        reloads = {"ok": 0, "failed": 0}

        def reloader() -> None:
            use_b = True
            end = time.monotonic() + args.duration - args.every / 2
            while time.monotonic() + args.every < end:
                time.sleep(args.every)
                target = b_port if use_b else a_port
                use_b = not use_b
                cfg.write_text(yaml.safe_dump(config(f"http://127.0.0.1:{target}", port, model_port)))
                done = subprocess.run([sys.executable, "-m", "gateway", "reload", "--pid", str(gw.pid)],
                                      cwd=ROOT, env=env, capture_output=True, text=True)
                reloads["ok" if done.returncode == 0 else "failed"] += 1

        thread = threading.Thread(target=reloader)
        thread.start()
        start = time.monotonic()
        asyncio.run(load(f"http://127.0.0.1:{port}/v1/chat/completions", args.clients, args.duration, counts,
                         failures))
        elapsed = time.monotonic() - start
        thread.join()
        total = sum(counts.values()) + len(failures)
        print(f"reload under load: c={args.clients}, {elapsed:.0f}s, {args.workers} worker(s): {total:,} requests "
              f"({total / elapsed:,.0f}/s), failures {len(failures)}, reloads ok {reloads['ok']} / failed "
              f"{reloads['failed']}, answers {dict(sorted(counts.items()))}")
        if failures:
            print("first failures:", failures[:5])
        ok = not failures and reloads["ok"] > 0 and not reloads["failed"] and len(counts) == 2
        return 0 if ok else 1
    finally:
        gw.terminate()
        gw.wait(30)


if __name__ == "__main__":
    raise SystemExit(main())
