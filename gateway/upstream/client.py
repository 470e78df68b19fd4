"""The one outbound call: pool → endpoint → attempts → the accepted response.

:meth:`Upstream.call` is the only way plano talks to an agent, a filter, a model
provider or a webhook target. It owns, per call:

- admission: the pool's ``max_concurrency`` (503 ``overloaded`` when full) and
  the endpoints' breakers (503 ``open`` with ``Retry-After`` when all are open);
- attempts, every one of them BEFORE the response is handed to the caller: a
  retryable status or error is retried on another endpoint when there is one,
  after a jittered back-off (or ``Retry-After``), within the caller's deadline.
  Once the response is yielded, the caller may be streaming it to a client, so
  nothing is retried after that — a broken stream is the caller's to report;
- the breaker bookkeeping (connect errors, timeouts, 5xx and mid-body breaks are
  failures; anything else a success);
- one child span per attempt (attempt number, endpoint, outcome) when the call
  could retry at all.

The fast path — one endpoint, no breaker, one attempt, no caller deadline —
adds two integer updates to a plain transport call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Sequence

from gateway.upstream.policy import SINGLE, CallPolicy, retry_after_seconds
from gateway.upstream.pool import Endpoint, Pool
from gateway.upstream.transport import (
    AiohttpTransport,
    Response,
    TimeoutPolicy,
    Transport,
    UpstreamError,
    timeout_policy,
)

log = logging.getLogger("plano.upstream")

#: ``PLANO_UPSTREAM_TRANSPORT``: ``h1`` (the default: plano's own HTTP/1.1 client, gateway/upstream/h1.py)
#: or ``aiohttp`` (for what h1 does not do, e.g. an HTTP proxy in between; bench/README.md has the
#: measurements behind the default).
TRANSPORT_ENV = "PLANO_UPSTREAM_TRANSPORT"


def default_transport(*, max_connections: int = 1000, keepalive: float = 30.0, ca_path: str | None = None) -> Transport:
    kind = os.environ.get(TRANSPORT_ENV, "h1").strip().lower() or "h1"
    if kind == "aiohttp":
        return AiohttpTransport(max_connections=max_connections, keepalive=keepalive, ca_path=ca_path)
    if kind != "h1":
        raise ValueError(f"{TRANSPORT_ENV}={kind!r}: expected 'h1' or 'aiohttp'")
    from gateway.upstream.h1 import H1Transport

    return H1Transport(max_connections=max_connections, keepalive=keepalive, ca_path=ca_path)

#: Error bodies of retried attempts are read (to free the connection) up to this size.
_DISCARD_LIMIT = 1 << 16

#: Makes a span for attempt ``n`` at ``endpoint``: ``(n, endpoint) -> span`` (see telemetry).
AttemptSpans = Callable[[int, str], object]


class Upstream:
    """The process-wide outbound client (one per worker, owned by the server lifespan)."""

    def __init__(self, *, max_connections: int = 1000, keepalive: float = 30.0, ca_path: str | None = None,
                 transport: Transport | None = None, metrics=None) -> None:
        self.transport = transport or default_transport(max_connections=max_connections, keepalive=keepalive,
                                                        ca_path=ca_path)
        self.metrics = metrics

    async def start(self) -> None:
        await self.transport.start()

    async def close(self) -> None:
        await self.transport.close()

    def call(self, pool: Pool, urls: Sequence[str] | None, *, headers: dict[str, str], body: bytes | None,
             timeout: TimeoutPolicy, policy: CallPolicy = SINGLE, method: str = "POST", path: str = "",
             deadline: float | None = None, attempt_spans: AttemptSpans | None = None,
             target: str | None = None) -> contextlib.AbstractAsyncContextManager[Response]:
        """Call ``pool``; ``async with`` it to get the accepted response with its body unread.

        ``urls[i]`` is the full URL for endpoint ``i`` (model providers, whose path
        depends on the model); without ``urls`` it is the endpoint's base + ``path``.
        ``timeout``: the whole call (all attempts) and the connect limit; ``deadline``
        (event-loop time) an outer bound owned by the caller, e.g. an agent chain's.
        Raises :class:`UpstreamError` when no attempt produced a response to give.
        """
        name = target or pool.name
        if policy.attempts == 1 and deadline is None and pool._single is not None:
            # Fast path: exactly one possible attempt, nothing to decide (and, without a
            # concurrency limit, nothing to count: the transport's own context is the call).
            url = urls[0] if urls is not None else pool._single.base + path
            send = self.transport.send(method, url, headers, body, timeout, name)
            return send if pool.max_concurrency is None else _Admitted(pool, send, name, self)
        return _Attempts(self, pool, urls, name, headers, body, timeout, policy, method, path, deadline,
                         attempt_spans)

    def _count(self, pool: Pool, reason: str) -> None:
        """A call refused without being sent (``plano_upstream_rejected_total``)."""
        self._metric("rejected", pool, reason)

    def _count_retry(self, pool: Pool, reason: str) -> None:
        self._metric("retry", pool, reason)

    def _metric(self, name: str, pool: Pool, reason: str) -> None:
        metrics = self.metrics
        if metrics is not None:
            try:
                getattr(metrics, name)(pool.name, reason)
            except Exception:  # metrics must never break a call
                pass


class _Attempts:
    """The attempts of one call, as an async context manager (a class: no generator frame per call).

    ``__aenter__`` admits the call into its pool (``max_concurrency``), then runs attempts until
    one gives a response to accept (or raises); ``__aexit__`` closes that response and settles
    its endpoint's and its pool's books. Admission lives here rather than in a wrapping context
    manager: one coroutine frame fewer on every call that has a policy.
    """

    __slots__ = ("upstream", "pool", "urls", "name", "headers", "body", "timeout", "policy", "method", "path",
                 "deadline", "spans", "endpoint", "inner")

    def __init__(self, upstream: "Upstream", pool: Pool, urls, name: str, headers, body, timeout: TimeoutPolicy,
                 policy: CallPolicy, method: str, path: str, deadline: float | None, spans) -> None:
        self.upstream = upstream
        self.pool = pool
        self.urls = urls
        self.name = name
        self.headers = headers
        self.body = body
        self.timeout = timeout
        self.policy = policy
        self.method = method
        self.path = path
        self.deadline = deadline
        self.spans = spans if spans is not None and (policy.attempts > 1 or len(pool.endpoints) > 1) else None
        self.endpoint: Endpoint | None = None
        self.inner = None

    async def __aenter__(self) -> Response:
        pool = self.pool
        if pool.max_concurrency is None:
            return await self._attempt()
        if not pool.enter():
            self.upstream._count(pool, "overloaded")
            raise UpstreamError("overloaded", self.name, retry_after=1.0)
        try:
            return await self._attempt()
        except BaseException:
            pool.leave()
            raise

    async def _attempt(self) -> Response:
        pool, policy, timeout, name = self.pool, self.policy, self.timeout, self.name
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout.total if timeout.total else None
        if self.deadline is not None:
            end = self.deadline if end is None else min(end, self.deadline)
        tried: list[Endpoint] = []
        unreachable: list[Endpoint] = []
        attempt = 0
        while True:
            attempt += 1
            endpoint = pool.pick(tried, unreachable)
            if endpoint is None:
                self.upstream._count(pool, "open")
                raise UpstreamError("open", name, retry_after=pool.retry_after())
            tried.append(endpoint)
            # The first attempt without a caller deadline gets the call's own (precomputed) timeout.
            attempt_timeout = timeout if attempt == 1 and self.deadline is None and policy.attempt_timeout is None \
                else _attempt_timeout(timeout, policy, end, loop, name)
            url = self.urls[endpoint.index] if self.urls is not None else endpoint.base + self.path
            span = self.spans(attempt, endpoint.base) if self.spans is not None else None
            breaker = endpoint.breaker
            inner = self.upstream.transport.send(self.method, url, self.headers, self.body, attempt_timeout, name)
            endpoint.in_flight += 1
            try:
                resp = await inner.__aenter__()
            except UpstreamError as err:
                endpoint.in_flight -= 1
                if breaker is not None:
                    breaker.failure()
                if err.kind == "connect":
                    unreachable.append(endpoint)
                _end_span(span, err.kind, None)
                delay = _delay(policy, attempt, None, end, loop) if policy.retries_error(err.kind) else None
                if delay is None:
                    raise
                self.upstream._count_retry(pool, err.kind)
                if delay > 0:
                    await asyncio.sleep(delay)
                continue
            except BaseException:
                endpoint.in_flight -= 1
                if breaker is not None:
                    breaker.probing = False  # a cancelled probe must not keep the breaker half-open forever
                _end_span(span, "cancelled", None)
                raise
            status = resp.status
            if status in policy.statuses:
                wait = retry_after_seconds(resp.headers.get("retry-after")) if status in (429, 503) else None
                more_endpoints = len(tried) < len(pool.endpoints)
                delay = _delay(policy, attempt, None if more_endpoints else wait, end, loop)
                if delay is not None:  # else this answer is final: the client gets it as it is
                    try:
                        await _discard(resp)
                    finally:
                        endpoint.in_flight -= 1
                        await inner.__aexit__(None, None, None)
                    if breaker is not None:
                        breaker.failure() if status >= 500 else breaker.success()
                    _end_span(span, "retry", status)
                    self.upstream._count_retry(pool, f"status_{status}")
                    if delay > 0:
                        await asyncio.sleep(delay)
                    continue
            # Accepted: from here the caller owns the response; nothing is retried any more.
            if breaker is not None:
                breaker.failure() if status >= 500 else breaker.success()
            if span is not None:
                _end_span(span, "ok" if status < 400 else "error", status)
            self.endpoint = endpoint
            self.inner = inner
            return resp

    async def __aexit__(self, exc_type, exc, tb):
        endpoint = self.endpoint
        try:
            return await self.inner.__aexit__(exc_type, exc, tb)
        except UpstreamError:
            if endpoint.breaker is not None:
                endpoint.breaker.failure()  # the body broke mid-way
            raise
        finally:
            endpoint.in_flight -= 1
            if self.pool.max_concurrency is not None:
                self.pool.leave()


class _Admitted:
    """Counts a call into its pool for as long as the inner context (the attempts) is open.

    A class, not a generator-based context manager: it sits on every outbound call."""

    __slots__ = ("inner", "name", "pool", "upstream")

    def __init__(self, pool: Pool, inner, name: str, upstream: "Upstream") -> None:
        self.pool = pool
        self.inner = inner
        self.name = name
        self.upstream = upstream

    async def __aenter__(self) -> Response:
        pool = self.pool
        if not pool.enter():
            self.upstream._count(pool, "overloaded")
            raise UpstreamError("overloaded", self.name, retry_after=1.0)
        try:
            return await self.inner.__aenter__()
        except BaseException:
            pool.leave()
            raise

    async def __aexit__(self, exc_type, exc, tb):
        try:
            return await self.inner.__aexit__(exc_type, exc, tb)
        finally:
            self.pool.leave()


def _delay(policy: CallPolicy, attempt: int, retry_after: float | None, end: float | None, loop) -> float | None:
    """Seconds to wait before attempt ``attempt + 1``; None when there is none to make (attempts
    used up, ``Retry-After`` longer than ``max_backoff``, or no time left before the deadline)."""
    if attempt >= policy.attempts:
        return None
    if retry_after is not None:
        if retry_after > policy.max_backoff:
            return None
        delay = retry_after
    else:
        delay = policy.delay(attempt)
    if end is not None and loop.time() + delay >= end:
        return None
    return delay


def _attempt_timeout(timeout: TimeoutPolicy, policy: CallPolicy, end: float | None, loop, name: str) -> TimeoutPolicy:
    """The time one attempt may take: what is left of the call, capped by ``attempt_timeout``."""
    if end is None and policy.attempt_timeout is None:
        return timeout
    left = end - loop.time() if end is not None else None
    if left is not None and left <= 0:
        raise UpstreamError("timeout", name)
    limits = [t for t in (left, policy.attempt_timeout) if t is not None]
    total = min(limits)
    if total == timeout.total:
        return timeout
    return timeout_policy(total, min(timeout.connect, total))


async def _discard(resp: Response) -> None:
    try:
        await asyncio.wait_for(resp.read(), 2.0)
    except (UpstreamError, asyncio.TimeoutError):
        pass


def _end_span(span, outcome: str, status: int | None) -> None:
    if span is None:
        return
    try:
        span.set("plano.attempt.outcome", outcome)
        span.end(status)
    except Exception:
        pass
