"""Background Responses and ``POST /v1/responses/{id}/cancel`` on the model listener.

A translated upstream (an OpenAI-compatible chat server: plano keeps the Responses state)
runs ``background: true`` requests in the gateway: the answer is the ``queued`` response,
``GET /v1/responses/{id}`` follows it to ``completed`` / ``failed``, and cancel stops one still
running. Real sockets: the ``openai`` SDK → plano (real process) → a scripted mock chat upstream.
"""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.support.gateway import Gateway, free_port
from tests.support.mock_llm import MockLLM, Reply


@pytest.fixture(scope="module")
def upstream():
    m = MockLLM().start()
    yield m
    m.stop()


@pytest.fixture(scope="module")
def gw(upstream, tmp_path_factory):
    config = {
        "version": "v0.4.0",
        "listeners": [{"type": "model", "name": "llm", "port": free_port(), "address": "127.0.0.1"}],
        "model_providers": [{"model": "groq/llama-3", "access_key": "sk-groq", "base_url": f"{upstream.url}/v1",
                             "default": True}],
        "state_storage": {"type": "memory"},
    }
    g = Gateway(config, tmp_path_factory.mktemp("responses-cancel"),
                env={"PLANO_HOME": str(tmp_path_factory.mktemp("home"))}).start()
    yield g
    g.stop()


@pytest.fixture
def client(gw, upstream):
    upstream.reset()
    return openai.OpenAI(base_url=f"{gw.url()}/v1", api_key="sk-client", max_retries=0, timeout=20)


def wait_status(client, response_id: str, wanted: set[str], limit: float = 15.0):
    deadline = time.monotonic() + limit
    while True:
        resp = client.responses.retrieve(response_id)
        if resp.status in wanted or time.monotonic() > deadline:
            return resp
        time.sleep(0.05)


def test_background_response_completes(client, upstream):
    created = client.responses.create(model="llama-3", input="in the background", background=True)
    assert created.status == "queued" and created.background is True and created.output == []
    done = wait_status(client, created.id, {"completed", "failed"})
    assert done.status == "completed" and done.output_text == "echo: in the background"
    assert done.background is True and done.id == created.id
    assert upstream.requests[-1].path == "/v1/chat/completions"


def test_background_conversation_continues(client):
    first = client.responses.create(model="llama-3", input="remember me", background=True)
    wait_status(client, first.id, {"completed"})
    second = client.responses.create(model="llama-3", input="and now?", previous_response_id=first.id)
    assert second.output_text == "echo: and now?"
    items = client.responses.input_items.list(second.id).data
    assert len(items) >= 3  # first input, its answer, the new input


def test_cancel_a_running_background_response(client, upstream):
    upstream.enqueue(Reply("hang"))
    created = client.responses.create(model="llama-3", input="take forever", background=True)
    running = wait_status(client, created.id, {"in_progress"})
    assert running.status == "in_progress"
    cancelled = client.responses.cancel(created.id)
    assert cancelled.id == created.id and cancelled.status == "cancelled"
    assert client.responses.retrieve(created.id).status == "cancelled"
    assert client.responses.cancel(created.id).status == "cancelled"  # idempotent


def test_background_failure_is_stored(client, upstream):
    upstream.enqueue(Reply("error", status=500, body={"error": {"message": "boom", "type": "server_error"}}))
    created = client.responses.create(model="llama-3", input="fail please", background=True)
    failed = wait_status(client, created.id, {"failed", "completed"})
    assert failed.status == "failed" and "boom" in failed.error.message


def test_cancel_a_completed_response_is_refused(client):
    created = client.responses.create(model="llama-3", input="quick", background=True)
    wait_status(client, created.id, {"completed"})
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.cancel(created.id)
    assert info.value.body["code"] == "response_not_cancellable" and "completed" in info.value.body["message"]


def test_cancel_a_foreground_response_is_refused(client):
    resp = client.responses.create(model="llama-3", input="not in the background")
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.cancel(resp.id)
    assert info.value.body["code"] == "response_not_cancellable" and "background" in info.value.body["message"]


def test_cancel_unknown_id_is_a_responses_404(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.cancel("resp_doesnotexist")
    assert info.value.body["code"] == "response_not_found"


def test_cancel_needs_post(gw):
    r = httpx.get(f"{gw.url()}/v1/responses/resp_x/cancel", timeout=10)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_background_stream_is_refused_clearly(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="llama-3", input="x", background=True, stream=True)
    assert info.value.body["param"] == "stream"
