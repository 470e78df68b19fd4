"""Every pool of a config, built once per worker: agents, filters and model providers.

Pools are keyed by what they front (``agent:<id>``, ``filter:<id>``,
``provider:<name>``), so two listeners that name the same agent share its
endpoints, breakers and concurrency limit. Breaker settings come from the
upstream's own ``circuit_breaker``, else ``overrides.circuit_breaker``; with
neither, no breaker (Plano behaves that way; turning one on globally is one line
under ``overrides``). An active ``health_check`` needs a breaker to act on and
gets one with default settings.
"""

from __future__ import annotations

import asyncio
import logging

from gateway.upstream.breaker import BreakerSync
from gateway.upstream.pool import BreakerSettings, HealthSettings, Pool

log = logging.getLogger("plano.upstream")


def breaker_settings(own, *defaults, health=None) -> BreakerSettings | None:
    cfg = next((c for c in (own, *defaults) if c is not None), None)
    if cfg is None or not cfg.enabled:
        return BreakerSettings() if health is not None else None
    return BreakerSettings(cfg.failure_threshold, cfg.reset_timeout, cfg.success_threshold)


def health_settings(cfg) -> HealthSettings | None:
    if cfg is None:
        return None
    return HealthSettings(cfg.path, cfg.interval, cfg.timeout)


class PoolRegistry:
    def __init__(self, config, metrics=None) -> None:
        self.metrics = metrics
        state = getattr(config, "state", None)
        redis_url = getattr(state, "redis_url", None) if state is not None else None
        self.sync = BreakerSync(redis_url, state.key_prefix) if redis_url else None
        self.overrides = getattr(config, "overrides", None)
        self.pools: dict[str, Pool] = {}
        self._tasks: list[asyncio.Task] = []
        self._config = config

    def _build(self, key: str, bases, item) -> Pool:
        pool = self.pools.get(key)
        if pool is None:
            health = health_settings(getattr(item, "health_check", None))
            breaker = breaker_settings(getattr(item, "circuit_breaker", None),
                                       getattr(self.overrides, "circuit_breaker", None), health=health)
            pool = Pool(key, bases, balance=getattr(item, "load_balancing", None),
                        max_concurrency=getattr(item, "max_concurrency", None), breaker=breaker, health=health,
                        metrics=self.metrics, sync=self.sync)
            self.pools[key] = pool
        return pool

    def agent(self, agent) -> Pool:
        """The pool of an ``agents:`` entry (its ``url`` or ``urls``, as given)."""
        bases = [u.rstrip("/") for u in agent.endpoints]
        return self._build(f"agent:{agent.id}", bases, agent)

    def filter(self, item, base_url: str) -> Pool:
        """The pool of a filter (``filters:`` entry, or an agent used as a filter)."""
        return self._build(f"filter:{item.id}", [base_url], item)

    def provider(self, entry, name: str, bases: list[str]) -> Pool:
        return self._build(f"provider:{name}", bases, entry)

    async def start(self, transport) -> None:
        """Background work of the pools: the shared breaker sync and health checks."""
        from gateway.upstream.transport import timeout_policy

        if self.sync is not None:
            try:
                await self.sync.start()
            except Exception as exc:  # never fail start-up over shared state
                log.warning("circuit breaker sync through Redis unavailable: %s", exc)
        loop = asyncio.get_running_loop()
        for pool in self.pools.values():
            if pool.health is not None:
                self._tasks.append(loop.create_task(pool.run_health_checks(transport, timeout_policy),
                                                    name=f"health {pool.name}"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()
        if self.sync is not None:
            await self.sync.close()
