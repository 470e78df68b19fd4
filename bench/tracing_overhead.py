#!/usr/bin/env python3
"""What tracing costs end to end: plano's model listener with tracing off, at 100% sampling to a
real OTLP/gRPC sink, and at 100% with the collector down — same mock upstream, wrk at c=32.

Each configuration runs ``--repeat`` times, interleaved (off, on, down, off, on, down, ...) so slow
drift on the shared 2-core box hits all three alike; medians are reported with the ratio to "off",
and the cost is the median of the per-round ratios (each round's three runs are back to back).

    .venv/bin/python bench/tracing_overhead.py [--duration 10] [--repeat 3] [--workers 1]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "bench"
PY = sys.executable
sys.path.insert(0, str(ROOT / "bench"))
from agent_chain import free_port, shared_uvicorn, stop_all, wait_http  # noqa: E402
from telemetry_micro import SINK  # noqa: E402  (the discard-everything OTLP/gRPC sink)


def wrk(url: str, duration: float, connections: int, cpus: str | None = None) -> tuple[float, float]:
    pin = ["taskset", "-c", cpus] if cpus else []
    out = subprocess.run([*pin, "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", "-s",
                          str(SHARED / "post.lua"), url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p50.group(2)]
    return rps, float(p50.group(1)) * scale


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("-c", "--connections", type=int, default=32)
    ap.add_argument("--workers", type=int, default=1, help="gateway worker processes (default 1)")
    args = ap.parse_args()
    mock, sink, dead = free_port(), free_port(), free_port()
    tmp = Path(tempfile.mkdtemp(prefix="plano-tracing-"))
    procs = [
        shared_uvicorn("mock_upstream:app", mock),
        subprocess.Popen([PY, "-c", SINK, str(sink)], start_new_session=True),
    ]
    configs = {"off": None, "on (100%)": f"http://127.0.0.1:{sink}", "collector down": f"http://127.0.0.1:{dead}"}
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in configs}
    env = {**os.environ, "PLANO_ACCESS_LOG": "off", "PLANO_ADMIN_PORT": "0"}
    try:
        wait_http(f"http://127.0.0.1:{mock}/v1/models")
        for _ in range(args.repeat):
            for name, endpoint in configs.items():
                port = free_port()
                text = (f"version: v0.4.0\nlisteners:\n  - {{type: model, name: llm, port: {port}, address: 127.0.0.1}}\n"
                        f"model_providers:\n  - {{model: openai/mock-model, access_key: sk-bench, "
                        f"base_url: 'http://127.0.0.1:{mock}/v1', default: true}}\n")
                if endpoint:
                    text += f"tracing:\n  random_sampling: 100\n  opentracing_grpc_endpoint: {endpoint}\n"
                cfg = tmp / f"plano-{port}.yaml"
                cfg.write_text(text)
                cmd = [PY, "-m", "gateway", "up", str(cfg), "--foreground", "--workers", str(args.workers)]
                gw = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True, stderr=subprocess.DEVNULL)
                try:
                    wait_http(f"http://127.0.0.1:{port}/healthz")
                    url = f"http://127.0.0.1:{port}/v1/chat/completions"
                    wrk(url, 2, args.connections)  # warm-up
                    results[name].append(wrk(url, args.duration, args.connections))
                finally:
                    os.killpg(gw.pid, signal.SIGTERM)
                    gw.wait(30)
    finally:
        stop_all(procs)
    base = statistics.median(r for r, _ in results["off"])
    print(f"model listener, non-streaming, wrk c={args.connections}, {args.workers} worker(s), "
          f"{args.duration:g}s x {args.repeat} (medians)")
    print(f"{'tracing':<18}{'req/s':>10}{'p50 ms':>10}{'vs off':>10}")
    for name, runs in results.items():
        rps = statistics.median(r for r, _ in runs)
        p50 = statistics.median(p for _, p in runs)
        print(f"{name:<18}{rps:>10.0f}{p50:>10.2f}{rps / base:>10.2f}")
    on = statistics.median(r for r, _ in results["on (100%)"])
    print(f"ratio of medians: tracing at 100% sampling costs {100 * (1 - on / base):.1f}% throughput")
    # Each round measures off, on and down back to back: the per-round ratio cancels the drift
    # of a shared VM between rounds, which the ratio of medians does not.
    for name in ("on (100%)", "collector down"):
        ratios = sorted(r / o for (r, _), (o, _) in zip(results[name], results["off"]))
        print(f"per round, {name} / off: median {statistics.median(ratios):.3f} "
              f"(min {ratios[0]:.3f}, max {ratios[-1]:.3f}) = {100 * (1 - statistics.median(ratios)):.1f}% cost")
    ratios = sorted(r / o for (r, _), (o, _) in zip(results["on (100%)"], results["off"]))
    print(f"tracing cost at 100% sampling: {100 * (1 - statistics.median(ratios)):.1f}% throughput, median of "
          f"{len(ratios)} interleaved rounds (target <= 15%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
