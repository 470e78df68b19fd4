"""Prometheus metrics: multiprocess correctness, exposition validity, the admin server of ``plano up``."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.gateway import REPO, Gateway, free_port

WORKER = textwrap.dedent("""
    import sys
    from gateway.telemetry import Telemetry
    n = int(sys.argv[1])
    tel = Telemetry(None, access_log=False, environ={})
    assert tel.metrics.multiprocess, "not in multiprocess mode"
    for i in range(n):
        ctx = tel.start_request("llm", "model", "POST", "/v1/chat/completions", [], f"r{i}")
        call = ctx.llm_call("openai", "gpt-4o", "gpt-4o", stream=True)
        call.first_token()
        call.finish(200, usage={"prompt_tokens": 10, "completion_tokens": 5,
                                "prompt_tokens_details": {"cached_tokens": 2},
                                "completion_tokens_details": {"reasoning_tokens": 1}})
        ctx.finish(200 if i % 5 else 502)
    agent = Telemetry(None, access_log=False, environ={})
    ctx = agent.start_request("travel", "agent", "POST", "/v1/chat/completions", [], "a")
    ctx.routing().finish(["weather"], router="embedded", fallback="orchestrator timed out")
    ctx.filter_call("guard").finish("rejected", status=403)
    ctx.agent_call("weather").finish(504, outcome="timeout")
    ctx.finish(504)
    tel.metrics.breaker("openai", "open")
    tel.metrics.task_state("working")
""")


def samples(text: str) -> dict:
    out: dict = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(all_samples: dict, name: str, **labels) -> float:
    total = 0.0
    found = False
    for (sample_name, sample_labels), v in all_samples.items():
        if sample_name == name and all(dict(sample_labels).get(k) == val for k, val in labels.items()):
            total += v
            found = True
    assert found, f"no sample {name} {labels}"
    return total


def test_two_processes_write_one_consistent_exposition(tmp_path, monkeypatch):
    directory = tmp_path / "prom"
    directory.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(n)], env=env) for n in (40, 60)]
    assert [p.wait(60) for p in procs] == [0, 0]

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    from gateway.telemetry.metrics import exposition, mark_process_dead

    body, content_type = exposition()
    assert content_type.startswith("text/plain")
    s = samples(body.decode())
    assert value(s, "plano_http_requests_total", listener="llm", status_class="2xx") == 80
    assert value(s, "plano_http_requests_total", listener="llm", status_class="5xx") == 20
    assert value(s, "plano_http_request_duration_seconds_count", listener="llm") == 100
    assert value(s, "plano_http_request_duration_seconds_bucket", listener="llm", le="+Inf") == 100
    assert value(s, "plano_http_in_flight_requests", listener="llm") == 0
    assert value(s, "plano_llm_upstream_requests_total", provider="openai", model="gpt-4o", error_class="none") == 100
    assert value(s, "plano_llm_time_to_first_token_seconds_count", model="gpt-4o") == 100
    assert value(s, "plano_llm_tokens_total", kind="prompt") == 1000
    assert value(s, "plano_llm_tokens_total", kind="completion") == 500
    assert value(s, "plano_llm_tokens_total", kind="cached") == 200
    assert value(s, "plano_llm_tokens_total", kind="reasoning") == 100
    assert value(s, "plano_router_decisions_total", router="embedded", fallback="true") == 2
    assert value(s, "plano_filter_executions_total", filter="guard", outcome="rejected") == 2
    assert value(s, "plano_agent_calls_total", agent="weather", outcome="timeout", status_class="5xx") == 2
    assert value(s, "plano_circuit_breaker_state", upstream="openai") == 2
    assert value(s, "plano_tasks", state="working") == 2
    assert value(s, "plano_build_info") >= 1
    # a dead worker's live gauges go away, its counters stay
    for p in procs:
        mark_process_dead(p.pid)
    after = samples(exposition()[0].decode())
    assert value(after, "plano_http_requests_total", listener="llm") == 100
    assert not any(name == "plano_tasks" for name, _ in after)


def test_model_label_cardinality_is_bounded(monkeypatch):
    from gateway.telemetry import metrics as m

    registry_metrics = m.Metrics(registry=__import__("prometheus_client").CollectorRegistry())
    monkeypatch.setattr(m, "MAX_MODELS", 3)
    for i in range(10):
        registry_metrics.llm("openai", f"model-{i}").observe(200, "none", 0.1, None, None)
    models = {child.model for child in registry_metrics._llm.values()}
    assert models == {"model-0", "model-1", "model-2", "other"}


def model_config(port: int, admin_port: int, mock_url: str) -> dict:
    return {
        "version": "v0.4.0",
        "listeners": [{"type": "model", "name": "llm", "port": port, "address": "127.0.0.1"}],
        "model_providers": [{"model": "openai/gpt-4o", "access_key": "sk-test", "base_url": f"{mock_url}/v1",
                             "default": True}],
        "admin": {"address": "127.0.0.1", "port": admin_port},
    }


@pytest.mark.parametrize("workers", [1, 2])
def test_plano_up_serves_metrics_on_the_admin_port(tmp_path, mock_llm, workers):
    admin = free_port()
    before = {d for d in os.listdir(tempfile.gettempdir()) if d.startswith("plano-metrics-")}
    gw = Gateway(model_config(free_port(), admin, mock_llm.url), tmp_path, workers=workers,
                 env={"PLANO_ADMIN_PORT": ""})
    with gw:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as resp:
            assert resp.status == 200
            text = resp.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/healthz", timeout=5) as resp:
            assert resp.status == 200
    s = samples(text)
    assert value(s, "plano_build_info") == 1
    # one worker: the in-process registry (with Python's own collectors); several: the multiprocess files
    assert ("python_gc_objects_collected_total" in text) == (workers == 1)
    after = {d for d in os.listdir(tempfile.gettempdir()) if d.startswith("plano-metrics-")}
    assert after <= before  # the run's multiprocess directory was removed at exit


def test_admin_port_in_use_is_a_warning_not_a_failure(tmp_path, mock_llm):
    import socket

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    try:
        gw = Gateway(model_config(free_port(), blocker.getsockname()[1], mock_llm.url), tmp_path)
        with gw:
            pass
        assert "admin server cannot bind" in gw.log()
    finally:
        blocker.close()


def _histogram_samples(registry, name: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in registry.collect() if family.name == name for s in family.samples
            if not s.name.endswith("_created")}


@pytest.mark.parametrize("bulk", [True, False])
def test_batched_histogram_sums_match_per_value_observe(bulk):
    """Per-batch sums handed to a histogram child give exactly what observing each value would."""
    import random

    from prometheus_client import CollectorRegistry, Histogram

    from gateway.telemetry.metrics import HTTP_BUCKETS, HistogramSums

    registry = CollectorRegistry()
    direct = Histogram("direct_seconds", "d", ["l"], buckets=HTTP_BUCKETS, registry=registry).labels("x")
    batched = Histogram("batched_seconds", "b", ["l"], buckets=HTTP_BUCKETS, registry=registry).labels("x")
    sums = HistogramSums(batched)
    if not bulk:  # a prometheus_client whose children look different: values are replayed one by one
        sums.counts = None
        sums.raw = []
    rng = random.Random(7)
    values = [rng.choice(HTTP_BUCKETS) for _ in range(200)]  # exactly on a bound: counted in that bucket
    values += [rng.random() * 100 for _ in range(2000)] + [0.0, 1e9]
    for batch in range(0, len(values), 300):
        for v in values[batch:batch + 300]:
            direct.observe(v)
            sums.add(v)
        sums.flush()
    sums.flush()  # an empty flush changes nothing
    want = {(n.replace("direct", "x"), k): v for (n, k), v in _histogram_samples(registry, "direct_seconds").items()}
    got = {(n.replace("batched", "x"), k): v for (n, k), v in _histogram_samples(registry, "batched_seconds").items()}
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key
    assert got[("x_seconds_count", (("l", "x"),))] == len(values)


def test_in_flight_gauge_and_counts_flush_with_the_batch():
    """Inside an event loop metric updates are summed and reach Prometheus with the next batch."""
    import asyncio

    from gateway.telemetry import Telemetry

    async def scenario():
        tel = Telemetry(None, access_log=False, environ={})
        m = tel.metrics
        series = m.listener("batchtest", "llm_chat")
        before = m.http_requests.labels("batchtest", "llm_chat", "POST", "2xx")._value.get()
        ctxs = [tel.start_request("batchtest", "model", "POST", "/v1/chat/completions", [], f"r{i}") for i in range(5)]
        await asyncio.sleep(0.1)
        assert series.in_flight._value.get() == 5
        for c in ctxs[:3]:
            c.finish(200)
        assert m.http_requests.labels("batchtest", "llm_chat", "POST", "2xx")._value.get() == before  # not yet
        await asyncio.sleep(0.1)
        assert m.http_requests.labels("batchtest", "llm_chat", "POST", "2xx")._value.get() == before + 3
        assert series.in_flight._value.get() == 2
        for c in ctxs[3:]:
            c.finish(503)
        tel.shutdown()  # flushes what is pending
        assert m.http_requests.labels("batchtest", "llm_chat", "POST", "5xx")._value.get() == 2
        assert series.in_flight._value.get() == 0

    asyncio.run(scenario())
