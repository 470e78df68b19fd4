"""One ``redis.asyncio`` client per worker process, for state shared across workers and replicas.

Built from ``state: {redis_url, key_prefix}`` at start-up (:meth:`SharedRedis.from_config`),
but the client itself is created lazily, on the first call made from the running event
loop: a worker forks before it has a loop, and a client bound to the parent's loop (or to
a loop that has since closed, as in tests that call ``asyncio.run`` several times) would
fail. Close it at shutdown with :meth:`SharedRedis.aclose`.

Timeouts are short on purpose: shared state is advisory (rate limits and breakers fail
open), so a slow Redis must cost a request milliseconds, not seconds. After a failure the
handle reports itself *down* for ``retry_after`` seconds (:attr:`SharedRedis.available`),
so callers skip Redis instead of paying a connect timeout per request; warnings are
logged at most once per ``warn_interval``.
"""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger("plano.state")

_now = time.monotonic


class SharedRedis:
    """A lazily created, per-loop ``redis.asyncio.Redis`` for one ``redis_url``."""

    def __init__(self, url: str, *, key_prefix: str = "plano:", socket_timeout: float = 0.5,
                 connect_timeout: float = 0.5, max_connections: int = 64, retry_after: float = 1.0,
                 warn_interval: float = 30.0) -> None:
        from redis.asyncio.connection import parse_url

        parse_url(url)  # a malformed URL is a start-up error, not a per-request one
        self.url = url
        self.key_prefix = key_prefix
        self.socket_timeout = socket_timeout
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self.retry_after = retry_after
        self.warn_interval = warn_interval
        self._client = None
        self._loop = None
        self._down_until = 0.0
        self._warned_at = -1e18

    @classmethod
    def from_config(cls, config, **kwargs) -> SharedRedis | None:
        """The handle for ``config.state.redis_url``, or None when state is in memory."""
        state = getattr(config, "state", None)
        url = getattr(state, "redis_url", None) if state is not None else None
        if not url:
            return None
        return cls(url, key_prefix=state.key_prefix, **kwargs)

    # -- the client ---------------------------------------------------------------------

    def client(self):
        """The client for the running loop (created on first use)."""
        loop = asyncio.get_running_loop()
        client = self._client
        if client is None or self._loop is not loop:
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(
                self.url,
                socket_timeout=self.socket_timeout,
                socket_connect_timeout=self.connect_timeout,
                max_connections=self.max_connections,
                health_check_interval=0,
            )
            self._client, self._loop = client, loop
        return client

    def register_script(self, source: str) -> LuaScript:
        """A Lua script run with EVALSHA (EVAL once after a Redis restart flushed the script cache)."""
        return LuaScript(self, source)

    # -- health -------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        """False for ``retry_after`` seconds after a failure: callers fail open without trying."""
        return self._down_until == 0.0 or _now() >= self._down_until

    def failed(self, what: str, exc: BaseException) -> None:
        """Record a failure talking to Redis: mark it down for a moment, warn at most once per interval."""
        now = _now()
        self._down_until = now + self.retry_after
        if now - self._warned_at >= self.warn_interval:
            self._warned_at = now
            log.warning("redis %s failed (%s: %s); failing open for now (next warning in %.0fs at the earliest)",
                        what, type(exc).__name__, exc, self.warn_interval)

    def succeeded(self) -> None:
        if self._down_until:
            self._down_until = 0.0
            log.info("redis is reachable again")

    async def aclose(self) -> None:
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            try:
                await client.aclose()
            except Exception:  # pragma: no cover - closing a broken connection
                pass


class LuaScript:
    """A Lua script bound to a :class:`SharedRedis`; re-registered per client (per loop)."""

    __slots__ = ("_client", "_script", "redis", "source")

    def __init__(self, redis: SharedRedis, source: str) -> None:
        self.redis = redis
        self.source = source
        self._client = None
        self._script = None

    def __call__(self, keys, args):
        """The awaitable EVALSHA call (redis-py falls back to EVAL on NOSCRIPT)."""
        client = self.redis.client()
        if client is not self._client:
            self._script = client.register_script(self.source)
            self._client = client
        return self._script(keys=keys, args=args)
