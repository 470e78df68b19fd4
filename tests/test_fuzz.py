"""Property-based tests (hypothesis) and schemathesis against a running gateway — bounded in time.

* the config loader: any YAML document either loads or raises ConfigError (never another exception);
* every client API's request parser (chat, Anthropic messages, Responses): any body parses or raises the
  API's GatewayError (a 4xx), never anything else;
* the edge's JSON-depth check agrees with a reference depth on generated JSON;
* schemathesis: requests generated from plano's own OpenAPI (served on the admin port) sent to a real
  gateway process with auth on: no 500, no hang (each call has a timeout), the whole run bounded.
"""

from __future__ import annotations

import json
import time

import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)

_TOP_KEYS = ["version", "listeners", "agents", "filters", "model_providers", "llm_providers", "model_aliases",
             "overrides", "tracing", "ratelimits", "state", "auth", "admin", "endpoints", "routing", "tasks"]
_LISTENER_KEYS = ["name", "type", "port", "address", "timeout", "agents", "auth", "max_body_bytes",
                  "max_json_depth", "max_header_bytes", "rate_limits", "input_filters", "router"]


def _listener():
    return st.dictionaries(st.sampled_from(_LISTENER_KEYS),
                           json_values | st.sampled_from(["model", "agent", "v0.4.0", "30s", 12000]), max_size=6)


configs = st.dictionaries(
    st.sampled_from(_TOP_KEYS),
    json_values | st.sampled_from(["v0.4.0", "v0.1"]) | st.lists(_listener(), max_size=3)
    | st.fixed_dictionaries({"api_keys": st.lists(st.text(max_size=30), max_size=3)}),
    max_size=8,
)


@FAST
@given(configs)
def test_config_loader_never_crashes_on_structured_input(data):
    from gateway.config import ConfigError, load_config_text

    text = yaml.safe_dump(data, sort_keys=False)
    try:
        load_config_text(text, env={})
    except ConfigError as exc:
        assert str(exc)  # every error says what and where


@FAST
@given(st.text(max_size=300))
def test_config_loader_never_crashes_on_text(text):
    """Any text either loads into a config or is refused with a ConfigError that says why; any other
    exception (a crash of the loader) fails the test."""
    from gateway.config import ConfigError, PlanoConfig, load_config_text

    try:
        config = load_config_text(text, env={})
    except ConfigError as exc:
        assert str(exc).strip()
    else:
        assert isinstance(config, PlanoConfig) and isinstance(config.listeners, list)


def _parsers():
    from gateway.wire.openai_chat import parse_chat_request

    out = [("chat", parse_chat_request)]
    try:
        from gateway.wire.anthropic import parse_messages_request

        out.append(("messages", parse_messages_request))
        out.append(("count_tokens", lambda body: parse_messages_request(body, count_tokens=True)))
    except ImportError:  # pragma: no cover
        pass
    try:
        from gateway.wire.responses import parse_responses_request

        out.append(("responses", parse_responses_request))
    except ImportError:  # pragma: no cover
        pass
    return out


bodies = (
    st.binary(max_size=200)
    | json_values.map(orjson.dumps)
    | st.fixed_dictionaries({}, optional={
        "model": json_values | st.text(max_size=20), "stream": json_values, "max_tokens": json_values,
        "input": json_values, "system": json_values,
        "messages": st.lists(st.dictionaries(st.sampled_from(["role", "content", "name", "tool_calls"]),
                                             json_values | st.sampled_from(["user", "assistant", "system"]),
                                             max_size=3), max_size=3) | json_values,
    }).map(orjson.dumps)
)


@pytest.mark.parametrize("name,parse", _parsers(), ids=[n for n, _ in _parsers()])
def test_client_api_parsers_never_crash(name, parse):
    from gateway.listeners.errors import GatewayError

    @FAST
    @given(bodies)
    def check(body):
        try:
            out = parse(body)
        except GatewayError as err:
            assert 400 <= err.status < 500 and err.message
            return
        assert isinstance(out, dict)

    check()


def _depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@FAST
@given(json_values, st.integers(1, 8))
def test_json_depth_check_matches_a_reference(value, limit):
    from gateway.auth.hardening import json_too_deep

    assert json_too_deep(orjson.dumps(value), limit) == (_depth(value) > limit)


# --------------------------------------------------------------------------- schemathesis


@pytest.fixture(scope="module")
def fuzz_gateway(mock_llm, tmp_path_factory):
    from tests.support.gateway import Gateway, free_port

    ports = {"llm": free_port(), "admin": free_port()}
    config = {
        "version": "v0.4.0",
        "model_providers": [{"model": "openai/mock-model", "access_key": "sk-provider-fuzz-0001",
                             "base_url": f"{mock_llm.url}/v1", "default": True}],
        "listeners": [{"type": "model", "name": "llm", "port": ports["llm"], "address": "127.0.0.1",
                       "timeout": "5s", "auth": {"api_keys": ["sk-plano-fuzz-key-0001"]}}],
        "admin": {"address": "127.0.0.1", "port": ports["admin"]},
        "auth": {"keys_file": str(tmp_path_factory.mktemp("store") / "keys.json")},
    }
    gw = Gateway(config, tmp_path_factory.mktemp("gw-fuzz"),
                 env={"PLANO_ADMIN_KEY": "adm-fuzz-key-0001", "PLANO_ADMIN_PORT": str(ports["admin"])})
    gw.start()
    gw.admin = f"http://127.0.0.1:{ports['admin']}"
    yield gw
    gw.stop()


def test_schemathesis_against_a_running_gateway(fuzz_gateway):
    """Every operation of plano's OpenAPI, fuzzed with schemathesis, against the listener (with a valid key and
    without one) and the admin port: no 500 and no hang; the whole run is bounded (about 60 s)."""
    schemathesis = pytest.importorskip("schemathesis")
    import httpx

    spec = httpx.get(fuzz_gateway.admin + "/openapi.json").json()
    listener_ops = {p: v for p, v in spec["paths"].items() if not p.startswith("/admin") and p != "/metrics"}
    admin_ops = {p: v for p, v in spec["paths"].items() if p.startswith("/admin")}
    started = time.monotonic()
    failures: list[str] = []
    calls = 0
    budget = 40.0
    for paths, base_url, auth_headers in (
        (listener_ops, fuzz_gateway.url(), {"authorization": "Bearer sk-plano-fuzz-key-0001"}),
        (listener_ops, fuzz_gateway.url(), {}),
        (admin_ops, fuzz_gateway.admin, {"authorization": "Bearer adm-fuzz-key-0001"}),
    ):
        schema = schemathesis.openapi.from_dict({**spec, "paths": paths, "servers": [{"url": base_url}]})
        for result in schema.get_all_operations():
            operation = result.ok()
            strategy = operation.as_strategy()
            base, headers = base_url, auth_headers  # this round's, for the nested test

            @settings(max_examples=12, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(strategy)
            def call(case):
                nonlocal calls
                if time.monotonic() - started > budget:
                    return
                response = case.call(base_url=base, headers={**headers, **(case.headers or {})}, timeout=10)
                calls += 1
                if response.status_code >= 500 and response.status_code not in (502, 503, 504):
                    failures.append(f"{case.method} {case.path} -> {response.status_code}: {response.text[:200]}")

            call()
    assert calls > 50, calls
    assert not failures, "\n".join(failures[:10])
    assert time.monotonic() - started < 120  # bounded: generous over the 40 s budget on a busy machine
    json.dumps(spec)  # the description is plain JSON
