"""Per-request cost of rate limits (no HTTP): what a listener pays per admitted request.

Measures, in one event loop, microseconds (wall clock) per call of:

* ``for_listener`` on an unlimited listener (what a listener without limits does once, at start-up);
* ``admit`` in memory: a whole-listener limit, and a per-API-key limit (hashes the key);
* a token limit in memory: ``tokens(...)`` + ``admit`` + ``record``;
* the usage observer on a 40-event stream (per chunk);
* ``admit`` through Redis (one EVALSHA), sequentially (one round trip each: latency) and with
  64 requests in flight (throughput), when ``--redis URL`` (or ``PLANO_TEST_REDIS_URL``) is given.

    .venv/bin/python bench/limits_micro.py [--n 50000] [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import orjson  # noqa: E402

from gateway.config import load_config_text  # noqa: E402
from gateway.state.redis import SharedRedis  # noqa: E402
from gateway.upstream.limits import RateLimits  # noqa: E402

CONFIG = """
version: v0.4.0
listeners:
  - name: free
    type: model
    port: 12000
  - name: rpm
    type: agent
    port: 8001
    agents: [{id: a, description: d}]
    requests_per_minute: 1000000000
  - name: per_key
    type: agent
    port: 8002
    agents: [{id: a, description: d}]
    rate_limits: [{requests: 1000000000, unit: minute, per: api_key}]
agents: [{id: a, url: "http://127.0.0.1:1"}]
model_providers: [{model: openai/gpt-4o, access_key: k, default: true}]
ratelimits:
  - model: openai/gpt-4o
    selector: {key: x-user, value: "*"}
    limit: {tokens: 1000000000000, unit: hour}
"""

HEADERS = [(b"host", b"127.0.0.1:12000"), (b"content-type", b"application/json"), (b"user-agent", b"bench"),
           (b"authorization", b"Bearer sk-bench-0123456789abcdef0123456789abcdef"), (b"x-user", b"alice"),
           (b"content-length", b"120")]


def stream_chunks() -> list[bytes]:
    events = [{"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "tok"}}]}
              for _ in range(40)]
    events.append({"id": "c", "object": "chat.completion.chunk", "choices": [],
                   "usage": {"prompt_tokens": 12, "completion_tokens": 40, "total_tokens": 52}})
    return [b"data: " + orjson.dumps(e) + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]


def per_call(label: str, seconds: float, n: int) -> None:
    print(f"{label:<58} {seconds / n * 1e6:8.2f} us")


async def sequential(fn, n: int) -> float:
    for _ in range(min(n, 1000)):  # warm up
        await fn()
    start = time.perf_counter()
    for _ in range(n):
        await fn()
    return time.perf_counter() - start


async def memory(n: int) -> None:
    limits = RateLimits.from_config(load_config_text(CONFIG))
    start = time.perf_counter()
    for _ in range(n):
        limits.for_listener("free")
    per_call("unlimited listener: for_listener() -> None", time.perf_counter() - start, n)
    rpm, per_key = limits.for_listener("rpm"), limits.for_listener("per_key")
    per_call("memory admit, requests_per_minute", await sequential(lambda: rpm.admit(HEADERS), n), n)
    per_call("memory admit, per api_key (blake2b of the key)", await sequential(lambda: per_key.admit(HEADERS), n), n)

    async def token_request():
        charge = limits.tokens("openai/gpt-4o", "gpt-4o", HEADERS)
        await charge.admit(30)
        charge.record(52)

    per_call("memory token limit: tokens() + admit + record", await sequential(token_request, n), n)
    chunks = stream_chunks()
    charge = limits.tokens("openai/gpt-4o", "gpt-4o", HEADERS)
    rounds = max(1, n // 50)
    start = time.perf_counter()
    for _ in range(rounds):
        observer = charge.observe(None, 30)
        for c in chunks:
            observer.chunk(c)
        observer.finish(200)
    per_call(f"usage observer, per SSE chunk ({len(chunks)}-chunk stream)", time.perf_counter() - start,
             rounds * len(chunks))


async def shared(url: str, n: int) -> None:
    prefix = f"plano-bench:{uuid.uuid4().hex[:8]}:"
    text = CONFIG + f'state: {{redis_url: "{url}", key_prefix: "{prefix}"}}\n'
    cfg = load_config_text(text)
    redis = SharedRedis.from_config(cfg)
    limits = RateLimits.from_config(cfg, redis)
    rpm, per_key = limits.for_listener("rpm"), limits.for_listener("per_key")
    n = max(1000, n // 5)
    per_call("redis admit, requests_per_minute, sequential (latency)", await sequential(lambda: rpm.admit(HEADERS), n), n)
    per_call("redis admit, per api_key, sequential (latency)", await sequential(lambda: per_key.admit(HEADERS), n), n)
    in_flight = 64
    start = time.perf_counter()
    for _ in range(n // in_flight):
        await asyncio.gather(*(rpm.admit(HEADERS) for _ in range(in_flight)))
    per_call(f"redis admit, requests_per_minute, {in_flight} in flight (throughput)", time.perf_counter() - start,
             n // in_flight * in_flight)
    if not redis.available:
        print("  (redis failed during the run: figures are fail-open, not real)")
    client = redis.client()
    keys = [k async for k in client.scan_iter(match=prefix + "*")]
    if keys:
        await client.delete(*keys)
    await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--redis", default=os.environ.get("PLANO_TEST_REDIS_URL"))
    args = parser.parse_args()
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(memory(args.n))
        if args.redis:
            runner.run(shared(args.redis, args.n))
        else:
            print("redis: skipped (no --redis URL)")


if __name__ == "__main__":
    main()
