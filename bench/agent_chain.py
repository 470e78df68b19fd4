#!/usr/bin/env python3
"""Agent-listener overhead for a two-agent chain chosen by the embedded router.

Starts two fast agents (bench/fast_agent.py) and plano with an agent listener
(weather, flights, and a default general agent), then at concurrency ``-c`` for
``-d`` seconds sends a two-intent prompt through plano, and — with the same client —
makes the two agent calls directly and sequentially. Overhead = plano p50 − direct p50
(what plano adds: parsing, routing, hand-off, relaying). Loopback only; bounded runs.

    .venv/bin/python bench/agent_chain.py [-c 8] [-d 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
PROMPT = "What's the weather in Paris and find me flights from NYC to Paris"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shared_uvicorn(app: str, port: int, env: dict | None = None, cpus: str | None = None) -> subprocess.Popen:
    """An app of ../shared/bench (mock upstream, mini proxy) under uvicorn + uvloop + httptools, own session;
    ``cpus`` (a taskset list such as "1") pins it and its children."""
    shared = ROOT.parent / "shared" / "bench"
    pin = ["taskset", "-c", cpus] if cpus else []
    return subprocess.Popen([*pin, PY, "-m", "uvicorn", app, "--app-dir", str(shared), "--port", str(port), "--loop",
                             "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"],
                            env={**os.environ, **(env or {})}, start_new_session=True)


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


def count(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count") as r:
        return json.loads(r.read())["n"]


async def load(calls, concurrency: int, duration: float, warmup: float) -> list[float]:
    latencies: list[float] = []
    stop_at = time.perf_counter() + warmup + duration
    measure_from = time.perf_counter() + warmup
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def user():
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                await calls(session)
                if t0 >= measure_from:
                    latencies.append(time.perf_counter() - t0)
        await asyncio.gather(*(user() for _ in range(concurrency)))
    return sorted(latencies)


def stop_all(procs: list[subprocess.Popen]) -> None:
    """SIGTERM every process group, then SIGKILL whatever has not exited after 10 s."""
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q / 100 * len(values)))] * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--concurrency", type=int, default=8)
    ap.add_argument("-d", "--duration", type=float, default=10.0)
    ap.add_argument("-w", "--warmup", type=float, default=2.0)
    args = ap.parse_args()
    a, b, g, gw = free_port(), free_port(), free_port(), free_port()
    procs = []
    tmp = Path(tempfile.mkdtemp(prefix="plano-chain-"))
    try:
        for port in (a, b, g):
            procs.append(subprocess.Popen([PY, "-m", "uvicorn", "fast_agent:app", "--app-dir", str(ROOT / "bench"),
                                           "--port", str(port), "--loop", "uvloop", "--http", "httptools",
                                           "--no-access-log", "--log-level", "warning"], start_new_session=True))
        config = f"""version: v0.4.0
agents:
  - {{id: weather_agent, url: "http://127.0.0.1:{a}"}}
  - {{id: flight_agent, url: "http://127.0.0.1:{b}"}}
  - {{id: general_agent, url: "http://127.0.0.1:{g}"}}
listeners:
  - type: agent
    name: bench
    port: {gw}
    address: 127.0.0.1
    agents:
      - id: weather_agent
        description: Weather forecasts and current conditions for any city. Handles 'What is the weather in Paris?'
      - id: flight_agent
        description: Flight search between airports and cities, schedules and fares. Handles 'Find flights from NYC to Paris'
      - id: general_agent
        default: true
        description: Greetings, small talk and anything else.
"""
        (tmp / "plano.yaml").write_text(config)
        procs.append(subprocess.Popen([PY, "-m", "gateway", "up", str(tmp / "plano.yaml"), "--foreground"], cwd=ROOT,
                                      start_new_session=True, stderr=subprocess.DEVNULL))
        for port in (a, b, g, gw):
            wait_http(f"http://127.0.0.1:{port}/healthz")
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": PROMPT}]}).encode()
        headers = {"content-type": "application/json"}

        before = (count(a), count(b))
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{gw}/v1/chat/completions", data=body,
                                                      headers=headers)).read()
        if (count(a) - before[0], count(b) - before[1]) != (1, 1):
            raise SystemExit("the embedded router did not choose both agents for the bench prompt")

        async def via_plano(session):
            async with session.post(f"http://127.0.0.1:{gw}/v1/chat/completions", data=body, headers=headers) as r:
                await r.read()

        async def direct(session):
            for port in (a, b):
                async with session.post(f"http://127.0.0.1:{port}/v1/chat/completions", data=body, headers=headers) as r:
                    await r.read()

        d = asyncio.run(load(direct, args.concurrency, args.duration, args.warmup))
        p = asyncio.run(load(via_plano, args.concurrency, args.duration, args.warmup))
        print(f"two-agent chain, embedded router, c={args.concurrency}, {args.duration:g}s each")
        print(f"{'target':<22}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
        for name, v in (("direct (2 calls)", d), ("plano agent listener", p)):
            print(f"{name:<22}{len(v) / args.duration:>10.0f}{pct(v, 50):>10.2f}{pct(v, 99):>10.2f}")
        overhead = pct(p, 50) - pct(d, 50)
        print(f"overhead p50: {overhead:.2f} ms (target <= 5 ms) -> {'PASS' if overhead <= 5 else 'FAIL'}")
        return 0
    finally:
        stop_all(procs)


if __name__ == "__main__":
    raise SystemExit(main())
