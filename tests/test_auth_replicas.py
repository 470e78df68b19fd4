"""Virtual keys across two plano replicas sharing a real Redis (``PLANO_TEST_REDIS_URL``).

Two gateway processes, one Redis prefix: a key created through the store works on both,
its budget spent on one is refused on the other, a per-key rate limit counts both, and a
revocation reaches both within one second without a restart.
"""

from __future__ import annotations

import time
import uuid

import httpx
import openai
import pytest

from tests.support.gateway import Gateway, free_port
from tests.support.shared_state import clear_redis_prefix, redis_url

MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def replicas(mock_llm, tmp_path_factory):
    url = redis_url()
    prefix = f"plano-test-auth-{uuid.uuid4().hex[:8]}:"
    ports = [free_port(), free_port()]
    gateways = []
    for i, port in enumerate(ports):
        config = {
            "version": "v0.4.0",
            "model_providers": [{"model": "openai/mock-model", "access_key": "sk-provider-0001",
                                 "base_url": f"{mock_llm.url}/v1", "default": True},
                                {"model": "openai/other-model", "access_key": "sk-provider-0001",
                                 "base_url": f"{mock_llm.url}/v1"}],
            "listeners": [{"type": "model", "name": "llm", "port": port, "address": "127.0.0.1", "auth": {}}],
            "state": {"redis_url": url, "key_prefix": prefix},
            "auth": {"sync_interval": "200ms"},
        }
        gw = Gateway(config, tmp_path_factory.mktemp(f"replica{i}"), env={"PLANO_ADMIN_PORT": "0"})
        gw.start()
        gateways.append(gw)
    yield gateways
    for gw in gateways:
        gw.stop()
    clear_redis_prefix(url, prefix)


def _store(gw):
    from gateway.auth.admin_store import AdminKeyStore
    from gateway.config import load_config

    return AdminKeyStore(load_config(gw.config_path))


def _status(gw, key, model="mock-model") -> int:
    return httpx.post(f"{gw.url()}/v1/chat/completions", headers={"authorization": f"Bearer {key}"} if key else {},
                      json={"model": model, "messages": MESSAGES}).status_code


def _known(gw, key) -> bool:
    return httpx.get(f"{gw.url()}/v1/models", headers={"authorization": f"Bearer {key}"}).status_code == 200


def _eventually(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


def test_no_key_and_forbidden_model_on_both(replicas):
    a, b = replicas
    key = _store(a).create({"id": "narrow", "models": ["openai/other-model"]})["key"]
    for gw in replicas:
        _eventually(lambda: _known(gw, key))
        assert _status(gw, "") == 401
        assert _status(gw, key) == 403
        assert _status(gw, key, model="openai/other-model") == 200


def test_budget_spent_on_one_replica_is_refused_on_the_other(replicas, llm):
    a, b = replicas
    key = _store(a).create({"id": "budget", "budget": {"tokens": 10, "period": "day"}})["key"]
    _eventually(lambda: _known(a, key) and _known(b, key))
    assert _status(a, key) == 200  # 8 tokens
    assert _status(a, key) == 200  # 16 >= 10: spent
    time.sleep(1.0)  # B's local copy is synced in the background (200 ms here)
    ca = openai.OpenAI(base_url=f"{b.url()}/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.RateLimitError) as exc:
        ca.chat.completions.create(model="mock-model", messages=MESSAGES)
    assert exc.value.body["code"] == "budget_exceeded" and "10 tokens" in exc.value.body["message"]
    assert len([r for r in llm.requests if r.path.endswith("/chat/completions")]) == 2


def test_per_key_rate_limit_counts_both_replicas(replicas):
    a, b = replicas
    key = _store(a).create({"id": "rated", "rate_limits": [{"requests": 3, "unit": "hour"}]})["key"]
    _eventually(lambda: _known(a, key) and _known(b, key))
    assert [_status(a, key), _status(b, key), _status(a, key)] == [200, 200, 200]
    assert _status(b, key) == 429
    assert _status(a, key) == 429


def test_revocation_reaches_both_replicas_within_a_second(replicas):
    a, b = replicas
    store = _store(b)
    key = store.create({"id": "revoke-me"})["key"]
    _eventually(lambda: _known(a, key) and _known(b, key))
    assert _status(a, key) == 200 and _status(b, key) == 200
    store.revoke("revoke-me")
    time.sleep(1.0)  # the acceptance bound
    assert _status(a, key) == 401
    assert _status(b, key) == 401
    listed = {k["id"]: k for k in store.list()}
    assert listed["revoke-me"]["status"] == "revoked"
    assert "key" not in listed["revoke-me"]  # digests are never listed
    usage = store.usage("budget")
    assert sum(p["tokens"] for p in usage["periods"].values()) == 16
