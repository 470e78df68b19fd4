"""Each attempt of a call that may retry is its own child span (attempt number, endpoint, outcome)."""

from __future__ import annotations

import httpx

from tests.support.gateway import Gateway, free_port
from tests.support.mock_llm import Reply
from tests.support.otlp import OTLPReceiver
from tests.support.telemetry_checks import by_id, gateway_env, spans_when


def test_a_retried_agent_call_has_one_span_per_attempt_under_the_agent_span(tmp_path, llm):
    receiver = OTLPReceiver()
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: a connect error
    port = free_port()
    config = {
        "version": "v0.4.0",
        "agents": [{"id": "helper", "urls": [dead, llm.url], "retry": {"attempts": 3, "backoff": "1ms",
                                                                         "on": ["connect_error", 503]}}],
        "model_providers": [{"model": "openai/gpt-4o", "base_url": llm.url, "default": True}],
        "listeners": [
            {"type": "agent", "name": "desk", "port": port, "address": "127.0.0.1",
             "agents": [{"id": "helper", "description": "helps"}]},
            {"type": "model", "name": "llm", "port": free_port(), "address": "127.0.0.1"},
        ],
        "tracing": {"random_sampling": 100, "opentracing_grpc_endpoint": receiver.endpoint},
    }
    llm.enqueue(Reply("error", status=503, body={"error": {"message": "busy"}}), Reply("json", content="done"))
    try:
        with Gateway(config, tmp_path, env=gateway_env()):
            resp = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=10,
                              json={"messages": [{"role": "user", "content": "hi"}]})
            assert resp.status_code == 200
            spans = spans_when(receiver, lambda s: sum(x.name.startswith("attempt ") for x in s) >= 3)
    finally:
        receiver.stop()
    attempts = sorted((s for s in spans if s.name.startswith("attempt ")), key=lambda s: s.attributes["plano.attempt"])
    index = by_id(spans)
    agent_span = index[attempts[0].parent_id]
    assert agent_span.name.startswith("helper ")
    assert {s.parent_id for s in attempts} == {agent_span.span_id}
    # The first pick is whichever endpoint round-robin gives; the outcomes tell the story either way.
    outcomes = [(s.attributes["plano.endpoint"] == dead, s.attributes["plano.attempt.outcome"]) for s in attempts]
    assert outcomes[-1] == (False, "ok")
    assert (True, "connect") in outcomes and (False, "retry") in outcomes
    assert len(llm.requests) == 2
