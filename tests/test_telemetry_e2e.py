"""Observability end to end (issue 5 acceptance): the real gateway process, a real OTLP/gRPC receiver,
a real demo agent calling plano back, ``/metrics`` with two workers, and the JSON access log.

* One agent-listener request -> HTTP input filter -> LLM orchestrator (a MockLLM answering
  ``{"route": ["a", "b"]}``) -> agent ``a`` (a MockLLM) -> agent ``b`` (``examples/agents/weather``
  as its own process, calling plano's model listener with the ``traceparent`` it received)
  yields ONE trace with the expected parent/child structure, services and attributes,
  and every outbound call carried a ``traceparent`` naming its own span.
* An incoming ``traceparent`` is continued; ``random_sampling: 0`` exports nothing; a
  dead collector changes nothing for clients; ``/metrics`` counts exactly what was sent
  across two workers; one JSON access-log line per request.

Spans are exported in batches (``OTEL_BSP_SCHEDULE_DELAY=100`` here): tests poll the
receiver for at most ~10 s and never assert on durations.
"""

from __future__ import annotations

import json
import time
import uuid
from types import SimpleNamespace

import httpx
import pytest

from tests.support.agent_mocks import chat_posts, route_reply
from tests.support.agent_procs import ExampleAgentProcess
from tests.support.gateway import Gateway, free_port
from tests.support.http_filter_mock import HttpFilterMock
from tests.support.mock_llm import MockLLM, Reply, last_user_text
from tests.support.otlp import OTLPReceiver
from tests.support.telemetry_checks import (
    SPAN_KIND_CLIENT,
    SPAN_KIND_SERVER,
    STATUS_ERROR,
    access_lines,
    ancestors,
    by_id,
    describe,
    gateway_env,
    label_values,
    metric_sum,
    parse_samples,
    scrape,
    spans_when,
    wait_until,
)

QUESTION = "What's the weather in Paris today?"
CHAT = "/v1/chat/completions"
LLM_SPAN_PREFIX = f"POST {CHAT}"


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def post(url: str, body: dict, headers: dict | None = None, timeout: float = 30) -> httpx.Response:
    return httpx.post(f"{url}{CHAT}", json=body, headers={"connection": "close", **(headers or {})},
                      timeout=timeout)


def sse_text(response: httpx.Response) -> str:
    """The assistant text of an SSE chat-completions response (and it must end with [DONE])."""
    text = []
    lines = [line for line in response.text.splitlines() if line.startswith("data:")]
    assert lines and lines[-1].strip() == "data: [DONE]", response.text
    for line in lines[:-1]:
        event = json.loads(line[5:])
        assert "error" not in event, event
        for choice in event.get("choices", []):
            text.append((choice.get("delta") or {}).get("content") or "")
    return "".join(text)


def echo_tokens(body) -> int:
    """Completion tokens the MockLLM reports for an echoed stream: one per word of ``echo: <text>``."""
    return len(f"echo: {last_user_text(body)}".split(" "))


def traceparent_of(span) -> str:
    return f"00-{span.trace_id}-{span.span_id}-01"


# ---------------------------------------------------------------------------------------
# 1-2. one trace across filter, orchestrator, two agents and an agent's call back into plano
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("telemetry-e2e")
    receiver = OTLPReceiver()
    orch, provider, agent_a = MockLLM().start(), MockLLM().start(), MockLLM().start()
    filt = HttpFilterMock().start()
    ports = {"travel": free_port(), "models": free_port()}
    weather = ExampleAgentProcess("weather", workdir, env={
        "PLANO_AGENT_USE_LLM": "1",
        "PLANO_LLM_URL": f"http://127.0.0.1:{ports['models']}/v1",
        "PLANO_AGENT_MODEL": "gpt-4o",
        "PLANO_LLM_TIMEOUT": "20",
        "PLANO_DEMO_DATE": "2025-06-02",
    }).spawn()
    config = {
        "version": "v0.4.0",
        "agents": [{"id": "a", "url": agent_a.url}, {"id": "b", "url": weather.url}],
        "filters": [{"id": "tagger", "type": "http", "url": f"{filt.url}/tag/T"}],
        "model_providers": [
            {"model": "openai/orch", "access_key": "sk-test-orchestrator", "base_url": f"{orch.url}/v1"},
            {"model": "openai/gpt-4o", "access_key": "sk-test-provider", "base_url": f"{provider.url}/v1",
             "default": True},
        ],
        "overrides": {"agent_orchestration_model": "openai/orch"},
        "listeners": [
            {"type": "agent", "name": "travel", "port": ports["travel"], "address": "127.0.0.1", "agents": [
                {"id": "a", "description": "Weather: current conditions and forecasts for cities.",
                 "input_filters": ["tagger"]},
                {"id": "b", "description": "Flight search: flights, airlines and fares between cities."},
            ]},
            {"type": "model", "name": "models", "port": ports["models"], "address": "127.0.0.1"},
        ],
        "tracing": {"random_sampling": 100, "opentracing_grpc_endpoint": receiver.endpoint},
    }
    access_log = workdir / "access.log"
    gw = Gateway(config, workdir, env=gateway_env(PLANO_ACCESS_LOG=str(access_log)))
    try:
        gw.start()
        weather.wait_healthy()
        yield SimpleNamespace(gw=gw, receiver=receiver, orch=orch, provider=provider, agent_a=agent_a, filt=filt,
                              weather=weather, access_log=access_log,
                              travel=f"http://127.0.0.1:{ports['travel']}",
                              models=f"http://127.0.0.1:{ports['models']}")
    finally:
        gw.stop()
        weather.stop()
        for mock in (orch, provider, agent_a):
            mock.stop()
        filt.stop()
        receiver.stop()


@pytest.fixture
def t(traced):
    for mock in (traced.orch, traced.provider, traced.agent_a):
        mock.reset()
    traced.filt.reset()
    return traced


def _complete_chain(spans) -> bool:
    names = {s.name for s in spans}
    required = {"travel", "routing", "execute_filter (tagger)", "a /v1/chat/completions", "b /v1/chat/completions"}
    return required <= names and sum(1 for s in spans if s.service == "plano(llm)") >= 2


def test_one_request_through_filter_orchestrator_two_agents_and_the_model_proxy_is_one_trace(t):
    t.orch.enqueue(route_reply("a", "b"))
    started_ns = time.time_ns()
    r = post(t.travel, {"messages": user(QUESTION)}, {"x-request-id": "e2e-one"})
    assert r.status_code == 200, r.text
    # agent b (the weather demo) answered with what plano's model proxy relayed from the provider mock
    assert r.json()["choices"][0]["message"]["content"] == f"echo: {QUESTION}", t.weather.log()
    [agent_a_call] = chat_posts(t.agent_a)
    assert last_user_text(agent_a_call.body) == f"{QUESTION} [T]"  # the input filter ran before agent a
    [provider_call] = chat_posts(t.provider)  # agent b's call back through the model listener
    assert provider_call.body["stream"] is True
    [orch_call] = chat_posts(t.orch)
    [filter_call] = t.filt.calls

    def mine(spans):  # this request's spans: everything that started after it was sent
        return [s for s in spans if s.start >= started_ns]

    spans = mine(spans_when(t.receiver, lambda ss: _complete_chain(mine(ss))))
    assert _complete_chain(spans), f"incomplete trace after 10 s:\n{describe(spans)}\n{t.gw.log()[-3000:]}"
    index = by_id(spans)

    # ONE trace id across everything this request caused, the agent's own call included
    assert len({s.trace_id for s in spans}) == 1, describe(spans)
    [root] = [s for s in spans if s.name == "travel"]
    tid = root.trace_id
    for span in spans:
        assert span.attributes.get("service.name.override", span.service) == span.service
        if span is not root:
            assert root in ancestors(span, index), f"{span} is not under the root:\n{describe(spans)}"

    # root: the listener, plano(inbound), a server span without parent
    assert root.service == "plano(inbound)" and root.parent_id is None and root.kind == SPAN_KIND_SERVER
    assert root.attributes["http.status_code"] == 200
    assert root.attributes["request_id"] == "e2e-one"
    assert root.status_code != STATUS_ERROR

    # routing: plano(orchestrator), the LLM orchestrator chose a then b
    [routing] = [s for s in spans if s.name == "routing"]
    assert routing.service == "plano(orchestrator)" and routing.parent_id == root.span_id
    ra = routing.attributes
    assert ra["selection.agents"] == "a,b"
    assert ra["selection.agent_count"] == 2
    assert isinstance(ra["selection.determination_ms"], (int, float)) and ra["selection.determination_ms"] >= 0
    assert ra["routing.strategy"] == "llm"
    assert ra["routing.is_fallback"] is False and "routing.fallback_reason" not in ra

    # the orchestrator's own model call: plano(llm), child of routing, carrying its traceparent upstream
    [orch_llm] = [s for s in spans if s.parent_id == routing.span_id]
    assert orch_llm.service == "plano(llm)" and orch_llm.name.startswith(LLM_SPAN_PREFIX) and "orch" in orch_llm.name
    oa = orch_llm.attributes
    assert oa["llm.provider"] == oa["gen_ai.provider.name"] == "openai"
    assert "orch" in oa["gen_ai.request.model"]
    assert oa["llm.usage.prompt_tokens"] == oa["gen_ai.usage.input_tokens"] == 5  # the mock's usage
    assert oa["llm.usage.completion_tokens"] == oa["gen_ai.usage.output_tokens"] == 3
    assert oa["http.status_code"] == 200
    assert orch_call.headers.get("traceparent") == traceparent_of(orch_llm)

    # the filter: plano(filter), outcome recorded, traceparent naming the filter span sent to the filter
    [flt] = [s for s in spans if s.name == "execute_filter (tagger)"]
    assert flt.service == "plano(filter)" and flt.kind == SPAN_KIND_CLIENT
    assert flt.attributes["filter.outcome"] == "modified"  # the tag filter changed the conversation
    assert flt.attributes["filter.id"] == "tagger"
    assert filter_call.headers.get("traceparent") == traceparent_of(flt)

    # the two agents: plano(agent) client spans under the root, in order, each with its traceparent
    [span_a] = [s for s in spans if s.name == "a /v1/chat/completions"]
    [span_b] = [s for s in spans if s.name == "b /v1/chat/completions"]
    assert flt.parent_id in (root.span_id, span_a.span_id)
    for agent_span, agent_id in ((span_a, "a"), (span_b, "b")):
        assert agent_span.service == "plano(agent)" and agent_span.parent_id == root.span_id
        assert agent_span.kind == SPAN_KIND_CLIENT
        assert agent_span.attributes["http.status_code"] == 200
        assert agent_span.attributes["agent.id"] == agent_id
        assert agent_span.attributes["agent.outcome"] == "ok"
    assert span_a.end <= span_b.start  # a ran (and finished) before b: the orchestrator's order
    assert agent_a_call.headers.get("traceparent") == traceparent_of(span_a)

    # agent b's call into the model listener: an LLM span BELOW agent b's span (via the forwarded traceparent)
    [model_llm] = [s for s in spans if s.service == "plano(llm)" and s is not orch_llm]
    assert span_b in ancestors(model_llm, index), describe(spans)
    assert model_llm.name.startswith(LLM_SPAN_PREFIX) and "gpt-4o" in model_llm.name
    ma = model_llm.attributes
    assert ma["llm.provider"] == ma["gen_ai.provider.name"] == "openai"
    assert ma["gen_ai.request.model"] == "gpt-4o" and ma["llm.model"] == "gpt-4o"
    assert ma["llm.is_streaming"] is True
    completion_tokens = echo_tokens(provider_call.body)
    assert ma["llm.usage.prompt_tokens"] == ma["gen_ai.usage.input_tokens"] == 5
    assert ma["llm.usage.completion_tokens"] == ma["gen_ai.usage.output_tokens"] == completion_tokens
    assert ma["llm.usage.total_tokens"] == 5 + completion_tokens
    assert isinstance(ma["llm.time_to_first_token"], (int, float)) and ma["llm.time_to_first_token"] > 0
    assert any(name == "time_to_first_token" for name, _, _ in model_llm.events)
    assert ma["llm.duration_ms"] >= ma["llm.time_to_first_token"]
    assert ma["http.status_code"] == 200
    assert ma["request_id"] == "e2e-one"  # the agent forwarded x-request-id along with traceparent
    assert provider_call.headers.get("traceparent") == traceparent_of(model_llm)

    # the access log: one JSON line per request, both joined to the trace
    def lines_for_request():
        found = [x for x in access_lines(t.access_log) if x.get("request_id") == "e2e-one"]
        return found if len(found) >= 2 else None

    lines = wait_until(lines_for_request, 5.0) or []
    by_listener = {}
    for line in lines:
        by_listener.setdefault(line["listener"], []).append(line)
    assert sorted(by_listener) == ["models", "travel"], lines
    [travel_line], [model_line] = by_listener["travel"], by_listener["models"]
    for line in (travel_line, model_line):
        assert line["type"] == "access" and line["method"] == "POST" and line["path"] == CHAT
        assert line["status"] == 200 and line["trace_id"] == tid
        assert isinstance(line["duration_ms"], (int, float)) and line["duration_ms"] >= 0
        assert line["time"].endswith("Z")
    assert travel_line["agents"] == ["a", "b"]
    assert model_line["model"] == "gpt-4o" and model_line["upstream"] == "openai"


def test_orchestrator_failure_is_recorded_as_the_routing_fallback(t):
    t.orch.enqueue(Reply("error", status=500, body={"error": {"message": "orchestrator overloaded"}}))
    started_ns = time.time_ns()
    r = post(t.travel, {"messages": user(QUESTION)}, {"x-request-id": "e2e-fallback"})
    assert r.status_code == 200, r.text  # the embedded router decided instead

    def ready(spans):
        roots = [s for s in spans if s.name == "travel" and s.attributes.get("request_id") == "e2e-fallback"]
        return roots and any(s.name == "routing" and s.trace_id == roots[0].trace_id for s in spans)

    spans = [s for s in spans_when(t.receiver, ready) if s.start >= started_ns]
    assert ready(spans), describe(spans)
    [root] = [s for s in spans if s.name == "travel"]
    mine = [s for s in spans if s.trace_id == root.trace_id]
    [routing] = [s for s in mine if s.name == "routing"]
    ra = routing.attributes
    assert ra["routing.strategy"] == "embedded" and ra["routing.is_fallback"] is True
    assert isinstance(ra.get("routing.fallback_reason"), str) and ra["routing.fallback_reason"].strip()
    assert ra["selection.agents"]
    [orch_llm] = [s for s in mine if s.parent_id == routing.span_id]  # the failed orchestrator call
    assert orch_llm.service == "plano(llm)"
    assert orch_llm.attributes["http.status_code"] == 500 and orch_llm.status_code == STATUS_ERROR


def test_incoming_traceparent_is_continued(t):
    trace, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    t.orch.enqueue(route_reply("a"))
    r = post(t.travel, {"messages": user("Will it rain in Oslo?")},
             {"traceparent": f"00-{trace}-{parent}-01", "x-request-id": "e2e-continued"})
    assert r.status_code == 200, r.text

    def ready(spans):
        names = {s.name for s in spans if s.trace_id == trace}
        return {"travel", "routing", "a /v1/chat/completions"} <= names

    spans = [s for s in spans_when(t.receiver, ready) if s.trace_id == trace]
    assert ready(spans), describe(t.receiver.spans())
    [root] = [s for s in spans if s.name == "travel"]
    assert root.parent_id == parent  # continued: the caller's span is the root's parent
    assert root.attributes["request_id"] == "e2e-continued"
    [span_a] = [s for s in spans if s.name == "a /v1/chat/completions"]
    assert chat_posts(t.agent_a)[-1].headers.get("traceparent") == traceparent_of(span_a)
    for span in spans:
        assert span is root or root in ancestors(span, by_id(spans))

    # the model listener continues a caller's trace the same way (root span = the LLM call)
    trace2, parent2 = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    r = post(t.models, {"model": "gpt-4o", "messages": user("hello")}, {"traceparent": f"00-{trace2}-{parent2}-01"})
    assert r.status_code == 200, r.text
    llm_spans = spans_when(t.receiver, lambda ss: any(s.trace_id == trace2 for s in ss))
    [llm] = [s for s in llm_spans if s.trace_id == trace2]
    assert llm.parent_id == parent2 and llm.service == "plano(llm)" and llm.name.startswith(LLM_SPAN_PREFIX)
    assert llm.attributes["llm.is_streaming"] is False
    assert llm.attributes["llm.usage.prompt_tokens"] == 5 and llm.attributes["llm.usage.completion_tokens"] == 3
    # upstream gets plano's own span as parent, in the caller's trace
    assert chat_posts(t.provider)[-1].headers.get("traceparent") == traceparent_of(llm)


# ---------------------------------------------------------------------------------------
# 3-4. sampling 0, collector down
# ---------------------------------------------------------------------------------------


def _small_config(provider_url: str, agent_url: str, tracing: dict | None = None, **extra) -> tuple[dict, dict]:
    ports = {"llm": free_port(), "desk": free_port()}
    config = {
        "version": "v0.4.0",
        "agents": [{"id": "solo", "url": agent_url}],
        "model_providers": [{"model": "openai/gpt-4o", "access_key": "sk-test-provider",
                             "base_url": f"{provider_url}/v1", "default": True}],
        "listeners": [
            {"type": "model", "name": "llm", "port": ports["llm"], "address": "127.0.0.1"},
            {"type": "agent", "name": "desk", "port": ports["desk"], "address": "127.0.0.1",
             "agents": [{"id": "solo", "description": "Answers everything."}]},
        ],
        **({"tracing": tracing} if tracing is not None else {}),
        **extra,
    }
    return config, {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}


def _json_and_stream_round(urls: dict, n: int, headers: dict | None = None) -> None:
    """Model and agent listener, JSON and streaming: every answer is complete and correct."""
    for name in ("llm", "desk"):
        text = f"round {n} via {name}"
        r = post(urls[name], {"model": "gpt-4o", "messages": user(text)}, headers)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == f"echo: {text}"
        r = post(urls[name], {"model": "gpt-4o", "messages": user(text), "stream": True}, headers)
        assert r.status_code == 200, r.text
        assert sse_text(r) == f"echo: {text}"


def test_sampling_zero_exports_nothing(llm, tmp_path):
    receiver = OTLPReceiver()
    try:
        config, urls = _small_config(llm.url, llm.url, {"random_sampling": 0,
                                                        "opentracing_grpc_endpoint": receiver.endpoint})
        gw = Gateway(config, tmp_path, env=gateway_env())
        with gw:
            _json_and_stream_round(urls, 0)
            # a caller that sampled its own trace does not change that: sampling 0 means nothing is exported
            _json_and_stream_round(urls, 1, {"traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"})
            time.sleep(5 * 0.1)  # several export intervals (OTEL_BSP_SCHEDULE_DELAY=100)
            assert len(chat_posts(llm)) == 8  # the requests really went through
        # the gateway has stopped: whatever it had queued was flushed at shutdown
        assert receiver.spans() == [] and receiver.requests == [], describe(receiver.spans())
    finally:
        receiver.stop()


def test_collector_down_requests_still_succeed(llm, tmp_path):
    dead = free_port()  # nothing listens here
    config, urls = _small_config(llm.url, llm.url, {"random_sampling": 100,
                                                    "opentracing_grpc_endpoint": f"http://127.0.0.1:{dead}"})
    gw = Gateway(config, tmp_path, env=gateway_env(OTEL_EXPORTER_OTLP_TIMEOUT="1"))
    with gw:
        for n in range(3):
            _json_and_stream_round(urls, n)
            time.sleep(0.2)  # let the exporter try (and fail) between rounds
        warned = wait_until(lambda: "could not export" in gw.log(), 8.0)
        _json_and_stream_round(urls, 3)  # still fine after the exporter gave up on a batch
        time.sleep(1.5)  # give the next failed batch time to (not) warn again
        log = gw.log()
    assert warned, log[-3000:]
    assert log.count("could not export") == 1, log[-3000:]  # one warning a minute, not one per batch/request
    assert "Traceback" not in log, log[-3000:]


# ---------------------------------------------------------------------------------------
# 5. /metrics with two workers, and the access log
# ---------------------------------------------------------------------------------------


def test_metrics_count_every_request_across_two_workers(tmp_path):
    provider, agent = MockLLM().start(), MockLLM().start()
    admin = free_port()
    access_log = tmp_path / "access.log"
    config, urls = _small_config(provider.url, agent.url, admin={"address": "127.0.0.1", "port": admin})
    gw = Gateway(config, tmp_path, workers=2, env=gateway_env(PLANO_ADMIN_PORT="", PLANO_ACCESS_LOG=str(access_log)))
    model_n, agent_n = 20, 5
    streamed, completion_tokens = 0, 0
    agent_traces = {}
    try:
        with gw:
            for i in range(model_n):
                stream = i % 4 == 0
                text = f"question number {i}"
                r = post(urls["llm"], {"model": "gpt-4o", "messages": user(text),
                                                               "stream": stream}, {"x-request-id": f"m-{i}"})
                assert r.status_code == 200, r.text
                if stream:
                    assert sse_text(r) == f"echo: {text}"
                    streamed += 1
                    completion_tokens += len(f"echo: {text}".split(" "))
                else:
                    assert r.json()["usage"]["completion_tokens"] == 3
                    completion_tokens += 3
            for i in range(agent_n):
                trace = uuid.uuid4().hex
                agent_traces[f"a-{i}"] = trace
                r = post(urls["desk"], {"messages": user(f"agent question {i}")},
                         {"x-request-id": f"a-{i}", "traceparent": f"00-{trace}-{uuid.uuid4().hex[:16]}-01"})
                assert r.status_code == 200, r.text

            def settled():
                s = parse_samples(scrape(admin))
                done = (metric_sum(s, "plano_http_requests_total", listener="llm", method="POST") >= model_n
                        and metric_sum(s, "plano_http_requests_total", listener="desk", method="POST") >= agent_n
                        and metric_sum(s, "plano_llm_upstream_requests_total") >= model_n)
                return s if done else None

            samples = wait_until(settled, 10.0)  # metric updates are batched per event-loop tick
            text = scrape(admin)
            samples = parse_samples(text)  # the whole exposition parses: valid Prometheus text format
            wait_until(lambda: len(access_lines(access_log)) >= model_n + agent_n, 5.0)  # written every 100 ms
            lines = access_lines(access_log)
    finally:
        provider.stop()
        agent.stop()

    # request counters: exactly what was sent, per listener, all 2xx, latency histogram counts agree
    for listener, n in (("llm", model_n), ("desk", agent_n)):
        assert metric_sum(samples, "plano_http_requests_total", listener=listener, method="POST") == n, text
        assert metric_sum(samples, "plano_http_requests_total", listener=listener, method="POST",
                          status_class="2xx") == n
        assert metric_sum(samples, "plano_http_request_duration_seconds_count", listener=listener) == n
        assert metric_sum(samples, "plano_http_in_flight_requests", listener=listener) == 0
    # upstream LLM calls and tokens: the model listener's 20 calls and the mock's usage
    assert metric_sum(samples, "plano_llm_upstream_requests_total") == model_n
    assert metric_sum(samples, "plano_llm_upstream_requests_total", status_class="2xx") == model_n
    assert label_values(samples, "plano_llm_upstream_requests_total", "provider") == {"openai"}
    assert metric_sum(samples, "plano_llm_upstream_duration_seconds_count") == model_n
    assert metric_sum(samples, "plano_llm_time_to_first_token_seconds_count") == streamed
    assert metric_sum(samples, "plano_llm_tokens_total", kind="prompt") == 5 * model_n
    assert metric_sum(samples, "plano_llm_tokens_total", kind="completion") == completion_tokens
    # agent calls
    assert metric_sum(samples, "plano_agent_calls_total", listener="desk", agent="solo") == agent_n
    assert metric_sum(samples, "plano_agent_calls_total", listener="desk", agent="solo", outcome="ok") == agent_n
    assert metric_sum(samples, "plano_build_info") >= 1

    # the access log: one JSON line per request, from both workers, none torn or lost
    assert len(lines) == model_n + agent_n, lines
    assert sorted(x["request_id"] for x in lines) == sorted([f"m-{i}" for i in range(model_n)] + list(agent_traces))
    for line in lines:
        assert line["type"] == "access" and line["method"] == "POST" and line["path"] == CHAT
        assert line["status"] == 200
        assert isinstance(line["duration_ms"], (int, float)) and line["duration_ms"] >= 0
        assert "trace_id" in line and "time" in line
        if line["request_id"].startswith("m-"):
            assert line["listener"] == "llm" and line["model"] == "gpt-4o" and line["upstream"] == "openai"
        else:  # tracing is off here, the trace id still comes from the caller's traceparent
            assert line["listener"] == "desk" and line["agents"] == ["solo"]
            assert line["trace_id"] == agent_traces[line["request_id"]]
