#!/usr/bin/env python3
"""Closed-loop async HTTP load client for the plano bench (aiohttp + uvloop).

Keeps ``--concurrency`` requests in flight for ``--warmup`` + ``--duration`` seconds and prints
one JSON object with throughput and latency percentiles for the requests that *completed inside
the measurement window* (warm-up completions are discarded). For ``--stream`` requests it also
records TTFT: the time from sending the request to the first body chunk that carries an SSE
``data:`` line. Every target in the bench is measured with this same client, so its own
overhead cancels out when figures are subtracted or divided.

Run with the repo venv: ``.venv/bin/python bench/loadgen.py URL --stream -c 32 -d 10``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time

import aiohttp


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), math.ceil(q / 100.0 * len(sorted_values))))
    return sorted_values[rank - 1]


def summarize(values: list[float]) -> dict:
    v = sorted(values)
    return {
        "p50_ms": _ms(percentile(v, 50)),
        "p90_ms": _ms(percentile(v, 90)),
        "p99_ms": _ms(percentile(v, 99)),
        "mean_ms": _ms(sum(v) / len(v)) if v else None,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 4)


async def run(args) -> dict:
    body = json.dumps(
        {"model": args.model, "messages": [{"role": "user", "content": "hi"}], "stream": bool(args.stream)}
    ).encode()
    headers = {"content-type": "application/json"}
    for h in args.header:
        name, _, value = h.partition(":")
        headers[name.strip()] = value.strip()

    connector = aiohttp.TCPConnector(limit=args.concurrency, limit_per_host=args.concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    totals: list[float] = []
    ttfts: list[float] = []
    counters = {"errors": 0, "bad_stream": 0, "warmup_done": 0}
    first_error: list[str] = []

    now = time.perf_counter  # uvloop's loop.time() only has millisecond resolution
    t_begin = now()
    t_measure = t_begin + args.warmup
    t_end = t_measure + args.duration

    async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session:

        async def worker() -> None:
            while now() < t_end:
                t0 = now()
                ttft = None
                ok = True
                try:
                    async with session.post(args.url, data=body, headers=headers) as resp:
                        if resp.status != 200:
                            ok = False
                            if not first_error:
                                first_error.append(f"HTTP {resp.status}: {(await resp.read())[:200]!r}")
                            else:
                                await resp.read()
                        elif args.stream:
                            tail = b""
                            async for chunk in resp.content.iter_any():
                                if ttft is None and b"data:" in (tail + chunk):
                                    ttft = now() - t0
                                tail = (tail + chunk)[-32:]
                            if ttft is None or b"[DONE]" not in tail:
                                counters["bad_stream"] += 1
                                ok = False
                                if not first_error:
                                    first_error.append(f"incomplete SSE stream (tail {tail!r})")
                        else:
                            await resp.read()
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    ok = False
                    if not first_error:
                        first_error.append(f"{type(exc).__name__}: {exc}")
                t1 = now()
                if t1 < t_measure:
                    counters["warmup_done"] += 1
                    if not ok:
                        await asyncio.sleep(0.01)
                    continue
                if t1 > t_end:
                    break
                if not ok:
                    counters["errors"] += 1
                    await asyncio.sleep(0.01)  # do not spin on a dead target
                    continue
                totals.append(t1 - t0)
                if ttft is not None:
                    ttfts.append(ttft)

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))

    out = {
        "url": args.url,
        "stream": bool(args.stream),
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "requests": len(totals),
        "errors": counters["errors"],
        "warmup_requests": counters["warmup_done"],
        "rps": round(len(totals) / args.duration, 2),
        "latency": summarize(totals),
    }
    if args.stream:
        out["ttft"] = summarize(ttfts)
    if first_error:
        out["first_error"] = first_error[0]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("-c", "--concurrency", type=int, default=1)
    p.add_argument("-d", "--duration", type=float, default=10.0, help="measured seconds")
    p.add_argument("-w", "--warmup", type=float, default=2.0, help="seconds run first and discarded")
    p.add_argument("--stream", action="store_true", help="send stream=true and measure TTFT")
    p.add_argument("--model", default="mock-model")
    p.add_argument("-H", "--header", action="append", default=[], help="'Name: value' (repeatable)")
    p.add_argument("--timeout", type=float, default=30.0, help="per-request timeout in seconds")
    args = p.parse_args(argv)
    if args.concurrency < 1 or args.duration <= 0 or args.warmup < 0:
        p.error("concurrency must be >= 1, duration > 0, warmup >= 0")
    try:
        import uvloop
    except ImportError:
        print("loadgen: uvloop missing, using asyncio's default loop", file=sys.stderr)
        result = asyncio.run(run(args))
    else:
        result = uvloop.run(run(args))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
