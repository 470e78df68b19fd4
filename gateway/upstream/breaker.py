"""Circuit breakers per endpoint: pybreaker's state machine, shared through Redis in the background.

pybreaker owns the states and transitions (closed → open after ``failure_threshold``
consecutive failures, open → half-open after ``reset_timeout``, half-open →
closed after ``success_threshold`` successful probes, half-open → open on a
failed probe). Its ``call`` is synchronous, so an async call is not wrapped by it:
:meth:`EndpointBreaker.allow` asks before an attempt, and the attempt's outcome is
fed back through pybreaker's public ``call`` with a function that returns or
raises — the state machine sees exactly what it would have seen.

Admission in half-open lets ONE probe through per process; the others fail fast
until it has answered.

Hot path: a closed breaker with no recent failure costs one attribute read on
``allow`` and one on ``success``; pybreaker (which takes a lock) is touched only
after a failure.

**Shared state** (``state.redis_url``): pybreaker's bundled Redis storage is
synchronous and would block the event loop on every call, so each process keeps
its breakers in memory and :class:`BreakerSync` mirrors events through
``redis.asyncio``: a failure, an opening and a closing are PUBLISHed on one
channel (fire-and-forget tasks, never awaited by a request) and the open state is
also written to a hash so a process that starts later begins with it. Every
process applies the others' events to its own breakers: failures seen by one
worker or replica count in all, and an opening anywhere opens the breaker
everywhere. Redis down: breakers keep working per process and a warning is
logged; the sync reconnects in the background.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from datetime import UTC, datetime

import orjson

log = logging.getLogger("plano.upstream")

#: pybreaker's state names (pybreaker is imported on the first breaker built: it imports the
#: redis client when installed, which a config without breakers has no use for).
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class _Failure(Exception):
    """Stands for a failed attempt inside pybreaker's ``call``."""


def _ok() -> None:
    return None


def _fail() -> None:
    raise _Failure()


class _Listener:
    """Reports transitions (metrics, log, the shared sync) and failures (the sync); pybreaker
    calls listeners by duck typing (before_call, success, failure, state_change)."""

    def __init__(self, breaker: "EndpointBreaker") -> None:
        self.owner = breaker

    def before_call(self, cb, func, *args, **kwargs) -> None:
        pass

    def success(self, cb) -> None:
        pass

    def state_change(self, cb, old_state, new_state) -> None:
        owner = self.owner
        name = new_state.name if new_state is not None else CLOSED
        if name == CLOSED:
            owner.probing = False
        log.warning("circuit breaker for %s: %s -> %s", owner.label,
                    old_state.name if old_state is not None else "-", name)
        if owner.metrics is not None:
            try:
                owner.metrics.breaker(owner.pool, name)
            except Exception:  # metrics must never break a call
                pass
        if owner.sync is not None and not owner.applying and name in (OPEN, CLOSED):
            owner.sync.publish(owner.key, name, owner.opened_at())

    def failure(self, cb, exc) -> None:
        owner = self.owner
        if owner.sync is not None and not owner.applying:
            owner.sync.publish(owner.key, "fail", None)


class EndpointBreaker:
    """The breaker of one endpoint of one pool."""

    __slots__ = ("cb", "key", "label", "metrics", "pool", "probing", "storage", "sync", "applying", "reset_timeout",
                 "_errors")

    def __init__(self, pool: str, endpoint: str, *, failure_threshold: int, reset_timeout: float,
                 success_threshold: int = 1, metrics=None, sync: "BreakerSync | None" = None) -> None:
        self.pool = pool
        self.key = f"{pool}|{endpoint}"
        self.label = f"upstream {pool} ({endpoint})"
        self.metrics = metrics
        self.sync = sync
        self.applying = False
        self.probing = False
        self.reset_timeout = reset_timeout
        import pybreaker

        self._errors = (_Failure, pybreaker.CircuitBreakerError)
        self.storage = pybreaker.CircuitMemoryStorage(CLOSED)
        self.cb = pybreaker.CircuitBreaker(fail_max=failure_threshold, reset_timeout=reset_timeout,
                                           success_threshold=success_threshold, state_storage=self.storage,
                                           listeners=[_Listener(self)], name=self.key)
        if sync is not None:
            sync.register(self)

    # -- the call path ---------------------------------------------------------------

    @property
    def state(self) -> str:
        return self.storage.state

    def allow(self) -> bool:
        """May an attempt go to this endpoint now? (Moves open → half-open when it is time.)"""
        state = self.storage.state
        if state == CLOSED:
            return True
        if state == OPEN:
            if self.retry_after() > 0:
                return False
            self.cb.half_open()
            self.probing = False
        if self.probing:  # half-open: one probe at a time
            return False
        self.probing = True
        return True

    def retry_after(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when not open)."""
        opened = self.storage.opened_at
        if self.storage.state != OPEN or opened is None:
            return 0.0
        return max(0.0, opened.timestamp() + self.reset_timeout - time.time())

    def success(self) -> None:
        storage = self.storage
        if storage.state == CLOSED and not storage.counter:
            return  # the common case: nothing to reset
        self.probing = False
        try:
            self.cb.call(_ok)
        except self._errors:
            pass

    def failure(self) -> None:
        self.probing = False
        try:
            self.cb.call(_fail)
        except self._errors:
            pass

    # -- outside the call path (health checks, the shared sync) ------------------------

    def opened_at(self) -> float | None:
        opened = self.storage.opened_at
        return opened.timestamp() if opened is not None else None

    def force_open(self) -> None:
        if self.storage.state != OPEN:
            self.cb.open()

    def force_close(self) -> None:
        if self.storage.state != CLOSED:
            self.cb.close()

    def apply_remote(self, event: str, opened_at: float | None) -> None:
        """Another process saw ``event`` on this endpoint: reflect it here without re-publishing."""
        self.applying = True
        try:
            if event == "fail":
                if self.storage.state == CLOSED:
                    self.storage.increment_counter()
                    if self.storage.counter >= self.cb.fail_max:
                        self.cb.open()
            elif event == OPEN:
                if self.storage.state != OPEN:
                    self.cb.open()
                if opened_at is not None:
                    self.storage.opened_at = datetime.fromtimestamp(opened_at, UTC)
            elif event == CLOSED:
                if self.storage.state != CLOSED:
                    self.cb.close()
                self.storage.reset_counter()
        finally:
            self.applying = False


class BreakerSync:
    """Mirrors breaker events across processes through Redis pub/sub (see the module docstring)."""

    def __init__(self, redis_url: str, prefix: str = "plano:") -> None:
        self.redis_url = redis_url
        self.channel = f"{prefix}breaker"
        self.hash = f"{prefix}breaker:open"
        self.origin = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.breakers: dict[str, EndpointBreaker] = {}
        self._redis = None
        self._task: asyncio.Task | None = None
        self._pending: set[asyncio.Task] = set()
        self._warned_at = 0.0
        self.ready: asyncio.Event | None = None  # created on the loop in start()

    def register(self, breaker: EndpointBreaker) -> None:
        self.breakers[breaker.key] = breaker

    async def start(self) -> None:
        import redis.asyncio as aioredis

        self.ready = asyncio.Event()
        self._redis = aioredis.from_url(self.redis_url, socket_connect_timeout=2, health_check_interval=15)
        self._task = asyncio.get_running_loop().create_task(self._listen(), name="plano-breaker-sync")
        try:  # wait briefly for the subscription, so events right after start-up are not missed
            await asyncio.wait_for(self.ready.wait(), 3.0)
        except asyncio.TimeoutError:
            self._warn("could not subscribe to Redis within 3s; breakers are per process until it answers")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        for task in list(self._pending):
            task.cancel()
        if self._redis is not None:
            try:
                await self._redis.aclose()
            except Exception:
                pass

    # -- out -----------------------------------------------------------------------------

    def publish(self, key: str, event: str, opened_at: float | None) -> None:
        if self._redis is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._publish(key, event, opened_at))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish(self, key: str, event: str, opened_at: float | None) -> None:
        message = orjson.dumps({"o": self.origin, "k": key, "e": event, "t": opened_at})
        try:
            pipe = self._redis.pipeline(transaction=False)
            if event == OPEN:
                pipe.hset(self.hash, key, orjson.dumps({"t": opened_at}))
            elif event == CLOSED:
                pipe.hdel(self.hash, key)
            pipe.publish(self.channel, message)
            await pipe.execute()
        except Exception as exc:
            self._warn(f"could not publish a breaker event to Redis: {exc}")

    # -- in ------------------------------------------------------------------------------

    async def _listen(self) -> None:
        delay = 0.5
        while True:
            pubsub = None
            try:
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(self.channel)
                await self._load_open()
                self.ready.set()
                delay = 0.5
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._apply(message.get("data"))
            except asyncio.CancelledError:
                if pubsub is not None:
                    try:
                        await pubsub.aclose()
                    except Exception:
                        pass
                raise
            except Exception as exc:
                self._warn(f"breaker sync lost its Redis subscription ({exc}); retrying")
            if pubsub is not None:
                try:
                    await pubsub.aclose()
                except Exception:
                    pass
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _load_open(self) -> None:
        """Start with the breakers other processes have open (and not yet timed out)."""
        found = await self._redis.hgetall(self.hash)
        for raw_key, raw in (found or {}).items():
            key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
            breaker = self.breakers.get(key)
            if breaker is None:
                continue
            try:
                opened_at = orjson.loads(raw).get("t")
            except (orjson.JSONDecodeError, AttributeError):
                continue
            if isinstance(opened_at, (int, float)) and opened_at + breaker.reset_timeout > time.time():
                breaker.apply_remote(OPEN, float(opened_at))

    def _apply(self, data) -> None:
        try:
            message = orjson.loads(data)
        except (orjson.JSONDecodeError, TypeError):
            return
        if not isinstance(message, dict) or message.get("o") == self.origin:
            return
        breaker = self.breakers.get(message.get("k"))
        event = message.get("e")
        if breaker is None or event not in ("fail", OPEN, CLOSED):
            return
        opened_at = message.get("t")
        breaker.apply_remote(event, float(opened_at) if isinstance(opened_at, (int, float)) else None)

    def _warn(self, text: str) -> None:
        now = time.monotonic()
        if now - self._warned_at > 30:
            self._warned_at = now
            log.warning("%s", text)
