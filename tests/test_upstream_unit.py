"""The upstream layer on the in-memory transport: policy, attempts, breakers, pools, model failover.

End-to-end behaviour through real sockets is in tests/test_reliability_e2e.py; these
tests pin down the decisions themselves, each with a case that fails on the wrong one.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.config.reliability import RetryConfig
from gateway.llm.call import LLMCaller
from gateway.upstream import MemoryTransport, Pool, Upstream, UpstreamError, resolve_policy, timeout_policy
from gateway.upstream.breaker import CLOSED, HALF_OPEN, OPEN, EndpointBreaker
from gateway.upstream.policy import SINGLE, CallPolicy, retry_after_seconds
from gateway.upstream.pool import BreakerSettings

T = timeout_policy(5.0, 1.0)


def run(coro):
    return asyncio.run(coro)


class Script:
    """Answers per URL from a list of scripted answers (status or an UpstreamError kind)."""

    def __init__(self, **answers) -> None:
        self.answers = {k: list(v) for k, v in answers.items()}
        self.calls: list[str] = []

    async def __call__(self, request):
        host = request.url.split("//", 1)[1].split("/", 1)[0].split(":")[0]
        self.calls.append(host)
        queue = self.answers[host]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, str):
            if answer == "hang":
                await asyncio.sleep(3600)
            raise UpstreamError(answer, host)
        status, headers = (answer, {}) if isinstance(answer, int) else answer
        return status, {"content-type": "application/json", **headers}, b'{"ok": true}'


async def call(upstream, pool, policy=SINGLE, *, deadline=None, timeout=T):
    async with upstream.call(pool, None, path="/x", headers={}, body=b"{}", timeout=timeout, policy=policy,
                             deadline=deadline) as resp:
        await resp.read()
        return resp.status


def retrying(attempts=3, on=(503,), **kw) -> CallPolicy:
    return resolve_policy(RetryConfig(attempts=attempts, backoff=0.001, max_backoff=0.01, on=list(on), **kw),
                          idempotent=True)


# ----------------------------------------------------------------------------- policy


def test_default_policy_calls_a_single_endpoint_once_and_fails_over_connect_errors_only_with_more():
    assert resolve_policy(None, None, idempotent=True, endpoints=1).attempts == 1
    two = resolve_policy(None, idempotent=False, endpoints=2)
    assert two.attempts == 2 and two.on_connect and not two.on_timeout and not two.statuses


def test_idempotency_decides_only_the_default_retry_set():
    agent = resolve_policy(RetryConfig(attempts=3), idempotent=False)
    model = resolve_policy(RetryConfig(attempts=3), idempotent=True)
    assert agent.statuses == frozenset() and agent.on_connect and not agent.on_timeout
    assert {429, 502, 503, 504} <= model.statuses and model.on_timeout
    explicit = resolve_policy(RetryConfig(attempts=3, on=[503, "5xx"]), idempotent=False)
    assert 503 in explicit.statuses and 500 in explicit.statuses and not explicit.on_connect


def test_the_first_retry_block_wins_own_then_listener_then_global():
    own, listener = RetryConfig(attempts=2), RetryConfig(attempts=5)
    assert resolve_policy(own, listener, idempotent=True).attempts == 2
    assert resolve_policy(None, listener, idempotent=True).attempts == 5


def test_backoff_is_jittered_exponential_and_capped():
    policy = CallPolicy(attempts=10, backoff=0.1, max_backoff=0.4)
    for n, cap in ((1, 0.1), (2, 0.2), (3, 0.4), (6, 0.4)):
        delays = [policy.delay(n) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap * 0.5  # jitter spreads over the range, not a constant


def test_retry_after_parses_seconds_and_http_dates():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 < retry_after_seconds(future) <= 31


# ----------------------------------------------------------------------------- attempts


def test_a_retryable_status_is_retried_until_success():
    script = Script(a=[503, 503, 200])
    up = Upstream(transport=MemoryTransport(script))
    assert run(call(up, Pool("p", ["http://a"]), retrying())) == 200
    assert script.calls == ["a", "a", "a"]


def test_a_status_outside_the_retry_set_is_final():
    script = Script(a=[500, 200])
    up = Upstream(transport=MemoryTransport(script))
    assert run(call(up, Pool("p", ["http://a"]), retrying())) == 500
    assert script.calls == ["a"]


def test_attempts_are_bounded_and_the_last_answer_is_relayed():
    script = Script(a=[503])
    up = Upstream(transport=MemoryTransport(script))
    assert run(call(up, Pool("p", ["http://a"]), retrying(attempts=3))) == 503
    assert len(script.calls) == 3


def test_retry_after_longer_than_max_backoff_ends_the_retries_with_that_answer():
    script = Script(a=[(429, {"retry-after": "60"}), 200])
    up = Upstream(transport=MemoryTransport(script))
    assert run(call(up, Pool("p", ["http://a"]), retrying(on=(429,)))) == 429
    assert script.calls == ["a"]


def test_connect_errors_move_to_the_next_endpoint():
    script = Script(a=["connect"], b=[200])
    up = Upstream(transport=MemoryTransport(script))
    pool = Pool("p", ["http://a", "http://b"])
    policy = resolve_policy(None, idempotent=False, endpoints=2)
    assert run(call(up, pool, policy)) == 200
    assert script.calls == ["a", "b"]


def test_timeouts_are_not_retried_for_non_idempotent_calls_by_default():
    script = Script(a=["timeout"], b=[200])
    up = Upstream(transport=MemoryTransport(script))
    policy = resolve_policy(RetryConfig(attempts=3), idempotent=False)
    with pytest.raises(UpstreamError) as err:
        run(call(up, Pool("p", ["http://a", "http://b"]), policy))
    assert err.value.kind == "timeout" and script.calls == ["a"]


def test_no_attempt_outlives_the_callers_deadline():
    script = Script(a=["hang"])
    up = Upstream(transport=MemoryTransport(script))

    async def go():
        deadline = asyncio.get_running_loop().time() + 0.05
        return await call(up, Pool("p", ["http://a"]), retrying(on=("timeout",)), deadline=deadline)

    with pytest.raises(UpstreamError) as err:
        run(go())
    assert err.value.kind == "timeout" and err.value.status == 504


def test_errors_after_the_response_was_yielded_are_not_retried():
    script = Script(a=[200, 200])
    up = Upstream(transport=MemoryTransport(script))

    async def go():
        async with up.call(Pool("p", ["http://a"]), None, headers={}, body=b"", timeout=T,
                           policy=retrying(on=("5xx", "connect_error"))):
            raise UpstreamError("broken", "a")

    with pytest.raises(UpstreamError):
        run(go())
    assert script.calls == ["a"]


# ----------------------------------------------------------------------------- breakers and pools


def test_breaker_opens_after_the_threshold_and_fails_fast_without_calling():
    script = Script(a=[503])
    up = Upstream(transport=MemoryTransport(script))
    pool = Pool("p", ["http://a"], breaker=BreakerSettings(failure_threshold=3, reset_timeout=30))
    assert [run(call(up, pool)) for _ in range(3)] == [503, 503, 503]
    with pytest.raises(UpstreamError) as err:
        run(call(up, pool))
    assert err.value.kind == "open" and err.value.status == 503 and 25 < err.value.retry_after <= 30
    assert dict(err.value.response_headers())[b"retry-after"] == b"30"
    assert len(script.calls) == 3


def test_429_does_not_count_against_the_breaker():
    script = Script(a=[429])
    up = Upstream(transport=MemoryTransport(script))
    pool = Pool("p", ["http://a"], breaker=BreakerSettings(failure_threshold=2, reset_timeout=30))
    assert [run(call(up, pool)) for _ in range(4)] == [429] * 4


def test_half_open_lets_one_probe_through_and_closes_on_success():
    breaker = EndpointBreaker("p", "a", failure_threshold=1, reset_timeout=0.05)
    breaker.failure()
    assert breaker.state == OPEN and not breaker.allow()
    time.sleep(0.06)
    assert breaker.allow() and breaker.state == HALF_OPEN
    assert not breaker.allow()  # one probe at a time
    breaker.success()
    assert breaker.state == CLOSED and breaker.allow()


def test_a_failed_probe_opens_again():
    breaker = EndpointBreaker("p", "a", failure_threshold=1, reset_timeout=0.05)
    breaker.failure()
    time.sleep(0.06)
    assert breaker.allow()
    breaker.failure()
    assert breaker.state == OPEN and not breaker.allow()


def test_successes_reset_the_consecutive_failure_count():
    breaker = EndpointBreaker("p", "a", failure_threshold=3, reset_timeout=30)
    for _ in range(5):
        breaker.failure()
        breaker.failure()
        breaker.success()
    assert breaker.state == CLOSED


def test_remote_events_open_and_close_without_republishing():
    published = []

    class Sync:
        def register(self, breaker):
            pass

        def publish(self, key, event, opened_at):
            published.append(event)

    breaker = EndpointBreaker("p", "a", failure_threshold=2, reset_timeout=30, sync=Sync())
    breaker.apply_remote("fail", None)
    assert breaker.state == CLOSED
    breaker.apply_remote("fail", None)
    assert breaker.state == OPEN and published == []
    breaker.apply_remote(CLOSED, None)
    assert breaker.state == CLOSED and published == []
    breaker.failure()
    assert published == ["fail"]


def test_round_robin_spreads_and_skips_open_endpoints():
    pool = Pool("p", ["http://a", "http://b", "http://c"], breaker=BreakerSettings(failure_threshold=1))
    assert [pool.pick().base for _ in range(6)] == ["http://a", "http://b", "http://c"] * 2
    pool.endpoints[1].breaker.failure()
    assert {pool.pick().base for _ in range(6)} == {"http://a", "http://c"}
    for endpoint in pool.endpoints:
        endpoint.breaker.failure()
    assert pool.pick() is None


def test_least_in_flight_prefers_the_idle_endpoint():
    pool = Pool("p", ["http://a", "http://b"], balance="least_in_flight")
    pool.endpoints[0].in_flight = 5
    assert [pool.pick().base for _ in range(3)] == ["http://b"] * 3


def test_max_concurrency_refuses_instead_of_queueing():
    script = Script(a=["hang"])
    up = Upstream(transport=MemoryTransport(script))
    pool = Pool("p", ["http://a"], max_concurrency=2)

    async def go():
        hanging = [asyncio.create_task(call(up, pool)) for _ in range(2)]
        await asyncio.sleep(0.01)
        with pytest.raises(UpstreamError) as err:
            await call(up, pool)
        for task in hanging:
            task.cancel()
        await asyncio.gather(*hanging, return_exceptions=True)
        return err.value

    err = run(go())
    assert err.kind == "overloaded" and err.status == 503 and pool.in_flight == 0


# ----------------------------------------------------------------------------- model failover


def _targets():
    from gateway.config.schema import ModelProvider
    from gateway.llm.targets import build_target

    primary = build_target(ModelProvider(model="openai/primary", base_url="http://a", access_key="k1",
                                         fallback_models=["openai/backup"]), default_timeout=5)
    backup = build_target(ModelProvider(model="openai/backup", base_url="http://b", access_key="k2"),
                          default_timeout=5)
    return primary, backup


async def _failover(caller, primary, backup):
    moves = []

    def build(target):
        return {"authorization": f"Bearer {target.name}"}, b"{}"

    async with caller.open(primary, [backup], build, on_failover=lambda a, b, why: moves.append(why)) as resp:
        return resp.origin.name, resp.status, resp.headers.get("x-plano-model"), moves


@pytest.mark.parametrize("answer,reason", [(429, "status_429"), (503, "status_503"), ("connect", "connect"),
                                           ("timeout", "timeout")])
def test_failover_to_the_next_model_before_the_first_byte(answer, reason):
    script = Script(a=[answer], b=[200])
    transport = MemoryTransport(script)
    primary, backup = _targets()
    name, status, header, moves = run(_failover(LLMCaller(Upstream(transport=transport)), primary, backup))
    assert (name, status, header, moves) == ("openai/backup", 200, "openai/backup", [reason])
    assert transport.requests[-1].headers["authorization"] == "Bearer openai/backup"


def test_no_failover_on_a_client_error_and_the_answer_names_the_model():
    script = Script(a=[404], b=[200])
    primary, backup = _targets()
    name, status, header, moves = run(_failover(LLMCaller(Upstream(transport=MemoryTransport(script))),
                                                primary, backup))
    assert (name, status, header, moves) == ("openai/primary", 404, "openai/primary", [])
    assert script.calls == ["a"]


def test_context_window_errors_fail_over():
    async def handler(request):
        if "//a" in request.url:
            return 400, {}, b'{"error": {"code": "context_length_exceeded", "message": "too long"}}'
        return 200, {}, b"{}"

    primary, backup = _targets()
    name, status, _, moves = run(_failover(LLMCaller(Upstream(transport=MemoryTransport(handler))),
                                           primary, backup))
    assert (name, status, moves) == ("openai/backup", 200, ["context_window"])


def test_the_last_model_failing_is_what_the_client_gets():
    script = Script(a=[503], b=[502])
    primary, backup = _targets()
    name, status, _, moves = run(_failover(LLMCaller(Upstream(transport=MemoryTransport(script))),
                                           primary, backup))
    assert (name, status, moves) == ("openai/backup", 502, ["status_503"])


def test_after_every_endpoint_was_tried_one_that_answered_is_reused():
    script = Script(a=["connect"], b=[503, 200])
    up = Upstream(transport=MemoryTransport(script))
    for _ in range(2):  # whichever endpoint round-robin starts with
        script.calls.clear()
        script.answers["b"] = [503, 200]
        assert run(call(up, Pool("p", ["http://a", "http://b"]), retrying(on=("connect_error", 503)))) == 200
        assert script.calls.count("a") == 1 and script.calls.count("b") == 2


def test_a_dropped_connection_is_retried_for_idempotent_calls_only():
    for idempotent, expected in ((True, ["a", "a"]), (False, ["a"])):
        script = Script(a=["reset", 200])
        up = Upstream(transport=MemoryTransport(script))
        policy = resolve_policy(RetryConfig(attempts=2, backoff=0.001), idempotent=idempotent)
        try:
            run(call(up, Pool("p", ["http://a"]), policy))
        except UpstreamError as err:
            assert err.kind == "reset" and not idempotent
        assert script.calls == expected


# ----------------------------------------------------------------------------- aliases over several models


def _group_resolver(*, breaker=False):
    from gateway.config.schema import ModelAlias, ModelProvider, Overrides
    from gateway.llm.resolver import ModelResolver
    from gateway.upstream import PoolRegistry

    class Config:
        overrides = Overrides(circuit_breaker={"failure_threshold": 1, "reset_timeout": 30} if breaker else None)
        state = None

    providers = [ModelProvider(model=f"openai/{m}", base_url=f"http://{m}", access_key="k") for m in ("a", "b", "c")]
    aliases = {"team": ModelAlias(targets=["openai/a", "openai/b"], fallbacks=["openai/c"])}
    return ModelResolver(providers, aliases, default_timeout=5, pools=PoolRegistry(Config()))


def test_an_alias_over_several_models_serves_them_in_turn_and_falls_back_to_the_rest():
    resolver = _group_resolver()
    picks = [resolver.resolve("team").name for _ in range(4)]
    assert picks == ["openai/a", "openai/b", "openai/a", "openai/b"]
    first = resolver.resolve("team")
    assert [t.name for t in resolver.fallbacks("team", first)] == ["openai/b", "openai/c"]


def test_an_alias_skips_a_model_whose_breakers_are_open():
    resolver = _group_resolver(breaker=True)
    resolver.resolve("openai/a").pool.endpoints[0].breaker.failure()
    assert {resolver.resolve("team").name for _ in range(4)} == {"openai/b"}


# ----------------------------------------------------------------------------- active health checks


def test_health_checks_open_a_failing_endpoint_and_close_it_when_it_recovers():
    from gateway.upstream.pool import HealthSettings

    health = {"a": 200, "b": 503}

    async def handler(request):
        host = request.url.split("//", 1)[1].split("/", 1)[0]
        assert request.method == "GET" and request.url.endswith("/ready")
        return health[host], {}, b"ok"

    pool = Pool("p", ["http://a", "http://b"], breaker=BreakerSettings(failure_threshold=5, reset_timeout=60),
                health=HealthSettings(path="/ready", interval=0.01))
    transport = MemoryTransport(handler)

    async def go():
        task = asyncio.create_task(pool.run_health_checks(transport, timeout_policy))
        await asyncio.sleep(0.05)
        states = [e.breaker.state for e in pool.endpoints]
        picks = {pool.pick().base for _ in range(4)}
        health["b"] = 200
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return states, picks, [e.breaker.state for e in pool.endpoints]

    states, picks, after = run(go())
    assert states == [CLOSED, OPEN] and picks == {"http://a"}
    assert after == [CLOSED, CLOSED]


# ----------------------------------------------------------------------------- Plano's retry_policy proposal


def test_plano_retry_policy_shape_sets_retries_failover_statuses_and_strategy():
    from gateway.config.schema import ModelProvider
    from gateway.llm.resolver import ModelResolver

    providers = [
        ModelProvider(model="openai/main", base_url="http://a", access_key="k",
                      retry_policy={"fallback_models": ["groq/other", "openai/mini"], "on_status_codes": [429],
                                    "num_retries": 2, "backoff": "50ms", "strategy": "same_provider"}),
        ModelProvider(model="openai/mini", base_url="http://b", access_key="k"),
        ModelProvider(model="groq/other", base_url="http://c", access_key="k"),
    ]
    resolver = ModelResolver(providers, {}, default_timeout=5)
    main = resolver.resolve("openai/main")
    assert main.policy.attempts == 3 and main.policy.statuses == frozenset({429}) and main.policy.backoff == 0.05
    assert main.failover_statuses == frozenset({429})
    assert [t.name for t in resolver.fallbacks("openai/main", main)] == ["openai/mini"]  # same provider only

    providers[0].retry_policy.strategy = "different_provider"
    resolver = ModelResolver(providers, {}, default_timeout=5)
    main = resolver.resolve("openai/main")
    assert [t.name for t in resolver.fallbacks("openai/main", main)] == ["groq/other", "openai/mini"]
    providers[0].retry_policy.strategy = "same_model"
    resolver = ModelResolver(providers, {}, default_timeout=5)
    assert resolver.fallbacks("openai/main", resolver.resolve("openai/main")) == []


# ----------------------------------------------------------------------------- filters through the same layer


def test_a_filter_behind_an_open_breaker_fails_fast_as_a_filter_failure():
    from gateway.filters.http import HttpFilter
    from gateway.filters.outcome import FilterFailed
    from gateway.filters.spec import FilterSpec

    script = Script(f=[503])
    up = Upstream(transport=MemoryTransport(script))
    spec = FilterSpec("guard", "http", "http://f/guard", "guard", 5.0, None, "event", 256)
    flt = HttpFilter(spec, up, Pool("filter:guard", ["http://f/guard"], breaker=BreakerSettings(2, 30)))

    async def go():
        kinds = []
        for _ in range(4):
            try:
                await flt.call({"messages": []}, "/v1/chat/completions", {})
            except FilterFailed as failure:
                kinds.append((failure.kind, failure.detail))
        return kinds

    kinds = run(go())
    assert kinds[:2] == [("status", kinds[0][1])] * 2 and "503" in kinds[0][1]
    assert kinds[2:] == [("connect", "is unavailable (circuit breaker open)")] * 2
    assert len(script.calls) == 2  # nothing sent once open


def test_breaker_state_names_are_pybreakers():
    import pybreaker

    assert (CLOSED, OPEN, HALF_OPEN) == (pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN)


def test_a_health_check_loop_stops_when_a_probe_swallowed_its_cancel():
    """Python 3.11's asyncio.wait_for can swallow a cancel that lands as the awaited call completes
    (a transport may use it). The request to stop stays on the task, and the loop honours it at the
    next probe instead of probing forever (shutdown would wait on it)."""
    import contextlib

    from gateway.upstream.pool import HealthSettings

    class Swallowing:
        probes = 0
        swallow = True

        @contextlib.asynccontextmanager
        async def send(self, method, url, headers, body, policy, target):
            Swallowing.probes += 1
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if not Swallowing.swallow:
                    raise
                # what wait_for does when the call completed as the cancel landed

            class R:
                status = 200

                async def read(self):
                    return b"ok"
            yield R()

    pool = Pool("p", ["http://a", "http://b"], breaker=BreakerSettings(failure_threshold=5, reset_timeout=60),
                health=HealthSettings(path="/ready", interval=0.01))

    async def go():
        task = asyncio.create_task(pool.run_health_checks(Swallowing(), timeout_policy))
        while Swallowing.probes == 0:
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=5)
        if task not in done:  # the bug: let the loop end, so that the test fails rather than hangs
            Swallowing.swallow = False
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return False
        return task.cancelled()

    assert run(go())
