"""A real OTLP/gRPC trace receiver for tests (grpcio + opentelemetry-proto's TraceService servicer).

Everything plano exports is decoded by the official protobuf classes, so a test
passing here means a collector (Jaeger, the OpenTelemetry Collector) accepts it too.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)


def value_of(any_value):
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [value_of(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


class CollectedSpan:
    def __init__(self, span, service: str, resource: dict) -> None:
        self.raw = span
        self.service = service
        self.resource = resource
        self.name = span.name
        self.trace_id = span.trace_id.hex()
        self.span_id = span.span_id.hex()
        self.parent_id = span.parent_span_id.hex() or None
        self.kind = span.kind
        self.attributes = {kv.key: value_of(kv.value) for kv in span.attributes}
        self.events = [(e.name, {kv.key: value_of(kv.value) for kv in e.attributes}, e.time_unix_nano)
                       for e in span.events]
        self.status_code = span.status.code
        self.status_message = span.status.message
        self.start = span.start_time_unix_nano
        self.end = span.end_time_unix_nano

    def __repr__(self) -> str:
        return f"<span {self.service} {self.name!r} {self.span_id} parent={self.parent_id}>"


class OTLPReceiver:
    def __init__(self) -> None:
        self.requests: list = []
        self.metadata: list[dict] = []
        self._lock = threading.Lock()
        receiver = self

        class Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):
                with receiver._lock:
                    receiver.requests.append(request)
                    receiver.metadata.append(dict(context.invocation_metadata()))
                return trace_service_pb2.ExportTraceServiceResponse()

        self.server = grpc.server(ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spans(self) -> list[CollectedSpan]:
        out = []
        with self._lock:
            requests = list(self.requests)
        for request in requests:
            for resource_spans in request.resource_spans:
                resource = {kv.key: value_of(kv.value) for kv in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        out.append(CollectedSpan(span, resource.get("service.name"), resource))
        return out

    def wait_for(self, count: int, timeout: float = 10.0) -> list[CollectedSpan]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            spans = self.spans()
            if len(spans) >= count:
                return spans
            time.sleep(0.02)
        return self.spans()

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self.metadata.clear()

    def stop(self) -> None:
        self.server.stop(0)
