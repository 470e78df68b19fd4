"""What a listener records about one request: the span tree, metrics and the access-log line.

A :class:`RequestContext` is created per request by
:meth:`gateway.telemetry.Telemetry.start_request` and finished once with
:meth:`RequestContext.finish`. In between, each step opens a small call object
(:class:`LLMCall`, :class:`AgentCall`, :class:`FilterCall`, :class:`RoutingDecision`)
that owns a child span *and* the step's metrics, so a listener calls one method
per step whether tracing is on or off. With tracing off the span parts are the
shared :data:`~gateway.telemetry.tracing.NOOP_SPAN`; metrics and the access log
still work.
"""

from __future__ import annotations

import logging
import time

from gateway.telemetry import genai
from gateway.telemetry.redact import redact_secrets
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
    Span,
)

log = logging.getLogger("plano.telemetry")
_perf = time.perf_counter


_ms = genai.milliseconds


class RequestContext:
    """One request through a listener."""

    __slots__ = (
        "_child_default",
        "_finished",
        "_lm",
        "agents",
        "bytes_in",
        "bytes_out",
        "custom",
        "failure",
        "handler",
        "kind",
        "listener",
        "method",
        "model",
        "path",
        "request_id",
        "root",
        "started",
        "status",
        "tel",
        "trace_id",
        "upstream",
    )

    def __init__(self, tel, listener: str, kind: str, handler: str, method: str, path: str, request_id: str) -> None:
        self.tel = tel
        self.listener = listener
        self.kind = kind
        self.handler = handler
        self.method = method
        self.path = path
        self.request_id = request_id
        self.trace_id = ""
        self.root = NOOP_SPAN
        self.started = _perf()
        self.status: int | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.upstream: str | None = None
        self.model: str | None = None
        self.agents = None
        self.custom: dict | None = None
        self.failure: str | None = None  # what went wrong after the status was sent (a stream that broke)
        self._lm = None
        self._finished = False
        self._child_default = NOOP_SPAN

    # -- spans ---------------------------------------------------------------------------

    def child(self, name: str, component: str, attributes: dict | None = None, *, kind: int = KIND_INTERNAL,
              parent=None, fixed: tuple | None = None):
        """Start a child span (of ``parent``, default the root) under service ``plano(<component>)``.

        ``attributes`` (a dict the span takes over) vary per request; ``fixed`` pairs repeat
        across requests and are encoded once. Use as a context manager, or call ``.end(status)``.
        """
        tracing = self.tel.tracing
        if tracing is None or not self.root.recording:
            return self._child_default
        return tracing.start(name, component, parent=parent if parent is not None else self.root, kind=kind,
                             attributes=attributes, fixed=fixed)

    def inject(self, headers: dict, span=None) -> dict:
        """Put ``traceparent``/``tracestate`` naming ``span`` (default the root) into outbound ``headers``."""
        return (span or self.root).inject(headers)

    # -- steps ---------------------------------------------------------------------------

    def llm_call(self, provider: str, requested: str | None, resolved: str, *, stream: bool = False,
                 request: dict | None = None, path: str = "/v1/chat/completions", parent=None,
                 use_root: bool | None = None) -> LLMCall:
        """A call to a model provider.

        On a model listener the call IS the request (``use_root`` defaults to True): the
        root span is renamed ``POST /v1/chat/completions <model>`` and gets the ``llm.*``
        attributes. Elsewhere (the orchestrator's routing call) it is a child span.
        """
        if use_root is None:
            use_root = self.kind == "model" and parent is None
        root = self.root
        if not root.recording:
            span = root if use_root else self._child_default
        else:  # children of a sampled root are sampled too (parent-based sampler)
            # Name and encoded attributes depend on (provider, requested, resolved, stream, path) only.
            key = (provider, requested, resolved, stream, path)
            cached = self.tel._llm_blocks.get(key)
            if cached is None:
                cached = self.tel.llm_span_blocks(key)
            name, fixed, block = cached
            if use_root:
                span = root
                if not span.end_ns:
                    span.name = name
                    span.blocks.append(block)
                    span.attrs["llm.model"] = resolved
            else:
                attrs = {**self.custom, "llm.model": resolved} if self.custom else {"llm.model": resolved}
                span = self.child(name, LLM, attrs, kind=KIND_CLIENT, parent=parent, fixed=fixed)
            if request is not None and not span.end_ns:
                # The request's parameters as the call starts; the rest of the facts come with finish().
                span.facts = (genai.request_facts(request), None, None, None, None)
                if self.tel.capture_content:
                    from gateway.telemetry.redact import redact_content

                    preview = genai.last_user_text(request.get("messages"))
                    if preview:
                        span.set("llm.user_message_preview", redact_content(preview, self.tel.preview_chars))
        if use_root:
            self.model = resolved
            self.upstream = provider
        return LLMCall(self, span, provider, resolved, stream, owns_span=not use_root)

    def agent_call(self, agent_id: str, *, index: int | None = None, path: str = "/v1/chat/completions") -> AgentCall:
        """A call to one agent of the chain (span ``<agent_id> /v1/chat/completions``, service ``plano(agent)``)."""
        fixed = (("agent.id", agent_id), ("gen_ai.agent.name", agent_id), ("http.method", "POST"),
                 ("http.target", path), ("plano.agent.position", index))
        span = self.child(f"{agent_id} {path}", AGENT, kind=KIND_CLIENT, fixed=fixed)
        if self.agents is None:
            self.agents = [agent_id]
        elif agent_id not in self.agents:
            self.agents.append(agent_id)
        return AgentCall(self, span, agent_id)

    def filter_call(self, filter_id: str, *, filter_type: str = "http", parent=None) -> FilterCall:
        """A filter run (span ``execute_filter (<id>)``, service ``plano(filter)``)."""
        span = self.child(f"execute_filter ({filter_id})", FILTER, kind=KIND_CLIENT, parent=parent,
                          fixed=(("filter.id", filter_id), ("filter.type", filter_type)))
        return FilterCall(self, span, filter_id)

    def routing(self, *, component: str = ORCHESTRATOR, name: str = "routing") -> RoutingDecision:
        """A routing decision: agent selection (``plano(orchestrator)``) or model routing (``plano(routing)``)."""
        fixed = (("selection.listener", self.listener),) if component == ORCHESTRATOR else None
        span = self.child(name, component, fixed=fixed)
        return RoutingDecision(self, span, component)

    # -- the end -------------------------------------------------------------------------

    def wrap_send(self, send):
        """An ASGI ``send`` that records the response status and body bytes for :meth:`finish`."""

        async def recording_send(message):
            kind = message["type"]
            if kind == "http.response.body":
                self.bytes_out += len(message.get("body", b""))
            elif kind == "http.response.start":
                self.status = message["status"]
            await send(message)

        return recording_send

    def finish(self, status: int | None = None, *, bytes_in: int | None = None, bytes_out: int | None = None,
               upstream: str | None = None, model: str | None = None, agents=None, error: str | None = None,
               messages=None) -> None:
        """End the request once: root span, request metrics, access-log line.

        ``messages`` (model listener): the request's conversation, analysed for
        conversation-quality signals on a worker thread after this returns; the
        LLM span is ended (with its real end time) once they are attached.
        """
        if self._finished:
            return
        self._finished = True
        tel = self.tel
        duration = _perf() - self.started
        if status is None:
            status = self.status
        if error is None:
            error = self.failure
        if bytes_in is not None:
            self.bytes_in = bytes_in
        if bytes_out is not None:
            self.bytes_out = bytes_out
        upstream = upstream or self.upstream
        model = model or self.model
        agents = agents or self.agents
        lm = self._lm
        if lm is not None:
            lm.finished(self.method, status, duration)
            tel.touched(lm)
        root = self.root
        if root.recording:
            if error:
                root.error(error)
            if messages is not None and tel.signals_enabled and self.kind == "model":
                if tel.shipper is not None:  # the telemetry sidecar analyses the conversation
                    root.messages = messages
                    root.end(status)
                else:
                    tel.signal_and_end(root, messages, status)
            else:
                root.end(status)
        else:
            root.end()
        log_ = tel.access_log
        if log_ is not None and log_.enabled:
            tel.defer(log_.write, time.time(), self.listener, self.method, self.path, status, duration * 1000.0,
                      upstream, model, agents, self.request_id, self.trace_id, self.bytes_in, self.bytes_out, error)


class LLMCall:
    """One call to a model provider: ``llm.*``/``gen_ai.*`` span attributes and the upstream LLM metrics."""

    __slots__ = ("_done", "_owns_span", "ctx", "model", "provider", "span", "started", "stream", "ttft", "usage")

    def __init__(self, ctx: RequestContext, span, provider: str, model: str, stream: bool, *, owns_span: bool) -> None:
        self.ctx = ctx
        self.span = span
        self.provider = provider
        self.model = model
        self.stream = stream
        self.started = _perf()
        self.ttft: float | None = None
        self.usage: genai.Usage | None = None
        self._owns_span = owns_span
        self._done = False

    def inject(self, headers: dict) -> dict:
        return self.span.inject(headers)

    def first_token(self) -> None:
        """Mark the first streamed token (idempotent): ``llm.time_to_first_token`` attribute and event."""
        if self.ttft is not None:
            return
        self.ttft = _perf() - self.started
        span = self.span
        if span.recording:
            ms = _ms(self.ttft)
            span.set("llm.time_to_first_token", ms)
            span.event("time_to_first_token", {"llm.time_to_first_token": ms})

    def chunk(self, data: bytes) -> None:
        """Feed each relayed SSE chunk: marks the first token and picks up a final ``usage`` event."""
        if self.ttft is None and data:
            self.first_token()
        if b'"usage"' in data:
            usage = genai.usage_from_sse(data)
            if usage is not None:
                self.usage = usage

    def finish(self, status: int | None, *, usage=None, completion: dict | None = None,
               response_bytes: int | None = None, error: str | None = None, error_class: str | None = None) -> None:
        """Record the call's outcome once.

        ``usage``: the response's ``usage`` dict (or a :class:`~gateway.telemetry.genai.Usage`);
        ``completion``: the parsed JSON response (model, id, finish reasons, usage are read from it);
        ``error_class``: none | timeout | connect | parse | stream | other.
        """
        if self._done:
            return
        self._done = True
        seconds = _perf() - self.started
        if not self._owns_span:  # the call is the request: what the client got, without wrapping send
            ctx = self.ctx
            if ctx.status is None:
                ctx.status = status
            if response_bytes and not ctx.bytes_out:
                ctx.bytes_out = response_bytes
            if error and ctx.failure is None:  # e.g. the stream broke after a 200 went out
                ctx.failure = error
        if completion is not None and usage is None:
            usage = completion.get("usage")
        if usage is not None and type(usage) is not genai.Usage:
            usage = genai.parse_usage(usage)  # None unless an object: an upstream may send anything
        if usage is None:
            usage = self.usage
        if error_class is None:
            error_class = "none" if status is not None and status < 400 and not error else \
                ("other" if error or status is None else "none")
        tel = self.ctx.tel
        if tel.metrics is not None:
            series = tel.metrics.llm(self.provider, self.model)
            series.observe(status, error_class, seconds, self.ttft, usage)
            tel.touched(series)
        span = self.span
        if not span.recording:
            if self._owns_span:
                span.end()
            return
        # Raw facts only: attributes are derived from them where the span is encoded (off the request path).
        if not span.end_ns:
            facts = span.facts
            span.facts = (facts[0] if facts is not None else None, genai.usage_facts(usage),
                          genai.response_facts(completion) if completion is not None else None, seconds,
                          response_bytes)
        if error:
            span.error(error, error_class if error_class != "none" else None)
        elif status is not None and status >= 400:
            span.error(f"HTTP {status}", error_class if error_class != "none" else None)
        if self._owns_span:
            span.end(status)


class AgentCall:
    """One agent call: span ``<agent_id> /v1/chat/completions`` and ``plano_agent_calls_total``."""

    __slots__ = ("_done", "agent_id", "ctx", "span", "started")

    def __init__(self, ctx: RequestContext, span, agent_id: str) -> None:
        self.ctx = ctx
        self.span = span
        self.agent_id = agent_id
        self.started = _perf()
        self._done = False

    def inject(self, headers: dict) -> dict:
        return self.span.inject(headers)

    def finish(self, status: int | None, *, outcome: str | None = None, retries: int = 0,
               error: str | None = None) -> None:
        """``outcome``: ok | error | timeout | connect | invalid_response | cancelled (default from status)."""
        if self._done:
            return
        self._done = True
        seconds = _perf() - self.started
        if outcome is None:
            outcome = "ok" if status is not None and status < 400 and not error else "error"
        if error and self.ctx.failure is None:  # an agent's failure is the request's (e.g. its stream broke)
            self.ctx.failure = error
        tel = self.ctx.tel
        if tel.metrics is not None:
            series = tel.metrics.agent(self.ctx.listener, self.agent_id)
            series.observe(status, outcome, seconds)
            tel.touched(series)
        span = self.span
        if span.recording:
            span.update({"agent.outcome": outcome, "agent.retries": retries,
                         "agent.duration_ms": _ms(seconds)})
            if error:
                span.error(error, str(status) if status else outcome)
        span.end(status)

    def __enter__(self) -> AgentCall:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if not self._done:
            self.finish(None, outcome="error" if exc else "ok", error=str(exc) if exc else None)
        return False


class FilterCall:
    """One filter run: span ``execute_filter (<id>)`` and ``plano_filter_executions_total``."""

    __slots__ = ("_done", "ctx", "filter_id", "span", "started")

    def __init__(self, ctx: RequestContext, span, filter_id: str) -> None:
        self.ctx = ctx
        self.span = span
        self.filter_id = filter_id
        self.started = _perf()
        self._done = False

    def inject(self, headers: dict) -> dict:
        return self.span.inject(headers)

    def finish(self, outcome: str, *, status: int | None = None, error: str | None = None) -> None:
        """``outcome``: pass | modified | rejected | error | timeout | skipped."""
        if self._done:
            return
        self._done = True
        seconds = _perf() - self.started
        tel = self.ctx.tel
        if tel.metrics is not None:
            series = tel.metrics.filter(self.filter_id)
            series.observe(outcome, seconds)
            tel.touched(series)
        span = self.span
        if span.recording:
            span.update({"filter.outcome": outcome, "filter.duration_ms": _ms(seconds)})
            if error or outcome in ("error", "timeout"):
                span.error(error or outcome, outcome)
        span.end(status)

    def __enter__(self) -> FilterCall:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if not self._done:
            self.finish("error" if exc else "pass", error=str(exc) if exc else None)
        return False


class RoutingDecision:
    """A routing step: agent selection (``selection.*``) or model routing (``route.*``), plus router metrics."""

    __slots__ = ("_done", "component", "ctx", "span", "started")

    def __init__(self, ctx: RequestContext, span, component: str) -> None:
        self.ctx = ctx
        self.span = span
        self.component = component
        self.started = _perf()
        self._done = False

    def finish(self, agents, *, router: str, fallback: str | None = None, reason: str | None = None,
               duration_ms: float | None = None) -> None:
        """Agent selection done: ``agents`` in order, ``router`` single|embedded|llm, ``fallback`` why the
        orchestrator was not used (None when it was, or was not asked)."""
        if self._done:
            return
        self._done = True
        seconds = duration_ms / 1000.0 if duration_ms is not None else _perf() - self.started
        tel = self.ctx.tel
        if tel.metrics is not None and router != "single":
            series = tel.metrics.router(self.ctx.listener, router)
            series.observe(fallback is not None, seconds)
            tel.touched(series)
        span = self.span
        if span.recording:
            agents = list(agents or ())
            attrs = {
                "selection.listener": self.ctx.listener,
                "selection.agent_count": len(agents),
                "selection.agents": ",".join(agents),
                "selection.determination_ms": _ms(seconds),
                "routing.strategy": router,
                "routing.is_fallback": fallback is not None,
            }
            if fallback:
                attrs["routing.fallback_reason"] = redact_secrets(fallback)[:300]
            if reason:
                attrs["routing.selection_reason"] = redact_secrets(reason)[:300]
            span.update(attrs)
        span.end()

    def finish_model(self, requested: str | None, selected: str, *, route: str | None = None,
                     router: str = "preference", fallback: str | None = None,
                     duration_ms: float | None = None) -> None:
        """Model routing done (``plano(routing)``): ``model.requested``, ``route.selected_model``, ``plano.route.name``."""
        if self._done:
            return
        self._done = True
        seconds = duration_ms / 1000.0 if duration_ms is not None else _perf() - self.started
        tel = self.ctx.tel
        if tel.metrics is not None:
            series = tel.metrics.router(self.ctx.listener, router)
            series.observe(fallback is not None, seconds)
            tel.touched(series)
        span = self.span
        if span.recording:
            span.update({
                "model.requested": requested,
                "route.selected_model": selected,
                "plano.route.name": route,
                "routing.determination_ms": _ms(seconds),
                "routing.strategy": router,
                "routing.is_fallback": fallback is not None,
                "routing.fallback_reason": redact_secrets(fallback)[:300] if fallback else None,
            })
        span.end()

    def __enter__(self) -> RoutingDecision:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if not self._done:
            self._done = True
            if exc is not None:
                self.span.error(str(exc) or exc_type.__name__, exc_type.__name__)
            self.span.end()
        return False


__all__ = [
    "AGENT",
    "FILTER",
    "INBOUND",
    "KIND_CLIENT",
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
    "Span",
]
