#!/usr/bin/env python3
"""What an open circuit breaker saves: latency of requests to an agent that hangs.

A "blackhole" agent accepts connections and never answers. The agent has
``timeout: 2s`` and a breaker (``failure_threshold: 3``). The first requests each
wait the full timeout (504); once the breaker is open the following requests are
refused at once (503 ``agent_open`` with ``Retry-After``) without touching the
agent. Reported: the latency of the timed-out requests, then p50/p99/max of the
fail-fast ones measured one at a time (c=1) and the throughput of fail-fast
answers at c=32, and how many connections the agent saw (it must not grow).

    .venv/bin/python bench/breaker_failfast.py [--requests 500]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from agent_chain import free_port, stop_all, wait_http  # noqa: E402
from tracing_overhead import wrk  # noqa: E402


class Blackhole:
    """Accepts TCP connections, reads, never answers; counts connections."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self.held.append(conn)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=500)
    args = ap.parse_args()
    hole = Blackhole()
    tmp = Path(tempfile.mkdtemp(prefix="plano-breaker-"))
    port = free_port()
    cfg = tmp / "plano.yaml"
    cfg.write_text(f"""version: v0.4.0
agents:
  - {{id: stuck, url: "http://127.0.0.1:{hole.port}", timeout: 2s,
     circuit_breaker: {{failure_threshold: 3, reset_timeout: 300s}}}}
model_providers:
  - {{model: openai/unused, base_url: "http://127.0.0.1:9", default: true}}
listeners:
  - {{type: agent, name: desk, port: {port}, address: 127.0.0.1, timeout: 30s,
     agents: [{{id: stuck, description: answers}}]}}
  - {{type: model, name: llm, port: {free_port()}, address: 127.0.0.1}}
""")
    env = {**os.environ, "PLANO_ACCESS_LOG": "off", "PLANO_ADMIN_PORT": "0", "PLANO_HOME": str(tmp / "home")}
    gw = subprocess.Popen([sys.executable, "-m", "gateway", "up", str(cfg), "--foreground"], cwd=ROOT, env=env,
                          start_new_session=True, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    body = {"messages": [{"role": "user", "content": "hi"}]}
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        with httpx.Client(timeout=10) as client:
            slow = []
            for _ in range(3):
                t = time.perf_counter()
                r = client.post(url, json=body)
                slow.append((r.status_code, time.perf_counter() - t))
            seen = hole.connections
            fast = []
            statuses = set()
            for _ in range(args.requests):
                t = time.perf_counter()
                r = client.post(url, json=body)
                fast.append(time.perf_counter() - t)
                statuses.add((r.status_code, r.json()["error"]["code"], r.headers.get("retry-after") is not None))
        rps, _ = wrk(url, 5, 32)
    finally:
        stop_all([gw])
    fast_ms = sorted(x * 1000 for x in fast)
    p99 = fast_ms[int(len(fast_ms) * 0.99) - 1]
    print(f"before the breaker opened: {[(s, round(d, 2)) for s, d in slow]} (status, seconds)")
    print(f"fail-fast answers {sorted(statuses)}: p50 {statistics.median(fast_ms):.2f} ms, p99 {p99:.2f} ms, "
          f"max {fast_ms[-1]:.2f} ms over {len(fast_ms)} requests at c=1 (target < 10 ms)")
    print(f"fail-fast throughput at c=32 (wrk, 5 s): {rps:,.0f} req/s")
    print(f"connections the hanging agent saw: {seen} before, {hole.connections} after "
          f"(nothing sent once open)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
