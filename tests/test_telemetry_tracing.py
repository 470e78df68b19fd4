"""Tracing end to end into a real OTLP/gRPC receiver (grpcio + opentelemetry-proto's servicer).

The scenarios drive the request API the listeners call (``Telemetry.start_request`` and
the step objects) the way an agent-listener request and an agent's call back into the
model proxy do, and check what a collector receives: one trace id, the parent/child
structure, service names, Plano's and the GenAI attributes, sampling, a dead collector.
"""

from __future__ import annotations

import re
import http.server
import logging
import threading
import time

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from gateway.config import load_config_text
from gateway.telemetry import Telemetry
from gateway.telemetry.tracing import TracingSettings, parse_traceparent
from tests.support.gateway import free_port
from tests.support.otlp import OTLPReceiver

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
SECRET_KEY = "sk-proj-abcdefghijklmnopqrstuvwx1234"


@pytest.fixture
def receiver():
    r = OTLPReceiver()
    yield r
    r.stop()


def make_config(endpoint: str | None = None, *, sampling: int | None = 100, extra: str = "") -> object:
    tracing = ""
    if endpoint is not None:
        tracing = "tracing:\n"
        if sampling is not None:
            tracing += f"  random_sampling: {sampling}\n"
        tracing += f"  opentracing_grpc_endpoint: {endpoint}\n{extra}"
    text = f"""
version: v0.4.0
listeners:
  - type: model
    name: llm
    port: 12000
model_providers:
  - model: openai/gpt-4o
    access_key: {SECRET_KEY}
    default: true
{tracing}"""
    return load_config_text(text)


def fast_env(**extra) -> dict:
    return {"OTEL_BSP_SCHEDULE_DELAY": "50", **extra}


def test_agent_request_and_model_proxy_call_form_one_trace(receiver):
    cfg = make_config(receiver.endpoint, extra=(
        "  span_attributes:\n"
        "    header_prefixes: [x-katanemo-]\n"
        "    static: {deployment.environment: test, tenant.id: static-loses}\n"))
    tel = Telemetry(cfg, access_log=False, environ=fast_env())
    headers = [
        (b"traceparent", f"00-{TRACE}-{PARENT}-01".encode()),
        (b"tracestate", b"vendor=1"),
        (b"x-katanemo-tenant-id", b"acme"),
        (b"x-katanemo-api-key", SECRET_KEY.encode()),
        (b"authorization", f"Bearer {SECRET_KEY}".encode()),
    ]
    ctx = tel.start_request("travel", "agent", "POST", "/v1/chat/completions", headers, "req-1")
    assert ctx.trace_id == TRACE

    flt = ctx.filter_call("pii_guard")
    assert flt.inject({})["traceparent"].startswith(f"00-{TRACE}-")
    flt.finish("modified", status=200)

    routing = ctx.routing()
    orchestrator = ctx.llm_call("openai", "orchestrator", "gpt-4o-mini", parent=routing.span,
                                request={"messages": [{"role": "user", "content": "route me"}]})
    orchestrator.finish(200, usage={"prompt_tokens": 40, "completion_tokens": 5})
    routing.finish(["weather", "flights"], router="llm", reason="two intents")

    weather = ctx.agent_call("weather", index=0)
    sent = weather.inject({"tracestate": "stale"})
    assert sent["tracestate"] == "vendor=1"
    weather.finish(200)
    flights = ctx.agent_call("flights", index=1)
    outbound = flights.inject({})

    # The flights agent calls plano's model proxy with the traceparent it received.
    model_ctx = tel.start_request("llm", "model", "POST", "/v1/chat/completions",
                                  [(b"traceparent", outbound["traceparent"].encode())], "req-2")
    request = {"model": "fast", "temperature": 0.1, "stream": True,
               "messages": [{"role": "user", "content": "find flights to Paris"}]}
    call = model_ctx.llm_call("openai", "fast", "gpt-4o", stream=True, request=request)
    call.chunk(b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n')
    call.chunk(b'data: {"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19,'
               b'"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":3}}}\n\n'
               b"data: [DONE]\n\n")
    call.finish(200, response_bytes=321)
    model_ctx.finish(200, bytes_in=120, bytes_out=321, messages=request["messages"])
    flights.finish(200, retries=1)
    ctx.finish(200, bytes_in=200, bytes_out=400)
    tel.shutdown()

    spans = receiver.wait_for(7)
    assert len(spans) == 7, spans
    assert {s.trace_id for s in spans} == {TRACE}
    by_name = {s.name: s for s in spans}
    root = by_name["travel"]
    assert root.parent_id == PARENT and root.service == "plano(inbound)" and root.kind == 2  # SERVER
    assert root.attributes["tenant.id"] == "acme"  # the header wins over span_attributes.static
    assert root.attributes["deployment.environment"] == "test"
    assert root.attributes["request_id"] == "req-1" and root.attributes["http.status_code"] == 200

    flt_span = by_name["execute_filter (pii_guard)"]
    assert flt_span.parent_id == root.span_id and flt_span.service == "plano(filter)"
    assert flt_span.attributes["filter.outcome"] == "modified"

    routing_span = by_name["routing"]
    assert routing_span.parent_id == root.span_id and routing_span.service == "plano(orchestrator)"
    assert routing_span.attributes["selection.agents"] == "weather,flights"
    assert routing_span.attributes["selection.agent_count"] == 2
    assert routing_span.attributes["routing.strategy"] == "llm"
    assert isinstance(routing_span.attributes["selection.determination_ms"], float)

    orchestrator_span = by_name["POST /v1/chat/completions orchestrator -> gpt-4o-mini"]
    assert orchestrator_span.parent_id == routing_span.span_id and orchestrator_span.service == "plano(llm)"

    weather_span = by_name["weather /v1/chat/completions"]
    flights_span = by_name["flights /v1/chat/completions"]
    for agent_span in (weather_span, flights_span):
        assert agent_span.parent_id == root.span_id and agent_span.service == "plano(agent)"
        assert agent_span.kind == 3 and agent_span.attributes["http.status_code"] == 200  # CLIENT
    assert flights_span.attributes["agent.retries"] == 1

    llm = next(s for s in spans if s.name.startswith("POST /v1/chat/completions fast -> gpt-4o"))
    assert llm.parent_id == flights_span.span_id and llm.service == "plano(llm)"
    a = llm.attributes
    assert a["llm.provider"] == a["gen_ai.provider.name"] == "openai"
    assert a["llm.model"] == "gpt-4o" and a["gen_ai.request.model"] == "fast" and a["model.requested"] == "fast"
    assert a["llm.usage.prompt_tokens"] == a["gen_ai.usage.input_tokens"] == 12
    assert a["llm.usage.completion_tokens"] == a["gen_ai.usage.output_tokens"] == 7
    assert a["llm.usage.cached_input_tokens"] == 4 and a["llm.usage.reasoning_tokens"] == 3
    assert a["llm.temperature"] == 0.1 and a["llm.is_streaming"] is True
    assert a["llm.time_to_first_token"] > 0 and a["llm.duration_ms"] >= a["llm.time_to_first_token"]
    assert any(name == "time_to_first_token" for name, _, _ in llm.events)
    assert a["signals.quality"] == "neutral" and a["signals.turn_count"] == 1
    assert a["http.status_code"] == 200 and a["request_id"] == "req-2"

    for span in spans:  # every span sits under its component's service, in the resource and as the override
        assert span.attributes["service.name.override"] == span.service
        assert span.resource["service.version"]
        for key, value in span.attributes.items():
            assert "sk-proj" not in str(value) and "api.key" not in key and "authorization" not in key


def test_incoming_unsampled_parent_is_respected_and_propagated(receiver):
    tel = Telemetry(make_config(receiver.endpoint), access_log=False, environ=fast_env())
    ctx = tel.start_request("llm", "model", "POST", "/v1/chat/completions",
                            [(b"traceparent", f"00-{TRACE}-{PARENT}-00".encode())], "r")
    child = ctx.agent_call("a")
    headers = child.inject({})
    child.finish(200)
    ctx.finish(200)
    tel.shutdown()
    assert headers["traceparent"].startswith(f"00-{TRACE}-") and headers["traceparent"].endswith("-00")
    assert ctx.trace_id == TRACE
    time.sleep(0.2)
    assert receiver.spans() == []


@pytest.mark.parametrize("headers, continued", [
    ([(b"traceparent", f"00-{TRACE}-{PARENT}-01".encode()), (b"tracestate", b"vendor=1")], True),
    ([(b"tracestate", b"vendor=1")], False),  # state without a parent: a new trace, the state dropped
    ([(b"traceparent", b"00-not-a-valid-header-01")], False),
    ([(b"traceparent", f"00-{'0' * 32}-{PARENT}-01".encode())], False),  # an all-zero trace id is invalid
    ([(b"host", b"x"), (b"content-type", b"application/json")], False),
])
def test_root_span_continues_only_a_valid_incoming_trace(headers, continued):
    tel = Telemetry(make_config("http://127.0.0.1:1"), access_log=False, environ=fast_env())
    try:
        ctx = tel.start_request("llm", "model", "POST", "/v1/chat/completions", headers, "r")
        root = ctx.root
        assert root.recording and len(ctx.trace_id) == 32 and ctx.trace_id != "0" * 32
        assert (ctx.trace_id == TRACE) is continued
        assert root.parent_id == (int(PARENT, 16) if continued else 0)
        assert root.trace_state == ("vendor=1" if continued else None)
        out = ctx.inject({})
        assert out["traceparent"] == f"00-{ctx.trace_id}-{root.span_id_hex}-01"
        assert ("tracestate" in out) is continued
        ctx.finish(200)
    finally:
        tel.shutdown(0.2)


def test_sampling_zero_exports_nothing_and_costs_no_tracer(receiver):
    tel = Telemetry(make_config(receiver.endpoint, sampling=0), access_log=False, environ=fast_env())
    assert tel.tracing is None
    for i in range(20):
        ctx = tel.start_request("llm", "model", "POST", "/v1/chat/completions", [], f"r{i}")
        call = ctx.llm_call("openai", "gpt-4o", "gpt-4o")
        headers = call.inject({"x": "1"})
        call.finish(200, usage={"prompt_tokens": 1})
        ctx.finish(200)
    tel.shutdown()
    # Nothing is exported, but agents and providers still get a trace context to correlate with
    # (issue 15): a generated traceparent, flagged not sampled so no one downstream records it.
    assert headers["x"] == "1" and set(headers) == {"x", "traceparent"}
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-00", headers["traceparent"]), headers
    time.sleep(0.2)
    assert receiver.spans() == []


def test_ratio_sampling_keeps_whole_traces(receiver):
    tel = Telemetry(make_config(receiver.endpoint, sampling=50), access_log=False, environ=fast_env())
    for i in range(200):
        ctx = tel.start_request("travel", "agent", "POST", "/v1/chat/completions", [], f"r{i}")
        ctx.agent_call("a").finish(200)
        ctx.finish(200)
    tel.shutdown()
    spans = receiver.spans()
    traces: dict[str, list] = {}
    for span in spans:
        traces.setdefault(span.trace_id, []).append(span)
    assert 50 <= len(traces) <= 150, len(traces)
    assert all(len(group) == 2 for group in traces.values())  # never a root without its child, or vice versa


def test_collector_down_costs_nothing_but_one_warning(caplog):
    port = free_port()  # nothing listens here
    cfg = make_config(f"http://127.0.0.1:{port}")
    tel = Telemetry(cfg, access_log=False, environ=fast_env(OTEL_EXPORTER_OTLP_TIMEOUT="2"))
    caplog.set_level(logging.WARNING, logger="plano.tracing")
    slowest = 0.0
    started = time.perf_counter()
    for i in range(300):
        t0 = time.perf_counter()
        ctx = tel.start_request("travel", "agent", "POST", "/v1/chat/completions", [], f"r{i}")
        ctx.agent_call("a").finish(200)
        ctx.finish(200)
        slowest = max(slowest, time.perf_counter() - t0)
        if i % 100 == 0:
            time.sleep(0.2)  # let the exporter try (and fail) in between
    total = time.perf_counter() - started
    t0 = time.perf_counter()
    tel.shutdown(timeout=2.0)
    shutdown = time.perf_counter() - t0
    assert slowest < 0.05, slowest  # no request ever waited on the collector
    assert total < 2.0
    assert shutdown < 3.0
    assert tel.tracing.exporter.dropped > 0
    warnings = [r for r in caplog.records if "could not export" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]


def test_otel_environment_variables_are_honoured(receiver):
    env = fast_env(OTEL_SERVICE_NAME="shop", OTEL_RESOURCE_ATTRIBUTES="deployment.environment=prod,team=ai",
                   OTEL_EXPORTER_OTLP_HEADERS="x-tenant=t1,authorization=Bearer%20abc")
    tel = Telemetry(make_config(receiver.endpoint), access_log=False, environ=env)
    ctx = tel.start_request("llm", "model", "POST", "/v1/chat/completions", [], "r")
    ctx.llm_call("openai", "gpt-4o", "gpt-4o").finish(200)
    ctx.finish(200)
    tel.shutdown()
    [span] = receiver.wait_for(1)
    assert span.service == "shop(llm)"
    assert span.resource["deployment.environment"] == "prod" and span.resource["team"] == "ai"
    assert receiver.metadata[0]["x-tenant"] == "t1"
    assert receiver.metadata[0]["authorization"] == "Bearer abc"


def test_otlp_http_exporter():
    bodies: list[tuple[str, dict, bytes]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["content-length"]))
            bodies.append((self.path, dict(self.headers), body))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        text = f"""
version: v0.4.0
listeners: [{{type: model, name: llm, port: 12000}}]
model_providers: [{{model: openai/gpt-4o, access_key: x, default: true}}]
tracing:
  random_sampling: 100
  otlp_http_endpoint: http://127.0.0.1:{server.server_address[1]}
"""
        tel = Telemetry(load_config_text(text), access_log=False,
                        environ=fast_env(OTEL_EXPORTER_OTLP_HEADERS="x-key=v"))
        ctx = tel.start_request("travel", "agent", "POST", "/v1/chat/completions", [], "r")
        ctx.agent_call("a").finish(200)
        ctx.finish(200)
        tel.shutdown()
    finally:
        server.shutdown()
    assert bodies, "nothing was POSTed"
    path, headers, body = bodies[0]
    assert path == "/v1/traces"
    assert headers["Content-Type"] == "application/x-protobuf" and headers["x-key"] == "v"
    request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
    services = {
        kv.value.string_value
        for rs in request.resource_spans for kv in rs.resource.attributes if kv.key == "service.name"
    }
    assert services == {"plano(inbound)", "plano(agent)"}


def test_content_capture_is_off_by_default_and_redacted_when_on(receiver):
    messages = [{"role": "user", "content": f"my key is {SECRET_KEY}, mail me at ann@example.com, "
                                            "card 4111 1111 1111 1111. " + "x" * 400}]
    for capture in (False, True):
        extra = "  capture_content: true\n" if capture else ""
        tel = Telemetry(make_config(receiver.endpoint, extra=extra), access_log=False, environ=fast_env())
        ctx = tel.start_request("llm", "model", "POST", "/v1/chat/completions", [], f"r-{capture}")
        ctx.llm_call("openai", "gpt-4o", "gpt-4o", request={"messages": messages}).finish(200)
        ctx.finish(200, messages=messages)
        tel.shutdown()
    off, on = sorted(receiver.wait_for(2), key=lambda s: s.attributes["request_id"])
    assert "llm.user_message_preview" not in off.attributes
    preview = on.attributes["llm.user_message_preview"]
    assert "[REDACTED]" in preview and "[EMAIL]" in preview and "[CARD]" in preview
    assert SECRET_KEY not in preview and "ann@example.com" not in preview and "4111" not in preview
    assert len(preview) <= 203


def test_signals_are_attached_off_the_request_path(receiver):
    long = "I need a refund for order 1234 because the package arrived damaged and nobody answers. " * 20
    messages = []
    for i in range(50):
        messages.append({"role": "user", "content": f"{long} attempt {i}"})
        messages.append({"role": "assistant", "content": f"I am sorry to hear that. Let me check order {i}."})
    messages.append({"role": "user", "content": "This is useless. Let me talk to a human agent now!!!"})
    tel = Telemetry(make_config(receiver.endpoint), access_log=False, environ=fast_env())
    ctx = tel.start_request("llm", "model", "POST", "/v1/chat/completions", [], "sig")
    ctx.llm_call("openai", "gpt-4o", "gpt-4o", request={"messages": messages}).finish(200)
    t0 = time.perf_counter()
    ctx.finish(200, messages=messages)
    finish_cost = time.perf_counter() - t0
    finished_at = time.time_ns()
    tel.shutdown()
    [span] = receiver.wait_for(1)
    assert finish_cost < 0.005, finish_cost  # analysing 101 long messages did not happen inside finish()
    assert span.end <= finished_at  # the span's end is the request's end, not the analysis's
    a = span.attributes
    assert a["signals.quality"] == "severe" and a["signals.quality_score"] == 0
    assert a["signals.interaction.disengagement.count"] >= 2
    assert a["signals.interaction.stagnation.count"] >= 1
    assert span.name.endswith(" 🚩")
    events = [name for name, _, _ in span.events]
    assert "signal.interaction.disengagement.escalation" in events
    assert all("signal.snippet" not in attrs for _, attrs, _ in span.events)  # content capture is off


def test_inside_an_event_loop_work_is_batched_and_nothing_is_lost(receiver, tmp_path):
    """In a worker, metrics, access-log lines, span encoding and signals run in loop batches."""
    import asyncio

    from gateway.telemetry.access_log import AccessLog

    log_path = tmp_path / "access.log"
    tel = Telemetry(make_config(receiver.endpoint), access_log=AccessLog(str(log_path)), environ=fast_env())
    messages = [{"role": "user", "content": "thanks, that worked"}]

    async def serve(n: int) -> None:
        for i in range(n):
            ctx = tel.start_request("llm", "model", "POST", "/v1/chat/completions", [], f"loop-{i}")
            ctx.llm_call("openai", "gpt-4o", "gpt-4o").finish(200, usage={"prompt_tokens": 3, "completion_tokens": 2})
            ctx.finish(200, messages=messages)
            await asyncio.sleep(0)
        assert tel._deferred is not None and tel._deferred.pending  # recorded, not yet processed
        await asyncio.sleep(0.1)  # a few batch intervals

    asyncio.run(serve(30))
    tel.shutdown()
    spans = receiver.wait_for(30)
    assert len(spans) == 30 and all(s.attributes["signals.quality"] == "good" for s in spans)
    assert len(log_path.read_text().splitlines()) == 30


def test_settings_resolution():
    cfg = make_config("http://collector:4317")
    assert TracingSettings.from_config(cfg, {}).endpoint == "http://collector:4317"
    forced = TracingSettings.from_config(cfg, {"PLANO_TRACING_ENDPOINT": "http://127.0.0.1:5555"})
    assert forced.endpoint == "http://127.0.0.1:5555" and forced.enabled
    none = make_config(None)
    assert not TracingSettings.from_config(none, {}).enabled
    with_tracing = TracingSettings.from_config(none, {"PLANO_TRACING_ENDPOINT": "http://127.0.0.1:1",
                                                      "PLANO_TRACING_SAMPLING": "100"})
    assert with_tracing.enabled and with_tracing.sampling_percent == 100
    no_rate = make_config("http://c:4317", sampling=None)
    assert TracingSettings.from_config(no_rate, {}).sampling_percent == 100
    assert not TracingSettings.from_config(cfg, {"OTEL_SDK_DISABLED": "true"}).enabled
    text = ("version: v0.4.0\nlisteners: [{type: model, name: llm, port: 12000}]\n"
            "model_providers: [{model: openai/gpt-4o, access_key: x, default: true}]\n"
            "tracing: {random_sampling: 10}\n")
    bare = load_config_text(text)
    assert TracingSettings.from_config(bare, {"OTEL_TRACING_GRPC_ENDPOINT": "http://a:1"}).endpoint == "http://a:1"
    http_env = TracingSettings.from_config(bare, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://b:4318",
                                                  "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"})
    assert (http_env.protocol, http_env.endpoint) == ("http", "http://b:4318/v1/traces")
    assert TracingSettings.from_config(bare, {}).endpoint == "http://localhost:4317"


@pytest.mark.parametrize("value,ok", [
    (f"00-{TRACE}-{PARENT}-01", True),
    (f"00-{TRACE}-{PARENT}-00", True),
    (f"00-{'0' * 32}-{PARENT}-01", False),
    (f"00-{TRACE}-{'0' * 16}-01", False),
    (f"ff-{TRACE}-{PARENT}-01", False),
    (f"00-{TRACE}-{PARENT}-01-extra", False),
    (f"01-{TRACE}-{PARENT}-01-future", True),
    (f"00-{TRACE[:-1]}g-{PARENT}-01", False),
    ("garbage", False),
])
def test_traceparent_parsing(value, ok):
    assert (parse_traceparent(value) is not None) is ok


def test_encoded_attributes_keep_each_values_type_across_the_field_cache():
    """``1``, ``1.0`` and ``True`` are equal dict keys: the per-value field cache must still encode each
    as its own OTLP type (int, double, bool), and a key with many values is encoded directly."""
    from opentelemetry.proto.trace.v1 import trace_pb2

    from gateway.telemetry import otlp
    from tests.support.otlp import value_of

    def decoded(attrs: dict) -> dict:
        span = trace_pb2.Span.FromString(otlp.span_attributes(attrs))
        return {kv.key: (kv.value.WhichOneof("value"), value_of(kv.value)) for kv in span.attributes}

    def element_kinds(attrs: dict) -> list:
        (kv,) = trace_pb2.Span.FromString(otlp.span_attributes(attrs)).attributes
        return [v.WhichOneof("value") for v in kv.value.array_value.values]

    for _ in range(2):  # the second round is served from the cache
        assert decoded({"x.typed": 1}) == {"x.typed": ("int_value", 1)}
        assert decoded({"x.typed": 1.0}) == {"x.typed": ("double_value", 1.0)}
        assert decoded({"x.typed": True}) == {"x.typed": ("bool_value", True)}
        assert decoded({"x.typed": ("stop",)})["x.typed"][1] == ["stop"]
        assert element_kinds({"x.tuple": (1,)}) == ["int_value"]
        assert element_kinds({"x.tuple": (True,)}) == ["bool_value"]  # (1,) == (True,): not served from (1,)
        assert element_kinds({"x.tuple": (1.0,)}) == ["double_value"]
    for n in range(otlp._VALUES_PER_KEY + 20):  # past the per-key limit: still right, no longer cached
        assert decoded({"x.many": n * 0.5, "x.id": f"id-{n}"}) == {"x.many": ("double_value", n * 0.5),
                                                                    "x.id": ("string_value", f"id-{n}")}
    assert "x.many" in otlp._HIGH_CARDINALITY and "x.many" not in otlp._FIELD_CACHE
