"""The HTTP/1.1 connection protocol: uvicorn's httptools protocol plus per-listener client limits.

uvicorn has no request read timeout and no connection cap, so a client that sends
9 of 1,000 declared body bytes (or half a header line) holds its connection, and
the ASGI task waiting for the body, until the client gives up (slowloris). This
subclass adds, per listener (found from the port the connection arrived on):

* ``read_timeout``: once a request starts arriving (the connection opens, or the
  first byte after a keep-alive pause) it must be complete within this time. One
  timer per request that arrives in several reads; none at all for a request that
  arrives in one read (the common case), so the hot path pays two attribute stores.
  On expiry: ``408 Request Timeout`` (OpenAI error envelope, ``connection: close``)
  when part of a request arrived and no response has started; the connection is
  just closed when nothing arrived at all or a response is already on its way.
  Time during which plano itself stopped reading (a pipelined request waiting for
  the one before it, a body buffer the app has not consumed yet) does not count.
* ``keepalive_timeout``: uvicorn's idle keep-alive timer, per listener instead of global.
* ``max_connections``: open client connections per listener in this worker; beyond
  it a new connection is answered ``503`` (``too_many_connections``) and closed.
* ``max_header_bytes`` (default 256 KiB): the request line plus headers; a longer head is
  answered ``431`` (``headers_too_large``) and the connection closed — also while it is
  still arriving, so a client cannot make plano buffer endless header lines. The common
  case costs one addition per read: the head is measured exactly only when the bytes read
  while it arrived exceed the limit.
* **Host**: an HTTP/1.1 request must carry exactly one ``Host`` header of sane characters
  (RFC 9112 §3.2), else ``400`` (``invalid_host``); several ``Host`` headers are how
  request-smuggling and cache-poisoning attempts confuse proxies.

Answers written here (408, 503) are followed by a lingering close: the write side
is shut and whatever the client still sends is read and dropped for up to
:data:`LINGER_SECONDS`, so unread request bytes do not turn the close into a TCP
reset that would destroy the answer before the client reads it.

The subclass relies on a few uvicorn internals; :func:`check_uvicorn` verifies them
at start-up and fails loudly if an upgrade removed one.
"""

from __future__ import annotations

import asyncio
import logging
from operator import itemgetter

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

log = logging.getLogger("plano.server")

#: How long a connection answered 408/503 keeps draining the client's bytes before it is dropped.
LINGER_SECONDS = 2.0
#: At most one log line per listener and kind (408, 503) in this many seconds; the rest are counted in it.
LOG_EVERY_SECONDS = 10.0


class ListenerLimits:
    """One listener's client limits and its open-connection count in this worker."""

    __slots__ = ("name", "read_timeout", "keepalive_timeout", "max_connections", "max_header_bytes", "open",
                 "_logged")

    def __init__(self, name: str, read_timeout: float = 30.0, keepalive_timeout: float = 75.0,
                 max_connections: int | None = None, max_header_bytes: int = 256 * 1024) -> None:
        self.name = name
        self.max_header_bytes = int(max_header_bytes)
        self.read_timeout = float(read_timeout)
        self.keepalive_timeout = float(keepalive_timeout)
        self.max_connections = max_connections
        self.open = 0
        self._logged: dict[int, list] = {}  # status -> [last log time, answers not logged since]

    def note(self, status: int, now: float, message: str, *args) -> None:
        """Log ``message`` for an answer of ``status``, at most once per LOG_EVERY_SECONDS (under attack: thousands)."""
        entry = self._logged.setdefault(status, [float("-inf"), 0])
        if now - entry[0] < LOG_EVERY_SECONDS:
            entry[1] += 1
            return
        more = f" (and {entry[1]} more since the last report)" if entry[1] else ""
        entry[0], entry[1] = now, 0
        log.warning(message + more, *args)

    @classmethod
    def of(cls, listener) -> "ListenerLimits":
        return cls(listener.name, listener.read_timeout, listener.keepalive_timeout, listener.max_connections,
                   getattr(listener, "max_header_bytes", None) or 256 * 1024)


#: Seconds an idle keep-alive connection stays open after a graceful shutdown began, so that a
#: request already on its way is served (with ``Connection: close``) instead of reset.
DRAIN_IDLE_GRACE = 1.0


class PlanoHttpProtocol(HttpToolsProtocol):
    """Use :func:`protocol_for` to get a subclass bound to a config's listeners."""

    limits_by_port: dict[int, ListenerLimits] = {}
    default_limits = ListenerLimits("default")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._limits: ListenerLimits = self.default_limits
        self._counted = False
        self._in_request = False  # bytes of a request arrived and its message is not complete yet
        self._in_head = False  # ... and its headers are not complete yet
        self._head_bytes = 0  # bytes read while the head was arriving (an upper bound of its size)
        self._chunk = 0
        self._read_timer: asyncio.TimerHandle | None = None
        self._draining = False

    # -- connection ------------------------------------------------------------------

    def connection_made(self, transport) -> None:  # type: ignore[override]
        HttpToolsProtocol.connection_made(self, transport)
        server = self.server
        limits = self.limits_by_port.get(server[1]) if server else None
        if limits is None:
            limits = self.default_limits
        self._limits = limits
        self.timeout_keep_alive = limits.keepalive_timeout  # read by uvicorn's on_response_complete
        cap = limits.max_connections
        if cap is not None and limits.open >= cap:
            limits.note(503, self.loop.time(), "listener '%s': %d connections open (max_connections); "
                        "new ones are refused with 503", limits.name, limits.open)
            self._answer_and_close(503, "too_many_connections",
                                   "Too many open connections to this listener; retry later.", retry_after=True)
            return
        limits.open += 1
        self._counted = True
        self._read_timer = self.loop.call_later(limits.read_timeout, self._read_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        HttpToolsProtocol.connection_lost(self, exc)

    def handle_websocket_upgrade(self) -> None:
        self._release()  # the websocket protocol owns the transport from here on
        HttpToolsProtocol.handle_websocket_upgrade(self)

    # -- graceful shutdown (SIGTERM, or a worker generation retired by a reload) ---------

    def shutdown(self) -> None:
        """Drain this connection without cutting a request that is on its way.

        uvicorn closes an idle keep-alive connection at once, but "idle" on the server is often
        the moment a busy client is sending its next request on it: that request then fails
        with a reset. Instead the connection gets :data:`DRAIN_IDLE_GRACE` seconds: a request
        that starts in that time is served and answered with ``Connection: close`` (the client
        reconnects, to a worker that still accepts), and the connection is closed afterwards.
        """
        self._draining = True
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.keep_alive = False  # in flight: close once answered
            return
        if self.transport is not None and not self.transport.is_closing():
            self.loop.call_later(DRAIN_IDLE_GRACE, self._close_if_idle)

    def _close_if_idle(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing() or self._in_request:
            return  # a request arrived: it closes the connection when answered
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            transport.close()

    def _release(self) -> None:
        if self._counted:
            self._counted = False
            self._limits.open -= 1
        timer = self._read_timer
        if timer is not None:
            self._read_timer = None
            timer.cancel()

    # -- request read deadline ---------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._chunk = len(data)
        if self._in_head:
            self._head_bytes += self._chunk
        HttpToolsProtocol.data_received(self, data)
        if self._in_head and self._head_bytes > self._limits.max_header_bytes:
            transport = self.transport
            if transport is not None and not transport.is_closing():
                self._answer_and_close(431, "headers_too_large", "The request headers exceed this listener's "
                                       f"limit of {self._limits.max_header_bytes} bytes.")
            return
        # A request is still incomplete after this read: it must complete within read_timeout.
        if self._in_request and self._read_timer is None:
            self._read_timer = self.loop.call_later(self._limits.read_timeout, self._read_timed_out)

    def on_message_begin(self) -> None:
        self._in_request = True
        self._in_head = True
        self._head_bytes = self._chunk  # at most the read it began in; later reads add theirs
        HttpToolsProtocol.on_message_begin(self)

    def on_headers_complete(self) -> None:
        self._in_head = False
        refusal = None
        if self._head_bytes > self._limits.max_header_bytes:
            size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
            if size > self._limits.max_header_bytes:
                refusal = _refuse(431, "headers_too_large",
                                  f"The request headers exceed this listener's limit of "
                                  f"{self._limits.max_header_bytes} bytes.")
        self._head_bytes = 0
        if refusal is None and self.parser.get_http_version() == "1.1":
            headers = self.headers  # counted and looked up in C: this runs for every request
            if list(map(_first, headers)).count(b"host") != 1 or not _host_ok(dict(headers)[b"host"]):
                refusal = _refuse(400, "invalid_host", "An HTTP/1.1 request needs exactly one valid Host header.")
        if refusal is None:
            HttpToolsProtocol.on_headers_complete(self)
            if self._draining and self.cycle is not None:  # arrived while draining: answer, then close
                self.cycle.keep_alive = False
            return
        app, self.app = self.app, refusal  # the refusal goes out through uvicorn's normal response path
        try:
            HttpToolsProtocol.on_headers_complete(self)
        finally:
            self.app = app

    def on_message_complete(self) -> None:
        self._in_request = False
        timer = self._read_timer
        if timer is not None:
            self._read_timer = None
            timer.cancel()
        HttpToolsProtocol.on_message_complete(self)

    def _read_timed_out(self) -> None:
        self._read_timer = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.flow is not None and self.flow.read_paused:
            # plano stopped reading (pipelining, unconsumed body): not the client's stall; look again later.
            self._read_timer = self.loop.call_later(self._limits.read_timeout, self._read_timed_out)
            return
        if not self._in_request:  # the connection opened and no byte of a request arrived
            transport.close()
            return
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:  # headers complete: the cycle is this request's
            if cycle.response_started:  # too late for a 408: end the connection
                if cycle.response_complete:
                    transport.close()
                else:
                    transport.abort()
                return
            cycle.disconnected = True  # the app's receive() returns http.disconnect; its own answer is dropped
            cycle.message_event.set()
        elif cycle is not None and not cycle.response_complete:
            # mid-headers of a pipelined request while the previous response is still being written
            transport.abort()
            return
        limits = self._limits
        limits.note(408, self.loop.time(), "listener '%s': request from %s not received within read_timeout "
                    "(%gs); answered 408", limits.name, _peer(self.client), limits.read_timeout)
        self._answer_and_close(408, "request_timeout",
                               f"The request was not received completely within {limits.read_timeout:g}s.")

    # -- answers written by the protocol itself ---------------------------------------

    def _answer_and_close(self, status: int, code: str, message: str, *, retry_after: bool = False) -> None:
        from gateway.listeners.errors import GatewayError  # the OpenAI envelope every plano error uses

        body = GatewayError(status, message, code=code).openai_body()
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head.append(b"%s: %s\r\n" % (name, value))
        if retry_after:
            head.append(b"retry-after: 1\r\n")
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        transport = self.transport
        transport.write(b"".join(head) + body)
        self._in_request = False
        _linger(transport, self)


class _Linger(asyncio.Protocol):
    """Read and drop what the client still sends, until it closes or the linger time is up."""

    def __init__(self, inner: HttpToolsProtocol, transport) -> None:
        self.inner = inner
        self.timer = inner.loop.call_later(LINGER_SECONDS, transport.abort)

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> None:
        return None  # the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        self.timer.cancel()
        self.inner.connection_lost(exc)  # uvicorn's bookkeeping and plano's connection count


def _linger(transport, protocol: HttpToolsProtocol) -> None:
    try:
        if not transport.can_write_eof():
            raise NotImplementedError
        transport.set_protocol(_Linger(protocol, transport))
        transport.write_eof()
        transport.resume_reading()  # uvicorn's flow control may have paused it
    except Exception:  # no half-close on this transport: close outright
        transport.close()


_first = itemgetter(0)

_HOST_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:[]%~!$&'()*+,;=")


def _host_ok(value: bytes) -> bool:
    """A Host value of reg-name / IP-literal characters and an optional port (RFC 3986 §3.2.2)."""
    return 0 < len(value) <= 255 and not value.strip(bytes(_HOST_CHARS))


def _refuse(status: int, code: str, message: str):
    """A tiny ASGI app answering ``status`` in the OpenAI envelope and closing the connection."""
    from gateway.listeners.errors import GatewayError

    body = GatewayError(status, message, code=code).openai_body()

    async def refuse(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    return refuse


def _peer(client) -> str:
    return "%s:%d" % client if client else "?"


def check_uvicorn() -> None:
    """Fail at start-up, not silently at the first slow client, when uvicorn lost a hook relied on here."""
    from uvicorn.protocols.http import flow_control, httptools_impl

    missing = []
    for method in ("connection_made", "connection_lost", "data_received", "on_message_begin", "on_message_complete",
                   "on_response_complete", "handle_websocket_upgrade"):
        if not callable(getattr(HttpToolsProtocol, method, None)):
            missing.append(f"HttpToolsProtocol.{method}")
    needs = [
        (HttpToolsProtocol.__init__, ("config", "loop", "server_state", "transport", "flow", "server", "client",
                                      "cycle", "scope", "parser", "timeout_keep_alive")),
        (HttpToolsProtocol.on_response_complete, ("timeout_keep_alive",)),
        (httptools_impl.RequestResponseCycle.__init__, ("scope", "disconnected", "message_event",
                                                        "response_started", "response_complete")),
        (flow_control.FlowControl.__init__, ("read_paused",)),
    ]
    for function, names in needs:
        used = set(function.__code__.co_names)
        missing += [f"{function.__qualname__} uses no '{name}'" for name in names if name not in used]
    if not callable(getattr(HttpToolsProtocol, "on_headers_complete", None)):
        missing.append("HttpToolsProtocol.on_headers_complete")
    needs_app = HttpToolsProtocol.on_headers_complete.__code__.co_names
    if "app" not in needs_app or "headers" not in HttpToolsProtocol.on_header.__code__.co_names:
        missing.append("HttpToolsProtocol.on_headers_complete uses no 'app' / on_header no 'headers'")
    if not all(status in STATUS_LINE for status in (408, 431, 503)):
        missing.append("httptools_impl.STATUS_LINE")
    if missing:
        import uvicorn

        raise RuntimeError(f"uvicorn {uvicorn.__version__} changed internals plano's HTTP protocol relies on "
                           f"(read timeout, keep-alive, connection cap): {', '.join(missing)}")


def protocol_for(listeners) -> type[PlanoHttpProtocol]:
    """A protocol class serving ``listeners`` (config objects), for ``uvicorn.Config(http=...)``."""
    check_uvicorn()
    limits = {listener.port: ListenerLimits.of(listener) for listener in listeners}
    return type("PlanoHttpProtocol", (PlanoHttpProtocol,), {"limits_by_port": limits})
