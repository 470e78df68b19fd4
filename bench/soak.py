#!/usr/bin/env python3
"""Soak: steady load for ``--duration`` seconds with faults injected; RSS, errors and latency over time.

What runs (all on loopback, all real processes):
- plano (``--workers`` N) with an agent listener (agent ``echo`` on two endpoints, retries and a
  breaker) and a model listener (provider ``openai/main`` with a breaker, falling back to
  ``openai/backup``), a listener rate limit, breakers and limits shared through a private
  ``redis-server`` (its own port; the machine's Redis is not touched);
- two agent processes (``echo`` endpoints 1 and 2) and two provider mocks (main, backup);
- ``-c`` clients, half on the agent listener, half on the model listener.

Faults, each followed by a recovery check (the last 10 s of each phase must be error-free):
1. agent endpoint 1 killed (SIGKILL) at 20% of the run, restarted 30 s later;
2. the main provider answers 503 for 30 s from 40%;
3. Redis killed at 60% and restarted 15 s later (limits and breakers fall back to local);
Every 10 s: requests, errors, p50/p99 latency and the RSS of plano's processes. The summary
compares RSS after the warm-up (10% of the run) with the end: growth must stay ≤ 10%.

    .venv/bin/python bench/soak.py [--duration 600] [-c 8] [--workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proctree import tree_rss  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

#: One small aiohttp server per process: an agent or a provider mock. ``FAIL_FILE`` existing → 503.
SERVER = textwrap.dedent('''
    import os, sys, json
    from aiohttp import web
    name, port, fail = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    async def chat(request):
        await request.read()
        if fail != "-" and os.path.exists(fail):
            return web.json_response({"error": {"message": "overloaded", "type": "server_error"}}, status=503)
        return web.json_response({"id": "x", "object": "chat.completion", "created": 0, "model": name,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok " + name}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})
    async def health(request):
        return web.json_response({"ok": True})
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/healthz", health)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)
''')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} did not open")


def spawn_server(name: str, port: int, fail: str = "-") -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", SERVER, name, str(port), fail], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc


def spawn_redis(port: int) -> subprocess.Popen:
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
                             "--bind", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    wait_port(port)
    return proc


def config(ports: dict) -> dict:
    return {
        "version": "v0.4.0",
        "agents": [{"id": "echo", "urls": [f"http://127.0.0.1:{ports['agent1']}", f"http://127.0.0.1:{ports['agent2']}"],
                    "retry": {"attempts": 3, "backoff": "50ms", "on": ["connect_error", "reset", "503"]},
                    "circuit_breaker": {"failure_threshold": 3, "reset_timeout": "5s"}}],
        "model_providers": [
            {"model": "openai/main", "access_key": "sk-main", "base_url": f"http://127.0.0.1:{ports['main']}/v1",
             "default": True, "fallback_models": ["openai/backup"],
             "circuit_breaker": {"failure_threshold": 5, "reset_timeout": "5s"}},
            {"model": "openai/backup", "access_key": "sk-backup", "base_url": f"http://127.0.0.1:{ports['backup']}/v1"},
        ],
        "listeners": [
            {"type": "agent", "name": "team", "port": ports["agents"], "address": "127.0.0.1",
             "requests_per_minute": 1_000_000,
             "agents": [{"id": "echo", "description": "answers everything", "default": True}]},
            {"type": "model", "name": "llm", "port": ports["models"], "address": "127.0.0.1",
             "requests_per_minute": 1_000_000},
        ],
        "state": {"redis_url": f"redis://127.0.0.1:{ports['redis']}/0"},
    }


async def client(session, url: str, model: str, stop: asyncio.Event, samples: list) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": "status please"}]}
    while not stop.is_set():
        start = time.monotonic()
        try:
            async with session.post(url, json=body) as resp:
                data = await resp.read()
                ok = resp.status == 200
                source = data.split(b'"ok ', 1)[1].split(b'"', 1)[0].decode() if ok and b'"ok ' in data else "?"
                samples.append((start, time.monotonic() - start, ok, resp.status, source))
        except Exception as exc:
            samples.append((start, time.monotonic() - start, False, type(exc).__name__, "-"))
        await asyncio.sleep(0.002)  # steady load, not saturation


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=600.0)
    ap.add_argument("-c", "--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    d = args.duration
    tmp = Path(tempfile.mkdtemp(prefix="plano-soak-"))
    fail_file = tmp / "main-fails"
    ports = {k: free_port() for k in ("agent1", "agent2", "main", "backup", "redis", "agents", "models")}
    procs: dict[str, subprocess.Popen] = {
        "redis": spawn_redis(ports["redis"]),
        "agent1": spawn_server("agent1", ports["agent1"]),
        "agent2": spawn_server("agent2", ports["agent2"]),
        "main": spawn_server("main", ports["main"], str(fail_file)),
        "backup": spawn_server("backup", ports["backup"]),
    }
    cfg = tmp / "plano.yaml"
    cfg.write_text(yaml.safe_dump(config(ports), sort_keys=False))
    env = {**os.environ, "PLANO_HOME": str(tmp / "home"), "PLANO_ACCESS_LOG": "off"}
    gw = subprocess.Popen([sys.executable, "-m", "gateway", "up", str(cfg), "--foreground", "--workers",
                           str(args.workers)], cwd=ROOT, env=env, start_new_session=True,
                          stdout=subprocess.DEVNULL, stderr=open(tmp / "gateway.log", "wb"))
    faults: list[tuple[str, float, float]] = []  # (name, start, end) in run time
    rows: list[tuple] = []

    async def run() -> list:
        samples: list = []
        stop = asyncio.Event()
        t0 = time.monotonic()
        conn = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=conn) as session:
            half = max(1, args.clients // 2)
            tasks = [asyncio.create_task(client(session, f"http://127.0.0.1:{ports['agents']}/v1/chat/completions",
                                                "x", stop, samples)) for _ in range(half)]
            tasks += [asyncio.create_task(client(session, f"http://127.0.0.1:{ports['models']}/v1/chat/completions",
                                                 "main", stop, samples)) for _ in range(args.clients - half)]
            plan = [
                (0.2 * d, "kill agent endpoint 1", lambda: procs["agent1"].send_signal(signal.SIGKILL)),
                (0.2 * d + 30, "restart agent endpoint 1",
                 lambda: procs.__setitem__("agent1", spawn_server("agent1", ports["agent1"]))),
                (0.4 * d, "main provider answers 503", lambda: fail_file.write_text("1")),
                (0.4 * d + 30, "main provider recovers", lambda: fail_file.unlink()),
                (0.6 * d, "kill redis", lambda: procs["redis"].send_signal(signal.SIGKILL)),
                (0.6 * d + 15, "restart redis", lambda: procs.__setitem__("redis", spawn_redis(ports["redis"]))),
            ]
            plan.sort(key=lambda step: step[0])
            next_report = 10.0
            seen = 0
            while True:
                now = time.monotonic() - t0
                if now >= d:
                    break
                while plan and plan[0][0] <= now:
                    at, name, action = plan.pop(0)
                    began = time.monotonic() - t0
                    await asyncio.to_thread(action)
                    faults.append((name, began, time.monotonic() - t0))
                    print(f"[{now:6.0f}s] fault: {name}", flush=True)
                if now >= next_report:
                    window = [s for s in samples[seen:]]
                    seen = len(samples)
                    lat = sorted(s[1] for s in window) or [0.0]
                    errors = [s for s in window if not s[2]]
                    rss = tree_rss(gw.pid)
                    rows.append((now, len(window), len(errors), lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1], rss))
                    kinds = sorted({str(s[3]) for s in errors})
                    served = {}
                    for sample in window:
                        served[sample[4]] = served.get(sample[4], 0) + 1
                    served = " ".join(f"{k}:{v}" for k, v in sorted(served.items()))
                    print(f"[{now:6.0f}s] {len(window):6d} req ({served})  errors {len(errors):4d} {kinds if errors else ''}  "
                          f"p50 {lat[len(lat) // 2] * 1000:6.1f} ms  p99 {lat[int(len(lat) * 0.99) - 1] * 1000:6.1f} ms  "
                          f"RSS {rss / 2**20:6.1f} MiB", flush=True)
                    next_report += 10.0
                await asyncio.sleep(0.2)
            stop.set()
            await asyncio.gather(*tasks)
        return [(s[0] - t0, *s[1:]) for s in samples]

    try:
        wait_port(ports["agents"])
        wait_port(ports["models"])
        samples = asyncio.run(run())
    finally:
        gw.terminate()
        try:
            gw.wait(40)
        except subprocess.TimeoutExpired:
            gw.kill()
        for proc in procs.values():
            proc.kill()
    total = len(samples)
    errors = [s for s in samples if not s[2]]
    lat = sorted(s[1] for s in samples)
    warm = next((r for r in rows if r[0] >= 0.1 * d), rows[0])
    end_rss = statistics.median(r[5] for r in rows[-3:])
    growth = end_rss / warm[5] - 1
    print(f"\nsoak: {d:.0f}s, c={args.clients}, {args.workers} worker(s): {total:,} requests, "
          f"{len(errors)} errors ({len(errors) / max(total, 1) * 100:.3f}%), p50 {lat[len(lat) // 2] * 1000:.1f} ms, "
          f"p99 {lat[int(len(lat) * 0.99) - 1] * 1000:.1f} ms")
    print(f"RSS after warm-up {warm[5] / 2**20:.1f} MiB, at the end {end_rss / 2**20:.1f} MiB: growth {growth * 100:+.1f}% "
          f"(bar ≤ 10%)")
    # Errors by phase: a fault's window runs from its start to its recovery action + 10 s.
    windows = []
    for name, start, _ in faults:
        if name.startswith(("kill", "main provider answers")):
            recovery = next((f for f in faults if f[1] > start and not f[0].startswith(("kill", "main provider answers"))),
                            None)
            windows.append((name, start, (recovery[2] if recovery else d) + 10))
    outside = [s for s in errors if not any(a <= s[0] <= b for _, a, b in windows)]
    for name, a, b in windows:
        inside = [s for s in errors if a <= s[0] <= b]
        print(f"  fault '{name}' ({a:.0f}-{b:.0f}s): {len(inside)} errors")
    print(f"  errors outside the fault windows: {len(outside)}")
    ok = not outside and growth <= 0.10
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
