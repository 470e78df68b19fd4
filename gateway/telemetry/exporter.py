"""Batching span export over OTLP/gRPC or OTLP/HTTP, on one background thread per worker.

An ended span is encoded to OTLP bytes right away, on the thread that ended it
(:mod:`gateway.telemetry.otlp`, a few microseconds), and queued. The export
thread wakes every ``OTEL_BSP_SCHEDULE_DELAY`` ms (default 1000) or when
``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` spans are queued, joins them into one request
and sends it. Encoding before queueing keeps Python work off the export thread:
a second busy Python thread in a worker fights the event loop for the GIL, and
in a wrk run that contention cost more throughput than the encoding itself. A collector that is down or slow never reaches a request: transient errors
are retried with backoff inside the export timeout, then the batch is dropped; a
full queue (``OTEL_BSP_MAX_QUEUE_SIZE``, default 8192) drops new spans. Either way
the cost is one warning a minute and a counter.

Honoured: ``OTEL_EXPORTER_OTLP[_TRACES]_HEADERS`` / ``_TIMEOUT`` / ``_COMPRESSION``
(gzip) / ``_INSECURE`` / ``_CERTIFICATE``, ``OTEL_BSP_*``.
"""

from __future__ import annotations

import collections
import gzip
import logging
import os
import threading
import time
from urllib.parse import unquote, urlparse

from gateway.telemetry import otlp
from gateway.telemetry.genai import expand_facts

log = logging.getLogger("plano.tracing")

GRPC_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
WARN_EVERY = 60.0


def _env(environ, name: str, default: str | None = None) -> str | None:
    """``OTEL_EXPORTER_OTLP_TRACES_<name>`` falling back to ``OTEL_EXPORTER_OTLP_<name>``."""
    return environ.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}") or environ.get(f"OTEL_EXPORTER_OTLP_{name}") or default


def _int_env(environ, name: str, default: int) -> int:
    try:
        return int(environ.get(name, default))
    except (TypeError, ValueError):
        return default


def parse_headers(value: str | None) -> list[tuple[str, str]]:
    """``k1=v1,k2=v2`` (values URL-encoded), as ``OTEL_EXPORTER_OTLP_HEADERS`` is written."""
    out = []
    for item in (value or "").split(","):
        key, sep, val = item.partition("=")
        if sep and key.strip():
            out.append((key.strip().lower(), unquote(val.strip())))
    return out


def export_timeout(environ) -> float:
    """Seconds. The spec says milliseconds, the Python SDK reads seconds: values >= 100 are taken as ms."""
    raw = _env(environ, "TIMEOUT")
    try:
        value = float(raw) if raw else 10.0
    except ValueError:
        return 10.0
    return value / 1000.0 if value >= 100 else value


class GrpcTransport:
    """OTLP/gRPC: one channel, the Export method called with pre-encoded request bytes."""

    name = "gRPC"

    def __init__(self, endpoint: str, environ) -> None:
        import grpc

        self._grpc = grpc
        parsed = urlparse(endpoint if "://" in endpoint else f"http://{endpoint}")
        self.target = parsed.netloc or parsed.path
        if ":" not in self.target.rsplit("]", 1)[-1]:
            self.target += ":4317"
        insecure_env = _env(environ, "INSECURE")
        if parsed.scheme == "https":
            self.secure = True
        elif insecure_env is not None:
            self.secure = insecure_env.strip().lower() != "true"
        else:
            self.secure = False
        self.metadata = tuple(parse_headers(_env(environ, "HEADERS")))
        self.compression = grpc.Compression.Gzip if (_env(environ, "COMPRESSION") or "").lower() == "gzip" else None
        self._ca = _env(environ, "CERTIFICATE")
        self._channel = None
        self._call = None
        self._open()

    def _open(self) -> None:
        grpc = self._grpc
        options = [("grpc.initial_reconnect_backoff_ms", 500), ("grpc.max_reconnect_backoff_ms", 5000),
                   ("grpc.min_reconnect_backoff_ms", 500)]
        if self.secure:
            root = None
            if self._ca:
                with open(self._ca, "rb") as f:
                    root = f.read()
            self._channel = grpc.secure_channel(self.target, grpc.ssl_channel_credentials(root), options=options,
                                                compression=self.compression)
        else:
            self._channel = grpc.insecure_channel(self.target, options=options, compression=self.compression)
        self._call = self._channel.unary_unary(GRPC_METHOD, request_serializer=_identity,
                                               response_deserializer=_identity)

    def send(self, data: bytes, timeout: float) -> tuple[bool, bool, str]:
        """(ok, retryable, detail)."""
        grpc = self._grpc
        try:
            self._call(data, timeout=timeout, metadata=self.metadata or None)
            return True, False, ""
        except grpc.RpcError as exc:
            code = exc.code()
            retryable = code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                                 grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED,
                                 grpc.StatusCode.CANCELLED, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.DATA_LOSS)
            if code == grpc.StatusCode.UNAVAILABLE:  # reconnect now instead of waiting out the channel's backoff
                self.close()
                self._open()
            return False, retryable, f"{code.name}: {(exc.details() or '')[:200]}"

    def close(self) -> None:
        if self._channel is not None:
            try:
                self._channel.close()
            except Exception:  # noqa: BLE001 - closing a broken channel must not raise
                pass
            self._channel = None


class HttpTransport:
    """OTLP/HTTP with protobuf bodies (``application/x-protobuf``), one kept-alive connection."""

    name = "HTTP"

    def __init__(self, url: str, environ) -> None:
        parsed = urlparse(url)
        self.https = parsed.scheme == "https"
        self.host = parsed.hostname or "localhost"
        self.port = parsed.port or (443 if self.https else 4318)
        self.path = (parsed.path or "/v1/traces") + (f"?{parsed.query}" if parsed.query else "")
        self.headers = {"Content-Type": "application/x-protobuf", "User-Agent": "plano"}
        self.headers.update(dict(parse_headers(_env(environ, "HEADERS"))))
        self.gzip = (_env(environ, "COMPRESSION") or "").lower() == "gzip"
        if self.gzip:
            self.headers["Content-Encoding"] = "gzip"
        self._ca = _env(environ, "CERTIFICATE")
        self._conn = None

    def _connection(self, timeout: float):
        import http.client

        if self._conn is None:
            if self.https:
                import ssl

                ctx = ssl.create_default_context(cafile=self._ca) if self._ca else ssl.create_default_context()
                self._conn = http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=ctx)
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        self._conn.timeout = timeout
        return self._conn

    def send(self, data: bytes, timeout: float) -> tuple[bool, bool, str]:
        body = gzip.compress(data, 5) if self.gzip else data
        try:
            conn = self._connection(timeout)
            conn.request("POST", self.path, body=body, headers=self.headers)
            resp = conn.getresponse()
            resp.read()
        except (OSError, Exception) as exc:  # noqa: BLE001 - any transport failure is a failed export
            self.close()
            return False, True, f"{type(exc).__name__}: {exc}"[:200]
        if 200 <= resp.status < 300:
            return True, False, ""
        return False, resp.status in (429, 502, 503, 504), f"HTTP {resp.status}"

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:  # pragma: no cover
                pass
            self._conn = None


def _identity(data: bytes) -> bytes:
    return data


class BatchExporter:
    """A bounded queue of ended spans and the thread that exports them."""

    def __init__(self, transport, resources: dict[str, bytes], scope: bytes, *, environ=None,
                 endpoint: str = "") -> None:
        env = os.environ if environ is None else environ
        self.transport = transport
        self.endpoint = endpoint
        self.resources = resources
        self.scope = scope
        self.max_queue = max(1, _int_env(env, "OTEL_BSP_MAX_QUEUE_SIZE", 8192))
        self.batch_size = max(1, min(self.max_queue, _int_env(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)))
        self.delay = max(0.01, _int_env(env, "OTEL_BSP_SCHEDULE_DELAY", 1000) / 1000.0)
        self.timeout = export_timeout(env)
        self._queue: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._export_lock = threading.Lock()
        self.exported = 0
        self.dropped = 0
        self.failing = False
        self._last_warning = 0.0
        self.deferred = None  # a batching.Deferred once the worker's event loop runs
        self._thread = threading.Thread(target=self._run, name="plano-span-export", daemon=True)
        self._thread.start()

    # -- request path -------------------------------------------------------------------

    def ended(self, span) -> None:
        """A span ended: encode it with the loop's next batch (on the loop thread), else now."""
        d = self.deferred
        if d is not None and threading.get_ident() == d.thread_id:
            d.submit(self.add, span)
        else:
            self.add(span)

    def add(self, span) -> None:
        queue = self._queue
        if len(queue) >= self.max_queue:
            self.dropped += 1
            return
        try:
            if span.facts is not None:  # an LLM call's raw facts become its llm.* / gen_ai.* attributes here
                expand_facts(span.facts, span.attrs)
                span.facts = None
            encoded = otlp.span_field(span)
        except Exception:  # noqa: BLE001 - a span we cannot encode is dropped, never raised into a request
            self.dropped += 1
            return
        queue.append((span.component, encoded))
        if len(queue) >= self.batch_size and not self._wake.is_set():
            self._wake.set()

    # -- export thread ------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.delay)
            self._wake.clear()
            if self._stop.is_set():
                break
            self._export_available(retry=True)
        self._export_available(retry=not self.failing)  # final flush: one attempt if the collector is down

    def _export_available(self, *, retry: bool) -> None:
        with self._export_lock:
            while self._queue:
                batch = []
                pop = self._queue.popleft
                try:
                    for _ in range(self.batch_size):
                        batch.append(pop())
                except IndexError:
                    pass
                self._send(batch, retry)

    def _send(self, batch: list, retry: bool) -> None:
        groups: dict[str, list] = {}
        for component, encoded in batch:
            groups.setdefault(component, []).append(encoded)
        data = otlp.export_request(groups, self.resources, self.scope)
        deadline = time.monotonic() + self.timeout
        backoff = 0.5
        while True:
            ok, retryable, detail = self.transport.send(data, max(0.1, deadline - time.monotonic()))
            if ok:
                if self.failing:
                    log.info("tracing: exporting to %s again", self.endpoint)
                self.failing = False
                self.exported += len(batch)
                return
            if not (retry and retryable) or self._stop.is_set() or time.monotonic() + backoff > deadline:
                self._failed(len(batch), detail)
                return
            if self._stop.wait(backoff):
                self._failed(len(batch), detail)
                return
            backoff *= 2

    def _failed(self, count: int, detail: str) -> None:
        self.failing = True
        self.dropped += count
        now = time.monotonic()
        if now - self._last_warning >= WARN_EVERY:
            self._last_warning = now
            log.warning("tracing: could not export %d spans to %s via OTLP/%s (%s); dropped %d spans so far. "
                        "Requests are not affected; is the collector running?", count, self.endpoint,
                        self.transport.name, detail, self.dropped)

    # -- lifecycle ----------------------------------------------------------------------

    def force_flush(self, timeout: float = 5.0) -> bool:
        """Export everything queued now (from the caller's thread); for tests and shutdown."""
        if not self._export_lock.acquire(timeout=timeout):
            return False
        self._export_lock.release()
        self._export_available(retry=False)
        return not self._queue

    def shutdown(self, timeout: float = 3.0) -> None:
        """Stop the thread after a final flush; waits at most ``timeout`` seconds."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        self.transport.close()
