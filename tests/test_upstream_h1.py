"""gateway/upstream/h1.py, plano's own HTTP/1.1 client, over real loopback sockets.

Each test runs a small asyncio server it scripts byte by byte (framing, resets, stalls) in the
same event loop as the client, and counts the connections it accepted.
"""

from __future__ import annotations

import asyncio
import gzip
import shutil
import socket
import ssl
import struct
import subprocess
import time
import zlib

import pytest

from gateway.upstream import Pool, Upstream, UpstreamError, timeout_policy
from gateway.upstream.client import default_transport
from gateway.upstream.h1 import HIGH_WATER, H1Transport
from gateway.upstream.transport import AiohttpTransport
from tests.support.mock_llm import MockLLM, Reply

T = timeout_policy(5.0, 2.0)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def read_request(reader: asyncio.StreamReader):
    """(method, path, {lowercase name: value}, body), or None at EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    line, *lines = head.decode("latin-1").split("\r\n")[:-2]
    method, path, _ = line.split(" ")
    headers = {}
    for item in lines:
        name, _, value = item.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return method, path, headers, body


def rst(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0), as a killed or resetting server does."""
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class Server:
    """``respond(request, writer, connection number)`` answers each request of a connection,
    in a loop; it returns False to stop serving that connection."""

    def __init__(self, respond, ssl_ctx=None):
        self.respond = respond
        self.ssl = ssl_ctx
        self.accepted = 0
        self.active = 0
        self.max_active = 0
        self.requests = []
        self.writers = []

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0, ssl=self.ssl)
        self.port = self.server.sockets[0].getsockname()[1]
        scheme = "https" if self.ssl else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc):
        self.server.close()

    async def _conn(self, reader, writer):
        self.accepted += 1
        self.writers.append(writer)
        number = self.accepted
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            while True:
                request = await read_request(reader)
                if request is None:
                    break
                self.requests.append((number, *request))
                if await self.respond(request, writer, number) is False:
                    break
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.active -= 1
            writer.close()


def answer(body: bytes = b"hello", status: str = "200 OK", extra: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


async def ok(request, writer, number):
    writer.write(answer(b"ok:" + request[3]))


async def client(**kw) -> H1Transport:
    transport = H1Transport(**kw)
    await transport.start()
    return transport


async def post(transport, url, body=b"x", headers=None, timeout=T, path="/v1/x"):
    async with transport.send("POST", url + path, headers or {"content-type": "application/json"}, body, timeout,
                              "test") as resp:
        return resp.status, resp.headers, await resp.read()


# ----------------------------------------------------------------------------- framing


def test_content_length_body_headers_and_the_request_head():
    async def main():
        async def respond(request, writer, number):
            writer.write(answer(b"hello", extra="X-Thing: 1\r\nx-thing: 2\r\n"))

        async with Server(respond) as srv:
            t = await client()
            status, headers, body = await post(t, srv.url, b'{"a": 1}',
                                               {"Content-Type": "application/json", "Authorization": "Bearer sk",
                                                "Transfer-Encoding": "chunked", "Content-Length": "999"})
            _, method, path, seen, sent = srv.requests[0]
            await t.close()
        assert (status, body) == (200, b"hello")
        assert headers["content-length"] == "5" and headers.getall("X-THING") == ["1", "2"]
        assert (method, path, sent) == ("POST", "/v1/x", b'{"a": 1}')
        assert seen["host"] == f"127.0.0.1:{srv.port}" and seen["user-agent"] == "plano"
        assert seen["content-length"] == "8" and "transfer-encoding" not in seen and "accept-encoding" not in seen
        assert seen["authorization"] == "Bearer sk"

    run(main())


def test_caller_host_and_user_agent_win_and_query_strings_travel():
    async def main():
        async with Server(ok) as srv:
            t = await client()
            await post(t, srv.url, headers={"Host": "api.example", "User-Agent": "sdk/1"}, path="/a%20b?q=1&r=%2F")
            async with t.send("GET", srv.url + "/models", {}, None, T, "test") as resp:
                await resp.read()
            await t.close()
        (_, _, path, seen, _), (_, method, _, get_seen, _) = srv.requests
        assert path == "/a%20b?q=1&r=%2F" and seen["host"] == "api.example" and seen["user-agent"] == "sdk/1"
        assert method == "GET" and "content-length" not in get_seen

    run(main())


def test_chunked_body_with_chunks_split_across_reads():
    async def main():
        raw = b"5\r\nhello\r\n1a\r\n" + b"abcdefghijklmnopqrstuvwxyz" + b"\r\n0\r\n\r\n"

        async def respond(request, writer, number):
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(raw), 3):  # 3-byte writes: sizes, CRLFs and data all split
                writer.write(raw[i:i + 3])
                await writer.drain()
                await asyncio.sleep(0.002)

        async with Server(respond) as srv:
            t = await client()
            first = await post(t, srv.url)
            second = await post(t, srv.url)
            await t.close()
        assert first[2] == second[2] == b"hello" + b"abcdefghijklmnopqrstuvwxyz"
        assert srv.accepted == 1  # a chunked answer leaves the connection reusable

    run(main())


def test_close_delimited_body_and_the_connection_is_not_reused():
    async def main():
        async def respond(request, writer, number):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, ")
            await writer.drain()
            await asyncio.sleep(0.01)
            writer.write(b"part two")
            return False  # closes: the end of the body

        async with Server(respond) as srv:
            t = await client()
            assert (await post(t, srv.url))[2] == b"part one, part two"
            assert (await post(t, srv.url))[2] == b"part one, part two"
            await t.close()
        assert srv.accepted == 2

    run(main())


def test_interim_1xx_answers_are_skipped():
    async def main():
        async def respond(request, writer, number):
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)
            writer.write(answer(b"final", "201 Created"))

        async with Server(respond) as srv:
            t = await client()
            status, headers, body = await post(t, srv.url)
            again = await post(t, srv.url)
            await t.close()
        assert (status, body, "link" in headers) == (201, b"final", False)
        assert again[0] == 201 and srv.accepted == 1

    run(main())


def test_http10_and_connection_close_answers_are_not_reused():
    async def main():
        async def respond(request, writer, number):
            if request[1] == "/old":
                writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
            else:
                writer.write(answer(b"ok", extra="Connection: close\r\n"))
            return False

        async with Server(respond) as srv:
            t = await client()
            for path in ("/old", "/close", "/old"):
                assert (await post(t, srv.url, path=path))[2] == b"ok"
            await t.close()
        assert srv.accepted == 3

    run(main())


def test_gzip_and_deflate_bodies_are_decoded():
    async def main():
        payload = b'{"text": "' + b"squeeze " * 200 + b'"}'

        async def respond(request, writer, number):
            kind = request[1].strip("/")
            data = {"gzip": gzip.compress(payload), "deflate": zlib.compress(payload),
                    "raw": zlib.compress(payload)[2:-4]}[kind]
            encoding = "deflate" if kind == "raw" else kind
            writer.write(answer(data, extra=f"Content-Encoding: {encoding}\r\n"))

        async with Server(respond) as srv:
            t = await client()
            results = [await post(t, srv.url, path=f"/{kind}") for kind in ("gzip", "deflate", "raw")]
            await t.close()
        for status, headers, body in results:
            assert body == payload
            assert "content-encoding" not in headers and "content-length" not in headers

    run(main())


# ----------------------------------------------------------------------------- the pool


def test_keep_alive_reuses_one_socket():
    async def main():
        async with Server(ok) as srv:
            t = await client()
            bodies = [(await post(t, srv.url, str(i).encode()))[2] for i in range(5)]
            assert t.open == 1
            await t.close()
        assert bodies == [b"ok:%d" % i for i in range(5)]
        assert srv.accepted == 1

    run(main())


def test_an_idle_socket_the_server_closed_is_not_reused():
    async def main():
        async def respond(request, writer, number):
            writer.write(answer())
            await writer.drain()
            return False  # the server's idle timeout, right after answering

        async with Server(respond) as srv:
            t = await client()
            assert (await post(t, srv.url))[0] == 200
            await asyncio.sleep(0.05)
            assert (await post(t, srv.url))[0] == 200
            await t.close()
        assert srv.accepted == 2

    run(main())


def test_the_stale_keep_alive_race_is_resent_once_on_a_fresh_connection():
    """The server's socket is gone when the request reaches it (RST, request unread): a POST
    that the server never saw is sent again, once, on a new connection."""
    async def main():
        async def respond(request, writer, number):
            writer.write(answer(b"ok:" + request[3]))
            await writer.drain()

        async with Server(respond) as srv:
            t = await client()
            assert (await post(t, srv.url, b"one"))[2] == b"ok:one"
            (conn,) = [c for idle in t._idle.values() for c in idle]
            # The server side of that idle socket dies with an RST as the next request arrives.
            stale = _server_side(srv, conn.transport.get_extra_info("sockname")[1])
            rst(stale)
            status, _, body = await post(t, srv.url, b"two")
            await t.close()
        assert (status, body) == (200, b"ok:two")
        assert srv.accepted == 2
        assert [r[4] for r in srv.requests] == [b"one", b"two"]  # each request reached a handler once

    run(main())


def _server_side(srv: Server, client_port: int) -> asyncio.StreamWriter:
    for writer in srv.writers:
        if writer.get_extra_info("peername")[1] == client_port:
            return writer
    raise AssertionError("no server-side socket for that client port")


def test_a_request_read_then_dropped_on_a_reused_socket_is_reset_not_resent():
    """A clean close after the server read the request: it may have acted on it, so no resend (the
    caller's retry policy decides, as for any ``reset``)."""
    async def main():
        async def respond(request, writer, number):
            if request[3] == b"drop":
                return False  # read, then FIN without an answer
            writer.write(answer())

        async with Server(respond) as srv:
            t = await client()
            await post(t, srv.url, b"first")
            with pytest.raises(UpstreamError) as exc:
                await post(t, srv.url, b"drop")
            await t.close()
        assert exc.value.kind == "reset"
        assert [r[4] for r in srv.requests] == [b"first", b"drop"]

    run(main())


def test_max_connections_makes_callers_wait():
    async def main():
        async def respond(request, writer, number):
            await asyncio.sleep(0.05)
            writer.write(answer(b"ok:" + request[3]))

        async with Server(respond) as srv:
            t = await client(max_connections=2)
            results = await asyncio.gather(*(post(t, srv.url, str(i).encode()) for i in range(8)))
            assert t.open <= 2
            await t.close()
        assert [r[2] for r in results] == [b"ok:%d" % i for i in range(8)]
        assert srv.max_active <= 2 and srv.accepted == 2

    run(main())


def test_max_connections_makes_room_by_closing_another_origins_idle_socket():
    async def main():
        async with Server(ok) as a, Server(ok) as b:
            t = await client(max_connections=1)
            await post(t, a.url)
            await post(t, b.url)
            await post(t, a.url)
            assert t.open == 1
            await t.close()
        assert (a.accepted, b.accepted) == (2, 1)

    run(main())


def test_leaving_early_discards_the_connection():
    async def main():
        release = asyncio.Event()

        async def respond(request, writer, number):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
            await writer.drain()
            await release.wait()

        async with Server(respond) as srv:
            t = await client()
            async with t.send("POST", srv.url + "/a", {}, b"", T, "test") as resp:
                assert resp.status == 200  # the caller goes away without the body
            assert t.open == 0 and not t._idle.get(("http", "127.0.0.1", srv.port))
            release.set()
            await t.close()

    run(main())


def test_a_fully_arrived_body_keeps_the_connection_even_unread():
    async def main():
        async with Server(ok) as srv:
            t = await client()
            for _ in range(3):
                async with t.send("POST", srv.url + "/a", {}, b"", T, "test") as resp:
                    assert resp.status == 200
                    await asyncio.sleep(0.01)
            await t.close()
        assert srv.accepted == 1

    run(main())


def test_idle_connections_expire_after_keepalive():
    async def main():
        async with Server(ok) as srv:
            t = await client(keepalive=0.1)
            await post(t, srv.url)
            await asyncio.sleep(0.3)
            assert t.open == 0  # closed by the sweeper
            await post(t, srv.url)
            await t.close()
        assert srv.accepted == 2

    run(main())


def test_a_hundred_concurrent_requests_each_get_their_own_answer():
    async def main():
        async def respond(request, writer, number):
            await asyncio.sleep(0.001 * (int(request[3]) % 7))
            writer.write(answer(b"ok:" + request[3]))

        async with Server(respond) as srv:
            t = await client()
            results = await asyncio.gather(*(post(t, srv.url, str(i).encode()) for i in range(100)))
            await t.close()
        assert [r[2] for r in results] == [b"ok:%d" % i for i in range(100)]
        assert srv.accepted <= 100

    run(main())


# ----------------------------------------------------------------------------- errors


def test_refused_is_connect():
    async def main():
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        t = await client()
        with pytest.raises(UpstreamError) as exc:
            await post(t, f"http://127.0.0.1:{port}")
        await t.close()
        return exc.value

    err = run(main())
    assert err.kind == "connect" and err.status == 502


def test_reset_before_the_answer_is_reset():
    async def main():
        async def respond(request, writer, number):
            rst(writer)
            return False

        async with Server(respond) as srv:
            t = await client()
            with pytest.raises(UpstreamError) as exc:
                await post(t, srv.url)
            await t.close()
        return exc.value, srv.accepted

    err, accepted = run(main())
    assert err.kind == "reset" and accepted == 1  # a fresh connection: nothing to resend


def test_reset_mid_body_is_broken():
    async def main():
        async def respond(request, writer, number):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
            await writer.drain()
            await asyncio.sleep(0.02)
            rst(writer)
            return False

        async with Server(respond) as srv:
            t = await client()
            with pytest.raises(UpstreamError) as exc:
                await post(t, srv.url)
            await t.close()
        return exc.value

    assert run(main()).kind == "broken"


def test_garbage_is_broken():
    async def main():
        async def respond(request, writer, number):
            writer.write(b"SPDY/9 nonsense\r\n\r\n")

        async with Server(respond) as srv:
            t = await client()
            with pytest.raises(UpstreamError) as exc:
                await post(t, srv.url)
            await t.close()
        return exc.value

    assert run(main()).kind == "broken"


@pytest.mark.parametrize("stall", ["head", "body"])
def test_a_hang_times_out_within_the_total(stall):
    async def main():
        async def respond(request, writer, number):
            if stall == "body":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nxx")
            await asyncio.sleep(10)

        async with Server(respond) as srv:
            t = await client()
            started = time.monotonic()
            with pytest.raises(UpstreamError) as exc:
                await post(t, srv.url, timeout=timeout_policy(0.3, 0.3))
            elapsed = time.monotonic() - started
            assert t.open == 0
            await t.close()
        return exc.value, elapsed

    err, elapsed = run(main())
    assert err.kind == "timeout" and err.status == 504
    assert 0.25 < elapsed < 2.0  # 0.3 s, with room for a loaded CI box


def test_connect_timeout_is_timeout():
    async def main():
        t = await client()
        with pytest.raises(UpstreamError) as exc:  # a blackhole address (TEST-NET-1, unroutable)
            await post(t, "http://192.0.2.1:9", timeout=timeout_policy(5.0, 0.2))
        await t.close()
        return exc.value

    err = run(main())
    assert err.kind in ("timeout", "connect")  # "connect" where the sandbox refuses outright


def test_cancellation_closes_the_connection():
    async def main():
        async def respond(request, writer, number):
            await asyncio.sleep(10)

        async with Server(respond) as srv:
            t = await client()
            task = asyncio.ensure_future(post(t, srv.url))
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert t.open == 0
            await t.close()

    run(main())


def test_a_header_with_a_line_break_is_refused_without_echoing_it():
    async def main():
        async with Server(ok) as srv:
            t = await client()
            with pytest.raises(ValueError) as exc:
                await post(t, srv.url, headers={"Authorization": "Bearer sk-secret\r\nX-Evil: 1"})
            await t.close()
        return str(exc.value)

    assert "sk-secret" not in run(main())


# ----------------------------------------------------------------------------- streaming


def test_chunks_arrive_before_the_body_ends():
    async def main():
        got_first = asyncio.Event()

        async def respond(request, writer, number):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            writer.write(b"d\r\ndata: first\n\n\r\n")
            await writer.drain()
            await asyncio.wait_for(got_first.wait(), 5)  # the rest only once the client has the first
            writer.write(b"e\r\ndata: second\n\n\r\n0\r\n\r\n")

        async with Server(respond) as srv:
            t = await client()
            pieces = []
            async with t.send("POST", srv.url + "/s", {}, b"{}", T, "test") as resp:
                async for piece in resp.chunks():
                    pieces.append(piece)
                    got_first.set()
            await t.close()
        assert pieces == [b"data: first\n\n", b"data: second\n\n"]
        assert srv.accepted == 1

    run(main())


def test_a_large_body_read_slowly_is_not_buffered_unbounded():
    async def main():
        size = 32 << 20
        written = []

        async def respond(request, writer, number):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
            block = b"z" * (1 << 16)
            for _ in range(size // len(block)):
                writer.write(block)
                await writer.drain()
                written.append(len(block))

        async with Server(respond) as srv:
            t = await client()
            largest, total, sent_when_eighth_read = 0, 0, None
            async with t.send("GET", srv.url + "/big", {}, None, T, "test") as resp:
                async for piece in resp.chunks():
                    largest = max(largest, len(piece))
                    total += len(piece)
                    await asyncio.sleep(0.002)
                    if sent_when_eighth_read is None and total >= size // 8:
                        sent_when_eighth_read = sum(written)
            await t.close()
        assert total == size
        # Never more than the high-water mark plus one socket read (asyncio reads 256 KiB at most) ...
        assert largest <= HIGH_WATER + (256 << 10)
        # ... and the server was held back: when we had read an eighth (4 MiB), it had sent well under
        # the whole body (what it sent beyond our reads sits in the two kernels' socket buffers).
        assert sent_when_eighth_read < size - (8 << 20)

    run(main())


# ----------------------------------------------------------------------------- TLS


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_tls_with_a_self_signed_ca(tmp_path):
    key, crt = tmp_path / "srv.key", tmp_path / "srv.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=srv",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(str(crt), str(key))

    async def main():
        async with Server(ok, server_ctx) as srv:
            trusted = await client(ca_path=str(crt))
            first = await post(trusted, srv.url, b"a")
            second = await post(trusted, f"https://localhost:{srv.port}", b"b")  # by name: SNI + DNS
            third = await post(trusted, srv.url, b"c")
            await trusted.close()
            default = await client()  # the system CAs do not know this certificate
            with pytest.raises(UpstreamError) as exc:
                await post(default, srv.url)
            await default.close()
        assert [r[2] for r in (first, second, third)] == [b"ok:a", b"ok:b", b"ok:c"]
        assert srv.accepted == 2  # 127.0.0.1 and localhost are two origins; the third reused the first
        assert exc.value.kind == "connect"

    run(main())


# ----------------------------------------------------------------------------- wiring


def test_h1_is_the_default_and_aiohttp_an_opt_in(monkeypatch):
    monkeypatch.delenv("PLANO_UPSTREAM_TRANSPORT", raising=False)
    assert isinstance(Upstream().transport, H1Transport)
    monkeypatch.setenv("PLANO_UPSTREAM_TRANSPORT", "aiohttp")
    assert isinstance(default_transport(), AiohttpTransport)
    monkeypatch.setenv("PLANO_UPSTREAM_TRANSPORT", "h2")
    with pytest.raises(ValueError):
        default_transport()


def test_through_upstream_call_against_the_mock_provider():
    llm = MockLLM().start()
    try:
        llm.enqueue(Reply("sse", tokens=["a", "b", "c"]))

        async def main():
            up = Upstream()
            await up.start()
            pool = Pool("mock", [llm.url])
            try:
                async with up.call(pool, None, headers={"content-type": "application/json"},
                                   body=b'{"model": "m", "stream": true, "messages": []}', timeout=T,
                                   path="/v1/chat/completions") as resp:
                    stream = b"".join([piece async for piece in resp.chunks()])
                async with up.call(pool, None, headers={"content-type": "application/json"},
                                   body=b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}',
                                   timeout=T, path="/v1/chat/completions") as resp:
                    plain = await resp.read()
            finally:
                await up.close()
            return resp.status, stream, plain

        status, stream, plain = run(main())
        assert status == 200 and stream.count(b"data: ") >= 3 and b"[DONE]" in stream
        assert b"echo: hi" in plain
    finally:
        llm.stop()


def test_the_stale_race_with_the_servers_fin_already_on_the_wire_is_resent_too():
    """The server closed the idle socket (FIN) just before our request left; its kernel answers
    the request with an RST. The client's loop has not seen the FIN when it picks the socket."""
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    close_now, closed = threading.Event(), threading.Event()
    seen = []

    def serve():
        first, _ = listener.accept()
        seen.append(first.recv(65536))
        first.sendall(answer(b"one"))
        close_now.wait(5)
        first.close()  # FIN, with nothing unread: the idle close of a keep-alive server
        closed.set()
        second, _ = listener.accept()
        seen.append(second.recv(65536))
        second.sendall(answer(b"two"))
        second.recv(1)
        second.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    async def main():
        t = await client()
        url = f"http://127.0.0.1:{port}"
        first = await post(t, url, b"a")
        close_now.set()
        closed.wait(5)  # blocks the loop: it cannot notice the FIN before the next request goes out
        time.sleep(0.05)
        second = await post(t, url, b"b")
        await t.close()
        return first[2], second[2]

    try:
        assert run(main()) == (b"one", b"two")
    finally:
        listener.close()
    assert len(seen) == 2 and all(s.endswith(b"a") or s.endswith(b"b") for s in seen)
