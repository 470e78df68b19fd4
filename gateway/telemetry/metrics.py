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
:class:`LLMMetrics`, ... cached per listener / provider+model / agent), so a
request does dictionary look-ups in our small caches, not ``.labels()`` calls, and
inside a worker the updates themselves run in the loop's telemetry batch
(:mod:`gateway.telemetry.batching`).

Label cardinality is bounded: model names come from requests (wildcard
providers accept any), so after :data:`MAX_MODELS` distinct models further ones
are counted as ``other``.
"""

from __future__ import annotations

import os
import threading

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

        self.tasks = Gauge("plano_tasks", "Tasks by state.", ["state"], multiprocess_mode="livesum", **r)
        self.task_transitions = Counter("plano_task_transitions_total", "Tasks entering a state.", ["state"], **r)

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

    def quality(self, bucket: str):
        """The ``plano_signals_quality_total`` child for a quality bucket."""
        found = self._quality.get(bucket)
        if found is None:
            found = self._quality[bucket] = self.signals.labels(bucket)
        return found

    # -- rarely called: defined now, used by later features -----------------------------

    def retry(self, upstream: str, reason: str) -> None:
        self.retries.labels(upstream, reason).inc()

    def breaker(self, upstream: str, state: str) -> None:
        self.breaker_state.labels(upstream).set(BREAKER_STATES.get(state, 0))
        self.breaker_transitions.labels(upstream, state).inc()

    def task_state(self, state: str, delta: int = 1, *, entered: bool = True) -> None:
        self.tasks.labels(state).inc(delta)
        if entered and delta > 0:
            self.task_transitions.labels(state).inc()


class ListenerMetrics:
    """Children of the request metrics for one (listener, handler)."""

    __slots__ = ("_counts", "_handler", "_listener", "_m", "duration", "in_flight")

    def __init__(self, m: Metrics, listener: str, handler: str) -> None:
        self._m = m
        self._listener = listener
        self._handler = handler
        self._counts: dict = {}
        self.duration = m.http_duration.labels(listener, handler)
        self.in_flight = m.http_in_flight.labels(listener, handler)

    def started(self) -> None:
        self.in_flight.inc()

    def finished(self, method: str, status: int | None, seconds: float) -> None:
        key = (method, status // 100 if status else 0)
        counter = self._counts.get(key)
        if counter is None:
            counter = self._m.http_requests.labels(self._listener, self._handler, method, status_class(status))
            self._counts[key] = counter
        counter.inc()
        self.duration.observe(seconds)
        self.in_flight.dec()


class LLMMetrics:
    __slots__ = (
        "_counts",
        "_m",
        "cached",
        "completion",
        "duration",
        "missing",
        "model",
        "prompt",
        "provider",
        "reasoning",
        "ttft",
    )

    def __init__(self, m: Metrics, provider: str, model: str) -> None:
        self._m = m
        self.provider = provider
        self.model = model
        self._counts: dict = {}
        self.duration = m.llm_duration.labels(provider, model)
        self.ttft = m.llm_ttft.labels(provider, model)
        self.prompt = m.llm_tokens.labels(provider, model, "prompt")
        self.completion = m.llm_tokens.labels(provider, model, "completion")
        self.cached = m.llm_tokens.labels(provider, model, "cached")
        self.reasoning = m.llm_tokens.labels(provider, model, "reasoning")
        self.missing = m.llm_usage_missing.labels(provider, model)

    def observe(self, status: int | None, error_class: str, seconds: float, ttft: float | None, usage) -> None:
        key = (status // 100 if status else 0, error_class)
        counter = self._counts.get(key)
        if counter is None:
            counter = self._m.llm_requests.labels(self.provider, self.model, status_class(status), error_class)
            self._counts[key] = counter
        counter.inc()
        self.duration.observe(seconds)
        if ttft is not None:
            self.ttft.observe(ttft)
        if usage is None:
            if status and status < 400:
                self.missing.inc()
            return
        if usage.prompt:
            self.prompt.inc(usage.prompt)
        if usage.completion:
            self.completion.inc(usage.completion)
        if usage.cached:
            self.cached.inc(usage.cached)
        if usage.reasoning:
            self.reasoning.inc(usage.reasoning)


class AgentMetrics:
    __slots__ = ("_agent", "_counts", "_listener", "_m", "duration")

    def __init__(self, m: Metrics, listener: str, agent: str) -> None:
        self._m = m
        self._listener = listener
        self._agent = agent
        self._counts: dict = {}
        self.duration = m.agent_duration.labels(listener, agent)

    def observe(self, status: int | None, outcome: str, seconds: float) -> None:
        key = (status // 100 if status else 0, outcome)
        counter = self._counts.get(key)
        if counter is None:
            counter = self._m.agent_calls.labels(self._listener, self._agent, status_class(status), outcome)
            self._counts[key] = counter
        counter.inc()
        self.duration.observe(seconds)


class FilterMetrics:
    __slots__ = ("_counts", "_filter", "_m", "duration")

    def __init__(self, m: Metrics, filter_id: str) -> None:
        self._m = m
        self._filter = filter_id
        self._counts: dict = {}
        self.duration = m.filter_duration.labels(filter_id)

    def observe(self, outcome: str, seconds: float) -> None:
        counter = self._counts.get(outcome)
        if counter is None:
            counter = self._m.filter_runs.labels(self._filter, outcome)
            self._counts[outcome] = counter
        counter.inc()
        self.duration.observe(seconds)


class RouterMetrics:
    __slots__ = ("_counts", "_listener", "_m", "_router", "duration")

    def __init__(self, m: Metrics, listener: str, router: str) -> None:
        self._m = m
        self._listener = listener
        self._router = router
        self._counts: dict = {}
        self.duration = m.router_duration.labels(listener, router)

    def observe(self, fallback: bool, seconds: float) -> None:
        counter = self._counts.get(fallback)
        if counter is None:
            counter = self._m.router_decisions.labels(self._listener, self._router, "true" if fallback else "false")
            self._counts[fallback] = counter
        counter.inc()
        self.duration.observe(seconds)


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
