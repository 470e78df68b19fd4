"""PII round trip through the real gateway: the LLM sees placeholders, the client the original values.

The built-in ``filters.pii`` service runs as a real process, configured as both the input
and the output filter of the model listener; the mock provider echoes what it received.
"""

from __future__ import annotations

import openai
import pytest

from tests.support.filter_procs import FilterProcess
from tests.support.gateway import Gateway, free_port
from tests.support.mock_llm import Reply

EMAIL = "jane.doe@example.com"
PHONE = "+1 415 555 0132"
CARD = "4111 1111 1111 1111"


@pytest.fixture(scope="module")
def pii_gateway(mock_llm, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("pii")
    pii = FilterProcess("pii", workdir=workdir).start()
    port = free_port()
    config = {
        "version": "v0.4.0",
        "filters": [{"id": "pii", "url": pii.url, "type": "http"}],
        "listeners": [{"type": "model", "name": "llm", "port": port, "address": "127.0.0.1",
                       "input_filters": ["pii"], "output_filters": ["pii"]}],
        "model_providers": [{"model": "openai/gpt-4o", "access_key": "sk-test", "base_url": f"{mock_llm.url}/v1",
                             "default": True}],
    }
    gw = Gateway(config, workdir).start()
    yield gw
    gw.stop()
    pii.stop()


def _client(gw):
    return openai.OpenAI(base_url=f"{gw.url()}/v1", api_key="x", max_retries=0)


@pytest.mark.parametrize("stream", [False, True])
def test_llm_sees_placeholders_client_sees_originals(pii_gateway, llm, stream):
    question = f"Email me at {EMAIL} or call {PHONE}; card {CARD}."
    client = _client(pii_gateway)
    if stream:
        chunks = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": question}], stream=True) if c.choices]
        answer = "".join(chunks)
    else:
        answer = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": question}]
                                                ).choices[0].message.content
    upstream_text = llm.last.body["messages"][-1]["content"]
    for value in (EMAIL, PHONE, CARD):
        assert value not in upstream_text
    assert "<EMAIL_1>" in upstream_text and "<CARD_1>" in upstream_text
    assert answer == f"echo: {question}"


def test_placeholder_split_across_stream_chunks_is_restored(pii_gateway, llm):
    # The provider streams the placeholder in two pieces: "<EMA" + "IL_1>".
    llm.enqueue(Reply("sse", tokens=["Sure, writing to <EMA", "IL_1> now."]))
    stream = _client(pii_gateway).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": f"write to {EMAIL}"}], stream=True)
    answer = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert "<EMAIL_1>" in llm.last.body["messages"][-1]["content"]
    assert answer == f"Sure, writing to {EMAIL} now."
