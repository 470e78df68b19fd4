"""Rate limits (gateway.upstream.limits) and token usage extraction (gateway.upstream.usage).

Memory tests run on a fake clock. Redis tests use ``PLANO_TEST_REDIS_URL`` (skipped when it
is unset or unreachable) and a key prefix of their own; the cross-process test runs two
separate Python processes against the same Redis.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import orjson
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import load_config_text
from gateway.state.redis import SharedRedis
from gateway.upstream.limits import MemoryWindows, RateLimits, Rule, Verdict, _wait_ms
from gateway.upstream.usage import UsageExtractor, UsageObserver, estimate_tokens
from tests.support.shared_state import clear_redis_prefix, redis_url

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def config(listener_extra: str = "", ratelimits: str = "", state: str = ""):
    """A small config: model listener ``models`` (plus ``listener_extra`` YAML), agent listener ``free``."""
    models = {"name": "models", "type": "model", "port": 12000}
    models.update(yaml.safe_load(textwrap.dedent(listener_extra)) or {})
    data = {
        "version": "v0.4.0",
        "listeners": [models, {"name": "free", "type": "agent", "port": 8001,
                               "agents": [{"id": "a", "description": "d"}]}],
        "agents": [{"id": "a", "url": "http://127.0.0.1:1"}],
        "model_providers": [{"model": "openai/gpt-4o", "access_key": "k", "default": True},
                            {"model": "google/gemini-pro", "name": "my-gemini", "access_key": "k"}],
    }
    data.update(yaml.safe_load(textwrap.dedent(ratelimits)) or {})
    data.update(yaml.safe_load(state) or {})
    return load_config_text(yaml.safe_dump(data))


def limits_with(listener_yaml: str, ratelimits: str = "", clock=None) -> RateLimits:
    cfg = config(listener_yaml, ratelimits)
    return RateLimits.from_config(cfg, clock=clock or Clock())


def run(coro):
    return asyncio.run(coro)


def auth(key: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", b"Bearer " + key.encode())]


async def admit_many(limits, n: int, headers=()) -> list[Verdict | None]:
    return [await limits.admit(list(headers)) for _ in range(n)]


# =========================================================================== request limits, memory


def test_unlimited_listener_costs_nothing():
    limits = limits_with("requests_per_minute: 5")
    assert limits.for_listener("free") is None
    assert limits.for_listener("nope") is None
    assert limits.tokens("openai/gpt-4o", "gpt-4o", []) is None  # no ratelimits configured
    assert RateLimits.from_config(config()).empty


def test_requests_per_minute_admits_exactly_n_then_429_with_headers():
    clock = Clock(1_700_000_000.0)  # 20 s into a minute
    limits = limits_with("requests_per_minute: 5", clock=clock).for_listener("models")
    results = run(admit_many(limits, 8))
    assert results[:5] == [None] * 5
    refused = results[5]
    assert isinstance(refused, Verdict) and not refused.allowed and refused.status == 429
    assert "5 requests per minute on listener 'models'" in refused.message
    headers = dict(refused.headers())
    assert headers[b"x-ratelimit-limit"] == b"5" and headers[b"x-ratelimit-remaining"] == b"0"
    # the whole count ages out of the sliding window only at the end of the next minute
    assert int(headers[b"retry-after"]) == refused.retry_after == refused.reset
    assert 40 <= refused.retry_after <= 100
    err = refused.error()
    assert err.status == 429 and err.code == "rate_limit_exceeded"
    assert orjson.loads(err.openai_body())["error"]["type"] == "rate_limit_error"
    if hasattr(err, "headers"):
        assert dict(err.headers)[b"retry-after"] == headers[b"retry-after"]


def test_admitted_verdict_reports_remaining_and_reset():
    clock = Clock(1_700_000_000.0)
    limits = limits_with("requests_per_minute: 3", clock=clock).for_listener("models")
    first = run(limits.check([]))
    assert first.allowed and (first.limit, first.remaining) == (3, 2)
    assert first.reset == 40  # seconds left in the current minute (t = :20)
    assert b"retry-after" not in dict(first.headers())


def test_sliding_window_weights_the_previous_window():
    clock = Clock(1_700_000_040.0)  # :00 of a minute
    limits = limits_with("requests_per_minute: 10", clock=clock).for_listener("models")
    assert run(admit_many(limits, 10)) == [None] * 10
    clock.t += 60  # next minute, elapsed 0: the previous 10 still count fully
    assert run(limits.admit([])) is not None
    clock.t += 30  # half way: the previous window counts 5
    admitted = sum(v is None for v in run(admit_many(limits, 10)))
    assert admitted == 5
    clock.t += 120  # two windows later: all forgotten
    assert sum(v is None for v in run(admit_many(limits, 12))) == 10


def test_retry_after_is_when_the_next_request_fits():
    clock = Clock(1_700_000_040.0)
    limits = limits_with("requests_per_minute: 4", clock=clock).for_listener("models")
    run(admit_many(limits, 4))
    clock.t += 45
    refused = run(limits.admit([]))
    assert refused is not None
    clock.t += refused.retry_after - 1
    assert run(limits.admit([])) is not None  # still refused just before
    clock.t += 1
    assert run(limits.admit([])) is None


@settings(max_examples=200, deadline=None)
@given(limit=st.integers(1, 50), prev=st.integers(0, 60), cur=st.integers(0, 60),
       elapsed=st.integers(0, 59_999), cost=st.integers(1, 10))
def test_wait_ms_is_exact(limit, prev, cur, elapsed, cost):
    window = 60_000

    def fits(at: int) -> bool:  # at: ms from now
        t = elapsed + at
        if t < window:
            p, c, e = prev, cur, t
        elif t < 2 * window:
            p, c, e = cur, 0, t - window
        else:
            p, c, e = 0, 0, 0
        return p * (window - e) + (c + cost) * window <= limit * window

    wait = _wait_ms(limit, window, prev, cur, elapsed, cost)
    if cost > limit:
        assert wait is None
        return
    assert fits(wait)
    if wait > 0:
        assert not fits(wait - 1)


def test_a_refusal_consumes_no_other_limit():
    clock = Clock(1_700_000_040.0)
    limits = limits_with("""
        requests_per_minute: 100
        rate_limits:
          - {requests: 2, unit: minute, per: api_key}
    """, clock=clock).for_listener("models")
    run(admit_many(limits, 5, auth("alice")))  # 2 admitted, 3 refused by the per-key limit
    verdict = run(limits.check(auth("bob")))
    assert verdict.allowed and verdict.remaining == 1  # bob's own bucket: 2 - 1
    rpm_bucket = next(v for k, v in limits.backend.buckets.items() if ":rpm:" in k)
    assert rpm_bucket[2] == 3  # alice's 2 + bob's 1, not alice's refused ones


def test_per_api_key_buckets_hash_the_key():
    clock = Clock()
    limits = limits_with("""
        rate_limits:
          - {requests: 2, unit: hour, per: api_key}
    """, clock=clock).for_listener("models")
    secret = "sk-very-secret-key-0123456789"
    assert run(admit_many(limits, 3, auth(secret)))[2] is not None
    # the same key as x-api-key is the same client
    assert run(limits.admit([(b"x-api-key", secret.encode())])) is not None
    assert run(limits.admit(auth("other"))) is None
    # no credential: one shared anonymous bucket
    assert run(admit_many(limits, 3))[2] is not None
    keys = " ".join(limits.backend.buckets)
    assert secret not in keys and "very-secret" not in keys
    assert len(limits.backend.buckets) == 3
    assert "2 requests per hour per API key" in run(limits.admit(auth(secret))).message


def test_per_header_buckets():
    clock = Clock()
    limits = limits_with("""
        rate_limits:
          - {requests: 1, unit: second, per: "header:X-Tenant"}
    """, clock=clock).for_listener("models")
    assert run(limits.admit([(b"x-tenant", b"a")])) is None
    assert run(limits.admit([(b"x-tenant", b"a")])) is not None
    assert run(limits.admit([(b"x-tenant", b"b")])) is None
    assert run(limits.admit([])) is None  # requests without the header share one bucket
    refused = run(limits.admit([]))
    assert refused is not None and "per 'X-Tenant' header value" in refused.message
    # 1 per second, used at :00.000 of a second: the weighted previous second lets the next one in 2 s later
    assert refused.retry_after == 2
    clock.t += 2
    assert run(limits.admit([(b"x-tenant", b"a")])) is None


def test_memory_buckets_are_swept(monkeypatch):
    clock = Clock()
    limits = limits_with("""
        rate_limits:
          - {requests: 5, unit: second, per: "header:x-user"}
    """, clock=clock).for_listener("models")
    monkeypatch.setattr(MemoryWindows, "MAX_BUCKETS", 50)
    for i in range(40):
        run(limits.admit([(b"x-user", b"%d" % i)]))
    clock.t += 5
    for i in range(40, 80):
        run(limits.admit([(b"x-user", b"%d" % i)]))
    assert len(limits.backend.buckets) <= 50


# =========================================================================== token limits


TOKEN_RULES = """
ratelimits:
  - model: openai/gpt-4o
    selector: {key: x-user, value: "*"}
    limit: {tokens: 100, unit: minute}
"""


def test_token_rule_matches_provider_model_bare_id_and_wildcards():
    def rules(model):
        return RateLimits.from_config(config(ratelimits=f"""
            ratelimits:
              - model: "{model}"
                selector: {{key: x-user, value: "*"}}
                limit: {{tokens: 10, unit: minute}}
        """))

    hdr = [(b"x-user", b"u")]
    for model in ("openai/gpt-4o", "gpt-4o", "*", "openai/*"):
        limits = rules(model)
        assert limits.tokens("openai/gpt-4o", "gpt-4o", hdr) is not None, model
        assert limits.tokens("openai/gpt-4o-mini", "gpt-4o-mini", hdr) is None or model in ("*", "openai/*"), model
    # provider spellings are canonicalised: google/... is gemini/...
    limits = rules("google/gemini-pro")
    assert limits.tokens("gemini/gemini-pro", "gemini-pro", hdr, name="my-gemini") is not None
    assert limits.tokens("openai/gemini-pro", "gemini-pro", hdr) is None
    # a provider's configured name works too
    assert rules("my-gemini").tokens("gemini/gemini-pro", "gemini-pro", hdr, name="my-gemini") is not None
    assert rules("*").tokens("gemini/gemini-pro", "gemini-pro", hdr) is not None


def test_star_value_means_a_bucket_per_value():
    limits = RateLimits.from_config(config(ratelimits=TOKEN_RULES), clock=Clock())

    async def scenario():
        alice = limits.tokens("openai/gpt-4o", "gpt-4o", [(b"x-user", b"alice")])
        assert await alice.admit(80) is None
        refused = await alice.admit(30)
        assert refused is not None and refused.code == "token_rate_limit_exceeded"
        assert refused.remaining == 20 and "100 tokens per minute" in refused.message
        bob = limits.tokens("openai/gpt-4o", "gpt-4o", [(b"x-user", b"bob")])
        assert await bob.admit(80) is None  # bob's own budget
        # Plano's selector protocol header is accepted alongside
        plano = limits.tokens("openai/gpt-4o", "gpt-4o",
                              [(b"x-arch-ratelimit-selector", b"x-user"), (b"x-user", b"alice")])
        assert await plano.admit(30) is not None
        # without the selector header the limit does not apply (as in Plano)
        assert limits.tokens("openai/gpt-4o", "gpt-4o", []) is None

    run(scenario())


def test_exact_selector_value_applies_only_to_that_value():
    limits = RateLimits.from_config(config(ratelimits="""
        ratelimits:
          - model: gpt-4o
            selector: {key: x-tier, value: free}
            limit: {tokens: 50, unit: day}
    """), clock=Clock())

    async def scenario():
        assert limits.tokens("openai/gpt-4o", "gpt-4o", [(b"x-tier", b"paid")]) is None
        free1 = limits.tokens("openai/gpt-4o", "gpt-4o", [(b"x-tier", b"free")])
        free2 = limits.tokens("openai/gpt-4o", "gpt-4o", [(b"x-tier", b"free")])
        assert await free1.admit(30) is None
        refused = await free2.admit(30)  # one bucket for every "free" client
        assert refused is not None and refused.retry_after > 3600

    run(scenario())


def test_reservation_is_replaced_by_real_usage():
    clock = Clock()
    limits = RateLimits.from_config(config(ratelimits=TOKEN_RULES), clock=clock)
    hdr = [(b"x-user", b"carol")]

    async def scenario():
        charge = limits.tokens("openai/gpt-4o", "gpt-4o", hdr)
        assert await charge.admit(40) is None
        charge.record(90)  # prompt + completion came to 90
        assert next(iter(limits.backend.buckets.values()))[2] == 90
        nxt = limits.tokens("openai/gpt-4o", "gpt-4o", hdr)
        assert await nxt.admit(20) is not None
        assert await nxt.admit(10) is None
        nxt.record(0)  # the upstream failed: the reservation is given back
        assert next(iter(limits.backend.buckets.values()))[2] == 90

    run(scenario())


def test_a_request_larger_than_the_limit_is_refused_with_a_clear_message():
    limits = RateLimits.from_config(config(ratelimits=TOKEN_RULES), clock=Clock())
    charge = limits.tokens("openai/gpt-4o", "gpt-4o", [(b"x-user", b"dave")])
    refused = run(charge.admit(500))
    assert refused is not None and "more than the limit" in refused.message


def test_observer_records_usage_through_the_charge():
    limits = RateLimits.from_config(config(ratelimits=TOKEN_RULES), clock=Clock())

    class Inner:
        def __init__(self):
            self.calls = []

        def chunk(self, data):
            self.calls.append(("chunk", data))

        def finish(self, status, **kw):
            self.calls.append(("finish", status, kw))

        def inject(self, headers):
            return {**headers, "traceparent": "x"}

    async def scenario():
        charge = limits.tokens("openai/gpt-4o", "gpt-4o", [(b"x-user", b"erin")])
        await charge.admit(10)
        inner = Inner()
        observer = charge.observe(inner)
        assert observer.inject({})["traceparent"] == "x"  # other attributes reach the telemetry call
        for piece in sse_stream(usage={"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42}):
            observer.chunk(piece)
        observer.finish(200, response_bytes=10)
        assert inner.calls[-1] == ("finish", 200, {"response_bytes": 10})
        assert next(iter(limits.backend.buckets.values()))[2] == 42

    run(scenario())


# =========================================================================== usage extraction


def sse_stream(usage=None, words=("Hel", "lo", " there")) -> list[bytes]:
    events = [{"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": w}}]}
              for w in words]
    events.append({"id": "c1", "object": "chat.completion.chunk",
                   "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if usage is not None:
        events.append({"id": "c1", "object": "chat.completion.chunk", "choices": [], "usage": usage})
    return [b"data: " + orjson.dumps(e) + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]


USAGE = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}


def test_extractor_reads_final_chunk_usage_at_every_split_point():
    body = b"".join(sse_stream(USAGE))
    for cut in range(1, len(body)):
        ex = UsageExtractor()
        ex.feed(body[:cut])
        ex.feed(body[cut:])
        assert ex.finish().total == 12, cut


def test_extractor_byte_by_byte_and_crlf_and_no_trailing_newline():
    body = b"".join(sse_stream(USAGE)).replace(b"\n", b"\r\n")
    ex = UsageExtractor()
    for i in range(len(body)):
        ex.feed(body[i:i + 1])
    assert ex.finish().total == 12
    last = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}'
    ex = UsageExtractor()
    ex.feed(b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n' + last[:20])
    ex.feed(last[20:])
    assert ex.finish().total == 7  # total derived from its parts, final line without newline


def test_extractor_anthropic_message_delta_and_a_string_containing_usage():
    ex = UsageExtractor()
    ex.feed(b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"the \\"usage\\" word"}}\n\n')
    assert ex.usage is None
    ex.feed(b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
            b'"usage":{"input_tokens":9,"output_tokens":11}}\n\n')
    assert ex.finish().total == 20


def observe(status, *, chunks=(), estimate=0, **kw) -> tuple[int, bool]:
    got = []
    obs = UsageObserver(None, lambda tokens, measured: got.append((tokens, measured)), estimate)
    for c in chunks:
        obs.chunk(c)
    obs.finish(status, **kw)
    obs.finish(status, **kw)  # a second finish reports nothing more
    assert len(got) == 1
    return got[0]


def test_observer_on_every_response_shape():
    completion = {"choices": [{"message": {"role": "assistant", "content": "x" * 40}}], "usage": USAGE}
    assert observe(200, completion=completion) == (12, True)  # JSON body
    assert observe(200, chunks=sse_stream(USAGE)) == (12, True)  # stream with include_usage
    assert observe(200, usage={"total_tokens": 5}) == (5, True)
    # no usage: estimated input + one token per streamed content event, or chars / 4 of a JSON answer
    assert observe(200, chunks=sse_stream(None), estimate=20) == (24, False)
    assert observe(200, completion={**completion, "usage": None}, estimate=20) == (30, False)
    # an error status without usage consumed nothing; a stream that broke mid-way did
    assert observe(429, estimate=20) == (0, False)
    assert observe(None, estimate=20) == (0, False)
    assert observe(200, chunks=sse_stream(None)[:2], estimate=20, error="broken") == (22, False)


def test_estimate_tokens():
    assert estimate_tokens(None) == 1
    small = estimate_tokens({"messages": [{"role": "user", "content": "hi"}]})
    big = estimate_tokens({"messages": [{"role": "user", "content": [{"type": "text", "text": "x" * 4000}]}]})
    assert 1 <= small < 20 and 1000 <= big < 1100


# =========================================================================== Redis




@pytest.fixture
def shared():
    url = redis_url()
    prefix = f"plano-test:{uuid.uuid4().hex[:10]}:"
    yield url, prefix

    clear_redis_prefix(url, prefix)


STATE = "state: {{redis_url: \"{url}\", key_prefix: \"{prefix}\"}}"

CHILD = r"""
import asyncio, sys, textwrap
from gateway.config import load_config_text
from gateway.state.redis import SharedRedis
from gateway.upstream.limits import RateLimits

url, prefix, attempts = sys.argv[1], sys.argv[2], int(sys.argv[3])
cfg = load_config_text(textwrap.dedent('''
    version: v0.4.0
    listeners:
      - name: models
        type: model
        port: 12000
        rate_limits:
          - {requests: 25, unit: minute, per: api_key}
    model_providers:
      - {model: openai/gpt-4o, access_key: k, default: true}
    state: {redis_url: "%s", key_prefix: "%s"}
''' % (url, prefix)))

async def main():
    redis = SharedRedis.from_config(cfg)
    limits = RateLimits.from_config(cfg, redis).for_listener("models")
    headers = [(b"authorization", b"Bearer shared-key")]
    await limits.admit([(b"authorization", b"Bearer warm-up")])  # connect before the start signal
    print("ready", flush=True)
    sys.stdin.readline()
    verdicts = await asyncio.gather(*(limits.admit(headers) for _ in range(attempts)))
    print(sum(v is None for v in verdicts), flush=True)
    await redis.aclose()

asyncio.run(main())
"""


def test_two_processes_admit_exactly_n_through_redis(shared):
    url, prefix = shared
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, url, prefix, "40"], cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    try:
        for p in procs:
            line = p.stdout.readline()
            assert line.strip() == "ready", p.stderr.read()
        for p in procs:  # both start their burst of 40 at once
            p.stdin.write("go\n")
            p.stdin.flush()
        admitted = []
        for p in procs:
            out, err = p.communicate(timeout=20)
            assert p.returncode == 0, err
            admitted.append(int(out.strip()))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert sum(admitted) == 25, admitted  # how the 25 split between the two is up to the scheduler


def test_redis_verdicts_and_token_usage_are_shared(shared):
    url, prefix = shared
    cfg = config("requests_per_minute: 3", TOKEN_RULES, STATE.format(url=url, prefix=prefix))

    async def scenario():
        one, two = SharedRedis.from_config(cfg), SharedRedis.from_config(cfg)  # two workers
        a, b = RateLimits.from_config(cfg, one), RateLimits.from_config(cfg, two)
        la, lb = a.for_listener("models"), b.for_listener("models")
        first = await la.check([])
        assert first.allowed and (first.limit, first.remaining) == (3, 2) and 1 <= first.reset <= 60
        assert await lb.admit([]) is None and await la.admit([]) is None
        refused = await lb.admit([])
        assert refused is not None and refused.retry_after >= 1 and dict(refused.headers())[b"retry-after"]
        hdr = [(b"x-user", b"frank")]
        charge = a.tokens("openai/gpt-4o", "gpt-4o", hdr)
        assert await charge.admit(30) is None
        charge.record(95)  # fire and forget
        await a.aclose()  # drains pending updates
        assert await b.tokens("openai/gpt-4o", "gpt-4o", hdr).admit(10) is not None
        assert await b.tokens("openai/gpt-4o", "gpt-4o", hdr).admit(5) is None
        keys = await one.client().keys(prefix + "*")
        assert keys and all(k.startswith(prefix.encode() + b"rl:") for k in keys)
        assert not any(b"frank" in k for k in keys)
        ttl = await one.client().pttl(prefix + "rl:req:models:rpm:3")
        assert 0 < ttl <= 121_000
        await one.aclose()
        await two.aclose()

    run(scenario())


def test_redis_down_fails_open_and_warns_once(caplog):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    cfg = config("requests_per_minute: 1", TOKEN_RULES, STATE.format(url=f"redis://127.0.0.1:{port}/0", prefix="x:"))

    async def scenario():
        redis = SharedRedis.from_config(cfg)
        limits = RateLimits.from_config(cfg, redis)
        listener = limits.for_listener("models")
        verdicts = [await listener.check([]) for _ in range(5)]
        assert all(v.allowed for v in verdicts) and verdicts[0].headers() == []
        charge = limits.tokens("openai/gpt-4o", "gpt-4o", [(b"x-user", b"g")])
        assert await charge.admit(10_000) is None
        charge.record(50)
        redis._down_until = 0.0  # the retry pause is over: it tries (and fails) again, without a new warning
        assert await listener.admit([]) is None
        await limits.aclose()
        await redis.aclose()

    with caplog.at_level(logging.WARNING, logger="plano.state"):
        run(scenario())
    warnings = [r for r in caplog.records if r.name == "plano.state" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "failing open" in warnings[0].getMessage()


def test_redis_client_survives_a_new_event_loop(shared):
    url, prefix = shared
    cfg = config("requests_per_minute: 10", state=STATE.format(url=url, prefix=prefix))
    redis = SharedRedis.from_config(cfg)
    limits = RateLimits.from_config(cfg, redis).for_listener("models")
    assert run(limits.admit([])) is None
    verdict = run(limits.check([]))  # a second asyncio.run: a new loop, a new client
    assert verdict.allowed and verdict.remaining == 8
    run(redis.aclose())


def test_memory_and_state_without_url():
    assert SharedRedis.from_config(config()) is None
    with pytest.raises(ValueError):
        SharedRedis("http://nope")
    assert isinstance(RateLimits.from_config(config("requests_per_minute: 1")).backend, MemoryWindows)
    assert Rule("k", 3, "day", "d").window_ms == 86_400_000


# =========================================================================== filters' RedisStore on redis.asyncio


def test_filters_redis_store_round_trip_and_ttl(shared):
    from filters.common import RedisStore

    url, prefix = shared
    with pytest.raises(ValueError):
        RedisStore("http://127.0.0.1:6379")

    async def scenario():
        store = RedisStore(url, ttl=30, prefix=prefix + "pii:")
        assert await store.aget("rid-1") is None
        await store.aput("rid-1", {"map": {"<EMAIL_1>": "a@b.c"}})
        assert await store.aget("rid-1") == {"map": {"<EMAIL_1>": "a@b.c"}}
        ttl = await store._redis().pttl(prefix + "pii:rid-1")
        assert 0 < ttl <= 30_000
        await store.close()

    run(scenario())
