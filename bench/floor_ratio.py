#!/usr/bin/env python3
"""plano against the minimal-proxy floor, head to head: non-streaming throughput at c=32, interleaved.

``bench/run.py`` measures its targets one after another, minutes apart; on a shared
2-core VM their figures drift by ±15% between minutes, which is more than the ratio
it reports can absorb. Here each round measures the floor (``../shared/bench/mini_proxy.py``)
and then plano (its defaults: JSON access log to a file, admin server on) right after
it, on the same mock upstream, and the ratio is taken per round; the median round is
reported with the spread.

    .venv/bin/python bench/floor_ratio.py [--rounds 5] [--duration 5] [-c 32] [--policy]

``--policy`` adds a third figure per round: plano with an idle reliability policy on the
provider (``retry`` with 3 attempts, a ``circuit_breaker``, ``max_concurrency``), so the cost
of the retry/breaker machinery on requests that never fail is measured in the same round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
sys.path.insert(0, str(ROOT / "bench"))
from agent_chain import free_port, shared_uvicorn, stop_all, wait_http
from tracing_overhead import wrk


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("-c", "--connections", type=int, default=32)
    ap.add_argument("--policy", action="store_true", help="also measure plano with an idle retry/breaker policy")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="plano-floor-"))
    mock_port = free_port()
    mock = shared_uvicorn("mock_upstream:app", mock_port)
    rows = []
    try:
        wait_http(f"http://127.0.0.1:{mock_port}/v1/models")
        for n in range(args.rounds):
            port = free_port()
            mini = shared_uvicorn("mini_proxy:app", port, {"UPSTREAM": f"http://127.0.0.1:{mock_port}/v1/chat/completions"})
            try:
                _wait_post(port)
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                wrk(url, 1, args.connections)
                mini_rps, _ = wrk(url, args.duration, args.connections)
            finally:
                stop_all([mini])
            plano_rps = _plano(tmp, mock_port, args, policy=False)
            policy_rps = _plano(tmp, mock_port, args, policy=True) if args.policy else None
            rows.append((mini_rps, plano_rps, policy_rps))
            extra = f", plano+policy {policy_rps:,.0f} req/s ({policy_rps / mini_rps:.2f})" if policy_rps else ""
            print(f"round {n + 1}: mini {mini_rps:,.0f} req/s, plano {plano_rps:,.0f} req/s, "
                  f"plano/mini {plano_rps / mini_rps:.2f}{extra}", flush=True)
    finally:
        stop_all([mock])
    ratios = sorted(p / m for m, p, _ in rows)
    print(f"non-streaming c={args.connections}, {args.duration:g}s per figure, {args.rounds} interleaved rounds: "
          f"plano/mini median {statistics.median(ratios):.2f} (min {ratios[0]:.2f}, max {ratios[-1]:.2f}; "
          f"target >= 0.70)")
    if args.policy:
        with_policy = sorted(q / m for m, _, q in rows)
        cost = sorted(1 - q / p for _, p, q in rows)
        print(f"with an idle retry/breaker policy: plano+policy/mini median {statistics.median(with_policy):.2f} "
              f"(min {with_policy[0]:.2f}, max {with_policy[-1]:.2f}); throughput cost of the policy vs plain "
              f"plano, per-round median {statistics.median(cost) * 100:.1f}%")
    return 0


_POLICY = (", retry: {attempts: 3, backoff: 100ms}, circuit_breaker: {failure_threshold: 5, reset_timeout: 30s}, "
           "max_concurrency: 4096")


def _plano(tmp: Path, mock_port: int, args, *, policy: bool) -> float:
    """Start plano on the mock, measure its non-streaming throughput, stop it."""
    port, admin = free_port(), free_port()
    cfg = tmp / f"plano-{port}.yaml"
    cfg.write_text(f"version: v0.4.0\nlisteners:\n  - {{type: model, name: llm, port: {port}, "
                   f"address: 127.0.0.1}}\nmodel_providers:\n  - {{model: openai/mock-model, "
                   f"access_key: sk-bench, base_url: 'http://127.0.0.1:{mock_port}/v1', default: true"
                   f"{_POLICY if policy else ''}}}\n")
    env = {**os.environ, "PLANO_ACCESS_LOG": str(tmp / "access.log"), "PLANO_ADMIN_PORT": str(admin),
           "PLANO_HOME": str(tmp / "home")}
    gw = subprocess.Popen([PY, "-m", "gateway", "up", str(cfg), "--foreground"], cwd=ROOT, env=env,
                          start_new_session=True, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        wrk(url, 1, args.connections)
        rps, _ = wrk(url, args.duration, args.connections)
    finally:
        stop_all([gw])
    return rps


def _wait_post(port: int, timeout: float = 30.0) -> None:
    """The floor has no health route: wait until a chat request goes through."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    body = b'{"model":"mock-model","messages":[{"role":"user","content":"hi"}]}'
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body,
                                         headers={"content-type": "application/json"})
            with urllib.request.urlopen(req, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"the floor on port {port} did not come up")


if __name__ == "__main__":
    raise SystemExit(main())
