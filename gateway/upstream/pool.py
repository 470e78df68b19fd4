"""Named pools: the endpoints of one agent, filter or model provider, and how a call picks one.

A pool is built once at start-up per upstream (``agent:flight_agent``,
``filter:pii``, ``provider:openai/gpt-4o``). It owns:

- its endpoints (``urls`` / ``base_urls``), each with a circuit breaker when one is
  configured and an in-flight count;
- the load-balancing choice: ``round_robin`` (default) or ``least_in_flight``,
  both skipping endpoints whose breaker is open and those already tried by this
  call (a retry goes elsewhere when it can);
- ``max_concurrency``: calls in flight through this pool in this worker; one
  more fails fast (503) instead of queueing, so one slow upstream cannot hold
  every connection of the gateway;
- optional active health checks (``GET {endpoint}{path}`` every ``interval``):
  a failing endpoint's breaker is opened, a recovered one closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.upstream.breaker import BreakerSync, EndpointBreaker

log = logging.getLogger("plano.upstream")


class Endpoint:
    __slots__ = ("base", "breaker", "in_flight", "index")

    def __init__(self, index: int, base: str, breaker: EndpointBreaker | None) -> None:
        self.index = index
        self.base = base
        self.breaker = breaker
        self.in_flight = 0


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    failure_threshold: int = 5
    reset_timeout: float = 30.0
    success_threshold: int = 1


@dataclass(frozen=True, slots=True)
class HealthSettings:
    path: str = "/healthz"
    interval: float = 10.0
    timeout: float = 2.0


class Pool:
    """The endpoints of one upstream (see the module docstring)."""

    __slots__ = ("name", "endpoints", "least_in_flight", "max_concurrency", "in_flight", "_next", "health",
                 "_single", "rejected")

    def __init__(self, name: str, bases: Sequence[str], *, balance: str | None = None,
                 max_concurrency: int | None = None, breaker: BreakerSettings | None = None,
                 health: HealthSettings | None = None, metrics=None, sync: BreakerSync | None = None) -> None:
        if not bases:
            raise ValueError(f"pool {name} has no endpoints")
        self.name = name
        self.endpoints = [
            Endpoint(i, base, EndpointBreaker(name, base, failure_threshold=breaker.failure_threshold,
                                              reset_timeout=breaker.reset_timeout,
                                              success_threshold=breaker.success_threshold,
                                              metrics=metrics, sync=sync) if breaker else None)
            for i, base in enumerate(bases)
        ]
        self.least_in_flight = balance == "least_in_flight"
        self.max_concurrency = max_concurrency
        self.in_flight = 0
        self.rejected = 0
        self._next = 0
        self.health = health
        # One endpoint and no breaker: pick() is a constant.
        self._single = self.endpoints[0] if len(self.endpoints) == 1 and breaker is None else None

    def __repr__(self) -> str:
        return f"Pool({self.name!r}, {[e.base for e in self.endpoints]!r})"

    # -- admission -----------------------------------------------------------------------

    def enter(self) -> bool:
        """Count a call in; False when ``max_concurrency`` is reached (the caller answers 503)."""
        if self.max_concurrency is not None and self.in_flight >= self.max_concurrency:
            self.rejected += 1
            return False
        self.in_flight += 1
        return True

    def leave(self) -> None:
        self.in_flight -= 1

    # -- choosing an endpoint ------------------------------------------------------------

    def pick(self, tried: Sequence[Endpoint] = (), unreachable: Sequence[Endpoint] = ()) -> Endpoint | None:
        """The endpoint for the next attempt, or None when every breaker is open.

        Endpoints not yet tried by this call come first; when all were tried, one that
        answered (rather than refused the connection) is reused before one that did not.
        """
        single = self._single
        if single is not None:
            return single
        endpoints = self.endpoints
        count = len(endpoints)
        if count == 1:
            only = endpoints[0]
            return only if only.breaker is None or only.breaker.allow() else None
        if self.least_in_flight:
            order = sorted(endpoints, key=lambda e: (e in tried, e in unreachable, e.in_flight,
                                                     (e.index - self._next) % count))
            self._next = (self._next + 1) % count
        else:
            start = self._next
            self._next = (start + 1) % count
            order = [endpoints[(start + i) % count] for i in range(count)]
            if tried:
                order.sort(key=lambda e: (e in tried, e in unreachable))
        for endpoint in order:
            breaker = endpoint.breaker
            if breaker is None or breaker.allow():
                return endpoint
        return None

    def available(self) -> bool:
        """Could a call be sent now? (Some endpoint's breaker is not open, and there is room.)"""
        if self.max_concurrency is not None and self.in_flight >= self.max_concurrency:
            return False
        return any(e.breaker is None or e.breaker.retry_after() == 0 for e in self.endpoints)

    def retry_after(self) -> float | None:
        """Seconds until some open breaker of this pool admits a probe (None without breakers)."""
        waits = [e.breaker.retry_after() for e in self.endpoints if e.breaker is not None]
        return min(waits) if waits else None

    # -- active health checks -----------------------------------------------------------

    async def run_health_checks(self, transport, timeout_policy) -> None:
        """Probe every endpoint every ``health.interval`` (a background task per pool)."""
        from gateway.upstream.transport import UpstreamError

        settings = self.health
        policy = timeout_policy(settings.timeout, min(settings.timeout, 2.0))
        me = asyncio.current_task()
        while True:
            for endpoint in self.endpoints:
                if me is not None and me.cancelling():
                    # Python 3.11's asyncio.wait_for can swallow a cancel that lands as the probe
                    # completes; the request to stop is still on the task, so honour it here, or
                    # shutdown waits on this loop forever.
                    raise asyncio.CancelledError
                url = endpoint.base.rstrip("/") + settings.path
                healthy = False
                try:
                    async with transport.send("GET", url, {}, None, policy, self.name) as resp:
                        healthy = 200 <= resp.status < 300
                        await resp.read()
                except UpstreamError:
                    healthy = False
                except asyncio.CancelledError:
                    raise
                except Exception:  # a check must never kill its task
                    healthy = False
                breaker = endpoint.breaker
                if breaker is None:
                    continue
                if healthy:
                    breaker.force_close()
                else:
                    breaker.force_open()
            await asyncio.sleep(settings.interval)
