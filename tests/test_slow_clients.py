"""Slow and broken clients, over real sockets against the real gateway process.

A client that stalls mid-headers or mid-body is answered 408 at its listener's
``read_timeout``; hundreds of such clients do not stop normal requests; idle
keep-alive connections are closed after the listener's ``keepalive_timeout``; a
listener's ``max_connections`` refuses the next connection with 503.

No durations are asserted: every wait is generous, only outcomes are checked.
"""

from __future__ import annotations

import json
import resource
import selectors
import socket
import time

import openai
import pytest

from tests.support.gateway import Gateway, free_port

STALLED = 500
WAIT = 60.0  # generous upper bound for anything the gateway must do on its own


@pytest.fixture(scope="module", autouse=True)
def enough_file_descriptors():
    """Room for the stalled sockets here and their ends in the gateway (which inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4 * STALLED + 1024
    if soft < want and (hard == resource.RLIM_INFINITY or hard >= want):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    if (soft, hard) != resource.getrlimit(resource.RLIMIT_NOFILE):
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def start(tmp_path_factory, mock_llm, listeners: list[dict]) -> Gateway:
    """A gateway with one model listener (plano serves one) and agent listeners for the rest."""
    ports = {l["name"]: free_port() for l in listeners}
    config = {
        "version": "v0.4.0",
        "agents": [{"id": "nobody", "url": f"http://127.0.0.1:{free_port()}"}],
        "listeners": [
            {"port": ports[l["name"]], "address": "127.0.0.1", **l}
            | ({"agents": [{"id": "nobody", "description": "Nobody home."}]} if l["type"] == "agent" else {})
            for l in listeners
        ],
        "model_providers": [
            {"model": "openai/gpt-4o", "access_key": "sk-test", "base_url": f"{mock_llm.url}/v1", "default": True},
        ],
    }
    gateway = Gateway(config, tmp_path_factory.mktemp("slow_clients")).start()
    gateway.port_of = ports
    return gateway


@pytest.fixture(scope="module")
def gw(mock_llm, tmp_path_factory):
    gateway = start(tmp_path_factory, mock_llm, [
        {"type": "model", "name": "strict", "read_timeout": "1s"},
        {"type": "agent", "name": "short_keepalive", "keepalive_timeout": "1s"},
        {"type": "agent", "name": "capped", "max_connections": 3},
    ])
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def crowd(mock_llm, tmp_path_factory):
    gateway = start(tmp_path_factory, mock_llm, [{"type": "model", "name": "crowd", "read_timeout": "6s"}])
    yield gateway
    gateway.stop()


# -- raw socket helpers ----------------------------------------------------------------


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    sock.settimeout(WAIT)
    return sock


def read_to_eof(sock: socket.socket) -> bytes:
    """Everything the gateway sends until it closes the connection (a reset also counts as closed)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response on a keep-alive connection (content-length framed), leaving the connection open."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, headers = parse_head(head)
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return status, headers, body


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split(" ")[1]), headers


def parse(data: bytes) -> tuple[int, dict[str, str], dict]:
    head, _, body = data.partition(b"\r\n\r\n")
    status, headers = parse_head(head)
    return status, headers, json.loads(body)


def assert_request_timeout(data: bytes) -> None:
    status, headers, body = parse(data)
    assert status == 408, data
    assert headers["connection"] == "close"
    assert headers["content-type"] == "application/json"
    assert body["error"]["code"] == "request_timeout"
    assert body["error"]["param"] is None and body["error"]["message"] and body["error"]["type"]


GET_HEALTH = b"GET /healthz HTTP/1.1\r\nHost: plano\r\n\r\n"
PARTIAL_HEADERS = b"POST /v1/chat/completions HTTP/1.1\r\nHost: plano\r\nContent-Ty"
PARTIAL_BODY = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: plano\r\ncontent-type: application/json\r\n"
                b"content-length: 1000\r\n\r\n{\"model\":")  # 9 of the 1,000 declared bytes


def openai_client(gw, listener: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url(gw.port_of[listener])}/v1", api_key="sk-client", max_retries=0)


# -- read timeout ------------------------------------------------------------------------


def test_stall_mid_headers_is_answered_408(gw):
    with connect(gw.port_of["strict"]) as sock:
        sock.sendall(PARTIAL_HEADERS)
        assert_request_timeout(read_to_eof(sock))


def test_stall_mid_body_is_answered_408_and_never_reaches_the_provider(gw, llm):
    with connect(gw.port_of["strict"]) as sock:
        sock.sendall(PARTIAL_BODY)
        assert_request_timeout(read_to_eof(sock))
    assert llm.requests == []


def test_stall_on_a_kept_alive_connection_is_answered_408(gw):
    with connect(gw.port_of["strict"]) as sock:
        sock.sendall(GET_HEALTH)
        status, _, _ = read_response(sock)
        assert status == 200
        sock.sendall(PARTIAL_BODY)  # the second request stalls after a keep-alive pause
        assert_request_timeout(read_to_eof(sock))


def test_connection_that_sends_nothing_is_closed_without_an_answer(gw):
    with connect(gw.port_of["strict"]) as sock:
        assert read_to_eof(sock) == b""


def test_a_response_slower_than_the_read_timeout_is_not_cut(gw, llm):
    from tests.support.mock_llm import Reply

    llm.enqueue(Reply(delay=2.5))  # the provider takes longer than the listener's 1s read timeout
    reply = openai_client(gw, "strict").chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "slow"}])
    assert reply.choices[0].message.content == "echo: slow"


def test_500_stalled_clients_do_not_stop_normal_requests(crowd, llm):
    gw = crowd
    port = gw.port_of["crowd"]
    stalled = []
    try:
        for n in range(STALLED):
            sock = connect(port)
            sock.sendall(PARTIAL_HEADERS if n % 2 else PARTIAL_BODY)
            stalled.append(sock)
        # while all of them hold their connections, ordinary clients are served on the same listener
        client = openai_client(gw, "crowd")
        for n in range(20):
            text = client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": f"hi {n}"}]).choices[0].message.content
            assert text == f"echo: hi {n}"
        chunks = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "stream me"}], stream=True) if c.choices]
        assert "".join(chunks) == "echo: stream me"
        # and every stalled client is cut off with a 408 at the read timeout
        answers = read_all_to_eof(stalled)
        for data in answers:
            assert_request_timeout(data)
    finally:
        for sock in stalled:
            sock.close()
    assert "Traceback" not in gw.log()


def read_all_to_eof(socks: list[socket.socket]) -> list[bytes]:
    selector = selectors.DefaultSelector()
    received = {}
    for sock in socks:
        sock.setblocking(False)
        received[sock] = b""
        selector.register(sock, selectors.EVENT_READ)
    deadline = time.monotonic() + WAIT
    open_ = len(socks)
    while open_ and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1.0):
            try:
                chunk = key.fileobj.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                chunk = b""
            if chunk:
                received[key.fileobj] += chunk
            else:
                selector.unregister(key.fileobj)
                open_ -= 1
    selector.close()
    assert open_ == 0, f"{open_} of {len(socks)} stalled connections still open after {WAIT}s"
    return [received[sock] for sock in socks]


# -- keep-alive idle limit ---------------------------------------------------------------


def test_idle_keepalive_connection_is_closed_per_listener(gw):
    short = connect(gw.port_of["short_keepalive"])
    default = connect(gw.port_of["strict"])  # keepalive_timeout: the default 75s
    try:
        for sock in (short, default):
            sock.sendall(GET_HEALTH)
            assert read_response(sock)[0] == 200
        assert read_to_eof(short) == b""  # closed by the gateway once idle for its listener's 1s
        default.sendall(GET_HEALTH)  # while the other listener's idle connection is still usable
        assert read_response(default)[0] == 200
    finally:
        short.close()
        default.close()


# -- connection cap ----------------------------------------------------------------------


def test_max_connections_refuses_the_next_connection_with_503(gw):
    port = gw.port_of["capped"]
    held = []
    try:
        for _ in range(3):
            sock = connect(port)
            sock.sendall(GET_HEALTH)
            assert read_response(sock)[0] == 200
            held.append(sock)
        with connect(port) as extra:
            extra.sendall(GET_HEALTH)
            status, headers, body = parse(read_to_eof(extra))
        assert status == 503
        assert headers["connection"] == "close"
        assert body["error"]["code"] == "too_many_connections"
        # other listeners are not affected by this one's cap
        with connect(gw.port_of["strict"]) as other:
            other.sendall(GET_HEALTH)
            assert read_response(other)[0] == 200
        # the held connections still work, and closing one frees a place
        held[1].sendall(GET_HEALTH)
        assert read_response(held[1])[0] == 200
        held.pop(0).close()
        deadline = time.monotonic() + WAIT
        while True:
            with connect(port) as again:
                again.sendall(GET_HEALTH)
                data = read_to_eof_or_response(again)
            if data.startswith(b"HTTP/1.1 200"):
                break
            assert time.monotonic() < deadline, data
            time.sleep(0.1)
    finally:
        for sock in held:
            sock.close()


def read_to_eof_or_response(sock: socket.socket) -> bytes:
    status, headers, body = read_response(sock)
    return f"HTTP/1.1 {status}".encode() + b"\r\n" + body
