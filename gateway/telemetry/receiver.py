"""``plano trace listen``: a small OTLP/gRPC trace receiver that keeps recent traces in memory.

Why built in: seeing a request's span tree should not require running Jaeger.
The receiver accepts OTLP/gRPC exports (``TraceService/Export``) on one port,
keeps the last :data:`MAX_TRACES` traces (at most :data:`MAX_SPANS` spans each;
the oldest trace is evicted first) and answers the viewer on the SAME port
through a private gRPC method, ``/plano.TraceQuery/GetTraces``, whose request
and response are JSON bytes (no generated code needed on either side).

Query request (JSON object, every key optional): ``trace_id`` (hex prefix),
``since_ns`` (traces with a span starting at/after it), ``limit`` (newest N).
Response: ``{"traces": [{"trace_id", "spans": [...], "updated_ns"}...]}``, newest first.
"""

from __future__ import annotations

import collections
import logging
import threading
import time

import orjson

log = logging.getLogger("plano.trace")

MAX_TRACES = 50
MAX_SPANS = 500
QUERY_METHOD = "/plano.TraceQuery/GetTraces"
_MAX_MESSAGE = 64 * 1024 * 1024


def any_value(value):
    """An OTLP ``AnyValue`` as a plain Python value."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def span_dict(span, service: str, resource_attrs: dict, scope: str) -> dict:
    attrs = {kv.key: any_value(kv.value) for kv in span.attributes}
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    return {
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex() or None,
        "name": span.name,
        "kind": int(span.kind),
        "service": attrs.get("service.name.override") or service,
        "start_ns": start,
        "end_ns": end,
        "duration_ms": round((end - start) / 1e6, 3) if end and start else None,
        "status": {"code": int(span.status.code), "message": span.status.message or None},
        "attributes": attrs,
        "events": [{"name": e.name, "time_ns": e.time_unix_nano,
                    "attributes": {kv.key: any_value(kv.value) for kv in e.attributes}} for e in span.events],
        "links": [{"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex()} for link in span.links],
        "scope": scope,
        "resource": resource_attrs,
    }


class TraceStore:
    """The last ``max_traces`` traces, ``max_spans`` spans each; thread-safe (gRPC uses a thread pool)."""

    def __init__(self, max_traces: int = MAX_TRACES, max_spans: int = MAX_SPANS) -> None:
        self.max_traces = max_traces
        self.max_spans = max_spans
        self._traces: collections.OrderedDict[str, dict] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.received = 0
        self.dropped = 0

    def add_request(self, request) -> int:
        """Store the spans of an ``ExportTraceServiceRequest``; returns how many were accepted."""
        accepted = 0
        spans = []
        for resource_spans in request.resource_spans:
            resource_attrs = {kv.key: any_value(kv.value) for kv in resource_spans.resource.attributes}
            service = str(resource_attrs.get("service.name", "unknown"))
            for scope_spans in resource_spans.scope_spans:
                scope = scope_spans.scope.name
                for span in scope_spans.spans:
                    spans.append(span_dict(span, service, resource_attrs, scope))
        now = time.time_ns()
        with self._lock:
            for span in spans:
                self.received += 1
                trace = self._traces.get(span["trace_id"])
                if trace is None:
                    trace = {"trace_id": span["trace_id"], "spans": [], "updated_ns": now}
                    self._traces[span["trace_id"]] = trace
                    while len(self._traces) > self.max_traces:
                        self._traces.popitem(last=False)
                else:
                    self._traces.move_to_end(span["trace_id"])
                if len(trace["spans"]) >= self.max_spans:
                    self.dropped += 1
                    continue
                trace["spans"].append(span)
                trace["updated_ns"] = now
                accepted += 1
        return accepted

    def query(self, trace_id: str | None = None, since_ns: int | None = None, limit: int | None = None) -> list[dict]:
        with self._lock:
            traces = [dict(t, spans=list(t["spans"])) for t in reversed(self._traces.values())]
        out = []
        for trace in traces:
            if trace_id and not trace["trace_id"].startswith(trace_id.lower()):
                continue
            if since_ns and not any((s["start_ns"] or 0) >= since_ns for s in trace["spans"]):
                continue
            out.append(trace)
            if limit and len(out) >= limit:
                break
        return out


def build_server(store: TraceStore, host: str, port: int, *, workers: int = 4):
    """A started-able ``grpc.Server`` with the OTLP TraceService and the JSON query method; returns (server, port)."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc
    from opentelemetry.proto.collector.trace.v1 import (
        trace_service_pb2,
        trace_service_pb2_grpc,
    )

    class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):
            store.add_request(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    def get_traces(request: bytes, context) -> bytes:
        try:
            params = orjson.loads(request) if request else {}
        except orjson.JSONDecodeError:
            params = {}
        if not isinstance(params, dict):
            params = {}
        traces = store.query(params.get("trace_id"), params.get("since_ns"), params.get("limit"))
        return orjson.dumps({"traces": traces, "received": store.received, "dropped": store.dropped})

    server = grpc.server(ThreadPoolExecutor(max_workers=workers, thread_name_prefix="otlp"), options=[
        ("grpc.max_receive_message_length", _MAX_MESSAGE), ("grpc.max_send_message_length", _MAX_MESSAGE)])
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(), server)
    identity = _identity
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("plano.TraceQuery", {
        "GetTraces": grpc.unary_unary_rpc_method_handler(get_traces, request_deserializer=identity,
                                                         response_serializer=identity)}),))
    bound = server.add_insecure_port(f"{_grpc_host(host)}:{port}")
    if not bound:
        raise OSError(f"cannot bind {host}:{port}")
    return server, bound


def _identity(data: bytes) -> bytes:
    return data


def _grpc_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def serve(host: str, port: int) -> int:
    """Run the receiver in the foreground until SIGINT/SIGTERM."""
    import signal

    store = TraceStore()
    try:
        server, bound = build_server(store, host, port)
    except (OSError, RuntimeError) as exc:
        print(f"plano trace: cannot listen on {host}:{port}: {exc}", flush=True)
        return 1
    server.start()
    print(f"plano trace listener: OTLP/gRPC on {host}:{bound} (keeps the last {MAX_TRACES} traces)", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=1).wait(2)
    return 0


def query(port: int, host: str = "127.0.0.1", *, trace_id: str | None = None, since_ns: int | None = None,
          limit: int | None = None, timeout: float = 5.0) -> dict:
    """Ask a running receiver for traces (raises ``ConnectionError`` when none answers)."""
    import grpc

    params = {k: v for k, v in (("trace_id", trace_id), ("since_ns", since_ns), ("limit", limit)) if v}
    with grpc.insecure_channel(f"{_grpc_host(host)}:{port}",
                               options=[("grpc.max_receive_message_length", _MAX_MESSAGE)]) as channel:
        method = channel.unary_unary(QUERY_METHOD, request_serializer=_identity, response_deserializer=_identity)
        try:
            data = method(orjson.dumps(params), timeout=timeout)
        except grpc.RpcError as exc:
            raise ConnectionError(f"no trace listener answered on {host}:{port} ({exc.code().name})") from None
    return orjson.loads(data)
