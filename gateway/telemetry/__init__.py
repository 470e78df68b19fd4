"""Observability: traces (OpenTelemetry), metrics (Prometheus), access logs and conversation signals.

One :class:`Telemetry` per worker process, built with the app (after the fork),
is the listeners' only entry point::

    tel = Telemetry(config)                       # GatewayApp.__init__
    ctx = tel.start_request(listener.name, "model", scope["method"], scope["path"],
                            scope["headers"], request_id)
    ...                                           # ctx.llm_call / agent_call / filter_call / routing
    ctx.finish(status)                            # root span, metrics, access-log line
    tel.shutdown()                                # lifespan shutdown: flush spans, stop writers

Module map: :mod:`.tracing` (settings, span recorder, sampling, W3C context),
:mod:`.otlp` + :mod:`.exporter` (OTLP encoding, batch export over gRPC/HTTP),
:mod:`.request` (the per-request API), :mod:`.genai` (LLM attributes, usage),
:mod:`.metrics` + :mod:`.admin` (``/metrics``), :mod:`.access_log`, :mod:`.redact`,
:mod:`.signals`, :mod:`.context` (ids for log lines), :mod:`.batching` (per-loop batches),
:mod:`.receiver` + :mod:`.viewer` (``plano trace``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time

from gateway.telemetry import context as _context
from gateway.telemetry import genai, shipping
from gateway.telemetry.batching import Deferred
from gateway.telemetry.request import (
    AgentCall,
    FilterCall,
    LLMCall,
    RequestContext,
    RoutingDecision,
)
from gateway.telemetry.tracing import (
    AGENT,
    FILTER,
    INBOUND,
    KIND_CLIENT,
    KIND_INTERNAL,
    KIND_SERVER,
    LLM,
    NOOP_SPAN,
    ORCHESTRATOR,
    ROUTING,
    Tracing,
    TracingSettings,
    UnsampledSpan,
    _rand,
    remote_parent,
    trace_id_of,
)

log = logging.getLogger("plano.telemetry")

_HANDLERS = {"model": "llm_chat", "agent": "agent_chat"}
_MAX_PENDING_SIGNALS = 1000
SIGNALS_EVERY = 0.05
SIGNALS_BUDGET = 0.002  # seconds of signal analysis per loop batch


def _propagating_root(raw_headers):
    """With tracing off: an unrecorded root that continues the caller's trace (or starts one) for propagation."""
    for key, _ in raw_headers:
        if key == b"traceparent":
            parent = remote_parent(raw_headers)
            if parent is not None:
                return UnsampledSpan(parent.trace_id, _rand(64) or 1, parent.flags, parent.state)
            break
    return UnsampledSpan(_rand(128) or 1, _rand(64) or 1, 0, None)


class Telemetry:
    """Per-process observability state built from the config (tracing may be off; metrics never are)."""

    def __init__(self, config=None, *, transport=None, access_log=None, metrics: bool = True, environ=None) -> None:
        from gateway.telemetry.access_log import AccessLog, destination
        from gateway.telemetry.redact import register_config_secrets

        self.settings = TracingSettings.from_config(config, environ)
        if metrics:
            from gateway.telemetry.metrics import get_metrics

            self.metrics = get_metrics()
        else:
            self.metrics = None
        # Under `plano up` the telemetry sidecar encodes, exports and analyses spans (see .shipping).
        self.shipper = None
        if self.settings.enabled and transport is None and shipping.channel() is not None:
            self.shipper = shipping.SpanShipper(shipping.channel(), on_quality=self._quality_from_sidecar)
        self.tracing: Tracing | None = (Tracing(self.settings, transport=transport, environ=environ,
                                                shipper=self.shipper)
                                        if self.settings.enabled else None)
        self.capture_content = self.settings.capture_content
        self.preview_chars = 200
        overrides = getattr(config, "overrides", None) if config is not None else None
        self.signals_enabled = self.tracing is not None and not getattr(overrides, "disable_signals", False)
        if access_log is None:
            access_log = AccessLog(destination(environ))
        self.access_log = access_log or None
        self._signals_pending: collections.deque = collections.deque()
        self._signals_stop = threading.Event()
        self._signals_thread: threading.Thread | None = None
        self._signals_lock = threading.Lock()
        self._closing = False
        self._signals_busy = False
        self._deferred: Deferred | None = None
        self._signals_scheduled = False
        self._root_blocks: dict = {}  # encoded attribute blocks that repeat (see start_request, llm_call)
        self._llm_blocks: dict = {}
        if config is not None:
            register_config_secrets(config)
        if self.tracing is not None:
            log.info("tracing: %s%% of requests to %s (OTLP/%s)", f"{self.settings.sampling_percent:g}",
                     self.settings.endpoint, "gRPC" if self.settings.protocol == "grpc" else "HTTP")

    @property
    def tracing_enabled(self) -> bool:
        return self.tracing is not None

    def start_request(self, listener: str, kind: str, method: str, path: str, raw_headers, request_id: str, *,
                      handler: str | None = None) -> RequestContext:
        """Begin one request: continue the caller's W3C trace (if any), open the root span, count it in flight.

        ``kind``: ``model`` (root span ``POST <path> <model>`` under ``plano(llm)``, renamed
        by :meth:`RequestContext.llm_call`) or ``agent`` (root span named after the listener
        under ``plano(inbound)``). ``raw_headers``: the ASGI ``scope["headers"]``.
        """
        if self._deferred is None:
            self._attach_loop()
        ctx = RequestContext(self, listener, kind, handler or _HANDLERS.get(kind, "other"), method, path, request_id)
        metrics = self.metrics
        if metrics is not None:
            lm = metrics.listener(listener, ctx.handler)
            lm.started()
            self.touched(lm)
            ctx._lm = lm
        tracing = self.tracing
        if tracing is None:
            # Export is off, but the trace context still travels: agents, filters and providers get a
            # ``traceparent`` (the caller's trace continued, else a fresh one) so they can correlate.
            ctx.root = ctx._child_default = root = _propagating_root(raw_headers)
            ctx.trace_id = root.trace_id_hex
        else:
            attrs = {"request_id": request_id}
            from_headers = tracing.header_attributes(raw_headers) if tracing.settings.header_prefixes else None
            static = not from_headers and bool(tracing.static_pairs)
            if from_headers:  # a header may override a static value: both go with this request's attributes
                ctx.custom = {**tracing.settings.static, **from_headers}
                attrs = {**ctx.custom, "request_id": request_id}
            elif static:
                ctx.custom = tracing.settings.static
            key = (kind, listener, method, path, static)
            root_kind = self._root_blocks.get(key)
            if root_kind is None:  # listener, method and path repeat: name and attributes are built once
                root_kind = self._root_kind(key)
            ctx.root = root = tracing.start_server(root_kind, raw_headers, attrs)
            ctx.trace_id = root.trace_id_hex
            if not root.recording:
                ctx._child_default = root  # unsampled: children record nothing but still propagate the trace
        _context.bind(request_id, ctx.trace_id)
        return ctx

    def _root_kind(self, key: tuple) -> tuple:
        """``(name, component, encoded block)`` of a root span for ``(kind, listener, method, path, static)``."""
        kind, listener, method, path, static = key
        tracing = self.tracing
        component = LLM if kind == "model" else INBOUND
        fixed = (("http.method", method), ("http.target", path), ("plano.listener", listener))
        block = tracing.block(fixed + tracing.static_pairs if static else fixed, component)
        value = (f"{method} {path}" if kind == "model" else listener, component, block)
        if len(self._root_blocks) < 1024:
            self._root_blocks[key] = value
        return value

    def llm_span_blocks(self, key: tuple) -> tuple:
        """``(name, fixed pairs, encoded block)`` of an LLM span for ``(provider, requested, resolved, stream,
        path)``: the same few combinations recur on every request, so they are built once."""
        provider, requested, resolved, stream, path = key
        if requested and requested != resolved:
            name = f"POST {path} {requested} -> {resolved}"
        else:
            name = f"POST {path} {resolved}"
        fixed = genai.request_fixed(provider, requested, resolved, stream)
        value = (name, fixed, self.tracing.block(fixed))
        if len(self._llm_blocks) < 4096:
            self._llm_blocks[key] = value
        return value

    # -- batching ---------------------------------------------------------------------------

    def _attach_loop(self) -> None:
        """Inside an event loop, batch metric/log/encoding work per loop interval (see :mod:`.batching`)."""
        if self._closing:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._deferred = Deferred(loop)
        if self.tracing is not None:
            self.tracing.exporter.deferred = self._deferred

    def defer(self, fn, *args) -> None:
        """Run ``fn(*args)`` with the next batch when on the loop thread, else now."""
        d = self._deferred
        if d is not None and threading.get_ident() == d.thread_id:
            d.submit(fn, *args)
        else:
            fn(*args)

    def touched(self, series) -> None:
        """A metrics series (:mod:`.metrics`) has new sums: hand them to Prometheus with the next batch.

        Each series is queued at most once per batch, however many requests touched it.
        Off the loop thread (no batch to join) it is flushed at once.
        """
        d = self._deferred
        if d is not None:
            if series.scheduled is d.pending:  # already queued in the batch to come (the common case)
                return
            if threading.get_ident() == d.thread_id:
                d.schedule(series)
                return
        series.flush()

    def flush(self) -> None:
        """Run batched work now (tests; shutdown)."""
        if self._deferred is not None:
            self._deferred.flush()

    # -- signals, off the request path -----------------------------------------------------

    def signal_and_end(self, span, messages, status: int | None) -> None:
        """Compute conversation signals after the response, attach them to ``span``, then end it.

        Inside the worker's event loop the analysis runs with the loop's telemetry batch
        (after this request's response went out, at most :data:`SIGNALS_BUDGET` seconds
        of it per batch so other requests are not held up); elsewhere on a helper thread.
        The span's end time is taken now, so its duration is the request's; only its
        export happens a little later. Past :data:`_MAX_PENDING_SIGNALS` queued analyses
        the span is ended at once without signals (bounded memory under overload).
        """
        if self.shipper is not None:  # the sidecar analyses the conversation (see .shipping)
            span.messages = messages
            span.end(status)
            return
        end_ns = time.time_ns()
        pending = self._signals_pending
        if len(pending) >= _MAX_PENDING_SIGNALS or self._closing:
            span.end(status, end_ns)
            return
        d = self._deferred
        if d is not None and threading.get_ident() == d.thread_id:
            pending.append((span, messages, status, end_ns))
            if not self._signals_scheduled:
                self._signals_scheduled = True
                d.submit(self._signals_batch)
            return
        if self._signals_thread is None and not self._start_signals_thread():
            span.end(status, end_ns)
            return
        pending.append((span, messages, status, end_ns))

    def _signals_batch(self) -> None:
        """Loop-side drain with a time budget; what is left waits for the next batch."""
        self._signals_scheduled = False
        self._signals_drain(time.perf_counter() + SIGNALS_BUDGET)
        if self._signals_pending and self._deferred is not None and not self._signals_scheduled:
            self._signals_scheduled = True
            self._deferred.submit(self._signals_batch)

    def _start_signals_thread(self) -> bool:
        with self._signals_lock:
            if self._signals_thread is None and not self._closing:
                self._signals_thread = threading.Thread(target=self._signals_loop, name="plano-signals", daemon=True)
                self._signals_thread.start()
        return self._signals_thread is not None

    def _signals_loop(self) -> None:
        """Wake every :data:`SIGNALS_EVERY` seconds and analyse what piled up (no wake-up per request)."""
        while not self._signals_stop.wait(SIGNALS_EVERY):
            self._signals_drain()
        self._signals_drain()

    def _signals_drain(self, deadline: float | None = None) -> None:
        from gateway.telemetry.signals import attach

        pending = self._signals_pending
        while pending:
            if deadline is not None and time.perf_counter() > deadline:
                return
            try:
                span, messages, status, end_ns = pending.popleft()
            except IndexError:
                return
            self._signals_busy = True
            try:
                quality = attach(span, messages, capture_content=self.capture_content)
                if self.metrics is not None:
                    series = self.metrics.quality()
                    series.observe(quality)
                    self.touched(series)
            except Exception:
                log.debug("signals failed", exc_info=True)
            finally:
                span.end(status, end_ns)
                self._signals_busy = False

    def _quality_from_sidecar(self, counts: dict) -> None:
        """Quality buckets the sidecar counted for this worker's model-proxy spans."""
        if self.metrics is None:
            return
        series = self.metrics.quality()
        for bucket, n in counts.items():
            if isinstance(bucket, str) and isinstance(n, int) and n > 0:
                series.observe(bucket, n)
        self.touched(series)

    def signals_idle(self) -> bool:
        """True when no signal analysis is queued or running (tests and benchmarks wait on it)."""
        return not self._signals_pending and not self._signals_busy

    # -- lifecycle --------------------------------------------------------------------------

    def shutdown(self, timeout: float = 3.0) -> None:
        """Finish pending signal work, flush spans (bounded), stop the access-log writer."""
        with self._signals_lock:
            self._closing = True
        deferred, self._deferred = self._deferred, None  # from here on everything runs inline
        if self.tracing is not None:
            self.tracing.exporter.deferred = None
        if deferred is not None:
            deferred.flush()
        self._signals_drain()  # whatever the loop had not analysed yet
        if self._signals_thread is not None:
            self._signals_stop.set()  # the thread drains what is queued: pending spans still get their signals
            self._signals_thread.join(timeout)
            self._signals_thread = None
        if self.tracing is not None:
            self.tracing.shutdown(timeout)
        if self.access_log is not None:
            self.access_log.close()

    async def aclose(self, timeout: float = 3.0) -> None:
        """:meth:`shutdown` without blocking the event loop (for the ASGI lifespan)."""
        import asyncio

        await asyncio.get_running_loop().run_in_executor(None, self.shutdown, timeout)


__all__ = [
    "AGENT",
    "FILTER",
    "INBOUND",
    "KIND_CLIENT",
    "KIND_INTERNAL",
    "KIND_SERVER",
    "LLM",
    "NOOP_SPAN",
    "ORCHESTRATOR",
    "ROUTING",
    "AgentCall",
    "FilterCall",
    "LLMCall",
    "RequestContext",
    "RoutingDecision",
    "Telemetry",
    "TracingSettings",
]
