"""The ASGI application of one worker process.

One app serves every listener: uvicorn hands us the socket a connection arrived
on (``scope["server"]``), and we dispatch to that listener's app by port. Shared
per-process resources (the outbound client) are created in the lifespan startup,
after the worker has its event loop, and closed on shutdown.
"""

from __future__ import annotations

import logging

from gateway.filters import FilterRegistry
from gateway.listeners.errors import GatewayError
from gateway.listeners.http import send_error
from gateway.listeners.model import ModelListener
from gateway.llm.resolver import ModelResolver
from gateway.telemetry import Telemetry
from gateway.llm.call import LLMCaller
from gateway.state.redis import SharedRedis
from gateway.upstream.limits import RateLimits
from gateway.upstream import PoolRegistry, Upstream

log = logging.getLogger("plano.server")


class GatewayApp:
    def __init__(self, config) -> None:
        self.config = config
        overrides = getattr(config, "overrides", None)
        ca_path = getattr(overrides, "upstream_tls_ca_path", None) if overrides else None
        self.telemetry = Telemetry(config)  # per worker: built after the fork
        metrics = self.telemetry.metrics
        self.upstream = Upstream(ca_path=_existing(ca_path), metrics=metrics)
        # Every agent, filter and provider pool of the config: endpoints, breakers, limits.
        self.pools = PoolRegistry(config, metrics)
        self.by_port: dict[int, object] = {}
        connect_timeout = _connect_timeout(overrides)
        model_listener = config.model_listener
        resolver = ModelResolver(
            config.model_providers or [],
            config.model_aliases or {},
            default_timeout=model_listener.timeout if model_listener else 300.0,
            connect_timeout=connect_timeout,
            pools=self.pools,
            retry_defaults=(_listener_retry(model_listener), getattr(overrides, "retry", None)),
        )
        self.caller = LLMCaller(self.upstream, metrics)  # the LLM call unit, with failover
        self.redis = SharedRedis.from_config(config)  # None: limits live in this process
        self.limits = RateLimits.from_config(config, self.redis)
        # one client (and MCP session) per filter per worker
        self.filters = FilterRegistry(config, self.upstream, self.pools)
        for listener in config.listeners:
            if listener.type == "model":
                self.by_port[listener.port] = ModelListener(listener, resolver, self.upstream, self.filters,
                                                            self.telemetry, self.caller, self.limits)
            elif listener.type == "agent":
                self.by_port[listener.port] = _agent_listener(config, listener, self.upstream, resolver, self.filters,
                                                              self.telemetry, self.limits)
            else:
                log.warning("listener '%s' of type '%s' is not served (legacy prompt gateway)", listener.name, listener.type)
        # Listener ``max_concurrency``: requests in flight per listener in this worker (0 = none given).
        self._limits = {l.port: l.max_concurrency for l in config.listeners if getattr(l, "max_concurrency", None)}
        self._in_flight = dict.fromkeys(self._limits, 0)
        self._single = next(iter(self.by_port.values())) if len(self.by_port) == 1 and not self._limits else None

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind == "http":
            app = self._single
            if app is None:
                port = scope["server"][1]
                app = self.by_port.get(port)
                if app is None:
                    await send_error(send, GatewayError(404, "No listener on this port", code="not_found"))
                    return
                if port in self._limits and scope["path"] != "/healthz":
                    await self._gated(port, app, scope, receive, send)
                    return
            await _serve(app, scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _gated(self, port: int, app, scope, receive, send) -> None:
        """A listener with ``max_concurrency``: one request more than the limit is answered 503 at
        once (with ``Retry-After``) instead of queueing behind the slow ones."""
        if self._in_flight[port] >= self._limits[port]:
            await send_error(send, GatewayError(
                503, f"The listener is at its limit of {self._limits[port]} requests in flight; retry shortly.",
                code="listener_overloaded", headers=((b"retry-after", b"1"),)))
            return
        self._in_flight[port] += 1
        try:
            await _serve(app, scope, receive, send)
        finally:
            self._in_flight[port] -= 1

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.upstream.start()
                    await self.pools.start(self.upstream.transport)
                except Exception as exc:  # pragma: no cover - reported to uvicorn
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.pools.close()
                await self.limits.aclose()
                if self.redis is not None:
                    await self.redis.aclose()
                await self.upstream.close()
                await self.telemetry.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _serve(app, scope, receive, send) -> None:
    try:
        await app(scope, receive, send)
    except Exception:  # a bug: log it, and answer in the client's shape if nothing was sent yet
        log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
        try:
            await send_error(send, GatewayError(500, "Internal gateway error; see the gateway log.",
                                                code="internal_error"))
        except Exception:
            pass


def _agent_listener(config, listener, upstream, resolver, filters, telemetry, limits):
    from gateway.listeners.agent import (
        AgentListener,  # imported lazily: model-only configs skip it
    )

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


def _existing(path: str | None) -> str | None:
    import os

    return path if path and os.path.exists(path) else None
