"""``POST /v1/embeddings`` on the model listener: the official ``openai`` SDK → plano (real process) →
a mock OpenAI-compatible upstream speaking the embeddings wire format (floats or base64)."""

from __future__ import annotations

import base64
import struct
from typing import Any

import httpx
import openai
import pytest
from aiohttp import web

from tests.support.gateway import Gateway, free_port
from tests.support.mock_openai_wire import MockOpenAI, Turn


class MockEmbeddings(MockOpenAI):
    """MockOpenAI plus ``/embeddings``: vector ``i`` of an input is ``[len(text), i, 0.5]``."""

    async def handle(self, request: web.Request, body: Any) -> web.StreamResponse:
        if not request.path.endswith("/embeddings"):
            return await super().handle(request, body)
        turn = self.next_turn()
        if turn.status >= 400:
            return web.json_response(turn.error, status=turn.status)
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for i, text in enumerate(texts):
            vector = [float(len(text)), float(i), 0.5]
            if body.get("encoding_format") == "base64":
                value: Any = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            else:
                value = vector
            data.append({"object": "embedding", "index": i, "embedding": value})
        return web.json_response({"object": "list", "data": data, "model": body["model"],
                                  "usage": {"prompt_tokens": 4, "total_tokens": 4}})


@pytest.fixture(scope="module")
def upstream():
    m = MockEmbeddings().start()
    yield m
    m.stop()


@pytest.fixture(scope="module")
def gw(upstream, tmp_path_factory):
    config = {
        "version": "v0.4.0",
        "listeners": [{"type": "model", "name": "llm", "port": free_port(), "address": "127.0.0.1"}],
        "model_providers": [
            {"model": "openai/gpt-4o", "access_key": "sk-chat", "base_url": f"{upstream.url}/v1", "default": True},
            {"model": "openai/text-embedding-3-small", "access_key": "sk-embed", "base_url": f"{upstream.url}/v1"},
            {"model": "azure_openai/embed-deploy", "access_key": "az-key", "base_url": upstream.url},
            {"model": "anthropic/claude-sonnet-4-6", "access_key": "sk-ant", "base_url": upstream.url},
        ],
        "model_aliases": {"embedder": {"target": "openai/text-embedding-3-small"}},
    }
    g = Gateway(config, tmp_path_factory.mktemp("embeddings-gw"),
                env={"PLANO_HOME": str(tmp_path_factory.mktemp("home"))}).start()
    yield g
    g.stop()


@pytest.fixture
def client(gw, upstream):
    upstream.reset()
    return openai.OpenAI(base_url=f"{gw.url()}/v1", api_key="sk-client", max_retries=0, timeout=20)


@pytest.mark.parametrize("model", ["text-embedding-3-small", "embedder"])
def test_embeddings_pass_through(client, upstream, model):
    result = client.embeddings.create(model=model, input=["hello", "plano!"])
    assert [d.embedding for d in result.data] == [[5.0, 0.0, 0.5], [6.0, 1.0, 0.5]]  # base64 decoded by the SDK
    assert result.usage.prompt_tokens == 4
    seen = upstream.requests[-1]
    assert seen.path == "/v1/embeddings" and seen.body["model"] == "text-embedding-3-small"
    assert seen.headers["authorization"] == "Bearer sk-embed"


def test_embeddings_float_format(client):
    result = client.embeddings.create(model="text-embedding-3-small", input="abc", encoding_format="float")
    assert result.data[0].embedding == [3.0, 0.0, 0.5]


def test_embeddings_azure_deployment(client, upstream):
    result = client.embeddings.create(model="azure_openai/embed-deploy", input="abcd", encoding_format="float")
    assert result.data[0].embedding == [4.0, 0.0, 0.5]
    seen = upstream.requests[-1]
    assert seen.path == "/openai/deployments/embed-deploy/embeddings" and seen.headers["api-key"] == "az-key"


def test_embeddings_provider_without_embeddings_is_a_clear_error(client, upstream):
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="anthropic/claude-sonnet-4-6", input="hi")
    assert info.value.body["code"] == "embeddings_not_supported" and "claude-sonnet-4-6" in info.value.body["message"]
    assert upstream.requests == []


def test_embeddings_upstream_error_is_relayed(client, upstream):
    upstream.enqueue(Turn(status=429, error={"error": {"message": "too many", "type": "rate_limit_error",
                                                       "param": None, "code": "rate_limited"}}))
    with pytest.raises(openai.RateLimitError) as info:
        client.embeddings.create(model="text-embedding-3-small", input="hi")
    assert info.value.body["message"] == "too many"


def test_embeddings_bad_input(gw, upstream):
    r = httpx.post(f"{gw.url()}/v1/embeddings", json={"model": "text-embedding-3-small", "input": []}, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"
    r = httpx.post(f"{gw.url()}/v1/embeddings", json={"model": "text-embedding-3-small"}, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["code"] == "missing_required_parameter"
