"""The telemetry sidecar: workers ship spans, the sidecar analyses signals, encodes and exports.

Through the real gateway (``plano up`` starts the sidecar) with a real OTLP/gRPC receiver:
signals computed in the sidecar reach the span and the worker's ``/metrics``; the
sidecar can die without a client noticing, and is restarted. Unit level: the
worker-side shipper never blocks and never raises, whatever the socket does.
"""

from __future__ import annotations

import marshal
import os
import signal
import socket

import httpx
import pytest

from tests.support.gateway import Gateway, free_port
from tests.support.mock_llm import MockLLM
from tests.support.otlp import OTLPReceiver
from tests.support.telemetry_checks import (
    gateway_env,
    metric_sum,
    parse_samples,
    scrape,
    spans_when,
    wait_until,
)

FRUSTRATED = [
    {"role": "user", "content": "Book me a table for two in Paris tonight."},
    {"role": "assistant", "content": "Sure, I booked a table for two in Rome tonight."},
    {"role": "user", "content": "No, that's wrong. I said Paris!!! This is useless, let me talk to a human."},
]


def _children(pid: int) -> list[int]:
    """Child processes of ``pid``, whichever of its threads started them."""
    out = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _sidecar_pid(gateway_pid: int) -> int | None:
    for child in _children(gateway_pid):
        if "gateway.telemetry.sidecar" in _cmdline(child):
            return child
    return None


def _traced_model_proxy(llm: MockLLM, receiver: OTLPReceiver, port: int) -> dict:
    return {
        "version": "v0.4.0",
        "model_providers": [{"model": "openai/gpt-4o", "access_key": "sk-test-provider",
                             "base_url": f"{llm.url}/v1", "default": True}],
        "listeners": [{"type": "model", "name": "llm", "port": port, "address": "127.0.0.1"}],
        "tracing": {"random_sampling": 100, "opentracing_grpc_endpoint": receiver.endpoint},
    }


@pytest.fixture
def setup(tmp_path):
    receiver = OTLPReceiver()
    llm = MockLLM().start()
    port, admin = free_port(), free_port()
    gw = Gateway(_traced_model_proxy(llm, receiver, port), tmp_path, env=gateway_env(PLANO_ADMIN_PORT=str(admin)))
    try:
        yield gw, receiver, f"http://127.0.0.1:{port}/v1/chat/completions", admin
    finally:
        gw.stop()
        llm.stop()
        receiver.stop()


def test_signals_are_computed_by_the_sidecar_and_counted_by_the_worker(setup):
    gw, receiver, url, admin = setup
    with gw:
        worker = gw.proc.pid
        sidecar = wait_until(lambda: _sidecar_pid(worker), 10.0)
        assert sidecar, "plano up with tracing on started no telemetry sidecar"
        r = httpx.post(url, json={"model": "gpt-4o", "messages": FRUSTRATED}, timeout=30)
        assert r.status_code == 200, r.text
        spans = spans_when(receiver, lambda s: any("signals.quality" in x.attributes for x in s))
        flagged = [s for s in spans if "signals.quality" in s.attributes]
        assert flagged, [s.attributes for s in spans]
        span = flagged[0]
        assert span.attributes["signals.quality"] == "severe"
        assert span.name.endswith("🚩")
        assert any(name.startswith("signal.interaction.disengagement") for name, _, _ in span.events)
        assert span.service == "plano(llm)"
        assert span.resource["process.pid"] == worker  # the worker that served it, not the sidecar
        # the worker counts the quality bucket the sidecar sent back
        counted = wait_until(lambda: metric_sum(parse_samples(scrape(admin)), "plano_signals_quality_total",
                                                quality="severe"), 10.0)
        assert counted == 1


def test_llm_attributes_are_derived_in_the_sidecar_from_the_calls_raw_facts(setup):
    """The worker ships an LLM call's raw facts (request, usage, response fields); the sidecar's export
    carries every ``llm.*`` / ``gen_ai.*`` attribute they stand for."""
    gw, receiver, url, _ = setup
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    with gw:
        r = httpx.post(url, json={"model": "gpt-4o", "messages": [{"role": "user", "content": "weather?"}],
                                  "temperature": 0.3, "max_tokens": 64, "top_p": 0.9, "tools": tools}, timeout=30)
        assert r.status_code == 200, r.text
        spans = spans_when(receiver, lambda s: any("gen_ai.response.id" in x.attributes for x in s))
    a = next(s for s in spans if "gen_ai.response.id" in s.attributes).attributes
    assert a["llm.temperature"] == a["gen_ai.request.temperature"] == 0.3
    assert a["llm.max_tokens"] == a["gen_ai.request.max_tokens"] == 64
    assert a["llm.top_p"] == a["gen_ai.request.top_p"] == 0.9
    assert a["llm.tools"] == "get_weather(...)"
    assert a["llm.usage.prompt_tokens"] == a["gen_ai.usage.input_tokens"] == 5
    assert a["llm.usage.completion_tokens"] == a["gen_ai.usage.output_tokens"] == 3
    assert a["llm.usage.total_tokens"] == 8
    assert a["gen_ai.response.id"] == "chatcmpl-mock" and a["gen_ai.response.model"] == a["llm.model"] == "gpt-4o"
    assert list(a["gen_ai.response.finish_reasons"]) == ["stop"]
    assert a["llm.provider"] == "openai" and a["llm.is_streaming"] is False and a["http.status_code"] == 200
    assert isinstance(a["llm.duration_ms"], float) and a["llm.response_bytes"] > 0


def test_requests_never_wait_on_a_dead_sidecar_and_it_comes_back(setup):
    gw, receiver, url, _admin = setup
    with gw:
        worker = gw.proc.pid
        first = wait_until(lambda: _sidecar_pid(worker), 10.0)
        assert first
        os.kill(first, signal.SIGKILL)
        for i in range(20):  # answered normally whether or not anyone exports their spans
            r = httpx.post(url, json={"model": "gpt-4o", "messages": [{"role": "user", "content": f"hi {i}"}]},
                           timeout=30)
            assert r.status_code == 200, r.text
        second = wait_until(lambda: (p := _sidecar_pid(worker)) and p != first and p, 15.0)
        assert second, gw.log()[-2000:]
        receiver.clear()
        marker = "after the restart"
        r = httpx.post(url, json={"model": "gpt-4o", "messages": [{"role": "user", "content": marker}]}, timeout=30)
        assert r.status_code == 200
        spans = spans_when(receiver, lambda s: len(s) >= 1)
        assert spans, "no span exported after the sidecar was restarted"
        assert "restarting it" in gw.log()
    assert gw.proc.returncode == 0
    assert not _sidecar_pid(worker)


# ------------------------------------------------------------------------ the worker's shipper


class _Span:
    def __init__(self, n: int, messages=None, size: int = 10) -> None:
        self.trace_id, self.span_id, self.parent_id, self.trace_state = n + 1, n + 2, 0, None
        self.name, self.kind, self.component = f"span {n}", 1, "llm"
        self.start_ns, self.end_ns, self.status_code, self.status_message = 1, 2, 0, None
        self.remote_parent = False
        self.attrs = {"request_id": "x" * size, "n": n, "ratio": 0.5, "reasons": ("stop",)}
        self.blocks, self.events, self.messages, self.facts = [b"\x4a\x00"], None, messages, None


def _frames(sock: socket.socket) -> list:
    out = []
    sock.setblocking(False)
    while True:
        try:
            out.append(marshal.loads(sock.recv(1 << 22)))
        except BlockingIOError:
            return out


@pytest.fixture
def channel():
    """A worker-side shipper and the sidecar's end of its socket."""
    from gateway.telemetry.shipping import SpanShipper, channel_pair

    worker, sidecar = channel_pair()
    try:
        yield SpanShipper(worker), sidecar
    finally:
        worker.close()
        sidecar.close()


@pytest.fixture
def traced(monkeypatch):
    """``make(signals)`` -> (Telemetry shipping to a socket, the sidecar's end of it)."""
    from gateway.config import load_config_text
    from gateway.telemetry import Telemetry, shipping

    made = []

    def make(signals: bool = True):
        worker, sidecar = shipping.channel_pair()
        monkeypatch.setattr(shipping, "_channel", worker)
        cfg = load_config_text(
            "version: v0.4.0\nlisteners:\n  - {type: model, name: llm, port: 12000}\n"
            "model_providers:\n  - {model: openai/gpt-4o, access_key: sk-test, default: true}\n"
            "tracing: {random_sampling: 100, opentracing_grpc_endpoint: 'http://127.0.0.1:1'}\n"
            f"overrides: {{disable_signals: {str(not signals).lower()}}}\n")
        tel = Telemetry(cfg, access_log=False)
        assert tel.shipper is not None
        made.append((tel, worker, sidecar))
        return tel, sidecar

    yield make
    for tel, worker, sidecar in made:
        tel.shutdown(0.2)
        worker.close()
        sidecar.close()


def _shipped(tel, sidecar) -> tuple[bytes, tuple]:
    """The one frame the worker sent, raw, and its one record."""
    tel.tracing.force_flush()
    sidecar.setblocking(False)
    raw = sidecar.recv(1 << 22)
    (_, _, (record,)) = marshal.loads(raw)
    return raw, record


def test_shipper_splits_large_batches_and_keeps_every_span(channel):
    from gateway.telemetry.shipping import FORMAT, _record

    shipper, sidecar = channel
    shipper.max_frame = 20_000
    for n in range(200):
        shipper.ended(_Span(n, size=500))  # no event loop: each span goes out at once
    for n in range(200, 400):
        shipper._batch.append(_record(_Span(n)))
    shipper.flush()  # one large batch: split into frames under the limit
    frames = _frames(sidecar)
    assert all(version == FORMAT and pid == os.getpid() for version, pid, _ in frames)
    got = sorted(record[1] - 2 for _, _, records in frames for record in records)
    assert got == list(range(400))
    assert shipper.exported == 400 and shipper.dropped == 0


def test_shipper_drops_conversation_of_an_oversized_span_and_counts_a_full_socket(channel):
    shipper, sidecar = channel
    shipper.max_frame = 16_384
    huge = [{"role": "user", "content": "x" * 50_000}]
    shipper.ended(_Span(1, messages=huge))
    (_, _, records), = _frames(sidecar)
    assert records[0][1] == 3 and records[0][15] is None  # the span went, its conversation stayed
    # nobody reads the other end: frames pile up until the socket is full, then spans are dropped
    sent = 0
    while shipper.dropped == 0 and sent < 100_000:
        shipper.ended(_Span(sent, size=2000))
        sent += 1
    assert shipper.dropped >= 1
    assert shipper.exported + shipper.dropped == sent + 1


def test_a_span_too_large_to_ship_keeps_its_llm_attributes(channel):
    """A request too big for a frame: its conversation stays behind, its facts become attributes in the worker."""
    shipper, sidecar = channel
    span = _Span(1, messages=[{"role": "user", "content": "x" * (4 << 20)}])
    span.facts = ((0.5, None, None, None, "lookup(...)"), (7, 2, 9, None, None, None),
                  ("gpt-4o", "chatcmpl-1", "stop"), 0.0123456, 321)
    shipper.ended(span)
    (_, _, (record,)), = _frames(sidecar)
    assert record[15] is None and record[16] is None
    attrs = record[12]
    assert attrs["llm.temperature"] == 0.5 and attrs["gen_ai.usage.input_tokens"] == 7
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",) and attrs["gen_ai.response.id"] == "chatcmpl-1"
    assert attrs["llm.duration_ms"] == 12.346 and attrs["llm.response_bytes"] == 321
    assert attrs["llm.tools"] == "lookup(...)"


def test_a_record_marshal_cannot_write_still_carries_its_llm_attributes(channel):
    shipper, sidecar = channel
    span = _Span(1)
    span.attrs["odd"] = object()  # e.g. a value from an odd config
    span.facts = ((0.7, None, 32, None, None), (3, 4, 7, None, None, None), ("gpt-4o", "c-9", ["stop"]), 0.5, 9)
    shipper.ended(span)
    (_, _, (record,)), = _frames(sidecar)
    attrs = record[12]
    assert attrs["odd"].startswith("<object object") and record[16] is None
    assert attrs["llm.temperature"] == 0.7 and attrs["llm.max_tokens"] == 32
    assert attrs["llm.usage.total_tokens"] == 7 and attrs["gen_ai.response.finish_reasons"] == ("stop",)


@pytest.mark.parametrize("signals", [True, False])
def test_an_llm_span_ships_the_conversation_only_when_signals_need_it(traced, signals):
    tel, sidecar = traced(signals)
    schema = {"type": "object", "description": "a long tool schema that stays in the worker"}
    request = {"model": "gpt-4o", "messages": [{"role": "user", "content": "a private conversation"}],
               "temperature": 0.2,
               "tools": [{"type": "function", "function": {"name": "lookup", "parameters": schema}}]}
    ctx = tel.start_request("llm", "model", "POST", "/v1/chat/completions", [], "rid-1")
    call = ctx.llm_call("openai", "gpt-4o", "gpt-4o", request=request)
    call.finish(200, completion={"model": "gpt-4o", "id": "c-1", "choices": [{"finish_reason": "stop"}]},
                response_bytes=42)
    ctx.finish(None, bytes_in=10, messages=request["messages"])
    raw, record = _shipped(tel, sidecar)
    assert (b"a private conversation" in raw) is signals  # for the sidecar's signals only
    assert (record[15] is not None) is signals
    assert b"stays in the worker" not in raw  # tool schemas never ship: the names are enough
    attrs = expand_facts_of(record)
    assert attrs["llm.temperature"] == 0.2 and attrs["llm.tools"] == "lookup(...)"
    assert attrs["gen_ai.response.id"] == "c-1" and attrs["llm.response_bytes"] == 42


def test_request_parameters_are_taken_when_the_call_starts(traced):
    """Facts are recorded as the call starts: a later change to the body does not show, and a call
    whose finish() never ran (the request failed around it) still exports its parameters."""
    tel, sidecar = traced()
    request = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 64}
    ctx = tel.start_request("llm", "model", "POST", "/v1/chat/completions", [], "rid-1")
    ctx.llm_call("openai", "gpt-4o", "gpt-4o", request=request)
    request["max_tokens"] = 4096
    ctx.finish(500, bytes_in=10, error="the request failed before the call finished")
    _, record = _shipped(tel, sidecar)
    attrs = expand_facts_of(record)
    assert attrs["llm.max_tokens"] == attrs["gen_ai.request.max_tokens"] == 64
    assert "llm.duration_ms" not in attrs and record[9] == 2  # no outcome recorded; status ERROR


def expand_facts_of(record) -> dict:
    from gateway.telemetry.genai import expand_facts

    return expand_facts(record[16], dict(record[12]))


_DEEP: list = []
for _ in range(3000):
    _DEEP = [_DEEP]


@pytest.mark.parametrize("facts", [
    None, "garbage", (1, 2), ((0.5,),) * 3, ({"temperature": 0.5}, None, None, None, None),
    (("hot", [1], {"k": 1}, None, 7), ("a",) * 6, (5, ["x"], {"k": 1}), "1.5", 2.5),
    ([], [1, 2, 3], None, None, None),
    ((True, None, None, False, None), (1.5, None, None, None, None, None), ("m", None, [None, 3]), 7, "300"),
    (None, None, ("m", "id", _DEEP), float("inf"), None), (None, None, ("m", "id", [_DEEP]), float("nan"), None),
])
def test_facts_of_unexpected_types_are_skipped_not_raised(facts):
    from gateway.telemetry.genai import expand_facts

    attrs = expand_facts(facts, {})
    for key, value in attrs.items():  # only well-typed values make it
        assert isinstance(value, (str, int, float, bool, tuple)), (key, value)
    assert "llm.temperature" not in attrs and "llm.max_tokens" not in attrs
    assert "llm.usage.prompt_tokens" not in attrs
    assert "llm.duration_ms" not in attrs and "llm.response_bytes" not in attrs
    assert "gen_ai.response.finish_reasons" not in attrs and "llm.tools" not in attrs


def test_shipper_survives_a_closed_sidecar_end(channel):
    shipper, sidecar = channel
    sidecar.close()
    shipper.ended(_Span(1))
    shipper.shutdown(0.2)
    assert shipper.dropped == 1 and shipper.exported == 0


def test_processor_attaches_signals_and_tags_spans_with_the_worker():
    from gateway.telemetry.shipping import FORMAT, _record
    from gateway.telemetry.sidecar import Processor

    class Exporter:
        def __init__(self):
            self.spans = []

        def add(self, span):
            self.spans.append(span)

    exporter = Exporter()
    processor = Processor(exporter, signals=True, capture_content=False)
    frame = marshal.dumps((FORMAT, 4242, [_record(_Span(1, messages=FRUSTRATED)), _record(_Span(2))]))
    quality = processor.frame(frame)
    assert quality == {"severe": 1}
    first, second = exporter.spans
    assert first.component == (4242, "llm") and first.attrs["signals.quality"] == "severe"
    assert first.name.endswith("🚩") and first.messages is None
    assert "signals.quality" not in second.attrs
    assert processor.frame(b"garbage") == {}  # an unreadable frame is dropped, not raised
    assert processor.frame(marshal.dumps((99, 1, []))) == {}


def test_two_workers_share_one_sidecar(tmp_path):
    receiver = OTLPReceiver()
    llm = MockLLM().start()
    port, admin = free_port(), free_port()
    gw = Gateway(_traced_model_proxy(llm, receiver, port), tmp_path, env=gateway_env(PLANO_ADMIN_PORT=str(admin)),
                 workers=2)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        with gw:
            supervisor = gw.proc.pid
            sidecar = wait_until(lambda: _sidecar_pid(supervisor), 10.0)
            assert sidecar
            workers = set(_children(supervisor)) - {sidecar}
            assert len(workers) == 2, (workers, sidecar)
            for _ in range(12):  # new connections: the kernel spreads them over both workers
                r = httpx.post(url, json={"model": "gpt-4o", "messages": FRUSTRATED}, headers={"connection": "close"},
                               timeout=30)
                assert r.status_code == 200, r.text
            spans = spans_when(receiver, lambda s: sum("signals.quality" in x.attributes for x in s) >= 12)
            analysed = [s for s in spans if "signals.quality" in s.attributes]
            assert len(analysed) == 12
            assert {s.resource["process.pid"] for s in analysed} <= workers
            counted = wait_until(lambda: metric_sum(parse_samples(scrape(admin)), "plano_signals_quality_total",
                                                    quality="severe") == 12, 10.0)
            assert counted, scrape(admin)
        assert gw.proc.returncode == 0
        assert not _sidecar_pid(supervisor)
    finally:
        gw.stop()
        llm.stop()
        receiver.stop()


def test_the_configs_literal_secrets_are_scrubbed_in_the_sidecar_too(tmp_path):
    """A provider key with no recognisable shape, pasted by a user, never reaches a span (content capture on)."""
    secret = "plainwords" + "literalkey42"  # matches no secret pattern: only the registered literal finds it
    receiver = OTLPReceiver()
    llm = MockLLM().start()
    port = free_port()
    config = _traced_model_proxy(llm, receiver, port)
    config["model_providers"][0]["access_key"] = secret
    config["tracing"]["capture_content"] = True
    gw = Gateway(config, tmp_path, env=gateway_env())
    messages = [{"role": "user", "content": f"my key is {secret} and this is useless, let me talk to a human!!!"}]
    try:
        with gw:
            r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                           json={"model": "gpt-4o", "messages": messages}, timeout=30)
            assert r.status_code == 200, r.text
            spans = spans_when(receiver, lambda s: any(x.events for x in s))
            events = [e for s in spans for e in s.events]
            snippets = [attrs.get("signal.snippet", "") for _, attrs, _ in events]
            assert any("human" in text for text in snippets), events  # content was captured ...
            assert all(secret not in text for text in snippets)  # ... without the key
            assert all(secret not in repr(s.attributes) for s in spans)
    finally:
        gw.stop()
        llm.stop()
        receiver.stop()


def test_processor_takes_secrets_from_the_runner_and_does_not_answer_them():
    from gateway.telemetry.redact import redact_secrets
    from gateway.telemetry.sidecar import SECRETS, Processor

    processor = Processor(None, signals=True, capture_content=True)
    value = "unshapedsecret" + "9876"
    assert redact_secrets(f"x {value} y") == f"x {value} y"
    assert processor.frame(marshal.dumps((SECRETS, [value]))) is None
    assert value not in redact_secrets(f"x {value} y")
