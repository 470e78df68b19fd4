"""Per-request CPU cost of plano's telemetry calls (no HTTP): what a listener pays for observability.

Runs the calls a listener makes for one request — ``start_request``, the step
objects, ``finish`` — in a loop and reports CPU microseconds per request
(``time.process_time``: every thread of the process, so the span export thread
and the access-log writer are included). Tracing exports over real OTLP/gRPC to
a minimal sink in a separate process (it accepts and discards the export
requests, so its own work does not compete with the measured process).

    .venv/bin/python bench/telemetry_micro.py [--n 20000]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ns = types.SimpleNamespace
HEADERS = [(b"host", b"127.0.0.1:12000"), (b"content-type", b"application/json"), (b"user-agent", b"bench"),
           (b"content-length", b"120")]
REQUEST = {"model": "gpt-4o", "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
           "temperature": 0.2}
USAGE = {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42}


SINK = """
import sys, time, grpc
from concurrent.futures import ThreadPoolExecutor
server = grpc.server(ThreadPoolExecutor(2))
handler = grpc.unary_unary_rpc_method_handler(lambda request, context: b"", request_deserializer=lambda b: b,
                                              response_serializer=lambda b: b)
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
    "opentelemetry.proto.collector.trace.v1.TraceService", {"Export": handler}),))
server.add_insecure_port("127.0.0.1:" + sys.argv[1])
server.start()
server.wait_for_termination()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(endpoint: str | None, sampling: int = 100, signals: bool = False):
    tracing = None
    if endpoint:
        tracing = ns(random_sampling=sampling, opentracing_grpc_endpoint=endpoint, otlp_http_endpoint=None,
                     sampling_rate=None, span_attributes=None, capture_content=False, exporters=None)
    return ns(tracing=tracing, overrides=ns(disable_signals=not signals), model_providers=[])


def model_request(tel, i: int, with_messages: bool) -> None:
    ctx = tel.start_request("llm", "model", "POST", "/v1/chat/completions", HEADERS, f"rid-{i}")
    call = ctx.llm_call("openai", "gpt-4o", "gpt-4o", stream=False, request=REQUEST)
    headers = {"content-type": "application/json"}
    call.inject(headers)
    call.finish(200, usage=USAGE, response_bytes=300)
    ctx.finish(200, bytes_in=120, bytes_out=300, messages=REQUEST["messages"] if with_messages else None)


def agent_request(tel, i: int, _with_messages: bool) -> None:
    ctx = tel.start_request("travel", "agent", "POST", "/v1/chat/completions", HEADERS, f"rid-{i}")
    f = ctx.filter_call("guard")
    f.inject({})
    f.finish("pass", status=200)
    r = ctx.routing()
    r.finish(["weather", "flights"], router="embedded")
    for n, agent in enumerate(("weather", "flights")):
        a = ctx.agent_call(agent, index=n)
        a.inject({})
        a.finish(200)
    ctx.finish(200, bytes_in=120, bytes_out=300)


def measure(tel, fn, n: int, with_messages: bool = False) -> float:
    for i in range(500):  # warm caches (label children, tracers)
        fn(tel, i, with_messages)
    if tel.tracing is not None:
        tel.tracing.force_flush()
    cpu = time.process_time()
    for i in range(n):
        fn(tel, i, with_messages)
    while not tel.signals_idle():
        time.sleep(0.001)
    if tel.tracing is not None:
        tel.tracing.force_flush()
    return (time.process_time() - cpu) / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    args = parser.parse_args()
    from gateway.telemetry import Telemetry
    from gateway.telemetry.access_log import AccessLog

    port = free_port()
    receiver = subprocess.Popen([sys.executable, "-c", SINK, str(port)], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    endpoint = f"http://127.0.0.1:{port}"
    devnull = os.devnull
    rows = []
    try:
        for label, fn, cfg, alog, msgs in (
            ("model: tracing off, metrics, no access log", model_request, config(None), False, False),
            ("model: tracing off, metrics + access log", model_request, config(None), AccessLog(devnull), False),
            ("model: tracing 100% (OTLP/gRPC), metrics + access log", model_request, config(endpoint),
             AccessLog(devnull), False),
            ("model: tracing 100% + signals", model_request, config(endpoint, signals=True), AccessLog(devnull),
             True),
            ("model: tracing 0% sampled-out (random_sampling: 1 => ~99% unsampled)", model_request,
             config(endpoint, sampling=1), AccessLog(devnull), False),
            ("agent (filter, routing, 2 agents): tracing off", agent_request, config(None), AccessLog(devnull),
             False),
            ("agent (filter, routing, 2 agents): tracing 100%", agent_request, config(endpoint), AccessLog(devnull),
             False),
        ):
            tel = Telemetry(cfg, access_log=alog)
            us = measure(tel, fn, args.n, msgs)
            exported = tel.tracing.exporter.exported if tel.tracing else 0
            tel.shutdown()
            rows.append((label, us, exported))
    finally:
        receiver.terminate()
        receiver.wait(5)
    width = max(len(r[0]) for r in rows)
    print(f"{'scenario':{width}}  CPU us/request  spans exported")
    for label, us, exported in rows:
        print(f"{label:{width}}  {us:14.1f}  {exported:>14}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
