"""The model listener end to end: official openai SDK -> plano -> mock provider."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import openai
import pytest

from tests.support.gateway import Gateway, free_port
from tests.support.mock_llm import Reply, completion


@pytest.fixture(scope="module")
def proxy(mock_llm, tmp_path_factory):
    port = free_port()
    dead = free_port()  # nothing listens here
    base = f"{mock_llm.url}/v1"
    config = {
        "version": "v0.4.0",
        "listeners": [{"type": "model", "name": "llm", "port": port, "address": "127.0.0.1", "timeout": "30s"}],
        "model_providers": [
            {"model": "openai/gpt-4o", "access_key": "sk-openai-test", "base_url": base, "default": True},
            {"model": "openai/gpt-4o-mini", "access_key": "sk-openai-test", "base_url": base},
            {"name": "passthrough", "model": "openai/pt-model", "passthrough_auth": True, "base_url": base},
            {"model": "mistral/*", "access_key": "sk-mistral-test", "base_url": f"{mock_llm.url}/mistral/v1"},
            {"model": "groq/llama-3", "access_key": "sk-groq", "base_url": f"{mock_llm.url}/prefix/groq",
             "headers": {"x-extra": "yes"}},
            {"model": "azure_openai/my-deploy", "access_key": "az-key", "base_url": mock_llm.url},
            {"model": "openai/slow-model", "access_key": "k", "base_url": base, "timeout": "1s"},
            {"model": "openai/dead-model", "access_key": "k", "base_url": f"http://127.0.0.1:{dead}/v1"},
        ],
        "model_aliases": {"fast": {"target": "gpt-4o-mini"}, "smart": {"target": "openai/gpt-4o"}},
    }
    gw = Gateway(config, tmp_path_factory.mktemp("proxy")).start()
    yield gw
    gw.stop()


@pytest.fixture
def client(proxy):
    return openai.OpenAI(base_url=f"{proxy.url()}/v1", api_key="sk-client-key", max_retries=0)


def user(text="hi"):
    return [{"role": "user", "content": text}]


# -- resolution, auth, paths ---------------------------------------------------------


@pytest.mark.parametrize(
    "requested, upstream_model",
    [("openai/gpt-4o", "gpt-4o"), ("gpt-4o-mini", "gpt-4o-mini"), ("fast", "gpt-4o-mini"),
     ("smart", "gpt-4o"), ("mistral/mistral-large-latest", "mistral-large-latest")],
)
@pytest.mark.parametrize("stream", [False, True])
def test_model_resolution_json_and_stream(client, llm, requested, upstream_model, stream):
    if stream:
        parts = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model=requested, messages=user("hello world"), stream=True) if c.choices]
        text = "".join(parts)
        assert len(parts) >= 2
    else:
        text = client.chat.completions.create(model=requested, messages=user("hello world")).choices[0].message.content
    assert text == "echo: hello world"
    seen = llm.last
    assert seen.body["model"] == upstream_model
    expected_key = "sk-mistral-test" if requested.startswith("mistral/") else "sk-openai-test"
    assert seen.headers["authorization"] == f"Bearer {expected_key}"
    assert "sk-client-key" not in json.dumps(seen.headers)
    expected_path = "/mistral/v1/chat/completions" if requested.startswith("mistral/") else "/v1/chat/completions"
    assert seen.path == expected_path


def test_default_provider_when_model_missing(proxy, llm):
    r = httpx.post(f"{proxy.url()}/v1/chat/completions", json={"messages": user("x")})
    assert r.status_code == 200, r.text
    assert llm.last.body["model"] == "gpt-4o"
    assert r.json()["choices"][0]["message"]["content"] == "echo: x"


@pytest.mark.parametrize("stream", [False, True])
def test_default_provider_via_sdk_with_empty_model(client, llm, stream):
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="", messages=user("dflt"), stream=True) if c.choices)
    else:
        text = client.chat.completions.create(model="", messages=user("dflt")).choices[0].message.content
    assert text == "echo: dflt"
    assert llm.last.body["model"] == "gpt-4o" and llm.last.headers["authorization"] == "Bearer sk-openai-test"


def test_passthrough_auth_uses_client_key(client, llm):
    client.chat.completions.create(model="passthrough", messages=user())
    assert llm.last.headers["authorization"] == "Bearer sk-client-key"
    assert llm.last.body["model"] == "pt-model"


def test_passthrough_accepts_x_api_key(proxy, llm):
    r = httpx.post(f"{proxy.url()}/v1/chat/completions", json={"model": "passthrough", "messages": user()},
                   headers={"x-api-key": "sk-from-x-api-key"})
    assert r.status_code == 200
    assert llm.last.headers["authorization"] == "Bearer sk-from-x-api-key"
    assert "x-api-key" not in llm.last.headers


def test_base_url_path_prefix_and_extra_headers(client, llm):
    client.chat.completions.create(model="groq/llama-3", messages=user())
    assert llm.last.path == "/prefix/groq/chat/completions"
    assert llm.last.headers["x-extra"] == "yes"
    assert llm.last.headers["authorization"] == "Bearer sk-groq"


def test_azure_deployment_path_and_key_header(client, llm):
    client.chat.completions.create(model="azure_openai/my-deploy", messages=user())
    assert llm.last.path == "/openai/deployments/my-deploy/chat/completions"
    assert "api-version=" in llm.last.query
    assert llm.last.headers["api-key"] == "az-key"
    assert "authorization" not in llm.last.headers


def test_request_id_propagated_and_generated(proxy, llm):
    r = httpx.post(f"{proxy.url()}/v1/chat/completions", json={"model": "gpt-4o", "messages": user()},
                   headers={"x-request-id": "req-123"})
    assert r.headers["x-request-id"] == "req-123"
    assert llm.last.headers["x-request-id"] == "req-123"
    r = httpx.post(f"{proxy.url()}/v1/chat/completions", json={"model": "gpt-4o", "messages": user()})
    generated = r.headers["x-request-id"]
    assert len(generated) == 36 and llm.last.headers["x-request-id"] == generated


def test_hop_by_hop_headers_not_forwarded(proxy, llm):
    body = json.dumps({"model": "gpt-4o", "messages": user()}).encode()
    with socket.create_connection(("127.0.0.1", proxy.ports[0])) as s:
        s.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: keep-alive, x-private-hop\r\nx-private-hop: secret\r\nProxy-Authorization: Basic abc\r\n"
            b"x-custom: kept\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        data = s.recv(65536)
    assert data.startswith(b"HTTP/1.1 200")
    headers = llm.last.headers
    assert "x-custom" not in headers  # providers get an allow-list of client headers
    assert "x-private-hop" not in headers and "proxy-authorization" not in headers


def test_tools_null_content_and_extra_params_pass_through(client, llm):
    tool_call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Seattle\"}"}}
    llm.enqueue(Reply("json", body=completion("gpt-4o", "", tool_calls=[tool_call])))
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "weather in Seattle?"},
        {"role": "assistant", "content": None, "tool_calls": [tool_call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 12}"},
    ]
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    resp = client.chat.completions.create(model="gpt-4o", messages=messages, tools=tools, temperature=0.2,
                                          seed=7, extra_body={"vendor_flag": {"a": 1}})
    assert resp.choices[0].message.tool_calls[0].function.name == "get_weather"
    body = llm.last.body
    assert body["messages"][2]["content"] is None and body["messages"][2]["tool_calls"][0]["id"] == "call_1"
    assert body["tools"][0]["function"]["name"] == "get_weather"
    assert body["temperature"] == 0.2 and body["seed"] == 7 and body["vendor_flag"] == {"a": 1}


def test_async_client_streams(proxy, llm):
    import asyncio

    async def go():
        aclient = openai.AsyncOpenAI(base_url=f"{proxy.url()}/v1", api_key="k", max_retries=0)
        stream = await aclient.chat.completions.create(model="gpt-4o", messages=user("async path"), stream=True)
        out = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        await aclient.close()
        return "".join(out)

    assert asyncio.run(go()) == "echo: async path"


# -- /v1/models ----------------------------------------------------------------


def test_models_list_and_cors(client, proxy):
    ids = [m.id for m in client.models.list().data]
    assert "openai/gpt-4o" in ids and "groq/llama-3" in ids and "fast" in ids
    assert not any(i.endswith("/*") for i in ids)
    r = httpx.options(f"{proxy.url()}/v1/models", headers={"Origin": "http://x", "Access-Control-Request-Method": "GET"})
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "*"
    assert "POST" in r.headers["access-control-allow-methods"]


# -- streaming is not buffered -------------------------------------------------------


def test_first_chunk_arrives_before_upstream_finishes(client, llm):
    llm.enqueue(Reply("sse", tokens=["one", " two", " three", " four"], delay=0.2))
    stream = client.chat.completions.create(model="gpt-4o", messages=user(), stream=True)
    first_at = None
    for c in stream:
        if c.choices and c.choices[0].delta.content:
            first_at = time.monotonic()
            break
    stream.close()
    done = [t for e, t in llm.events if e == "sent:3"]
    # the upstream sent its last token 600 ms after the first; the client saw the first before that
    assert first_at is not None and (not done or first_at < done[0])


def test_stream_first_chunk_while_upstream_blocked(client, llm):
    gate = threading.Event()
    llm.enqueue(Reply("sse", tokens=["first", " second"], gate=gate))
    stream = client.chat.completions.create(model="gpt-4o", messages=user(), stream=True)
    it = iter(stream)
    first = next(it)
    got_first_while_blocked = not gate.is_set()
    gate.set()
    rest = "".join(c.choices[0].delta.content or "" for c in it if c.choices)
    assert got_first_while_blocked and first.choices[0].delta.content == "first"
    assert rest == " second"


# -- bad input and broken upstreams ---------------------------------------------------


def _post_raw(proxy, body: bytes, ctype="application/json"):
    return httpx.post(f"{proxy.url()}/v1/chat/completions", content=body, headers={"content-type": ctype}, timeout=30)


def _assert_openai_error(r, status, code=None):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "code", "param"} and err["message"]
    if code:
        assert err["code"] == code
    return err


@pytest.mark.parametrize("body, code, param", [
    (b"{not json", "invalid_json", None),
    (b"", "invalid_json", None),
    (b"[1, 2]", "invalid_json", None),
    (b'{"model": 5, "messages": [{"role": "user", "content": "x"}]}', "invalid_type", "model"),
    (b'{"model": "gpt-4o", "messages": "hello"}', "invalid_type", "messages"),
    (b'{"model": "gpt-4o"}', "missing_required_parameter", "messages"),
    (b'{"model": "gpt-4o", "messages": [{"content": "x"}]}', "invalid_type", "messages[0].role"),
    (b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}', "invalid_type", "stream"),
])
def test_malformed_requests_get_400(proxy, llm, body, code, param):
    err = _assert_openai_error(_post_raw(proxy, body), 400, code)
    assert err["param"] == param
    assert llm.requests == []


def test_sdk_raises_typed_errors(client, llm):
    with pytest.raises(openai.NotFoundError) as exc:
        client.chat.completions.create(model="no-such-model", messages=user())
    assert exc.value.code == "model_not_found" and "/v1/models" in exc.value.message
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4o", messages="nope")  # type: ignore[arg-type]
    assert llm.requests == []


def test_oversized_body_gets_413(proxy, llm):
    big = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "' + b"a" * (20 * 1024 * 1024) + b'"}]}'
    _assert_openai_error(_post_raw(proxy, big), 413, "request_too_large")
    assert llm.requests == []
    assert _post_raw(proxy, b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "ok"}]}').status_code == 200


def test_upstream_error_status_and_body_pass_through(client, llm):
    llm.enqueue(Reply("error", status=429, body={"error": {"message": "slow down", "type": "rate_limit", "code": "rl"}},
                      headers={"retry-after": "7"}))
    with pytest.raises(openai.RateLimitError) as exc:
        client.chat.completions.create(model="gpt-4o", messages=user())
    assert exc.value.body["message"] == "slow down" and exc.value.code == "rl"
    assert exc.value.response.headers["retry-after"] == "7"


def test_upstream_html_error_is_wrapped(proxy, llm):
    llm.enqueue(Reply("error", status=503, body="<html>Service Unavailable</html>", content_type="text/html"))
    err = _assert_openai_error(_post_raw(proxy, b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}'), 503)
    assert "Service Unavailable" in err["message"]


def test_upstream_garbage_gets_502(client, llm):
    llm.enqueue(Reply("garbage"))
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(model="gpt-4o", messages=user())
    assert exc.value.status_code == 502
    assert exc.value.code == "upstream_invalid_response"


def test_upstream_reset_before_response_gets_502(client, llm):
    llm.enqueue(Reply("reset"))
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(model="gpt-4o", messages=user())
    assert exc.value.status_code == 502


def test_upstream_unreachable_gets_502(client, llm):
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(model="openai/dead-model", messages=user())
    assert exc.value.status_code == 502 and exc.value.code == "upstream_connect"


def test_upstream_timeout_gets_504(client, llm):
    llm.enqueue(Reply("hang"))
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(model="openai/slow-model", messages=user())
    assert exc.value.status_code == 504 and exc.value.code == "upstream_timeout"


def test_upstream_reset_mid_stream_ends_with_error_event(client, llm):
    llm.enqueue(Reply("reset_mid_stream", tokens=["partial", " answer"]))
    received = []
    with pytest.raises(openai.APIError) as exc:
        for c in client.chat.completions.create(model="gpt-4o", messages=user(), stream=True):
            if c.choices:
                received.append(c.choices[0].delta.content)
    assert received == ["partial", " answer"]
    assert "broke" in str(exc.value.message)


def test_upstream_error_on_stream_request_keeps_status(client, llm):
    llm.enqueue(Reply("error", status=400, body={"error": {"message": "bad max_tokens", "type": "invalid_request_error"}}))
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="gpt-4o", messages=user(), stream=True)
    assert "max_tokens" in exc.value.message


def test_unknown_path_and_method(proxy):
    r = httpx.get(f"{proxy.url()}/v1/embeddings-nope")
    _assert_openai_error(r, 404, "not_found")
    r = httpx.get(f"{proxy.url()}/v1/chat/completions")
    _assert_openai_error(r, 405, "method_not_allowed")


def test_gateway_still_serves_after_bad_input(client, proxy, llm):
    assert httpx.get(f"{proxy.url()}/healthz").status_code == 200
    assert client.chat.completions.create(model="gpt-4o", messages=user("still ok")).choices[0].message.content == "echo: still ok"
    assert proxy.proc.poll() is None


def test_stream_request_answered_with_json_still_streams(client, llm):
    llm.enqueue(Reply("json", content="whole answer"))  # an upstream that ignores stream=true
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=user(), stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "whole answer"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 8


@pytest.mark.parametrize("usage", ["x", 7, ["a"], {"prompt_tokens": "many", "completion_tokens": None}])
def test_an_upstream_usage_of_the_wrong_shape_is_ignored(proxy, llm, usage):
    """A 200 whose ``usage`` is not an object: the client gets the answer as sent, the gateway
    records no tokens and raises nothing after the response went out."""
    body = completion("gpt-4o", "fine")
    body["usage"] = usage
    llm.enqueue(Reply("json", body=body))
    seen = len(proxy.log())
    r = httpx.post(f"{proxy.url()}/v1/chat/completions", json={"model": "gpt-4o", "messages": user()}, timeout=30)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "fine"
    assert r.json()["usage"] == usage  # relayed verbatim
    time.sleep(0.2)  # let the server finish the request after the response went out
    after = proxy.log()[seen:]
    assert "Traceback" not in after and "Exception in ASGI application" not in after, after
