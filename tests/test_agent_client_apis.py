"""Agent listeners serve Anthropic Messages and OpenAI Responses clients too (issue 13, build item 7).

Real sockets: the official ``anthropic`` SDK and the ``openai`` SDK's ``responses`` API →
plano (real process) → agents that speak Chat Completions: a real demo agent
(``examples.agents.weather``) and scripted mock agents (tests/support/mock_llm.py) that
record what they received. The request reaches the agents as chat; the answer — JSON or
stream, one agent, a chain, ``answers: all`` — and every error come back in the client's API.
"""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest

from tests.support.agent_mocks import MockTeam, chat_posts, route_reply
from tests.support.agent_procs import ExampleAgentProcess
from tests.support.gateway import Gateway, free_port
from tests.support.mock_llm import Reply, completion

DEMO_DATE = "2025-06-02"


@pytest.fixture(scope="module")
def team():
    t = MockTeam("solo", "a", "b", "orch").start()
    yield t
    t.stop()


@pytest.fixture(scope="module")
def weather(tmp_path_factory):
    proc = ExampleAgentProcess("weather", tmp_path_factory.mktemp("weather-agent"),
                               env={"PLANO_DEMO_DATE": DEMO_DATE}).launch()
    proc.wait_healthy()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def gw(team, weather, tmp_path_factory):
    ports = {name: free_port() for name in ("solo", "weather", "team", "all", "model")}
    a_b = [{"id": "a", "description": "Weather: current conditions and forecasts for cities."},
           {"id": "b", "description": "Flight search: flights, airlines and fares between cities."}]
    config = {
        "version": "v0.4.0",
        "agents": [{"id": "solo", "url": team["solo"].url}, {"id": "a", "url": team["a"].url},
                   {"id": "b", "url": team["b"].url}, {"id": "weather_agent", "url": weather.url}],
        "model_providers": [{"model": "openai/orch", "access_key": "sk-orch", "base_url": f"{team['orch'].url}/v1",
                             "default": True}],
        "overrides": {"agent_orchestration_model": "openai/orch"},
        "state_storage": {"type": "memory"},
        "listeners": [
            {"type": "agent", "name": "solo_desk", "port": ports["solo"], "address": "127.0.0.1",
             "agents": [{"id": "solo", "description": "Answers every question."}]},
            {"type": "agent", "name": "weather_desk", "port": ports["weather"], "address": "127.0.0.1",
             "agents": [{"id": "weather_agent", "description": "Weather forecasts."}]},
            {"type": "agent", "name": "travel_team", "port": ports["team"], "address": "127.0.0.1", "agents": a_b},
            {"type": "agent", "name": "all_team", "port": ports["all"], "address": "127.0.0.1", "agents": a_b,
             "answers": "all"},
            {"type": "model", "name": "models", "port": ports["model"], "address": "127.0.0.1"},
        ],
    }
    g = Gateway(config, tmp_path_factory.mktemp("agent-client-apis"),
                env={"PLANO_HOME": str(tmp_path_factory.mktemp("home"))}).start()
    g.urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    yield g
    g.stop()


@pytest.fixture(autouse=True)
def clean(team):
    team.reset()
    yield
    team.reset()


def ac(gw, name: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.urls[name], api_key="sk-client", max_retries=0, timeout=20)


def oc(gw, name: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.urls[name]}/v1", api_key="sk-client", max_retries=0, timeout=20)


def text_of(message) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


# ------------------------------------------------------------------ Anthropic Messages clients


def test_messages_create_reaches_the_agent_as_chat(gw, team):
    msg = ac(gw, "solo").messages.create(model="desk", max_tokens=64, system="be brief",
                                         messages=[{"role": "user", "content": "hello agent"}])
    assert msg.type == "message" and msg.role == "assistant" and msg.stop_reason == "end_turn"
    assert text_of(msg) == "echo: hello agent"
    assert msg.usage.input_tokens == 5 and msg.usage.output_tokens == 3
    (seen,) = chat_posts(team["solo"])
    assert seen.path == "/v1/chat/completions"
    assert seen.body["messages"] == [{"role": "system", "content": "be brief"},
                                     {"role": "user", "content": "hello agent"}]
    assert seen.body["max_tokens"] == 64 and seen.body["model"] == "desk"


def test_messages_stream_from_an_agent(gw, team):
    kinds = []
    with ac(gw, "solo").messages.stream(model="desk", max_tokens=64,
                                        messages=[{"role": "user", "content": "stream it please"}]) as stream:
        for event in stream:
            kinds.append(event.type)
        final = stream.get_final_message()
    assert text_of(final) == "echo: stream it please"
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_delta" in kinds and "message_delta" in kinds
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 4
    assert chat_posts(team["solo"])[0].body["stream"] is True


def test_messages_client_to_a_real_demo_agent(gw):
    client = ac(gw, "weather")
    msg = client.messages.create(model="weather", max_tokens=256,
                                 messages=[{"role": "user", "content": "What's the weather in Paris today?"}])
    assert "Paris" in text_of(msg) and msg.stop_reason == "end_turn"
    with client.messages.stream(model="weather", max_tokens=256,
                                messages=[{"role": "user", "content": "What's the weather in Paris today?"}]) as s:
        streamed = s.get_final_message()
    assert text_of(streamed) == text_of(msg)  # the demo agent is deterministic


def test_messages_chain_of_two_agents(gw, team):
    team["orch"].enqueue(route_reply("a", "b"))
    team["a"].enqueue(Reply("json", body=completion("a", "Paris: 18C and sunny.")))
    team["b"].enqueue(Reply("json", body=completion("b", "AF007 leaves JFK at 19:30.")))
    msg = ac(gw, "team").messages.create(model="team", max_tokens=128, messages=[
        {"role": "user", "content": "Weather in Paris and flights there from NYC?"}])
    assert text_of(msg) == "AF007 leaves JFK at 19:30."
    handed = chat_posts(team["b"])[0].body["messages"]
    assert {"role": "assistant", "name": "a", "content": "Paris: 18C and sunny."} in handed


def test_messages_tool_calls_from_an_agent(gw, team):
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}
    body = completion("solo", None, tool_calls=[call])
    body["choices"][0]["finish_reason"] = "tool_calls"
    team["solo"].enqueue(Reply("json", body=body))
    msg = ac(gw, "solo").messages.create(model="desk", max_tokens=64, messages=[{"role": "user", "content": "Rome?"}],
                                         tools=[{"name": "get_weather", "input_schema": {"type": "object"}}])
    (use,) = [b for b in msg.content if b.type == "tool_use"]
    assert (use.id, use.name, use.input) == ("call_1", "get_weather", {"city": "Rome"})
    assert msg.stop_reason == "tool_use"
    assert chat_posts(team["solo"])[0].body["tools"][0]["function"]["name"] == "get_weather"


def test_messages_answers_all_is_one_message(gw, team):
    team["orch"].enqueue(route_reply("a", "b"))
    team["a"].enqueue(Reply("json", body=completion("a", "Sunny in Paris.")))
    team["b"].enqueue(Reply("json", body=completion("b", "Three flights tomorrow.")))
    msg = ac(gw, "all").messages.create(model="team", max_tokens=128, messages=[
        {"role": "user", "content": "Weather in Paris and flights there?"}])
    text = text_of(msg)
    assert "Sunny in Paris." in text and "Three flights tomorrow." in text
    assert text.index("Sunny in Paris.") < text.index("Three flights tomorrow.")


def test_messages_agents_prefix_path(gw):
    r = httpx.post(f"{gw.urls['solo']}/agents/v1/messages?beta=true", timeout=20,
                   json={"model": "x", "max_tokens": 16, "messages": [{"role": "user", "content": "via prefix"}]},
                   headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 200, r.text
    assert r.json()["type"] == "message" and r.json()["content"][0]["text"] == "echo: via prefix"


# ------------------------------------------------------------------ errors in the Anthropic envelope


def test_messages_bad_request_is_anthropic_shaped(gw, team):
    with pytest.raises(anthropic.BadRequestError) as info:
        ac(gw, "solo").messages.create(model="x", max_tokens=0, messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in info.value.body["error"]["message"]
    assert chat_posts(team["solo"]) == []


@pytest.mark.parametrize("status, error", [(404, anthropic.NotFoundError), (503, anthropic.InternalServerError)])
def test_messages_agent_error_status_is_anthropic_shaped(gw, team, status, error):
    team["solo"].enqueue(Reply("error", status=status, body={"error": {"message": "agent says no", "type": "x"}}))
    with pytest.raises(error) as info:
        ac(gw, "solo").messages.create(model="x", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == status
    body = info.value.body
    assert body["type"] == "error" and "agent says no" in body["error"]["message"]
    assert body["error"]["type"] == ("not_found_error" if status == 404 else "overloaded_error")
    assert body["request_id"] == info.value.response.headers["x-request-id"]


def test_messages_stream_broken_mid_way_raises_in_the_sdk(gw, team):
    team["solo"].enqueue(Reply("reset_mid_stream", tokens=["one", " two", " three"]))
    with pytest.raises(anthropic.APIStatusError) as info:
        with ac(gw, "solo").messages.stream(model="x", max_tokens=16,
                                            messages=[{"role": "user", "content": "hi"}]) as stream:
            for _ in stream:
                pass
    assert "agent" in str(info.value.message).lower() or info.value.body["error"]["type"] == "api_error"


# ------------------------------------------------------------------ OpenAI Responses clients


def test_responses_create_reaches_the_agent_as_chat(gw, team):
    resp = oc(gw, "solo").responses.create(model="desk", input="hello responses", instructions="be brief",
                                           max_output_tokens=32)
    assert resp.object == "response" and resp.status == "completed"
    assert resp.output_text == "echo: hello responses"
    assert resp.usage.input_tokens == 5 and resp.usage.output_tokens == 3
    (seen,) = chat_posts(team["solo"])
    assert seen.body["messages"] == [{"role": "system", "content": "be brief"},
                                     {"role": "user", "content": "hello responses"}]
    assert seen.body["max_tokens"] == 32


def test_responses_stream_from_an_agent(gw, team):
    kinds = []
    with oc(gw, "solo").responses.stream(model="desk", input=[
            {"role": "user", "content": [{"type": "input_text", "text": "mixed"},
                                         {"type": "input_text", "text": "content"}]}]) as stream:
        for event in stream:
            kinds.append(event.type)
        final = stream.get_final_response()
    assert final.output_text.startswith("echo:") and final.status == "completed"
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed" and "response.output_text.delta" in kinds
    assert chat_posts(team["solo"])[0].body["stream"] is True


def test_responses_client_to_a_real_demo_agent(gw):
    client = oc(gw, "weather")
    resp = client.responses.create(model="weather", input="What's the weather in Paris today?")
    assert "Paris" in resp.output_text
    events = list(client.responses.create(model="weather", input="What's the weather in Paris today?", stream=True))
    done = [e for e in events if e.type == "response.completed"]
    assert len(done) == 1 and done[0].response.output_text == resp.output_text


def test_responses_function_call_from_an_agent(gw, team):
    call = {"id": "call_9", "type": "function", "function": {"name": "book", "arguments": '{"seat": "1A"}'}}
    body = completion("solo", None, tool_calls=[call])
    body["choices"][0]["finish_reason"] = "tool_calls"
    team["solo"].enqueue(Reply("json", body=body))
    resp = oc(gw, "solo").responses.create(model="desk", input="book it", tools=[
        {"type": "function", "name": "book", "parameters": {"type": "object"}}])
    (item,) = [o for o in resp.output if o.type == "function_call"]
    assert (item.call_id, item.name, json.loads(item.arguments)) == ("call_9", "book", {"seat": "1A"})


def test_responses_answers_all_streamed(gw, team):
    team["orch"].enqueue(route_reply("a", "b"))
    team["a"].enqueue(Reply("json", body=completion("a", "Sunny in Paris.")))
    team["b"].enqueue(Reply("json", body=completion("b", "Three flights tomorrow.")))
    with oc(gw, "all").responses.stream(model="team", input="Weather in Paris and flights there?") as stream:
        final = stream.get_final_response()
    assert "Sunny in Paris." in final.output_text and "Three flights tomorrow." in final.output_text


def test_responses_agent_error_is_openai_shaped(gw, team):
    team["solo"].enqueue(Reply("error", status=429, body={"error": {"message": "slow down", "type": "rate"}}))
    with pytest.raises(openai.RateLimitError) as info:
        oc(gw, "solo").responses.create(model="desk", input="hi")
    assert "slow down" in info.value.body["message"]


def test_responses_bad_input_is_openai_shaped(gw):
    r = httpx.post(f"{gw.urls['solo']}/v1/responses", json={"model": "x"}, timeout=20)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "input" and r.json()["error"]["code"] == "missing_required_parameter"


def test_chat_clients_still_get_the_agents_bytes(gw, team):
    team["solo"].enqueue(Reply("json", body={**completion("solo", "as is"), "x_extra": 1}))
    r = httpx.post(f"{gw.urls['solo']}/v1/chat/completions", timeout=20,
                   json={"messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200 and r.json()["x_extra"] == 1  # passed through, not re-encoded


def test_responses_previous_response_id_is_refused_clearly(gw, team):
    with pytest.raises(openai.BadRequestError) as info:
        oc(gw, "solo").responses.create(model="desk", input="and then?", previous_response_id="resp_123")
    assert info.value.body["param"] == "previous_response_id" and "agent listeners" in info.value.body["message"]
    assert chat_posts(team["solo"]) == []
