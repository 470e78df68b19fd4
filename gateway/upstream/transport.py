"""The transport boundary: plano's own request/response types, and how bytes reach a server.

Everything above this module (the retry loop, relays, filters, the LLM and agent
call units) sees only :class:`Response` — a status, headers, ``read()`` and
``chunks()`` — never aiohttp objects, so a test can swap in
:class:`MemoryTransport` and the HTTP library could change without touching logic
(the httpx design: transports separated from the client).

The production transport is :class:`gateway.upstream.h1.H1Transport`, plano's own
HTTP/1.1 client: aiohttp's client was about half of the Python executed per proxied
request, and h1 took plano from below the aiohttp-based minimal-proxy floor to above
it (bench/README.md, "h1"). :class:`AiohttpTransport` stays as the opt-in
(``PLANO_UPSTREAM_TRANSPORT=aiohttp``) for what h1 does not do, such as an HTTP proxy:
one ``aiohttp.ClientSession`` per worker, created at start-up and kept for the
process's life. (aiohttp had been chosen over httpx: under concurrency on loopback
httpx's pool collapsed on this hardware.)

Transport errors are classified here, once, into :class:`UpstreamError` kinds.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

import aiohttp


class UpstreamError(Exception):
    """An outbound call failed before or while its response arrived.

    ``kind``:
      - ``connect``: refused, DNS, TLS — no connection, so the upstream never saw the request;
      - ``reset``: the connection closed or reset after the request went out and before any
        response: the upstream may have seen it (a killed process, a stale keep-alive);
      - ``timeout``: no (complete) answer in time;
      - ``broken``: the connection died mid-body;
      - ``open``: every endpoint's circuit breaker is open (failing fast, nothing sent);
      - ``overloaded``: the upstream's ``max_concurrency`` is reached (nothing sent).

    ``status`` is what the gateway answers the client with: 502 connect/broken,
    504 timeout, 503 open/overloaded (with ``retry_after`` seconds when known).
    """

    _TEXT = {
        "connect": "could not connect to upstream {}",
        "reset": "connection to upstream {} was closed before it answered",
        "timeout": "upstream {} did not answer in time",
        "broken": "connection to upstream {} broke mid-response",
        "open": "upstream {} is unavailable (circuit breaker open)",
        "overloaded": "upstream {} is at its concurrency limit",
    }
    _STATUS = {"timeout": 504, "open": 503, "overloaded": 503}

    def __init__(self, kind: str, target: str, detail: str = "", *, retry_after: float | None = None) -> None:
        self.kind = kind
        self.target = target
        self.status = self._STATUS.get(kind, 502)
        self.retry_after = retry_after
        text = self._TEXT[kind].format(target)
        super().__init__(f"{text}{': ' + detail if detail else ''}")

    def response_headers(self) -> tuple[tuple[bytes, bytes], ...]:
        """``Retry-After`` for a 503 the client may retry later."""
        if self.retry_after is None:
            return ()
        return ((b"retry-after", str(max(1, int(self.retry_after + 0.999))).encode()),)


@dataclass(frozen=True, slots=True)
class TimeoutPolicy:
    """Timeouts for one kind of call (``total`` for the whole response, ``connect``);
    built once at config load, reused per request."""

    total: float | None
    connect: float
    aiohttp: aiohttp.ClientTimeout


def timeout_policy(total: float | None, connect: float = 5.0) -> TimeoutPolicy:
    return TimeoutPolicy(total, connect, aiohttp.ClientTimeout(total=total, sock_connect=connect))


class Response:
    """An upstream's answer with its body unread: ``status``, ``headers`` (case-insensitive
    mapping), ``await read()`` for the whole body, ``chunks()`` to stream it."""

    __slots__ = ("headers", "origin", "status", "_raw")

    def __init__(self, status: int, headers: Mapping[str, str], raw) -> None:
        self.status = status
        self.headers = headers
        self._raw = raw
        #: Set by a caller that chose among several upstreams (the LLM call unit: the model that answered).
        self.origin = None

    async def read(self) -> bytes:
        return await self._raw.read()

    def chunks(self) -> AsyncIterator[bytes]:
        return self._raw.content.iter_any()

    def with_header(self, name: str, value: str) -> None:
        """Add a header the client should see (e.g. ``x-plano-model``) to this response."""
        from multidict import CIMultiDict

        headers = CIMultiDict(self.headers)
        headers[name] = value
        self.headers = headers


class Transport:
    """Sends one request; yields a :class:`Response` or raises :class:`UpstreamError`.

    Errors raised while the caller reads the body inside the ``async with`` block are
    classified too, so callers only ever see :class:`UpstreamError`.
    """

    async def start(self) -> None:  # pragma: no cover - trivial
        pass

    async def close(self) -> None:  # pragma: no cover - trivial
        pass

    def send(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
             timeout: TimeoutPolicy, target: str) -> contextlib.AbstractAsyncContextManager[Response]:
        raise NotImplementedError


#: Dropped connections: before a response "reset", after it "broken" (ClientConnectorError,
#: a subclass of ClientOSError, is caught first as "connect").
_DROPPED = (
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
    ConnectionError,
)


class AiohttpTransport(Transport):
    """One pooled aiohttp session per worker (``PLANO_UPSTREAM_TRANSPORT=aiohttp``)."""

    def __init__(self, *, max_connections: int = 1000, keepalive: float = 30.0, ca_path: str | None = None) -> None:
        self._max_connections = max_connections
        self._keepalive = keepalive
        self._ca_path = ca_path
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        ssl_ctx: ssl.SSLContext | bool = True
        if self._ca_path:
            ssl_ctx = ssl.create_default_context(cafile=self._ca_path)
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            limit_per_host=0,
            keepalive_timeout=self._keepalive,
            ttl_dns_cache=300,
            ssl=ssl_ctx,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None),
            skip_auto_headers=("User-Agent",),
            # One session serves every client: an upstream's Set-Cookie must never ride along on
            # another client's request (and a jar costs a cookie filter per request).
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=True,
            read_bufsize=2**16,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("transport used before start()")
        return self._session

    def send(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
             timeout: TimeoutPolicy, target: str) -> "_AiohttpCall":
        return _AiohttpCall(self.session, method, url, headers, body, timeout, target)


class _AiohttpCall:
    """One aiohttp request as an async context manager that speaks only :class:`UpstreamError`.

    A class rather than a generator-based context manager: it sits on every outbound call, and
    the generator frame plus contextlib's wrapper cost ~3 us a request (measured with
    ``bench/listener_micro.py``). Errors raised while the caller reads the body inside the
    ``async with`` block arrive in ``__aexit__`` and are classified there too.
    """

    __slots__ = ("session", "method", "url", "headers", "body", "timeout", "target", "_cm")

    def __init__(self, session: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str],
                 body: bytes | None, timeout: TimeoutPolicy, target: str) -> None:
        self.session = session
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
        self.target = target
        self._cm = None

    async def __aenter__(self) -> Response:
        cm = self.session.request(self.method, self.url, data=self.body, headers=self.headers,
                                  timeout=self.timeout.aiohttp, allow_redirects=False)
        try:
            resp = await cm.__aenter__()
        except UpstreamError:
            raise
        except BaseException as exc:
            translated = _classify(exc, self.target, responded=False)
            if translated is exc:
                raise
            raise translated from exc
        self._cm = cm
        return Response(resp.status, resp.headers, resp)

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        try:
            await self._cm.__aexit__(exc_type, exc, tb)
        except UpstreamError:
            raise
        except BaseException as closing:
            translated = closing if closing is exc else _classify(closing, self.target, responded=True)
            if translated is closing:
                raise
            raise translated from closing
        if exc is not None and not isinstance(exc, UpstreamError):
            translated = _classify(exc, self.target, responded=True)
            if translated is not exc:
                raise translated from exc
        return False


def _classify(exc: BaseException, target: str, *, responded: bool) -> BaseException:
    """The :class:`UpstreamError` for an aiohttp/OS error (``exc`` itself for anything else:
    cancellation, the caller's own errors)."""
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return UpstreamError("timeout", target)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return UpstreamError("broken", target, short(exc))
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamError("broken" if responded else "connect", target, short(exc))
    if isinstance(exc, _DROPPED):
        return UpstreamError("broken" if responded else "reset", target, short(exc))
    if isinstance(exc, aiohttp.ClientResponseError):
        return UpstreamError("broken", target, short(exc))
    if isinstance(exc, aiohttp.ClientError):
        return UpstreamError("connect", target, short(exc))
    return exc


# ----------------------------------------------------------------------------- in memory


@dataclass(slots=True)
class MemoryRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None


class _MemoryBody:
    __slots__ = ("content", "_data")

    def __init__(self, data: bytes | list[bytes]) -> None:
        self._data = data if isinstance(data, list) else [data]
        self.content = self

    async def read(self) -> bytes:
        return b"".join(self._data)

    async def iter_any(self):
        for piece in self._data:
            yield piece


#: What a memory handler returns: (status, headers, body or body pieces).
MemoryAnswer = tuple[int, Mapping[str, str], "bytes | list[bytes]"]


class MemoryTransport(Transport):
    """A transport for unit tests: ``handler(MemoryRequest)`` answers, or raises
    :class:`UpstreamError` to simulate a connect error or a timeout."""

    def __init__(self, handler: Callable[[MemoryRequest], Awaitable[MemoryAnswer]]) -> None:
        self.handler = handler
        self.requests: list[MemoryRequest] = []

    @contextlib.asynccontextmanager
    async def send(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
                   timeout: TimeoutPolicy, target: str) -> AsyncIterator[Response]:
        request = MemoryRequest(method, url, dict(headers), body)
        self.requests.append(request)
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancel that lands
            # as the handler completes
            async with asyncio.timeout(timeout.total or None):
                answer = await self.handler(request)
        except TimeoutError:
            raise UpstreamError("timeout", target) from None
        status, headers_out, data = answer
        from multidict import CIMultiDict

        yield Response(status, CIMultiDict(headers_out), _MemoryBody(data))


def short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]
