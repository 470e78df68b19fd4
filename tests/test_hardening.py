"""Edge hardening through real sockets: header size, Host, JSON depth, smuggling, hop-by-hop headers,
the SSRF guard for client-supplied URLs, the exposed-listener note, and no secret anywhere it could leak."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from tests.support.agent_mocks import MockTeam
from tests.support.gateway import Gateway, free_port

PROVIDER_KEY = "sk-provider-hardening-8e21f0"
LISTENER_KEY = "sk-listener-hardening-41aa07"
VIRTUAL_KEY = "sk-virtual-hardening-cc5d3e"
ADMIN_KEY = "adm-hardening-secret-9b9b12"
MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def team():
    t = MockTeam("solo").start()
    yield t
    t.stop()


@pytest.fixture(scope="module")
def gw(mock_llm, team, tmp_path_factory):
    ports = {"llm": free_port(), "agent": free_port(), "open": free_port()}
    config = {
        "version": "v0.4.0",
        "agents": [{"id": "solo", "url": team["solo"].url}],
        "model_providers": [{"model": "openai/mock-model", "access_key": PROVIDER_KEY,
                             "base_url": f"{mock_llm.url}/v1", "default": True}],
        "listeners": [
            {"type": "model", "name": "llm", "port": ports["llm"], "address": "127.0.0.1",
             "max_header_bytes": 8192, "max_json_depth": 16, "auth": {"api_keys": [LISTENER_KEY]}},
            {"type": "agent", "name": "open", "port": ports["agent"], "address": "127.0.0.1",
             "agents": [{"id": "solo", "description": "anything"}]},
        ],
        "auth": {"keys": [{"id": "vk", "key": VIRTUAL_KEY}], "admin_key": ADMIN_KEY,
                 "keys_file": str(tmp_path_factory.mktemp("store") / "keys.json")},
    }
    gateway = Gateway(config, tmp_path_factory.mktemp("gw-hard"), env={"PLANO_ADMIN_PORT": "0"})
    gateway.start()
    gateway.ports_by_name = ports
    yield gateway
    gateway.stop()


def raw(port: int, data: bytes, *, chunks: int = 1, wait: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        step = max(1, len(data) // chunks)
        for i in range(0, len(data), step):
            try:
                s.sendall(data[i:i + step])
            except OSError:
                break
        out = b""
        try:
            while True:
                got = s.recv(65536)
                if not got:
                    break
                out += got
                if b"\r\n\r\n" in out and b"content-length" in out.lower():
                    head, _, body = out.partition(b"\r\n\r\n")
                    size = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    if len(body) >= size:
                        break
        except OSError:
            pass
        return out


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


@pytest.mark.parametrize("chunks", [1, 40])
def test_oversized_headers_are_431(gw, chunks):
    port = gw.ports_by_name["llm"]
    big = b"x-filler: " + b"a" * 20000 + b"\r\n"
    out = raw(port, b"GET /healthz HTTP/1.1\r\nhost: x\r\n" + big + b"\r\n", chunks=chunks)
    assert status_of(out) == 431, out[:300]
    assert b"headers_too_large" in out
    ok = raw(port, b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    assert status_of(ok) == 200


def test_host_must_be_single_and_valid(gw):
    port = gw.ports_by_name["llm"]
    assert status_of(raw(port, b"GET /healthz HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n")) == 400
    assert status_of(raw(port, b"GET /healthz HTTP/1.1\r\n\r\n")) == 400
    assert status_of(raw(port, b"GET /healthz HTTP/1.1\r\nhost: a b\r\n\r\n")) == 400
    assert status_of(raw(port, b"GET /healthz HTTP/1.0\r\n\r\n")) == 200  # 1.0 has no Host requirement


def test_content_length_with_transfer_encoding_is_refused(gw, llm):
    port = gw.ports_by_name["llm"]
    body = b'{"messages": [{"role": "user", "content": "x"}]}'
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer " + LISTENER_KEY.encode()
           + b"\r\ncontent-type: application/json\r\ncontent-length: %d\r\ntransfer-encoding: chunked\r\n\r\n"
           % len(body) + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
    out = raw(port, req)
    assert out == b"" or status_of(out) == 400
    assert llm.requests == []


@pytest.mark.parametrize("listener", ["llm", "agent"])
def test_json_nested_too_deep_is_400(gw, llm, listener):
    deep = '{"messages": [{"role": "user", "content": "x"}], "x": ' + "[" * 5000 + "]" * 5000 + "}"
    headers = {"authorization": f"Bearer {LISTENER_KEY}", "content-type": "application/json"}
    r = httpx.post(f"http://127.0.0.1:{gw.ports_by_name[listener]}/v1/chat/completions", content=deep,
                   headers=headers)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "json_too_deep"
    shallow = '{"messages": [{"role": "user", "content": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}], "x": [[1]]}'
    r = httpx.post(f"http://127.0.0.1:{gw.ports_by_name['llm']}/v1/chat/completions", content=shallow,
                   headers=headers)
    assert r.status_code == 200, r.text  # brackets inside strings do not count


def test_hop_by_hop_headers_are_not_forwarded(gw, team):
    team.reset()
    r = httpx.post(f"http://127.0.0.1:{gw.ports_by_name['agent']}/v1/chat/completions",
                   headers={"connection": "x-hop-secret", "x-hop-secret": "v1", "te": "trailers",
                            "proxy-authorization": "Basic abc", "x-end-to-end": "kept"},
                   json={"messages": MESSAGES})
    assert r.status_code == 200, r.text
    seen = team["solo"].requests[-1].headers
    assert "x-hop-secret" not in seen and "te" not in seen and "proxy-authorization" not in seen
    assert seen["x-end-to-end"] == "kept"
    assert seen["traceparent"].startswith("00-")  # propagated with tracing export off


def test_ssrf_guard():
    from gateway.auth import UrlNotAllowed, check_url

    for url in ("http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/", "http://metadata.google.internal/",
                "http://0.0.0.0:80/", "http://10.0.0.5/hook", "file:///etc/passwd", "http://user:pw@example.com/",
                "http://127.0.0.1:8080/hook", "http://localhost/hook", "http://[::ffff:169.254.169.254]/",
                "gopher://127.0.0.1/"):
        with pytest.raises(UrlNotAllowed):
            check_url(url, resolve=False)
    assert check_url("http://127.0.0.1:8080/hook", allow_loopback=True).addresses == ("127.0.0.1",)
    assert check_url("http://10.0.0.5/hook", allow=["10.0.0.0/8"], resolve=False).host == "10.0.0.5"
    with pytest.raises(UrlNotAllowed):
        check_url("http://169.254.169.254/", allow=["169.254.0.0/16"], resolve=False)  # never, even if listed
    with pytest.raises(UrlNotAllowed):
        check_url("http://127.0.0.1/", allow=["hooks.example.com"], allow_loopback=True)
    assert check_url("https://hooks.example.com/x", allow=["*.example.com"], resolve=False).port == 443


def test_exposed_listener_note(tmp_path, mock_llm):
    from gateway.auth import exposed_without_auth
    from gateway.config import load_config_text

    cfg = load_config_text(f"""version: v0.4.0
listeners:
  - {{type: model, name: wide, port: 18500, address: 0.0.0.0}}
  - {{type: agent, name: keyed, port: 18501, address: 0.0.0.0, agents: [], auth: {{api_keys: [sk-aaaaaaaaaaaa]}}}}
  - {{type: agent, name: local, port: 18502, address: 127.0.0.1, agents: []}}
model_providers: [{{model: openai/x, access_key: sk-x-00000000, default: true}}]
""")
    assert [l.name for l in exposed_without_auth(cfg)] == ["wide"]
    gw = Gateway({"version": "v0.4.0",
                  "model_providers": [{"model": "openai/mock-model", "access_key": "sk-x-00000000",
                                       "base_url": f"{mock_llm.url}/v1", "default": True}],
                  "listeners": [{"type": "model", "name": "wide", "port": free_port(), "address": "0.0.0.0"}]},
                 tmp_path, env={"PLANO_ADMIN_PORT": "0"})
    gw.start()
    try:
        assert "listener 'wide' binds 0.0.0.0" in gw.log() and "without auth" in gw.log()
    finally:
        gw.stop()


def test_no_secret_in_errors_logs_traces_metrics_or_config(mock_llm, tmp_path):
    """Send every kind of request that could leak a key, then grep each key through everything plano emits."""
    from tests.support.mock_llm import Reply
    from tests.support.otlp import OTLPReceiver

    receiver = OTLPReceiver()
    ports = {"llm": free_port(), "admin": free_port()}
    access_log = tmp_path / "access.log"
    config = {
        "version": "v0.4.0",
        "model_providers": [{"model": "openai/mock-model", "access_key": PROVIDER_KEY,
                             "base_url": f"{mock_llm.url}/v1", "default": True}],
        "listeners": [{"type": "model", "name": "llm", "port": ports["llm"], "address": "127.0.0.1",
                       "auth": {"api_keys": [LISTENER_KEY]}}],
        "tracing": {"random_sampling": 100, "opentracing_grpc_endpoint": receiver.endpoint, "capture_content": True},
        "admin": {"address": "127.0.0.1", "port": ports["admin"]},
        "auth": {"keys": [{"id": "vk", "key": VIRTUAL_KEY, "budget": {"tokens": 1, "period": "day"}}],
                 "admin_key": ADMIN_KEY, "keys_file": str(tmp_path / "keys.json")},
    }
    gw = Gateway(config, tmp_path, env={"PLANO_ACCESS_LOG": str(access_log), "LOG_LEVEL": "debug",
                                        "PLANO_ADMIN_PORT": str(ports["admin"])})
    gw.start()
    bodies = []
    try:
        url = f"{gw.url()}/v1/chat/completions"
        attempts = [
            {"authorization": f"Bearer {LISTENER_KEY}"},
            {"authorization": f"Bearer {VIRTUAL_KEY}"},
            {"authorization": f"Bearer {VIRTUAL_KEY}"},  # budget exhausted: 429
            {"authorization": f"Bearer {LISTENER_KEY}x"},  # wrong key
            {"x-api-key": PROVIDER_KEY},  # someone tries the provider key
            {"authorization": f"Bearer {LISTENER_KEY}", "x-debug": f"token={ADMIN_KEY}"},
        ]
        for headers in attempts:
            r = httpx.post(url, headers=headers, json={"model": "mock-model", "messages": [
                {"role": "user", "content": f"my key is {LISTENER_KEY}"}]})
            if r.status_code >= 400:  # a 200 is the mock echoing the client's own words back to it
                bodies.append(r.text)
        mock_llm.enqueue(Reply("error", status=401, body={"error": {"message": f"bad key {PROVIDER_KEY}"}}))
        r = httpx.post(url, headers={"authorization": f"Bearer {LISTENER_KEY}"},
                       json={"model": "mock-model", "messages": MESSAGES})
        bodies.append(r.text)
        admin = f"http://127.0.0.1:{ports['admin']}"
        bodies.append(httpx.get(admin + "/metrics").text)
        bodies.append(httpx.get(admin + "/admin/config", headers={"authorization": f"Bearer {ADMIN_KEY}"}).text)
        bodies.append(httpx.get(admin + "/admin/keys", headers={"authorization": f"Bearer {ADMIN_KEY}"}).text)
        bodies.append(httpx.get(admin + "/admin/keys", headers={"authorization": f"Bearer {LISTENER_KEY}"}).text)
        receiver.wait_for(5, timeout=10)
        time.sleep(0.5)
    finally:
        gw.stop()
        receiver.stop()
    spans = receiver.spans()
    assert spans  # tracing really ran
    traces = json.dumps([{"name": s.name, "attrs": s.attributes, "events": s.events} for s in spans], default=str)
    everything = {"responses": "\n".join(bodies), "gateway log": gw.log(), "access log": access_log.read_text(),
                  "traces": traces}
    assert "budget_exceeded" in everything["responses"] and "invalid_api_key" in everything["responses"]
    for secret in (PROVIDER_KEY, LISTENER_KEY, VIRTUAL_KEY, ADMIN_KEY):
        for where, text in everything.items():
            assert secret not in text, f"{secret[:8]}... found in the {where}"
