"""Rate limits, reliability metrics, "no silent config" and ``max_retries``, end to end.

The real gateway process (``python -m gateway up --foreground``) between real HTTP clients
and scripted :class:`MockLLM` providers and agents, over real sockets:

1. Plano's token ``ratelimits`` (per header value with ``value: "*"``, matched by
   ``provider/model`` and by bare id, usage read from JSON and from a stream's last chunk).
2. Listener ``rate_limits`` per API key on an agent listener.
3. ``/metrics`` after real retries, an opened breaker, fail-fast requests, a model
   failover and 429s.
4. ``plano validate`` and the start-up log warn about sections that have no effect.
5. The model listener's ``max_retries`` (Plano's Envoy retry policy).

Assertions are on statuses, error codes, headers, request counts seen by the mocks and
metric values, never on durations. Token usage is charged when a response ends, which
may be a moment after the client read its last byte: admitted requests are followed by a
short settle before the next one (not a timing assertion).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import httpx
import pytest
import yaml

from tests.support.gateway import REPO, Gateway, free_port
from tests.support.mock_llm import MockLLM, Reply
from tests.support.shared_state import redis_url
from tests.support.telemetry_checks import (
    gateway_env,
    metric_sum,
    parse_samples,
    scrape,
    wait_until,
)

TOKEN_LIMIT = 16  # the mock's JSON answers report total_tokens 8: two fit, the third does not
SETTLE = 0.15


def user(text: str = "hi") -> list[dict]:
    return [{"role": "user", "content": text}]


def upstream_error(status: int) -> Reply:
    return Reply(kind="error", status=status, body={"error": {"message": f"upstream answered {status}",
                                                              "type": "upstream", "code": "upstream_says_no"}})


def chat_posts(mock: MockLLM) -> list:
    return [r for r in mock.requests if r.method == "POST" and r.path.endswith("/chat/completions")]


def chat(url: str, body: dict, headers: dict | None = None) -> httpx.Response:
    r = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers or {}, timeout=30)
    if r.status_code == 200:
        time.sleep(SETTLE)  # let the gateway charge this response's usage before the next request
    return r


def error_of(r: httpx.Response) -> dict:
    body = r.json()
    assert isinstance(body.get("error"), dict), r.text
    return body["error"]


# =========================================================================== the gateway


@pytest.fixture(scope="module")
def mocks():
    started = {name: MockLLM().start() for name in ("llm", "primary", "backup", "flaky", "breaker", "keyed")}
    yield started
    for mock in started.values():
        mock.stop()


@pytest.fixture
def fresh(mocks):
    for mock in mocks.values():
        mock.reset()
    yield mocks
    for mock in mocks.values():
        mock.reset()


@pytest.fixture(scope="module")
def gw(mocks, tmp_path_factory):
    ports = {name: free_port() for name in ("llm", "retry_desk", "breaker_desk", "keyed_desk")}
    admin = free_port()
    config = {
        "version": "v0.4.0",
        "listeners": [
            {"type": "model", "name": "llm", "port": ports["llm"], "address": "127.0.0.1"},
            {"type": "agent", "name": "retry_desk", "port": ports["retry_desk"], "address": "127.0.0.1",
             "agents": [{"id": "flaky", "description": "The flaky agent answers everything."}]},
            {"type": "agent", "name": "breaker_desk", "port": ports["breaker_desk"], "address": "127.0.0.1",
             "agents": [{"id": "breaker", "description": "The breaker agent answers everything."}]},
            {"type": "agent", "name": "keyed_desk", "port": ports["keyed_desk"], "address": "127.0.0.1",
             "agents": [{"id": "keyed", "description": "The keyed agent answers everything."}],
             "rate_limits": [{"per": "api_key", "requests": 2, "unit": "minute"}]},
        ],
        "agents": [
            {"id": "flaky", "url": mocks["flaky"].url, "retry": {"attempts": 3, "backoff": "10ms", "on": [503]}},
            {"id": "breaker", "url": mocks["breaker"].url,
             "circuit_breaker": {"failure_threshold": 2, "reset_timeout": "120s"}},
            {"id": "keyed", "url": mocks["keyed"].url},
        ],
        "model_providers": [
            {"model": "openai/gpt-4o", "access_key": "sk-test", "base_url": f"{mocks['llm'].url}/v1",
             "default": True},
            {"model": "openai/plain", "access_key": "sk-test", "base_url": f"{mocks['llm'].url}/v1"},
            {"model": "openai/primary", "access_key": "sk-primary", "base_url": f"{mocks['primary'].url}/v1",
             "fallback_models": ["openai/backup"]},
            {"model": "openai/backup", "access_key": "sk-backup", "base_url": f"{mocks['backup'].url}/v1"},
        ],
        "ratelimits": [{"model": "openai/gpt-4o", "selector": {"key": "x-user", "value": "*"},
                        "limit": {"tokens": TOKEN_LIMIT, "unit": "minute"}}],
        "state_storage": {"type": "memory"},
    }
    gateway = Gateway(config, tmp_path_factory.mktemp("reliability-metrics"),
                      env=gateway_env(PLANO_ADMIN_PORT=str(admin), PLANO_ADMIN_ADDRESS="127.0.0.1"))
    gateway.start()
    gateway.urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    gateway.admin = admin
    yield gateway
    gateway.stop()


# =========================================================================== 1. token rate limits


def assert_token_limited(r: httpx.Response) -> None:
    assert r.status_code == 429, r.text
    err = error_of(r)
    assert err["code"] == "token_rate_limit_exceeded", r.text
    assert err.get("type") == "rate_limit_error", r.text
    assert int(r.headers["retry-after"]) >= 1, dict(r.headers)
    assert r.headers.get("x-ratelimit-limit") == str(TOKEN_LIMIT), dict(r.headers)


def test_token_limit_per_header_value(gw, fresh):
    alice, bob = f"alice-{uuid.uuid4().hex}", f"bob-{uuid.uuid4().hex}"
    url = gw.urls["llm"]
    body = {"model": "openai/gpt-4o", "messages": user()}
    for _ in range(2):  # 8 + 8 tokens: within the 16
        r = chat(url, body, {"x-user": alice})
        assert r.status_code == 200, r.text
    r = chat(url, body, {"x-user": alice})
    assert_token_limited(r)
    assert len(chat_posts(fresh["llm"])) == 2  # the refused request never reached the provider
    # another value of the header has a bucket of its own
    r = chat(url, body, {"x-user": bob})
    assert r.status_code == 200, r.text
    assert len(chat_posts(fresh["llm"])) == 3
    # alice is still refused
    assert_token_limited(chat(url, body, {"x-user": alice}))


def test_request_without_the_selector_header_is_not_limited(gw, fresh):
    for i in range(4):  # 32 tokens, twice the limit
        r = chat(gw.urls["llm"], {"model": "openai/gpt-4o", "messages": user(f"n{i}")})
        assert r.status_code == 200, r.text
    assert len(chat_posts(fresh["llm"])) == 4


def test_token_limit_matches_the_bare_model_id(gw, fresh):
    carol = f"carol-{uuid.uuid4().hex}"
    body = {"model": "gpt-4o", "messages": user()}
    for _ in range(2):
        r = chat(gw.urls["llm"], body, {"x-user": carol})
        assert r.status_code == 200, r.text
    assert_token_limited(chat(gw.urls["llm"], body, {"x-user": carol}))
    assert len(chat_posts(fresh["llm"])) == 2
    # a model the limit does not name is not limited for the same user
    r = chat(gw.urls["llm"], {"model": "openai/plain", "messages": user()}, {"x-user": carol})
    assert r.status_code == 200, r.text


def test_streamed_usage_counts_against_the_token_limit(gw, fresh):
    dave = f"dave-{uuid.uuid4().hex}"
    # 11 streamed tokens: the last chunk reports total_tokens 5 + 11 = 16, the whole budget
    fresh["llm"].enqueue(Reply(kind="sse", tokens=[f"t{i} " for i in range(11)]))
    with httpx.stream("POST", f"{gw.urls['llm']}/v1/chat/completions",
                      json={"model": "openai/gpt-4o", "messages": user(), "stream": True},
                      headers={"x-user": dave}, timeout=30) as r:
        assert r.status_code == 200
        text = r.read().decode()
    assert "data: [DONE]" in text
    time.sleep(SETTLE)
    # the estimate alone (a few tokens for "hi") would leave room; the streamed usage does not
    r = chat(gw.urls["llm"], {"model": "openai/gpt-4o", "messages": user()}, {"x-user": dave})
    assert_token_limited(r)
    assert len(chat_posts(fresh["llm"])) == 1


# =========================================================================== 2. listener limits


def test_listener_rate_limit_per_api_key(gw, fresh):
    url = gw.urls["keyed_desk"]
    key_a, key_b = f"sk-a-{uuid.uuid4().hex}", f"sk-b-{uuid.uuid4().hex}"
    body = {"messages": user()}
    for _ in range(2):
        r = chat(url, body, {"authorization": f"Bearer {key_a}"})
        assert r.status_code == 200, r.text
    r = chat(url, body, {"authorization": f"Bearer {key_a}"})
    assert r.status_code == 429, r.text
    assert error_of(r)["code"] == "rate_limit_exceeded", r.text
    assert int(r.headers["retry-after"]) >= 1, dict(r.headers)
    assert r.headers.get("x-ratelimit-limit") == "2", dict(r.headers)
    assert r.headers.get("x-ratelimit-remaining") == "0", dict(r.headers)
    assert key_a not in r.text
    assert len(chat_posts(fresh["keyed"])) == 2
    r = chat(url, body, {"authorization": f"Bearer {key_b}"})
    assert r.status_code == 200, r.text
    assert len(chat_posts(fresh["keyed"])) == 3


# =========================================================================== 3. /metrics


def samples_of(gw) -> list:
    return parse_samples(scrape(gw.admin))


def test_metrics_after_retries_breaker_failover_and_limits(gw, fresh):
    before = samples_of(gw)

    def delta(name: str, **labels) -> float:
        return metric_sum(samples_of(gw), name, **labels) - metric_sum(before, name, **labels)

    # a retried agent: 503, 503, then 200
    fresh["flaky"].enqueue(upstream_error(503), upstream_error(503))
    r = chat(gw.urls["retry_desk"], {"messages": user("again")})
    assert r.status_code == 200, r.text
    assert len(chat_posts(fresh["flaky"])) == 3

    # a breaker that opens after two failures, then fails fast
    fresh["breaker"].enqueue(upstream_error(503), upstream_error(503), upstream_error(503))
    for _ in range(2):
        r = chat(gw.urls["breaker_desk"], {"messages": user()})
        assert r.status_code == 503 and "upstream answered" in r.text, r.text
    fast = 3
    for _ in range(fast):
        r = chat(gw.urls["breaker_desk"], {"messages": user()})
        assert r.status_code == 503, r.text
        assert error_of(r)["code"].endswith("_open"), r.text
        assert r.headers.get("retry-after"), dict(r.headers)
    assert len(chat_posts(fresh["breaker"])) == 2

    # a model failover: the primary answers 503, the backup answers
    fresh["primary"].enqueue(upstream_error(503))
    r = chat(gw.urls["llm"], {"model": "openai/primary", "messages": user("over")})
    assert r.status_code == 200, r.text
    assert r.headers.get("x-plano-model") == "openai/backup", dict(r.headers)

    # 429s: one request limit, one token limit
    key = f"sk-m-{uuid.uuid4().hex}"
    statuses = [chat(gw.urls["keyed_desk"], {"messages": user()}, {"authorization": f"Bearer {key}"}).status_code
                for _ in range(3)]
    assert statuses == [200, 200, 429]
    eve = f"eve-{uuid.uuid4().hex}"
    statuses = [chat(gw.urls["llm"], {"model": "openai/gpt-4o", "messages": user()}, {"x-user": eve}).status_code
                for _ in range(3)]
    assert statuses == [200, 200, 429]

    expected = {
        ("plano_upstream_retries_total", (("upstream", "agent:flaky"),)): 2,
        ("plano_upstream_rejected_total", (("upstream", "agent:breaker"), ("reason", "open"))): fast,
        ("plano_circuit_breaker_transitions_total", (("upstream", "agent:breaker"), ("state", "open"))): 1,
        ("plano_model_failovers_total", (("from_model", "openai/primary"), ("to_model", "openai/backup"),
                                         ("reason", "status_503"))): 1,
        ("plano_rate_limited_total", (("listener", "keyed_desk"), ("limit", "requests"))): 1,
        ("plano_rate_limited_total", (("listener", "llm"), ("limit", "tokens"))): 1,
    }

    def got() -> dict:
        return {key: delta(key[0], **dict(key[1])) for key in expected}

    # metrics reach the registry once per event-loop batch: poll until they settle
    wait_until(lambda: got() == expected, timeout=5)
    assert got() == expected
    now = samples_of(gw)
    assert metric_sum(now, "plano_upstream_retries_total", upstream="agent:flaky", reason="status_503") >= 2
    assert metric_sum(now, "plano_circuit_breaker_state", upstream="agent:breaker") == 2  # open
    # a healthy agent's breaker is not reported open
    assert metric_sum(now, "plano_circuit_breaker_state", upstream="agent:flaky") == 0


# =========================================================================== 4. no silent config


def validate(path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", "validate", str(path)], check=False, cwd=REPO,
                          capture_output=True, text=True, env={**os.environ}, timeout=60)


def base_config() -> dict:
    return {
        "version": "v0.4.0",
        "listeners": [{"type": "model", "name": "llm", "port": free_port(), "address": "127.0.0.1"}],
        "model_providers": [{"model": "openai/gpt-4o", "access_key": "sk-test",
                             "base_url": "http://127.0.0.1:9/v1", "default": True}],
    }


def test_validate_warns_about_sections_without_effect(tmp_path):
    config = base_config()
    config["state_storage"] = {"type": "memory"}
    config["routing_preferences"] = [{"name": "code", "description": "writing and reviewing code",
                                      "models": ["openai/gpt-4o"]}]
    config["model_providers"][0]["fallback_models"] = ["openai/no-such-model"]
    path = tmp_path / "inert.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    r = validate(path)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout + r.stderr
    warnings = [line for line in out.splitlines() if "warning" in line.lower()]
    storage = [w for w in warnings if "state_storage" in w]
    routing = [w for w in warnings if "routing_preferences" in w]
    assert not storage, out  # state_storage acts now (Responses API state)
    assert routing and "no effect" in routing[0], out
    assert any("openai/no-such-model" in w for w in warnings), out
    assert "inert.yaml" in out


def test_validate_rejects_a_non_redis_state_url(tmp_path):
    config = base_config()
    config["state"] = {"redis_url": "http://x"}
    path = tmp_path / "badstate.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    r = validate(path)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "state.redis_url" in r.stderr and "redis" in r.stderr.lower(), r.stderr


def test_startup_log_does_not_call_state_storage_inert(gw):
    lines = [line for line in gw.log().splitlines() if "state_storage" in line and "no effect" in line]
    assert not lines, lines


# =========================================================================== 5. max_retries


@pytest.fixture(scope="module")
def retrying_gw(mocks, tmp_path_factory):
    port = free_port()
    config = {
        "version": "v0.4.0",
        "listeners": [{"type": "model", "name": "llm", "port": port, "address": "127.0.0.1", "max_retries": 2}],
        "model_providers": [{"model": "openai/plain", "access_key": "sk-test",
                             "base_url": f"{mocks['llm'].url}/v1", "default": True}],
    }
    gateway = Gateway(config, tmp_path_factory.mktemp("max-retries"), env=gateway_env())
    gateway.start()
    yield gateway
    gateway.stop()


def test_listener_max_retries_retries_a_503(retrying_gw, fresh):
    fresh["llm"].enqueue(upstream_error(503), upstream_error(503))
    r = chat(retrying_gw.url(), {"model": "openai/plain", "messages": user("persist")})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "echo: persist"
    assert len(chat_posts(fresh["llm"])) == 3


def test_without_max_retries_a_503_reaches_the_client(gw, fresh):
    fresh["llm"].enqueue(upstream_error(503), upstream_error(503))
    r = chat(gw.urls["llm"], {"model": "openai/plain", "messages": user()})
    assert r.status_code == 503, r.text
    assert "upstream answered 503" in r.text
    assert len(chat_posts(fresh["llm"])) == 1


# =========================================================================== shared through Redis


def test_token_and_request_limits_are_shared_through_redis(mocks, fresh, tmp_path):
    url = redis_url()
    prefix = f"plano-test-{uuid.uuid4().hex[:12]}:"

    def config() -> dict:
        return {
            "version": "v0.4.0",
            "listeners": [
                {"type": "model", "name": "llm", "port": free_port(), "address": "127.0.0.1"},
                {"type": "agent", "name": "keyed_desk", "port": free_port(), "address": "127.0.0.1",
                 "agents": [{"id": "keyed", "description": "The keyed agent answers everything."}],
                 "rate_limits": [{"per": "api_key", "requests": 2, "unit": "minute"}]},
            ],
            "agents": [{"id": "keyed", "url": mocks["keyed"].url}],
            "model_providers": [{"model": "openai/gpt-4o", "access_key": "sk-test",
                                 "base_url": f"{mocks['llm'].url}/v1", "default": True}],
            "ratelimits": [{"model": "openai/gpt-4o", "selector": {"key": "x-user", "value": "*"},
                            "limit": {"tokens": TOKEN_LIMIT, "unit": "minute"}}],
            "state": {"redis_url": url, "key_prefix": prefix},
        }

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with Gateway(config(), tmp_path / "a", env=gateway_env()) as one, \
            Gateway(config(), tmp_path / "b", env=gateway_env()) as two:
        llm = [g.url(g.config["listeners"][0]["port"]) for g in (one, two)]
        desk = [g.url(g.config["listeners"][1]["port"]) for g in (one, two)]
        frank = f"frank-{uuid.uuid4().hex}"
        body = {"model": "openai/gpt-4o", "messages": user()}
        assert chat(llm[0], body, {"x-user": frank}).status_code == 200
        assert chat(llm[1], body, {"x-user": frank}).status_code == 200
        time.sleep(SETTLE)  # usage is added to Redis in the background
        assert_token_limited(chat(llm[0], body, {"x-user": frank}))
        assert_token_limited(chat(llm[1], body, {"x-user": frank}))
        assert len(chat_posts(fresh["llm"])) == 2

        key = f"sk-r-{uuid.uuid4().hex}"
        auth = {"authorization": f"Bearer {key}"}
        assert chat(desk[0], {"messages": user()}, auth).status_code == 200
        assert chat(desk[1], {"messages": user()}, auth).status_code == 200
        for d in desk:
            r = chat(d, {"messages": user()}, auth)
            assert r.status_code == 429 and error_of(r)["code"] == "rate_limit_exceeded", r.text
        assert len(chat_posts(fresh["keyed"])) == 2
