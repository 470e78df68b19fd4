"""plano's own HTTP/1.1 client: the production :class:`~gateway.upstream.transport.Transport`.

Why not aiohttp's client (still available: ``PLANO_UPSTREAM_TRANSPORT=aiohttp``): with
plano's own per-request work already tuned to ~600 Python line events, aiohttp's
``ClientSession._request`` and its request/response/stream/connector objects were ~900
more, about half of everything plano executed for a proxied request (line-level profile,
issue 11). plano needs none of what those lines buy — cookies, redirects, proxies,
multipart, URL normalisation, tracing hooks — only: write one request, parse one answer,
keep the socket. This module does that with an ``asyncio.Protocol`` per connection and
llhttp (``httptools``, which uvicorn already uses for the inbound side):

* one ``transport.write()`` of head + body per request;
* parsing in C; the answer's headers, body and completion usually arrive in one
  ``data_received``, so a non-streaming call awaits a single future;
* a per-origin keep-alive pool, reused LIFO (the warmest socket), ``max_connections``
  open sockets in all (callers wait when full), idle sockets closed after ``keepalive``;
* a request that meets a dead REUSED socket before any answer byte (the server closed
  it while idle, the race every keep-alive client has) is sent once more on a fresh
  connection: the server never saw it, so even a POST is safe to resend;
* errors classified once, into :class:`UpstreamError` kinds, as the aiohttp transport does.

Measured effect: ``bench/floor_ratio.py --policy --pin`` (bench/README.md).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import os
import socket
import ssl
import zlib
from urllib.parse import quote, unquote, urlsplit

import httptools
from multidict import CIMultiDict

from gateway.upstream.transport import Response, TimeoutPolicy, Transport, UpstreamError, short

#: Unread body bytes above which the socket stops being read (resumed once the reader drains
#: them): a slow client behind a fast upstream holds at most this much per stream in plano.
HIGH_WATER = 1 << 16

#: How long a resolved host name is reused (aiohttp's ``ttl_dns_cache`` was 300 s too).
DNS_TTL = 300.0

_DEFAULT_PORT = {"http": 80, "https": 443}

#: Request headers the client sets itself (a caller's are dropped: the length is the body's,
#: and plano never sends a chunked request).
_DROPPED = frozenset({"content-length", "transfer-encoding"})

#: Methods that carry no body by default (no ``Content-Length: 0`` for them, as aiohttp).
_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "TRACE"})

#: Characters left as they are in a request target (everything else is percent-encoded).
_SAFE_PATH = "/:@!$&'()*+,;=-._~%?[]"


#: ``TCP_INFO`` (Linux) and its state for a socket closed by an RST (see ``_Conn._settle``).
_TCP_INFO = getattr(socket, "TCP_INFO", None)
_TCP_CLOSE = 7


class _Stale(Exception):
    """A reused connection died before any answer byte: resend once on a fresh one."""


class H1Transport(Transport):
    """Keep-alive HTTP/1.1 over asyncio protocols; ``http://`` and ``https://`` upstreams.

    ``max_connections`` bounds the open sockets of this worker (all origins together);
    ``keepalive`` is how long an idle one is kept; ``ca_path`` replaces the system CAs.
    """

    def __init__(self, *, max_connections: int = 1000, keepalive: float = 30.0, ca_path: str | None = None) -> None:
        self.max_connections = max_connections
        self.keepalive = keepalive
        self.ca_path = ca_path
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ssl: ssl.SSLContext | None = None
        #: origin key -> idle connections, oldest first (reused from the end: LIFO).
        self._idle: dict[tuple, list[_Conn]] = {}
        #: sockets open or being opened (idle + busy), against ``max_connections``.
        self.open = 0
        self._waiters: collections.deque[asyncio.Future] = collections.deque()
        self._urls: dict[str, tuple] = {}
        self._dns: dict[tuple[str, int], tuple[float, list]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._conns: set[_Conn] = set()

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self._conns):
            conn.discard()
        self._idle.clear()
        for fut in self._waiters:
            if not fut.done():
                fut.cancel()
        self._waiters.clear()

    def send(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
             timeout: TimeoutPolicy, target: str) -> "_Call":
        if self.loop is None:
            raise RuntimeError("transport used before start()")
        return _Call(self, method, url, headers, body, timeout, target)

    # ------------------------------------------------------------------ the pool

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            ctx = ssl.create_default_context(cafile=self.ca_path) if self.ca_path else ssl.create_default_context()
            ctx.set_alpn_protocols(["http/1.1"])
            self._ssl = ctx
        return self._ssl

    def _take_idle(self, key: tuple):
        """The most recently released live connection to ``key``, or None."""
        idle = self._idle.get(key)
        if not idle:
            return None
        oldest_ok = self.loop.time() - self.keepalive
        while idle:
            conn = idle.pop()
            if conn.closed or conn.transport.is_closing() or conn.idle_since < oldest_ok:
                conn.discard()
                continue
            return conn
        return None

    async def _connect(self, call: "_Call", info: tuple, fresh: bool = False) -> "_Conn":
        """A connection for ``call``: a new one, or (after waiting for room under
        ``max_connections``) an idle one another call just released, unless ``fresh``."""
        while self.open >= self.max_connections:
            if self._evict_idle():
                break
            fut = self.loop.create_future()
            self._waiters.append(fut)
            call.pending = fut
            try:
                await fut
            except BaseException:
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    self._wake()  # woken, then cancelled: pass the wake-up on
                raise
            finally:
                call.pending = None
            if not fresh:
                conn = self._take_idle(info[0])
                if conn is not None:
                    return conn
        self.open += 1
        try:
            conn = await self._dial(call, info)
        except BaseException:
            self.open -= 1
            self._wake()
            raise
        conn.counted = True  # the slot reserved above is now this connection's
        if conn.closed:
            self._forget(conn)
            raise UpstreamError("connect", call.target, "connection closed as it opened")
        return conn

    async def _dial(self, call: "_Call", info: tuple) -> "_Conn":
        key, _host_header, _path, _auth = info
        scheme, host, port = key
        loop = self.loop
        limit = call.timeout.connect
        if call.deadline is not None:
            left = call.deadline - loop.time()
            if left <= 0:
                raise UpstreamError("timeout", call.target)
            limit = min(limit, left) if limit else left
        tls = self._ssl_context() if scheme == "https" else None
        try:
            return await asyncio.wait_for(self._dial_addresses(key, host, port, tls), limit)
        except asyncio.TimeoutError:
            raise UpstreamError("timeout", call.target, "connecting") from None
        except UpstreamError:
            raise
        except OSError as exc:  # refused, unreachable, DNS, TLS verification
            raise UpstreamError("connect", call.target, short(exc)) from None

    async def _dial_addresses(self, key: tuple, host: str, port: int, tls):
        loop = self.loop
        addresses = await self._resolve(host, port)
        error: OSError | None = None
        for family, address in addresses:
            try:
                started = loop.time()
                _tr, conn = await loop.create_connection(
                    lambda: _Conn(self, key), address[0], address[1], family=family,
                    ssl=tls, server_hostname=host if tls is not None else None)
                conn.rtt = loop.time() - started
                return conn
            except OSError as exc:
                error = exc
        raise error or OSError(f"no address for {host}")

    async def _resolve(self, host: str, port: int) -> list:
        """``host``'s addresses, cached for :data:`DNS_TTL` (an IP literal as it is)."""
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
            return [(socket.AF_INET6 if ":" in host else socket.AF_INET, (host, port))]
        except OSError:
            pass
        now = self.loop.time()
        cached = self._dns.get((host, port))
        if cached is not None and cached[0] > now:
            return cached[1]
        infos = await self.loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = []
        for family, _type, _proto, _name, sockaddr in infos:
            item = (family, sockaddr[:2])
            if item not in addresses:
                addresses.append(item)
        if len(self._dns) > 1024:
            self._dns.clear()
        self._dns[(host, port)] = (now + DNS_TTL, addresses)
        return addresses

    def _evict_idle(self) -> bool:
        """Close the oldest idle connection of any origin to make room; False when there is none."""
        for idle in self._idle.values():
            while idle:
                conn = idle.pop(0)
                if not conn.closed:
                    conn.discard()
                    return True
        return False

    def _release(self, conn: "_Conn") -> None:
        """``conn`` finished an exchange cleanly: keep it for the next request to its origin."""
        conn.idle_since = self.loop.time()
        idle = self._idle.get(conn.key)
        if idle is None:
            idle = self._idle[conn.key] = []
        idle.append(conn)
        conn.reused = True
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self.keepalive, self._sweep)
        if self._waiters:
            self._wake()

    def _forget(self, conn: "_Conn") -> None:
        """``conn`` is closed (or closing): its slot is free."""
        if conn.counted:
            conn.counted = False
            self.open -= 1
            self._conns.discard(conn)
            if self._waiters:
                self._wake()

    def _wake(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def _sweep(self) -> None:
        """Close connections idle for longer than ``keepalive`` (runs while any are idle)."""
        self._sweeper = None
        oldest_ok = self.loop.time() - self.keepalive
        left = False
        for key, idle in list(self._idle.items()):
            keep = [c for c in idle if not c.closed and c.idle_since >= oldest_ok]
            for conn in idle:
                if conn not in keep:
                    conn.discard()
            if keep:
                self._idle[key] = keep
                left = True
            else:
                del self._idle[key]
        if left:
            self._sweeper = self.loop.call_later(max(1.0, self.keepalive / 2), self._sweep)

    def _url(self, url: str, target: str) -> tuple:
        """``(origin key, Host header, request target, basic auth)`` for ``url``, cached per URL
        (a worker calls the same few URLs over and over)."""
        info = self._urls.get(url)
        if info is not None:
            return info
        parts = urlsplit(str(url))  # a str, or a yarl.URL kept encoded as signed (Bedrock's SigV4)
        scheme = parts.scheme.lower()
        host = parts.hostname
        if scheme not in _DEFAULT_PORT or not host:
            raise UpstreamError("connect", target, "unsupported URL (http:// and https:// only)")
        try:
            port = parts.port or _DEFAULT_PORT[scheme]
        except ValueError:
            raise UpstreamError("connect", target, "invalid port in URL") from None
        host_header = f"[{host}]" if ":" in host else host
        if port != _DEFAULT_PORT[scheme]:
            host_header = f"{host_header}:{port}"
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        if not path.isascii() or any(c in path for c in " \"<>\\^`{|}\t\r\n"):
            path = quote(path, safe=_SAFE_PATH)
        auth = None
        if parts.username is not None:
            creds = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode("latin-1")
            auth = "Basic " + base64.b64encode(creds).decode("ascii")
        info = ((scheme, host, port), host_header, path, auth)
        if len(self._urls) > 4096:
            self._urls.clear()
        self._urls[url] = info
        return info


class _Call:
    """One request: the async context manager ``send`` returns, and the body reader that the
    :class:`Response` wraps (``read()``, ``content.iter_any()``).

    A class, not a generator-based context manager: it sits on every outbound call (the
    ~3 us a request that ``contextlib`` costs, bench/listener_micro.py).
    """

    __slots__ = ("owner", "method", "url", "headers", "body", "timeout", "target", "deadline", "timer",
                 "conn", "pending", "expired", "_data")

    def __init__(self, owner: H1Transport, method: str, url: str, headers, body, timeout: TimeoutPolicy,
                 target: str) -> None:
        self.owner = owner
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
        self.target = target
        self.deadline = None
        self.timer = None
        self.conn: _Conn | None = None
        self.pending: asyncio.Future | None = None
        self.expired = False
        self._data: bytes | None = None

    @property
    def content(self) -> "_Call":
        return self

    async def __aenter__(self) -> Response:
        owner = self.owner
        loop = owner.loop
        info = owner._url(self.url, self.target)
        payload = self._payload(info)
        if self.timeout.total is not None:
            self.deadline = loop.time() + self.timeout.total
            self.timer = loop.call_at(self.deadline, self._expire)
        try:
            conn = owner._take_idle(info[0])
            if conn is None:
                conn = await owner._connect(self, info)
            while True:
                self.conn = conn
                conn.begin(self)
                conn.transport.write(payload)
                try:
                    await conn.wait()
                    break
                except _Stale:
                    # The server closed this kept-alive socket before reading the request.
                    conn.call = None
                    self.conn = None
                    conn = await owner._connect(self, info, fresh=True)
        except BaseException:
            self._finish()
            raise
        return Response(conn.status, conn.headers, self)

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        self._finish()
        return False

    def _finish(self) -> None:
        """End the exchange: the connection back to the pool when its answer arrived whole and it
        may be kept, otherwise closed (an abandoned body would arrive into the next request)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        conn = self.conn
        if conn is None:
            return
        self.conn = None
        if self._data is None and conn.done and conn.error is None:
            self._data = conn.take()
        conn.call = None
        if conn.done and conn.keep_alive and not conn.closed and conn.error is None:
            if conn.paused:
                conn.resume()
            conn.reset()
            self.owner._release(conn)
        else:
            conn.discard()

    def _expire(self) -> None:
        """The total timeout: fail whatever the call waits on and drop its connection."""
        self.timer = None
        self.expired = True
        error = UpstreamError("timeout", self.target)
        if self.pending is not None and not self.pending.done():
            self.pending.set_exception(error)
        conn = self.conn
        if conn is not None and not conn.done:
            conn.fail(error)
            conn.discard()

    def _payload(self, info: tuple) -> bytes:
        """Request line, headers and body, for one ``write()``."""
        _key, host_header, path, auth = info
        lines = [f"{self.method} {path} HTTP/1.1\r\n"]
        has_host = has_agent = has_auth = False
        for name, value in self.headers.items():
            low = name.lower()
            if low in _DROPPED:
                continue
            if low == "host":
                has_host = True
            elif low == "user-agent":
                has_agent = True
            elif low == "authorization":
                has_auth = True
            lines.append(f"{name}: {value}\r\n")
        if not has_host:
            lines.append(f"Host: {host_header}\r\n")
        if not has_agent:
            lines.append("User-Agent: plano\r\n")
        if auth is not None and not has_auth:
            lines.append(f"Authorization: {auth}\r\n")
        body = self.body
        if body is not None or self.method not in _BODYLESS:
            if body is None:
                body = b""
            elif isinstance(body, str):
                body = body.encode("utf-8")
            lines.append(f"Content-Length: {len(body)}\r\n\r\n")
            count = len(lines) + 1
        else:
            lines.append("\r\n")
            count = len(lines)
        head = "".join(lines)
        if head.count("\n") != count or head.count("\r") != count:
            # A CR or LF inside a header would start a header (or a request) of its own. The
            # message names no header: values may be credentials.
            raise ValueError("a request header contains a line break")
        try:
            data = head.encode("latin-1")
        except UnicodeEncodeError:
            data = head.encode("utf-8")
        return data + body if body else data

    # ------------------------------------------------------------------ the body

    async def read(self) -> bytes:
        if self._data is not None:
            return self._data
        conn = self.conn
        if conn is None:
            return b""
        conn.buffer_all = True
        if conn.paused:
            conn.resume()
        while not conn.done:
            if conn.error is not None:
                raise conn.error
            await self._wait(conn)
        if conn.error is not None:
            raise conn.error
        self._data = conn.take()
        return self._data

    async def iter_any(self):
        conn = self.conn
        if conn is None:
            if self._data:
                yield self._data
            return
        while True:
            if conn.chunks:
                yield conn.take()
            elif conn.error is not None:
                raise conn.error
            elif conn.done:
                return
            else:
                await self._wait(conn)

    async def _wait(self, conn: "_Conn") -> None:
        try:
            await conn.wait()
        except asyncio.CancelledError:
            if self.expired:
                raise UpstreamError("timeout", self.target) from None
            conn.discard()
            raise


class _Conn(asyncio.Protocol):
    """One socket to one origin, and the parser state of the answer it is receiving.

    The per-answer state lives here rather than on a response object: llhttp's callbacks are
    bound to the object the parser was made with, and one more hop per callback is one more
    Python call per header and per body piece.
    """

    __slots__ = ("owner", "key", "transport", "parser", "closed", "counted", "idle_since", "reused", "call",
                 "status", "raw_headers", "headers", "chunks", "buffered", "done", "error", "keep_alive",
                 "got_bytes", "eof", "waiter", "paused", "buffer_all", "inflate", "encoding", "skip",
                 "until_eof", "head_done", "probe", "rtt")

    def __init__(self, owner: H1Transport, key: tuple) -> None:
        self.owner = owner
        self.key = key
        self.transport = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.counted = False
        self.idle_since = 0.0
        self.reused = False
        self.call = None
        self.waiter = None
        self.paused = False
        self.probe = None
        self.rtt = 0.0
        self.reset()

    def reset(self) -> None:
        """Ready for the next exchange."""
        self.status = 0
        self.raw_headers = []
        self.headers = None
        self.chunks = []
        self.buffered = 0
        self.done = False
        self.error = None
        self.keep_alive = False
        self.got_bytes = False
        self.eof = False
        self.buffer_all = False
        self.inflate = None
        self.encoding = None
        self.skip = False
        self.until_eof = False
        self.head_done = False

    def begin(self, call: _Call) -> None:
        self.call = call

    # asyncio.Protocol

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.owner._conns.add(self)

    def data_received(self, data: bytes) -> None:
        if self.call is None or self.done:
            # Bytes nobody asked for (or after a complete answer): the connection's framing
            # can no longer be trusted.
            self.discard()
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(UpstreamError("broken", self.call.target, f"invalid HTTP response: {short(exc)}"))
            self.discard()
        except UpstreamError as exc:  # raised by a callback (a body that does not decompress)
            self.fail(exc)
            self.discard()

    def eof_received(self):
        self.eof = True
        if self.reused and not self.got_bytes and self.call is not None and _TCP_INFO is not None:
            # Keep the socket (a duplicate descriptor) for a moment to see why it ended: see _settle.
            try:
                sock = self.transport.get_extra_info("socket")
                self.probe = socket.socket(fileno=os.dup(sock.fileno()))
            except (OSError, AttributeError):
                self.probe = None
        return False  # close our side too

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.owner._forget(self)
        self.paused = False
        call = self.call
        if call is not None and not self.done:
            if self.until_eof and self.eof and exc is None:
                self._complete()  # a close-delimited body ends here
            elif self.got_bytes:
                self.fail(UpstreamError("broken", call.target,
                                        short(exc) if exc else "connection closed mid-response"))
            elif self.reused and isinstance(exc, (ConnectionResetError, BrokenPipeError)):
                # An RST before any answer on a kept-alive socket: the server's socket was closed
                # with our request unread (see _settle).
                self.fail(_Stale())
            elif self.reused and exc is None and self.probe is not None:
                self.owner.loop.call_later(min(1.0, max(0.01, 2 * self.rtt)), self._settle)
                return
            else:
                self.fail(UpstreamError("reset", call.target, short(exc) if exc else "connection closed"))
        self._close_probe()

    # llhttp callbacks

    def on_message_begin(self) -> None:
        if self.done:
            self.keep_alive = False  # a second answer to one request: never reuse this socket

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        if self.done:
            return
        parser = self.parser
        status = parser.get_status_code()
        if status < 200 and status != 101:
            self.raw_headers = []  # 1xx: an interim answer; the real one follows
            self.skip = True
            return
        headers = CIMultiDict(self.raw_headers)
        self.raw_headers = []
        self.status = status
        self.keep_alive = parser.should_keep_alive()
        method = self.call.method
        if "content-length" not in headers and "chunked" not in headers.get("transfer-encoding", "").lower() \
                and status not in (204, 304) and method != "HEAD":
            self.until_eof = True  # the body ends when the server closes the connection
            self.keep_alive = False
        encoding = headers.get("content-encoding")
        if encoding is not None:
            encoding = encoding.strip().lower()
            if encoding in ("gzip", "x-gzip", "deflate"):
                # plano asks for identity; a server that compresses anyway is decoded here so
                # callers (JSON parsers, SSE relays) see plain bytes.
                self.inflate = zlib.decompressobj(47 if encoding != "deflate" else 15)
                self.encoding = encoding
                del headers["content-encoding"]
                headers.popall("content-length", None)
        self.headers = headers
        self.head_done = True
        if method == "HEAD":
            self.keep_alive = False  # llhttp would wait for a body; never reuse after HEAD
            self._complete()
            return
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self.done:
            return
        if self.inflate is not None:
            body = self._decompress(body)
            if not body:
                return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.buffer_all and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_message_complete(self) -> None:
        if self.skip:  # the end of a 1xx
            self.skip = False
            return
        if self.done or not self.head_done:
            return
        self._complete()

    # internals

    def _settle(self) -> None:
        """A kept-alive socket ended with a clean FIN before any answer byte: was the request read?

        A server that closes an idle socket sends its FIN before our request arrives; its kernel
        then answers the request's bytes with an RST (Linux and BSDs do, for data reaching a
        closed socket), so our socket goes from CLOSE_WAIT to CLOSE within about one round trip.
        A server that read the request and then closed (a crash, a deliberate drop) sends no RST.
        Only the first is the stale keep-alive race, and only it is resent (the server never saw
        the request, so even a POST is safe); the second stays ``reset``, left to the caller's
        retry policy like any request the upstream may have processed. aiohttp resends neither
        for POST. The wait is twice the connection's connect time (10 ms to 1 s), paid only by a
        request that failed this way.
        """
        state = None
        try:
            state = self.probe.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 1)[0]
        except (OSError, AttributeError):
            pass
        self._close_probe()
        if self.call is None or self.done:
            return
        if state == _TCP_CLOSE:
            self.fail(_Stale())
        else:
            self.fail(UpstreamError("reset", self.call.target, "connection closed"))

    def _close_probe(self) -> None:
        probe = self.probe
        if probe is not None:
            self.probe = None
            probe.close()

    def _decompress(self, body: bytes) -> bytes:
        try:
            return self.inflate.decompress(body)
        except zlib.error:
            if self.encoding == "deflate" and not self.buffered:
                # "deflate" is meant to be zlib-wrapped; some servers send it raw.
                self.inflate = zlib.decompressobj(-15)
                self.encoding = None
                try:
                    return self.inflate.decompress(body)
                except zlib.error:
                    pass
            raise UpstreamError("broken", self.call.target, "response body does not decompress") from None

    def _complete(self) -> None:
        if self.inflate is not None:
            try:
                rest = self.inflate.flush()
            except zlib.error:
                rest = b""
            if rest:
                self.chunks.append(rest)
                self.buffered += len(rest)
        self.done = True
        self.skip = False
        call = self.call
        if call is not None and call.timer is not None and self.head_done:
            call.timer.cancel()
            call.timer = None
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def fail(self, error: BaseException) -> None:
        if self.error is None and not self.done:
            self.error = error
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    async def wait(self) -> None:
        """Until the next event: the head, more body, its end, or a failure (the caller checks
        which, and whether it needs to wait again)."""
        if self.error is not None:
            raise self.error
        waiter = self.waiter = self.owner.loop.create_future()
        try:
            await waiter
        finally:
            self.waiter = None
        if self.error is not None and not (self.head_done and self.chunks):
            raise self.error

    def take(self) -> bytes:
        """The unread body so far."""
        chunks = self.chunks
        if not chunks:
            return b""
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.chunks = []
        self.buffered = 0
        if self.paused:
            self.resume()
        return data

    def resume(self) -> None:
        self.paused = False
        if not self.closed:
            self.transport.resume_reading()

    def discard(self) -> None:
        """Close now, unsent bytes and all; the slot is freed at once."""
        self.closed = True
        self.owner._forget(self)
        if self.transport is not None:
            self.transport.abort()
