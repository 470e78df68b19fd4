"""Prometheus metrics (``plano_*``), correct with one worker process or many.

With several workers every process counts for itself, so the counts are kept in
prometheus_client's *multiprocess mode*: each worker writes its values into
mmap'ed files under ``PROMETHEUS_MULTIPROC_DIR`` and the supervising process
sums them when ``/metrics`` is scraped (:mod:`gateway.telemetry.admin`). The
runner creates that directory fresh for every ``plano up`` before forking and
removes it at exit; a dead worker's gauges are dropped (``mark_process_dead``)
while its counters keep counting towards the totals. With one worker the plain
in-memory registry is used (cheaper per increment).

Hot-path cost: callers hold pre-bound label children (:class:`ListenerMetrics`,
:class:`LLMMetrics`, ... cached per listener / provider+model / agent). A request
only adds to plain Python sums in them (a dict increment, a ``bisect`` into the
bucket bounds); :meth:`flush` hands the sums to prometheus_client once per loop
batch (:mod:`gateway.telemetry.batching`), so a thousand requests cost one
locked ``inc`` per touched series instead of a dozen each. Callers outside the
event loop flush at once. The in-flight gauge is a plain integer, set at flush.

Label cardinality is bounded: model names come from requests (wildcard
providers accept any), so after :data:`MAX_MODELS` distinct models further ones
are counted as ``other``.
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_left

from gateway import __version__

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
LLM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ROUTER_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

MAX_MODELS = 200
STATUS_CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}

#: Circuit-breaker states as gauge values.
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
TASK_STATES = ("submitted", "working", "input-required", "completed", "failed", "canceled")


def status_class(status: int | None) -> str:
    if not status:
        return "none"
    return STATUS_CLASSES.get(status // 100, "other")


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """Every plano metric, defined once per process (see :func:`get_metrics`)."""

    def __init__(self, registry=None) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            values,
        )

        if multiprocess_dir() and not getattr(values.ValueClass, "_multiprocess", False):
            # prometheus_client chose its value class at import time; the runner set the
            # directory later (before forking), so choose again before creating anything.
            values.ValueClass = values.get_value_class()
        self.multiprocess = bool(getattr(values.ValueClass, "_multiprocess", False))
        if registry is None:
            from prometheus_client import REGISTRY

            registry = REGISTRY if not self.multiprocess else CollectorRegistry(auto_describe=True)
        self.registry = registry
        r = {"registry": registry}

        self.http_requests = Counter("plano_http_requests_total", "Requests answered by a listener.",
                                     ["listener", "handler", "method", "status_class"], **r)
        self.http_duration = Histogram("plano_http_request_duration_seconds",
                                       "Time from request start to the end of the response.",
                                       ["listener", "handler"], buckets=HTTP_BUCKETS, **r)
        self.http_in_flight = Gauge("plano_http_in_flight_requests", "Requests being handled right now.",
                                    ["listener", "handler"], multiprocess_mode="livesum", **r)

        self.llm_requests = Counter("plano_llm_upstream_requests_total", "Calls to model providers.",
                                    ["provider", "model", "status_class", "error_class"], **r)
        self.llm_duration = Histogram("plano_llm_upstream_duration_seconds", "Duration of model provider calls.",
                                      ["provider", "model"], buckets=LLM_BUCKETS, **r)
        self.llm_ttft = Histogram("plano_llm_time_to_first_token_seconds",
                                  "Time from sending a streaming call to its first token.",
                                  ["provider", "model"], buckets=TTFT_BUCKETS, **r)
        self.llm_tokens = Counter("plano_llm_tokens_total", "Tokens reported by model providers.",
                                  ["provider", "model", "kind"], **r)
        self.llm_usage_missing = Counter("plano_llm_tokens_usage_missing_total",
                                         "Successful calls whose response carried no token usage.",
                                         ["provider", "model"], **r)

        self.router_decisions = Counter("plano_router_decisions_total", "Agent/model routing decisions.",
                                        ["listener", "router", "fallback"], **r)
        self.router_duration = Histogram("plano_router_decision_duration_seconds", "Time to decide a route.",
                                         ["listener", "router"], buckets=ROUTER_BUCKETS, **r)

        self.filter_runs = Counter("plano_filter_executions_total", "Filter calls by outcome.",
                                   ["filter", "outcome"], **r)
        self.filter_duration = Histogram("plano_filter_duration_seconds", "Duration of filter calls.",
                                         ["filter"], buckets=CALL_BUCKETS, **r)

        self.agent_calls = Counter("plano_agent_calls_total", "Agent calls by outcome.",
                                   ["listener", "agent", "status_class", "outcome"], **r)
        self.agent_duration = Histogram("plano_agent_call_duration_seconds", "Duration of agent calls.",
                                        ["listener", "agent"], buckets=CALL_BUCKETS, **r)

        self.retries = Counter("plano_upstream_retries_total", "Retried outbound calls.",
                               ["upstream", "reason"], **r)
        self.breaker_state = Gauge("plano_circuit_breaker_state",
                                   "Circuit breaker state per upstream (0 closed, 1 half-open, 2 open; "
                                   "the worst worker wins).", ["upstream"], multiprocess_mode="livemax", **r)
        self.breaker_transitions = Counter("plano_circuit_breaker_transitions_total",
                                           "Circuit breaker state changes.", ["upstream", "state"], **r)

        self.failovers = Counter("plano_model_failovers_total",
                                 "Model calls moved to a fallback model before their first byte.",
                                 ["from_model", "to_model", "reason"], **r)
        self.rate_limited = Counter("plano_rate_limited_total", "Requests refused by a rate limit (429).",
                                    ["listener", "limit"], **r)
        self.overloads = Counter("plano_upstream_rejected_total",
                                 "Calls refused without being sent (circuit open, concurrency limit).",
                                 ["upstream", "reason"], **r)

        self.prompt_cache_requests = Counter("plano_prompt_cache_requests_total",
                                             "Calls with prompt caching on, by provider cache outcome (usage).",
                                             ["model", "outcome"], **r)

        self.tasks = Gauge("plano_tasks", "Tasks by state.", ["state"], multiprocess_mode="livesum", **r)
        self.task_transitions = Counter("plano_task_transitions_total", "Tasks entering a state.", ["state"], **r)

        self.protocol_requests = Counter("plano_protocol_requests_total",
                                         "A2A and MCP calls by protocol method: served (direction=server) or "
                                         "made to upstream agents and MCP servers (direction=upstream).",
                                         ["protocol", "method", "direction", "outcome"], **r)
        self.protocol_duration = Histogram("plano_protocol_request_duration_seconds",
                                           "Duration of A2A and MCP calls by protocol method.",
                                           ["protocol", "method", "direction"], buckets=CALL_BUCKETS, **r)

        self.signals = Counter("plano_signals_quality_total", "Conversation-quality buckets of model-proxy calls.",
                               ["quality"], **r)

        self.build_info = Gauge("plano_build_info", "plano version (value 1).", ["version", "python"],
                                multiprocess_mode="max", **r)
        import platform

        self.build_info.labels(__version__, platform.python_version()).set(1)

        self._lock = threading.Lock()
        self._listeners: dict = {}
        self._llm: dict = {}
        self._agents: dict = {}
        self._filters: dict = {}
        self._routers: dict = {}
        self._models: set = set()
        self._quality: dict = {}

    # -- pre-bound children -----------------------------------------------------------

    def listener(self, listener: str, handler: str) -> ListenerMetrics:
        key = (listener, handler)
        found = self._listeners.get(key)
        if found is None:
            with self._lock:
                found = self._listeners.get(key) or ListenerMetrics(self, listener, handler)
                self._listeners[key] = found
        return found

    def llm(self, provider: str, model: str) -> LLMMetrics:
        key = (provider, model)
        found = self._llm.get(key)
        if found is None:
            with self._lock:
                if key not in self._llm and len(self._models) >= MAX_MODELS and model not in self._models:
                    key = (provider, "other")
                    model = "other"
                self._models.add(model)
                found = self._llm.get(key) or LLMMetrics(self, provider, model)
                self._llm[key] = found
        return found

    def agent(self, listener: str, agent: str) -> AgentMetrics:
        key = (listener, agent)
        found = self._agents.get(key)
        if found is None:
            with self._lock:
                found = self._agents.get(key) or AgentMetrics(self, listener, agent)
                self._agents[key] = found
        return found

    def filter(self, filter_id: str) -> FilterMetrics:
        found = self._filters.get(filter_id)
        if found is None:
            with self._lock:
                found = self._filters.get(filter_id) or FilterMetrics(self, filter_id)
                self._filters[filter_id] = found
        return found

    def router(self, listener: str, router: str) -> RouterMetrics:
        key = (listener, router)
        found = self._routers.get(key)
        if found is None:
            with self._lock:
                found = self._routers.get(key) or RouterMetrics(self, listener, router)
                self._routers[key] = found
        return found

    def quality(self) -> QualityMetrics:
        """The ``plano_signals_quality_total`` series (one per process)."""
        found = self._quality.get(None)
        if found is None:
            with self._lock:
                found = self._quality.get(None) or QualityMetrics(self)
                self._quality[None] = found
        return found

    # -- rarely called: defined now, used by later features -----------------------------

    def retry(self, upstream: str, reason: str) -> None:
        self.retries.labels(upstream, reason).inc()

    def breaker(self, upstream: str, state: str) -> None:
        self.breaker_state.labels(upstream).set(BREAKER_STATES.get(state, 0))
        self.breaker_transitions.labels(upstream, state).inc()

    def failover(self, from_model: str, to_model: str, reason: str) -> None:
        self.failovers.labels(from_model, to_model, reason).inc()

    def prompt_cache(self, model: str, outcome: str) -> None:
        self.prompt_cache_requests.labels(model, outcome).inc()

    def limited(self, listener: str, code: str) -> None:
        self.rate_limited.labels(listener, "tokens" if code.startswith("token") else "requests").inc()

    def rejected(self, upstream: str, reason: str) -> None:
        self.overloads.labels(upstream, reason).inc()

    def protocol(self, protocol: str, method: str, direction: str, outcome: str, seconds: float) -> None:
        """One A2A / MCP call (rare next to chat requests: labelled directly, not pre-bound)."""
        try:
            self.protocol_requests.labels(protocol, method, direction, outcome).inc()
            self.protocol_duration.labels(protocol, method, direction).observe(seconds)
        except Exception:  # metrics must never break a call
            pass

    def task_state(self, state: str, delta: int = 1, *, entered: bool = True) -> None:
        self.tasks.labels(state).inc(delta)
        if entered and delta > 0:
            self.task_transitions.labels(state).inc()


class HistogramSums:
    """Observations of one histogram child, summed until :meth:`flush` hands them over.

    prometheus_client has no bulk ``observe``; its child keeps one value per bucket
    (not cumulative) and one for the sum, which is what is added to here. Should a
    future prometheus_client lay its children out differently, the raw values are
    kept and replayed through ``observe`` instead (same result, per-value cost).
    """

    __slots__ = ("bounds", "child", "counts", "raw", "total")

    def __init__(self, child) -> None:
        self.child = child
        bounds = getattr(child, "_upper_bounds", None)
        buckets = getattr(child, "_buckets", None)
        bulk = (bounds is not None and buckets is not None and len(bounds) == len(buckets)
                and hasattr(getattr(child, "_sum", None), "inc"))
        self.bounds = list(bounds) if bulk else None
        self.counts = [0] * len(self.bounds) if bulk else None
        self.raw: list[float] | None = None if bulk else []
        self.total = 0.0

    def add(self, value: float) -> None:
        if self.counts is not None:
            # the bucket a value is counted in is the first whose upper bound is >= it (le)
            self.counts[bisect_left(self.bounds, value)] += 1
            self.total += value
        else:
            self.raw.append(value)

    def flush(self) -> None:
        if self.counts is None:
            raw, self.raw = self.raw, []
            for value in raw:
                self.child.observe(value)
            return
        counts = self.counts
        if not any(counts):
            return
        self.counts = [0] * len(counts)
        total, self.total = self.total, 0.0
        buckets = self.child._buckets
        for i, n in enumerate(counts):
            if n:
                buckets[i].inc(n)
        self.child._sum.inc(total)


class _Series:
    """Base of the pre-bound children: counter increments summed per label key until :meth:`flush`.

    ``scheduled`` is the telemetry batch this series' flush is already queued in
    (see :meth:`gateway.telemetry.Telemetry.touched`).
    """

    __slots__ = ("_counters", "_m", "_pending", "duration", "scheduled")

    def __init__(self, m: Metrics, duration=None) -> None:
        self._m = m
        self._counters: dict = {}
        self._pending: dict = {}
        self.duration = HistogramSums(duration) if duration is not None else None
        self.scheduled = None

    def _count(self, key, n: float = 1) -> None:
        pending = self._pending
        pending[key] = pending.get(key, 0) + n

    def _flush_counts(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        counters = self._counters
        for key, n in pending.items():
            counter = counters.get(key)
            if counter is None:
                counter = counters[key] = self._counter(key)
            counter.inc(n)

    def _counter(self, key):  # pragma: no cover - every series overrides it
        raise NotImplementedError

    def flush(self) -> None:
        self._flush_counts()
        if self.duration is not None:
            self.duration.flush()


class ListenerMetrics(_Series):
    """Request metrics of one (listener, handler)."""

    __slots__ = ("_handler", "_listener", "active", "in_flight")

    def __init__(self, m: Metrics, listener: str, handler: str) -> None:
        super().__init__(m, m.http_duration.labels(listener, handler))
        self._listener = listener
        self._handler = handler
        self.in_flight = m.http_in_flight.labels(listener, handler)
        self.active = 0

    def started(self) -> None:
        self.active += 1

    def finished(self, method: str, status: int | None, seconds: float) -> None:
        self.active -= 1
        self._count((method, status // 100 if status else 0))
        self.duration.add(seconds)

    def _counter(self, key):
        method, klass = key
        return self._m.http_requests.labels(self._listener, self._handler, method, status_class(klass * 100))

    def flush(self) -> None:
        super().flush()
        self.in_flight.set(self.active)


class LLMMetrics(_Series):
    """Model-provider call metrics of one (provider, model)."""

    __slots__ = ("model", "provider", "tokens", "ttft")

    def __init__(self, m: Metrics, provider: str, model: str) -> None:
        super().__init__(m, m.llm_duration.labels(provider, model))
        self.provider = provider
        self.model = model
        self.ttft = HistogramSums(m.llm_ttft.labels(provider, model))
        self.tokens = [0, 0, 0, 0, 0]  # prompt, completion, cached, reasoning, calls without usage

    def observe(self, status: int | None, error_class: str, seconds: float, ttft: float | None, usage) -> None:
        self._count((status // 100 if status else 0, error_class))
        self.duration.add(seconds)
        if ttft is not None:
            self.ttft.add(ttft)
        tokens = self.tokens
        if usage is None:
            if status and status < 400:
                tokens[4] += 1
            return
        tokens[0] += usage.prompt or 0
        tokens[1] += usage.completion or 0
        tokens[2] += usage.cached or 0
        tokens[3] += usage.reasoning or 0

    def _counter(self, key):
        klass, error_class = key
        return self._m.llm_requests.labels(self.provider, self.model, status_class(klass * 100), error_class)

    def flush(self) -> None:
        super().flush()
        self.ttft.flush()
        tokens = self.tokens
        if any(tokens):
            self.tokens = [0, 0, 0, 0, 0]
            m, p, model = self._m, self.provider, self.model
            for kind, n in zip(("prompt", "completion", "cached", "reasoning"), tokens):
                if n:
                    m.llm_tokens.labels(p, model, kind).inc(n)
            if tokens[4]:
                m.llm_usage_missing.labels(p, model).inc(tokens[4])


class AgentMetrics(_Series):
    __slots__ = ("_agent", "_listener")

    def __init__(self, m: Metrics, listener: str, agent: str) -> None:
        super().__init__(m, m.agent_duration.labels(listener, agent))
        self._listener = listener
        self._agent = agent

    def observe(self, status: int | None, outcome: str, seconds: float) -> None:
        self._count((status // 100 if status else 0, outcome))
        self.duration.add(seconds)

    def _counter(self, key):
        klass, outcome = key
        return self._m.agent_calls.labels(self._listener, self._agent, status_class(klass * 100), outcome)


class FilterMetrics(_Series):
    __slots__ = ("_filter",)

    def __init__(self, m: Metrics, filter_id: str) -> None:
        super().__init__(m, m.filter_duration.labels(filter_id))
        self._filter = filter_id

    def observe(self, outcome: str, seconds: float) -> None:
        self._count(outcome)
        self.duration.add(seconds)

    def _counter(self, key):
        return self._m.filter_runs.labels(self._filter, key)


class RouterMetrics(_Series):
    __slots__ = ("_listener", "_router")

    def __init__(self, m: Metrics, listener: str, router: str) -> None:
        super().__init__(m, m.router_duration.labels(listener, router))
        self._listener = listener
        self._router = router

    def observe(self, fallback: bool, seconds: float) -> None:
        self._count(fallback)
        self.duration.add(seconds)

    def _counter(self, key):
        return self._m.router_decisions.labels(self._listener, self._router, "true" if key else "false")


class QualityMetrics(_Series):
    """Conversation-quality buckets of analysed model-proxy calls."""

    __slots__ = ()

    def observe(self, bucket: str, n: int = 1) -> None:
        self._count(bucket, n)

    def _counter(self, key):
        return self._m.signals.labels(key)


_metrics: Metrics | None = None
_metrics_lock = threading.Lock()


def get_metrics() -> Metrics:
    """The process's metrics, created on first use (after the runner chose single/multiprocess mode)."""
    global _metrics
    if _metrics is None:
        with _metrics_lock:
            if _metrics is None:
                _metrics = Metrics()
    return _metrics


def exposition() -> tuple[bytes, str]:
    """``(body, content_type)`` of ``/metrics`` for this process tree."""
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        generate_latest,
    )

    directory = multiprocess_dir()
    if directory:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    get_metrics()  # make sure plano's metrics exist even before the first request
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """Forget a dead worker's live gauges (in-flight, breaker state, tasks); its counters stay."""
    directory = multiprocess_dir()
    if directory:
        from prometheus_client import multiprocess

        try:
            multiprocess.mark_process_dead(pid, directory)
        except OSError:  # pragma: no cover - best effort
            pass
