#!/usr/bin/env python3
"""Cost of the pure-numpy sentence encoder: load time, RSS added, encode latency.

    .venv/bin/python training/bench_encoder.py [--threads N]

Prints: load time (first `get_encoder()`), RSS before / after load / after encoding,
latency p50 / p99 for one short sentence, for a turn plus two clauses in one batch, and
for 12 agent descriptions (the start-up cost of a 12-agent listener) - on this machine.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def pct(v: list[float], p: float) -> float:
    v = sorted(v)
    return v[max(0, min(len(v) - 1, math.ceil(p / 100 * len(v)) - 1))]


DESCRIPTIONS = [
    ("Weather forecasts and current conditions for any city: temperature, rain, snow, wind, humidity "
    "and severe-weather alerts. Handles: 'Will it rain in Oslo tomorrow?'. Does not book travel."),
    ("Searches, books, changes and cancels flights; seat selection, baggage allowance, check-in and "
    "flight status. Handles: 'Find a flight from Paris to Rome on Friday'. Does not book hotels."),
    ("Employee IT support: password resets, account lockouts, VPN and Wi-Fi problems, laptop, printer "
    "and software issues, and error messages. Does not order new equipment."),
] * 4


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=200)
    args = ap.parse_args(argv)
    r0 = rss_mb()
    import numpy  # noqa: F401  (numpy is loaded by the gateway anyway)

    from gateway.routing.encoder import get_encoder
    r1 = rss_mb()
    t0 = time.perf_counter()
    enc = get_encoder()
    load = time.perf_counter() - t0
    r2 = rss_mb()

    def bench(texts, rounds):
        enc.encode(texts)
        ts = []
        for _ in range(rounds):
            t = time.perf_counter()
            enc.encode(texts)
            ts.append(time.perf_counter() - t)
        return pct(ts, 50) * 1e3, pct(ts, 99) * 1e3

    one = bench("Will it be nice enough to eat lunch outside in Berlin tomorrow?", args.rounds)
    turn = bench(["What's the weather in Paris and find me flights from NYC to Paris",
                  "What's the weather in Paris", "find me flights from NYC to Paris"], args.rounds)
    t = time.perf_counter()
    enc.encode(DESCRIPTIONS)
    first12 = time.perf_counter() - t
    desc = bench(DESCRIPTIONS, max(5, args.rounds // 10))
    r3 = rss_mb()
    print(f"load (first get_encoder): {load * 1e3:.0f} ms")
    print(f"RSS: {r0:.0f} MB at start, {r1:.0f} MB after numpy+import, {r2:.0f} MB after load "
          f"(+{r2 - r1:.0f}), {r3:.0f} MB after encoding (+{r3 - r1:.0f} in all)")
    print(f"one short sentence:           p50 {one[0]:.2f} ms  p99 {one[1]:.2f} ms")
    print(f"turn + 2 clauses (1 batch):   p50 {turn[0]:.2f} ms  p99 {turn[1]:.2f} ms")
    print(f"12 descriptions (start-up):   first {first12 * 1e3:.0f} ms, p50 {desc[0]:.1f} ms  p99 {desc[1]:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
