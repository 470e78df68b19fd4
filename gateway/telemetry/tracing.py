"""Tracing: settings from ``plano.yaml``, a lightweight span recorder, OTLP export per worker.

Why it looks like this:

* **Cheap enough for the hot path.** The opentelemetry-sdk pipeline measured about
  100 µs of CPU per model-proxy request here (attribute validation when set, then
  protobuf message building in the exporter) against ~135 µs for the whole request.
  Spans are therefore recorded as small slotted objects with plain-dict attributes
  (plano sets only str/int/float/bool values) and encoded straight to OTLP wire bytes
  on the export thread (:mod:`gateway.telemetry.otlp`, :mod:`gateway.telemetry.exporter`).
  Semantics follow the SDK: parent-based trace-id-ratio sampling, W3C trace context,
  batch export, ``OTEL_*`` environment variables.
* **Per-service names in Jaeger.** Jaeger takes a span's service from the OTLP
  *resource*, so each component (``plano(llm)``, ``plano(agent)``, ``plano(orchestrator)``,
  ``plano(routing)``, ``plano(filter)``, ``plano(inbound)``) is exported as its own
  ``ResourceSpans`` with ``service.name`` set accordingly; spans also carry Plano's
  ``service.name.override`` attribute.
* **Never in the way of a request.** Ended spans go to a bounded queue; a collector
  that is down costs dropped spans and one warning a minute, never an exception or a wait.
* **Free when off.** Without a ``tracing`` block (or with sampling 0) there is no
  recorder: :data:`NOOP_SPAN` answers every call.
* **Explicit parents, no ambient context.** Raw-ASGI listeners pass span handles around;
  ``traceparent`` is parsed and written by hand.

Set up once per worker process *after* the fork (the export thread does not survive a
fork): :class:`gateway.telemetry.Telemetry` does it when the app is built.
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass, field
from urllib.parse import unquote, urlparse

from gateway.telemetry.redact import is_secret_name

log = logging.getLogger("plano.tracing")
# Component names (Plano's ``plano(<component>)`` service names).
INBOUND = "inbound"
LLM = "llm"
AGENT = "agent"
ORCHESTRATOR = "orchestrator"
ROUTING = "routing"
FILTER = "filter"
HANDOFF = "handoff"
COMPONENTS = (INBOUND, LLM, AGENT, ORCHESTRATOR, ROUTING, FILTER, HANDOFF)

DEFAULT_GRPC_ENDPOINT = "http://localhost:4317"

# SpanKind values (ints, so callers need not import opentelemetry).
KIND_INTERNAL, KIND_SERVER, KIND_CLIENT = 0, 1, 2


# --------------------------------------------------------------------------- settings


@dataclass(slots=True)
class TracingSettings:
    enabled: bool = False
    sampling_percent: float = 0.0
    protocol: str = "grpc"  # grpc | http
    endpoint: str = DEFAULT_GRPC_ENDPOINT
    header_prefixes: tuple[bytes, ...] = ()
    static: dict = field(default_factory=dict)
    capture_content: bool = False
    service_base: str = "plano"

    @classmethod
    def from_config(cls, config, environ=None) -> TracingSettings:
        """Resolve the effective tracing settings.

        Endpoint precedence: ``PLANO_TRACING_ENDPOINT`` (set by ``plano up
        --with-tracing``) > ``tracing.otlp_http_endpoint`` (OTLP/HTTP) >
        ``tracing.opentracing_grpc_endpoint`` > ``OTEL_TRACING_GRPC_ENDPOINT`` >
        ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT`` (with
        ``OTEL_EXPORTER_OTLP_PROTOCOL``) > ``http://localhost:4317``.
        A ``tracing`` block without ``random_sampling`` samples 100%.
        """
        env = os.environ if environ is None else environ
        tracing = getattr(config, "tracing", None) if config is not None else None
        forced = env.get("PLANO_TRACING_ENDPOINT")
        out = cls(service_base=env.get("OTEL_SERVICE_NAME") or "plano")
        if tracing is None and not forced:
            return out
        if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true" or env.get("OTEL_TRACES_EXPORTER") == "none":
            return out
        percent = _sampling_percent(tracing)
        if forced and env.get("PLANO_TRACING_SAMPLING"):
            try:
                percent = float(env["PLANO_TRACING_SAMPLING"]) if percent is None else percent
            except ValueError:
                pass
        if percent is None:
            percent = 100.0
        out.sampling_percent = max(0.0, min(100.0, percent))
        out.enabled = out.sampling_percent > 0
        out.protocol, out.endpoint = _endpoint(tracing, env, forced)
        attrs = getattr(tracing, "span_attributes", None) if tracing else None
        if attrs is not None:
            out.header_prefixes = tuple(p.lower().encode("latin-1") for p in attrs.header_prefixes or () if p)
            out.static = {str(k): str(v) for k, v in (attrs.static or {}).items()}
        out.capture_content = bool(getattr(tracing, "capture_content", False)) if tracing else False
        return out


def _sampling_percent(tracing) -> float | None:
    if tracing is None:
        return None
    if tracing.random_sampling is not None:
        return float(tracing.random_sampling)
    rate = getattr(tracing, "sampling_rate", None)
    if rate is not None:
        return float(rate) * 100 if rate <= 1 else float(rate)
    return None


def _endpoint(tracing, env, forced: str | None) -> tuple[str, str]:
    if forced:
        return "grpc", forced
    if tracing is not None and tracing.otlp_http_endpoint:
        return "http", _traces_url(tracing.otlp_http_endpoint)
    if tracing is not None and tracing.opentracing_grpc_endpoint:
        return "grpc", tracing.opentracing_grpc_endpoint
    if env.get("OTEL_TRACING_GRPC_ENDPOINT"):
        return "grpc", env["OTEL_TRACING_GRPC_ENDPOINT"]
    protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc")
    http = protocol.strip().lower().startswith("http")
    if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return ("http", env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]) if http else \
            ("grpc", env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"])
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        base = env["OTEL_EXPORTER_OTLP_ENDPOINT"]
        return ("http", _traces_url(base)) if http else ("grpc", base)
    return "grpc", DEFAULT_GRPC_ENDPOINT


def _traces_url(url: str) -> str:
    """An OTLP/HTTP base URL gets the ``/v1/traces`` signal path; a full URL is kept."""
    parsed = urlparse(url)
    if parsed.path in ("", "/"):
        return url.rstrip("/") + "/v1/traces"
    return url


# --------------------------------------------------------------------------- span handles


class NoopSpan:
    """Answers every span call and does nothing: what callers get when tracing is off."""

    __slots__ = ()
    recording = False
    trace_id_hex = ""
    span_id_hex = ""
    name = ""

    def set(self, key, value):
        return self

    def update(self, attributes):
        return self

    def fixed(self, block):
        return self

    def event(self, name, attributes=None, timestamp_ns=None):
        return self

    def rename(self, name):
        return self

    def error(self, message, error_type=None):
        return self

    def end(self, status_code=None, end_time_ns=None):
        return None

    def traceparent(self) -> str:
        return ""

    def inject(self, headers):
        return headers

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        return False


NOOP_SPAN = NoopSpan()


class UnsampledSpan(NoopSpan):
    """A span the sampler dropped: records nothing, but still propagates the trace (flags ``00``)."""

    __slots__ = ("_flags", "_span_id", "_state", "_trace_id")

    def __init__(self, trace_id: int, span_id: int, flags: int, state: str | None) -> None:
        self._trace_id = trace_id
        self._span_id = span_id
        self._flags = flags & 0xFE
        self._state = state

    @property
    def trace_id_hex(self) -> str:  # type: ignore[override]
        return format(self._trace_id, "032x")

    @property
    def span_id_hex(self) -> str:  # type: ignore[override]
        return format(self._span_id, "016x")

    def traceparent(self) -> str:
        return f"00-{self._trace_id:032x}-{self._span_id:016x}-{self._flags:02x}"

    def inject(self, headers: dict) -> dict:
        headers["traceparent"] = f"00-{self._trace_id:032x}-{self._span_id:016x}-{self._flags:02x}"
        if self._state:
            headers["tracestate"] = self._state
        else:
            headers.pop("tracestate", None)
        return headers


class RemoteParent:
    """The caller's span, from an incoming ``traceparent``/``tracestate``."""

    __slots__ = ("flags", "span_id", "state", "trace_id")

    def __init__(self, trace_id: int, span_id: int, flags: int, state: str | None) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.flags = flags
        self.state = state


class Span:
    """A recorded span. Attributes are a plain dict; it is exported once ended."""

    __slots__ = ("_exporter", "_traceparent", "attrs", "blocks", "component", "end_ns", "events", "facts", "kind",
                 "messages", "name", "parent_id", "remote_parent", "span_id", "start_ns", "status_code",
                 "status_message", "trace_id", "trace_state")
    recording = True

    def __init__(self, exporter, trace_id: int, span_id: int, parent_id: int, trace_state: str | None, name: str,
                 kind: int, component: str, attrs: dict, start_ns: int, remote_parent: bool,
                 blocks: list | None = None) -> None:
        self._exporter = exporter
        self.blocks = blocks
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.trace_state = trace_state
        self.name = name
        self.kind = kind
        self.component = component
        self.attrs = attrs
        self.start_ns = start_ns
        self.end_ns = 0
        self.events = None
        self.status_code = 0  # OTLP: 0 unset, 1 ok, 2 error
        self.status_message = None
        self.remote_parent = remote_parent
        self.messages = None  # the conversation, when the telemetry sidecar analyses its signals
        self.facts = None  # an LLM call's raw facts, turned into attributes where it is encoded (genai.expand_facts)
        self._traceparent = None

    @property
    def trace_id_hex(self) -> str:
        return self.traceparent()[3:35]

    @property
    def span_id_hex(self) -> str:
        return self.traceparent()[36:52]

    def set(self, key: str, value) -> Span:
        if value is not None and not self.end_ns:
            self.attrs[key] = value
        return self

    def update(self, attributes: dict) -> Span:
        if attributes and not self.end_ns:
            self.attrs.update(attributes)
        return self

    def fixed(self, block: bytes) -> Span:
        """Add a pre-encoded attribute block (see :meth:`Tracing.block`); its keys must not be set again."""
        if block and not self.end_ns:
            if self.blocks is None:
                self.blocks = [block]
            else:
                self.blocks.append(block)
        return self

    def event(self, name: str, attributes: dict | None = None, timestamp_ns: int | None = None) -> Span:
        if not self.end_ns:
            if self.events is None:
                self.events = []
            self.events.append((name, timestamp_ns or time.time_ns(), attributes))
        return self

    def rename(self, name: str) -> Span:
        if not self.end_ns:
            self.name = name
        return self

    def error(self, message: str, error_type: str | None = None) -> Span:
        """Mark the span failed (status ERROR with ``message``; ``error.type`` when given)."""
        if not self.end_ns:
            if error_type:
                self.attrs["error.type"] = error_type
            self.status_code = 2
            if message:
                from gateway.telemetry.redact import redact_secrets

                self.status_message = redact_secrets(message)[:500]
            else:
                self.status_message = None
        return self

    def end(self, status_code: int | None = None, end_time_ns: int | None = None) -> None:
        """End the span once; an HTTP ``status_code`` sets ``http.status_code`` and the span status.

        Client spans (calls we make) fail from 400, server spans (answers we give) from 500.
        """
        if self.end_ns:
            return
        if status_code is not None:
            self.attrs["http.status_code"] = status_code
            if status_code >= (500 if self.kind == KIND_SERVER else 400) and self.status_code != 2:
                self.status_code = 2
                self.status_message = f"HTTP {status_code}"
        self.end_ns = end_time_ns or time.time_ns()
        self._exporter.ended(self)

    def traceparent(self) -> str:
        """This span's W3C ``traceparent`` (built once: the trace id and the injected header share it)."""
        value = self._traceparent
        if value is None:
            value = self._traceparent = "00-%032x-%016x-01" % (self.trace_id, self.span_id)  # noqa: UP031 - faster
        return value

    def inject(self, headers: dict) -> dict:
        """Write ``traceparent`` (and ``tracestate``) naming this span into outbound ``headers``."""
        value = self._traceparent
        headers["traceparent"] = value if value is not None else self.traceparent()
        if self.trace_state:
            headers["tracestate"] = self.trace_state
        else:
            headers.pop("tracestate", None)
        return headers

    def __enter__(self) -> Span:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is not None:
            self.error(str(exc) or exc_type.__name__, exc_type.__name__)
        self.end()
        return False


# --------------------------------------------------------------------------- W3C trace context


def parse_traceparent(value: bytes | str | None):
    """``(trace_id, span_id, flags)`` ints from a W3C ``traceparent``, or None when invalid."""
    if not value:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    parts = value.strip().split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or len(parts[1]) != 32 or len(parts[2]) != 16 or len(parts[3]) != 2:
        return None
    if parts[0] == "ff" or (parts[0] == "00" and len(parts) != 4):
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    if trace_id == 0 or span_id == 0:
        return None
    return trace_id, span_id, flags


def remote_parent(raw_headers) -> RemoteParent | None:
    """The caller's span from ``traceparent``/``tracestate`` request headers, or None."""
    traceparent = tracestate = None
    for key, value in raw_headers:
        if key == b"traceparent":
            traceparent = value
        elif key == b"tracestate":
            tracestate = value
    parsed = parse_traceparent(traceparent)
    if parsed is None:
        return None
    state = None
    if tracestate:
        state = tracestate.decode("latin-1").strip()[:512] or None
    return RemoteParent(parsed[0], parsed[1], parsed[2], state)


def trace_id_of(raw_headers) -> str:
    """The trace id of an incoming ``traceparent`` as 32 hex chars, else "" (cheap; used when tracing is off)."""
    for key, value in raw_headers:
        if key == b"traceparent":
            parsed = parse_traceparent(value)
            return format(parsed[0], "032x") if parsed else ""
    return ""


# --------------------------------------------------------------------------- the pipeline

_rand = random.getrandbits
_U64 = (1 << 64) - 1


class Tracing:
    """The per-process pipeline: sampler, span factory per component, one batch exporter."""

    def __init__(self, settings: TracingSettings, *, transport=None, environ=None, shipper=None) -> None:
        from gateway import __version__
        from gateway.telemetry import otlp
        from gateway.telemetry.exporter import (
            BatchExporter,
            GrpcTransport,
            HttpTransport,
        )

        env = os.environ if environ is None else environ
        self.settings = settings
        ratio = settings.sampling_percent / 100.0
        # Same rule as OpenTelemetry's TraceIdRatioBased: the lower 64 bits of the trace id below a bound.
        self._bound = _U64 + 1 if ratio >= 1.0 else round(ratio * (_U64 + 1))
        self._services = {component: f"{settings.service_base}({component})" for component in COMPONENTS}
        if shipper is not None:  # the telemetry sidecar encodes and exports (see gateway.telemetry.shipping)
            self.exporter = shipper
        else:
            if transport is None:
                transport = HttpTransport(settings.endpoint, env) if settings.protocol == "http" else \
                    GrpcTransport(settings.endpoint, env)
            base = resource_attributes(settings.service_base, __version__, env)
            resources = {component: otlp.resource({**base, "service.name": service})
                         for component, service in self._services.items()}
            self.exporter = BatchExporter(transport, resources, otlp.scope("plano", __version__), environ=env,
                                          endpoint=settings.endpoint)
        self._blocks: dict = {}
        self.static_pairs = tuple(settings.static.items())
        self._closed = False

    def start(self, name: str, component: str, *, parent=None, kind: int = KIND_INTERNAL,
              attributes: dict | None = None, fixed: tuple | None = None, start_time_ns: int | None = None,
              block: bytes | None = None):
        """Start a span of ``component`` under ``parent`` (a :class:`Span`, :class:`RemoteParent` or None).

        ``attributes``: this span's own values. ``fixed``: a tuple of ``(key, value)`` pairs that
        repeat across requests (listener, path, provider, model...): encoded once and cached.
        """
        remote = False
        if parent is None or parent is NOOP_SPAN:
            trace_id = _rand(128) or 1
            if (trace_id & _U64) >= self._bound:
                return UnsampledSpan(trace_id, _rand(64) or 1, 0, None)
            parent_id = 0
            state = None
        elif type(parent) is Span:
            trace_id = parent.trace_id
            parent_id = parent.span_id
            state = parent.trace_state
        elif type(parent) is RemoteParent:
            if not parent.flags & 0x01:  # the caller did not sample: neither do we (parent-based)
                return UnsampledSpan(parent.trace_id, _rand(64) or 1, parent.flags, parent.state)
            trace_id = parent.trace_id
            parent_id = parent.span_id
            state = parent.state
            remote = True
        else:  # an UnsampledSpan: stay unsampled, keep propagating
            return parent
        blocks = [block if block is not None else self.block(fixed, component)]
        return Span(self.exporter, trace_id, _rand(64) or 1, parent_id, state, name, kind, component,
                    attributes if attributes is not None else {}, start_time_ns or time.time_ns(), remote, blocks)

    def start_server(self, root_kind: tuple, raw_headers, attributes: dict):
        """The root span of an incoming request: ``root_kind`` is ``(name, component, encoded block)``.

        Continues the caller's W3C trace when ``raw_headers`` (ASGI) carry one; else the
        sampler decides. The common case (no incoming trace) builds the span directly.
        """
        for key, _ in raw_headers:
            if key == b"traceparent" or key == b"tracestate":
                name, component, block = root_kind
                return self.start(name, component, parent=remote_parent(raw_headers), kind=KIND_SERVER,
                                  attributes=attributes, block=block)
        trace_id = _rand(128) or 1
        if (trace_id & _U64) >= self._bound:
            return UnsampledSpan(trace_id, _rand(64) or 1, 0, None)
        name, component, block = root_kind
        return Span(self.exporter, trace_id, _rand(64) or 1, 0, None, name, KIND_SERVER, component, attributes,
                    time.time_ns(), False, [block])

    def block(self, fixed: tuple | None, component: str | None = None) -> bytes:
        """Encoded span attributes for ``fixed`` (plus ``service.name.override`` when ``component`` is given),
        cached: the same listener/provider/model pairs recur on every request."""
        key = (component, fixed)
        found = self._blocks.get(key)
        if found is None:
            from gateway.telemetry import otlp

            pairs = dict(fixed or ())
            if component is not None:
                pairs = {"service.name.override": self._services[component], **pairs}
            found = otlp.span_attributes(pairs)
            if len(self._blocks) < 4096:
                self._blocks[key] = found
        return found

    def header_attributes(self, raw_headers) -> dict:
        """Attributes from request headers matching ``span_attributes.header_prefixes`` (Plano's rule).

        ``x-katanemo-tenant-id`` with prefix ``x-katanemo-`` -> ``tenant.id``. Headers that carry
        credentials are never recorded, whatever the prefix. ``span_attributes.static`` is applied
        by the caller (a header wins over a static value with the same key).
        """
        prefixes = self.settings.header_prefixes
        if not prefixes:
            return {}
        attrs = {}
        for key, value in raw_headers:
            for prefix in prefixes:
                if key.startswith(prefix):
                    name = key[len(prefix):].decode("latin-1").lstrip("-").replace("-", ".")
                    if name and not is_secret_name(key.decode("latin-1")):
                        attrs[name] = value.decode("latin-1")
                    break
        return attrs

    def force_flush(self, timeout: float = 5.0) -> bool:
        return self.exporter.force_flush(timeout)

    def shutdown(self, timeout: float = 3.0) -> None:
        """Flush what is queued (bounded by ``timeout``; one attempt if the collector is failing)."""
        if self._closed:
            return
        self._closed = True
        self.exporter.shutdown(timeout)


def resource_attributes(service_base: str, version: str, environ) -> dict:
    """Resource attributes shared by every component: ``OTEL_RESOURCE_ATTRIBUTES`` plus plano's own."""
    attrs: dict = {}
    for item in (environ.get("OTEL_RESOURCE_ATTRIBUTES") or "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            attrs[key.strip()] = unquote(value.strip())
    attrs.update({
        "service.namespace": attrs.get("service.namespace", service_base),
        "service.version": version,
        "telemetry.sdk.name": "plano",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.version": version,
        "process.pid": os.getpid(),
    })
    return attrs
