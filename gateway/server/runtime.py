"""The runtime snapshot: everything a worker builds from one config, swapped whole on reload.

A :class:`Runtime` holds the config-derived objects of one worker — the upstream pools (with
their breakers and health checks), the model resolver, the rate limits, the filter clients and
the listener apps (routers included) — and nothing process-wide: the outbound connection pool,
the telemetry pipeline and the Redis client belong to the worker (:class:`GatewayApp`) and
are shared by successive runtimes.

Reload builds a new runtime next to the serving one, starts it, then swaps one reference.
A request takes the runtime current when it arrives and keeps it to the end, so in-flight
requests finish on the config they started with; the retired runtime is closed once its last
request is done (or after the drain timeout). The per-request cost is two integer updates.
"""

from __future__ import annotations

import asyncio
import logging

from gateway.filters import FilterRegistry
from gateway.listeners.model import ModelListener
from gateway.llm.call import LLMCaller
from gateway.llm.resolver import ModelResolver
from gateway.upstream import PoolRegistry
from gateway.upstream.limits import RateLimits

log = logging.getLogger("plano.server")


class Runtime:
    """The config-derived objects of one worker (see the module docstring)."""

    def __init__(self, config, *, upstream, telemetry, redis, generation: int = 0) -> None:
        self.config = config
        self.generation = generation
        overrides = getattr(config, "overrides", None)
        metrics = telemetry.metrics
        # Every agent, filter and provider pool of the config: endpoints, breakers, limits.
        self.pools = PoolRegistry(config, metrics)
        model_listener = config.model_listener
        self.resolver = ModelResolver(
            config.model_providers or [],
            config.model_aliases or {},
            default_timeout=model_listener.timeout if model_listener else 300.0,
            connect_timeout=_connect_timeout(overrides),
            pools=self.pools,
            retry_defaults=(_listener_retry(model_listener), getattr(overrides, "retry", None)),
        )
        self.caller = LLMCaller(upstream, metrics)  # the LLM call unit, with failover
        self.limits = RateLimits.from_config(config, redis)
        # one client (and MCP session) per filter per worker
        self.filters = FilterRegistry(config, upstream, self.pools)
        self.by_port: dict[int, object] = {}
        for listener in config.listeners:
            if listener.type == "model":
                self.by_port[listener.port] = ModelListener(listener, self.resolver, upstream, self.filters,
                                                            telemetry, self.caller, self.limits)
            elif listener.type == "agent":
                self.by_port[listener.port] = _agent_listener(config, listener, upstream, self.resolver,
                                                              self.filters, telemetry, self.limits)
            else:
                log.warning("listener '%s' of type '%s' is not served (legacy prompt gateway)", listener.name,
                            listener.type)
        # Agent listeners: their A2A cards are read when the runtime starts, their A2A/MCP endpoints closed with it.
        self.agent_apps = [app for app in self.by_port.values() if not isinstance(app, ModelListener)]
        # Access control and request-shape limits: one edge middleware in front of every listener.
        from gateway.auth import AuthRuntime

        self.auth = AuthRuntime(config, redis, self.limits.backend)
        self.by_port = self.auth.wrap_all(config, self.by_port)
        # Listener ``max_concurrency``: requests in flight per listener in this worker.
        self.gates = {l.port: l.max_concurrency for l in config.listeners if getattr(l, "max_concurrency", None)}
        self.in_flight = dict.fromkeys(self.gates, 0)
        self.single = next(iter(self.by_port.values())) if len(self.by_port) == 1 and not self.gates else None
        #: Requests being served on this runtime (all listeners).
        self.active = 0
        self.retired = False
        self._idle: asyncio.Event | None = None

    async def start(self, transport) -> None:
        await self.pools.start(transport)
        await self.auth.start()  # the first key table is loaded before the first request
        if self.agent_apps:
            from gateway.a2a.lifecycle import start_listeners

            await start_listeners(self.agent_apps)

    def leave(self) -> None:
        """A request on this runtime ended (called after ``active`` was decremented)."""
        if self._idle is not None and self.active == 0:
            self._idle.set()

    async def retire(self, drain_timeout: float) -> None:
        """Wait (at most ``drain_timeout``) for this runtime's requests to end, then close it."""
        self.retired = True
        if self.active:
            self._idle = asyncio.Event()
            try:
                await asyncio.wait_for(self._idle.wait(), drain_timeout)
            except asyncio.TimeoutError:
                log.warning("reload: %d request(s) still running on config generation %d after %.0fs; "
                            "closing its pools anyway", self.active, self.generation, drain_timeout)
        await self.aclose()

    async def aclose(self) -> None:
        if self.agent_apps:
            from gateway.a2a.lifecycle import close_listeners

            await close_listeners(self.agent_apps)
        await self.auth.aclose()
        await self.pools.close()
        await self.limits.aclose()
        close = getattr(self.filters, "aclose", None)
        if close is not None:
            await close()


def listener_sockets(config) -> set[tuple[str, str, int]]:
    """What binds sockets: a reload that changes this needs new sockets, not just a new runtime."""
    return {(l.name, l.address or "0.0.0.0", l.port) for l in config.listeners if l.type in ("model", "agent")}


def _agent_listener(config, listener, upstream, resolver, filters, telemetry, limits):
    from gateway.listeners.agent import AgentListener  # imported lazily: model-only configs skip it

    return AgentListener(config, listener, upstream, resolver, filters, telemetry, filters.pools, limits)


def _listener_retry(listener):
    """A listener's ``retry`` block; Plano's ``max_retries`` (Envoy's retry policy on provider routes:
    connect errors, resets and 5xx) maps onto one when ``retry`` is absent."""
    if listener is None:
        return None
    if getattr(listener, "retry", None) is not None:
        return listener.retry
    retries = getattr(listener, "max_retries", None)
    if retries:
        from gateway.config.reliability import RetryConfig

        return RetryConfig(attempts=retries + 1, on=["connect_error", "timeout", "5xx"])
    return None


def _connect_timeout(overrides) -> float:
    value = getattr(overrides, "upstream_connect_timeout", None) if overrides else None
    if value is None:
        return 5.0
    if isinstance(value, (int, float)):
        return float(value)
    from gateway.config import parse_duration

    return parse_duration(value)
