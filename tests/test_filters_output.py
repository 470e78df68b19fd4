"""Output filters end to end: the answer (JSON or SSE) passes through real filter services
before the client sees it — on the model listener and on agents, per event or through the
sliding text window that catches a secret split across SSE chunks.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest

from gateway.filters import FilterRun
from gateway.filters.chain import ChainEntry
from gateway.filters.spec import FilterSpec
from gateway.filters.stream import StreamFilter
from tests.support.agent_mocks import MockTeam, chat_posts, route_reply
from tests.support.gateway import Gateway, free_port
from tests.support.http_filter_mock import SECRET as MOCK_SECRET
from tests.support.http_filter_mock import HttpFilterMock, map_strings
from tests.support.mock_llm import Reply, completion
from tests.support.mock_llm import chunk as mock_chunk

SECRET = "sk-live-ABCDEF1234567890"


@pytest.fixture(scope="module")
def filt():
    f = HttpFilterMock().start()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def team():
    t = MockTeam("agent", "a", "b", "orch").start()
    yield t
    t.stop()


@pytest.fixture(scope="module")
def gw(filt, team, mock_llm, tmp_path_factory):
    ports = {name: free_port() for name in ("model", "events", "window", "guarded", "deadout", "team")}

    def agent_listener(name, agents):
        return {"type": "agent", "name": name, "port": ports[name], "address": "127.0.0.1", "agents": agents}

    def one(output):
        return [{"id": "agent", "description": "answers", "output_filters": output}]

    config = {
        "version": "v0.4.0",
        "agents": [{"id": n, "url": team[n].url} for n in ("agent", "a", "b")],
        "filters": [
            {"id": "redact_window", "type": "http", "url": f"{filt.url}/redact", "stream_mode": "window"},
            {"id": "redact_small", "type": "http", "url": f"{filt.url}/redact", "stream_mode": "window",
             "window_chars": 32},
            {"id": "redact_event", "type": "http", "url": f"{filt.url}/redact"},
            {"id": "guard_out", "type": "http", "url": f"{filt.url}/guard"},
            {"id": "dead_out", "type": "http", "url": f"http://127.0.0.1:{free_port()}"},
        ],
        "model_providers": [
            {"model": "openai/gpt-4o", "access_key": "k", "base_url": f"{mock_llm.url}/v1", "default": True},
            {"model": "openai/orch", "access_key": "k", "base_url": f"{team['orch'].url}/v1"},
        ],
        "overrides": {"agent_orchestration_model": "openai/orch"},
        "listeners": [
            {"type": "model", "name": "llm", "port": ports["model"], "address": "127.0.0.1",
             "output_filters": ["redact_window"]},
            agent_listener("events", one(["redact_event"])),
            agent_listener("window", one(["redact_small"])),
            agent_listener("guarded", one(["guard_out"])),
            agent_listener("deadout", one(["dead_out"])),
            agent_listener("team", [
                {"id": "a", "description": "Weather: forecasts for cities.", "output_filters": ["redact_event"]},
                {"id": "b", "description": "Flights: fares between cities."},
            ]),
        ],
    }
    g = Gateway(config, tmp_path_factory.mktemp("filters-output")).start()
    g.urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    yield g
    g.stop()


@pytest.fixture(autouse=True)
def clean(filt, team, mock_llm):
    filt.reset()
    team.reset()
    mock_llm.reset()


def sdk(gw, name: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.urls[name]}/v1", api_key="k", max_retries=0)


def user(text: str = "tell me") -> list[dict]:
    return [{"role": "user", "content": text}]


def sse_events(gw, name: str) -> list:
    """The raw SSE events a client receives for a streamed request: parsed JSON, or the string '[DONE]'."""
    body = {"model": "gpt-4o", "messages": user(), "stream": True}
    resp = httpx.post(f"{gw.urls[name]}/v1/chat/completions", json=body, timeout=20)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = []
    for block in resp.text.split("\n\n"):
        if block.startswith("data: "):
            data = block[6:]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def text_of(events) -> list[str]:
    """The content pieces, in order, of chunk events."""
    return [c["delta"].get("content") or "" for e in events if isinstance(e, dict) for c in e.get("choices", [])]


# -- model listener ---------------------------------------------------------------------


def test_model_listener_json_answer_redacted(gw, mock_llm, filt):
    mock_llm.enqueue(Reply("json", content=f"your key is {SECRET}, keep it safe"))
    reply = sdk(gw, "model").chat.completions.create(model="gpt-4o", messages=user())
    assert reply.choices[0].message.content == "your key is [REDACTED], keep it safe"
    assert reply.usage.total_tokens == 8  # the rest of the response survives the filter
    (call,) = filt.calls_to("redact")
    assert call.path == "/redact/v1/chat/completions" and call.body["object"] == "chat.completion"


def test_model_listener_stream_secret_split_across_two_chunks(gw, mock_llm, filt):
    mock_llm.enqueue(Reply("sse", tokens=["key: sk-live-ABCDEF", "1234567890 end"]))
    events = sse_events(gw, "model")
    text = "".join(text_of(events))
    assert text == "key: [REDACTED] end"
    assert SECRET not in text and "sk-live" not in text and "1234567890" not in text
    chunks = [e for e in events if isinstance(e, dict)]
    assert len(chunks) > 1 and all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert events[-1] == "[DONE]"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert any(c["choices"] and c["choices"][0]["finish_reason"] == "stop" for c in chunks)
    assert chunks[-1]["usage"]["total_tokens"] == 7  # the usage event passes through the filter intact
    # the SDK reads the same stream to its end
    mock_llm.enqueue(Reply("sse", tokens=["key: sk-live-ABCDEF", "1234567890 end"]))
    parts = [c.choices[0].delta.content or "" for c in sdk(gw, "model").chat.completions.create(
        model="gpt-4o", messages=user(), stream=True) if c.choices]
    assert "".join(parts) == "key: [REDACTED] end"


# -- agent listener ---------------------------------------------------------------------


def test_window_mode_streams_progressively_and_redacts_a_secret_split_four_ways(gw, team):
    tokens = ["The ", "deploy ", "key ", "is ", "sk-live-", "ABCD", "EFGH", "12345678", " and ", "the ", "region ",
              "is ", "eu-west-1. ", "Rotate ", "it ", "every ", "ninety ", "days ", "please."]
    secret = "sk-live-ABCDEFGH12345678"
    team["agent"].enqueue(Reply("sse", tokens=tokens))
    events = sse_events(gw, "window")
    pieces = [p for p in text_of(events) if p]
    assert "".join(pieces) == "".join(tokens).replace(secret, "[REDACTED]")
    assert len(pieces) >= 3, pieces  # released as the window slides, not all at the end
    assert all(secret[:12] not in p for p in pieces)
    assert events[-1] == "[DONE]"


def test_event_mode_filters_each_event(gw, team, filt):
    tokens = [f"one {SECRET} ", "two ", "three"]
    team["agent"].enqueue(Reply("sse", tokens=tokens))
    events = sse_events(gw, "events")
    assert "".join(text_of(events)) == "one [REDACTED] two three"
    calls = filt.calls_to("redact")
    assert len(calls) == len(tokens) + 1  # one call per JSON event (the tokens and the finish event), not [DONE]
    assert all(c.body["object"] == "chat.completion.chunk" for c in calls)
    assert events[-1] == "[DONE]"
    # per event, a secret split across two events is not seen whole: that is what window mode is for
    team["agent"].enqueue(Reply("sse", tokens=["key: sk-live-ABCDEF", "1234567890 end"]))
    assert "".join(text_of(sse_events(gw, "events"))) == "key: sk-live-ABCDEF1234567890 end"


def test_agent_output_filter_on_a_json_answer(gw, team):
    team["agent"].enqueue(Reply("json", content=f"token={SECRET}"))
    reply = sdk(gw, "events").chat.completions.create(model="gpt-4o", messages=user())
    assert reply.choices[0].message.content == "token=[REDACTED]"


def test_output_block_json_and_mid_stream(gw, team):
    team["agent"].enqueue(Reply("json", content="here is how to hack it"))
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(gw, "guarded").chat.completions.create(model="gpt-4o", messages=user())
    assert caught.value.code == "filter_blocked" and "Response blocked by filter 'guard_out'" in caught.value.message
    team["agent"].enqueue(Reply("sse", tokens=["fine ", "then hack ", "it"]))
    seen = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in sdk(gw, "guarded").chat.completions.create(model="gpt-4o", messages=user(), stream=True):
            seen += [c.delta.content for c in chunk.choices]
    assert "matched: 'hack'" in str(caught.value.message)
    assert seen == ["fine "]  # the stream stopped at the blocked event


@pytest.mark.parametrize("stream", [False, True])
def test_output_filters_fail_open_by_default(gw, team, stream):
    team["agent"].enqueue(Reply("sse" if stream else "json", content="plain answer", tokens=["plain ", "an", "swer"]))
    client = sdk(gw, "deadout")
    rid = f"req-deadout-{stream}"
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="gpt-4o", messages=user(), stream=True, extra_headers={"x-request-id": rid}) if c.choices)
    else:
        text = client.chat.completions.create(model="gpt-4o", messages=user(),
                                              extra_headers={"x-request-id": rid}).choices[0].message.content
    assert text == "plain answer"
    decisions = [line for line in gw.log().splitlines() if f"request_id={rid} filter=dead_out" in line]
    # one failed call, then (on a stream) the filter is left out for the remaining events
    assert len([d for d in decisions if "error=connect" in d and "policy=fail_open" in d]) == 1, decisions


def test_intermediate_agent_answer_is_filtered_before_the_handoff(gw, team):
    team["orch"].enqueue(route_reply("a", "b"))
    team["a"].enqueue(Reply("json", body=completion("m", f"Paris is sunny. Debug key {SECRET}.")))
    reply = sdk(gw, "team").chat.completions.create(
        model="gpt-4o", messages=user("weather in Paris and flights from NYC to Paris"))
    assert reply.choices[0].message.content.startswith("echo:")
    (to_b,) = chat_posts(team["b"])
    handed = [m for m in to_b.body["messages"] if m.get("name") == "a"]
    assert handed and handed[0]["content"] == "Paris is sunny. Debug key [REDACTED]."
    assert SECRET not in to_b.raw.decode()


# -- the window guarantee, in process ------------------------------------------------------


class _Redactor:
    """The redact behaviour of the HTTP filter mock, called in process."""

    calls = 0

    async def call(self, payload, path, headers, limit=None):
        _Redactor.calls += 1
        return map_strings(payload, lambda s: MOCK_SECRET.sub("[REDACTED]", s)), 200


def _stream_through_window(pieces: list[str], window: int) -> str:
    spec = FilterSpec("r", "http", "http://x", "r", 1.0, None, "window", window)
    stream = StreamFilter([ChainEntry(spec, _Redactor(), "output")], FilterRun("rid", {}), "/v1/chat/completions")
    sse = b"".join(mock_chunk("m", {"content": p}) for p in pieces) + b"data: [DONE]\n\n"

    async def go() -> str:
        out = b""
        for piece in sse.split(b"\n\n")[:-1]:  # one upstream event at a time
            out += await stream.feed(piece + b"\n\n")
        out += await stream.finish()
        assert out.endswith(b"data: [DONE]\n\n")
        return "".join(json.loads(e[6:])["choices"][0]["delta"].get("content", "")
                       for e in out.split(b"\n\n") if e.startswith(b"data: {"))

    return asyncio.run(go())


@pytest.mark.parametrize("window", [24, 32, 256])
def test_window_redacts_a_secret_wherever_the_chunks_split_it(window):
    text = "Use sk-live-ABCDEF1234567890 for prod and sk-live-ZYXWVU0987654321 for staging, then rotate."
    expected = MOCK_SECRET.sub("[REDACTED]", text)
    for cut in range(1, len(text)):  # every two-chunk split
        assert _stream_through_window([text[:cut], text[cut:]], window) == expected, cut
    for size in (1, 3, 7):  # and small fixed-size chunks
        pieces = [text[i:i + size] for i in range(0, len(text), size)]
        assert _stream_through_window(pieces, window) == expected, size
