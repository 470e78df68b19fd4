"""The LLM orchestrator protocol, end to end and unit by unit.

End to end: client -> plano -> a MockLLM playing the orchestrator model -> agents.
All three agents share one MockLLM, so the ``x-plano-agent-id`` headers it records
give the exact order in which the chain ran.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

from gateway.routing.embedded import EmbeddedRouter
from gateway.routing.orchestrator import (
    MAX_ROUTING_TURNS,
    OrchestratorError,
    build_prompt,
    parse_route,
    select_messages,
)
from gateway.routing.types import AgentSpec
from tests.support.agent_mocks import (
    MockTeam,
    assert_openai_error,
    called_agents,
    chat_posts,
    route_reply,
)
from tests.support.gateway import Gateway, free_port
from tests.support.mock_llm import Reply

ORCH_KEY = "sk-orchestrator-key-5d1e"
EMPTY_PARAMS = {"type": "object", "properties": {}, "required": []}

# helper (the default) is deliberately not listed first
LISTENER_AGENTS = [
    {"id": "weather", "description": "Weather information: current conditions and forecasts\n  (temperature, rain, "
                                     "wind)   for cities."},
    {"id": "helper", "default": True,
     "description": "Friendly general assistant for greetings, thanks and small talk."},
    {"id": "flights", "description": "Flight search: flights, airlines, schedules and fares between airports or "
                                     "cities."},
]
SPECS = [AgentSpec(a["id"], a["description"], bool(a.get("default"))) for a in LISTENER_AGENTS]

RAIN = "Will it rain in Tokyo tomorrow?"  # the embedded router sends this to weather, not to the default
BOTH = "What's the weather in Paris and find me flights from NYC to Paris"


def embedded_choice(text: str) -> list[str]:
    return EmbeddedRouter(SPECS).route([{"role": "user", "content": text}]).agents


@pytest.fixture(scope="module")
def team():
    t = MockTeam("agents", "orch").start()
    yield t
    t.stop()


@pytest.fixture(scope="module")
def gw(team, tmp_path_factory):
    port, model_port = free_port(), free_port()
    config = {
        "version": "v0.4.0",
        "agents": [{"id": a["id"], "url": team["agents"].url} for a in LISTENER_AGENTS],
        "model_providers": [
            {"model": "openai/orch", "access_key": ORCH_KEY, "base_url": f"{team['orch'].url}/v1"},
        ],
        "overrides": {"agent_orchestration_model": "openai/orch", "agent_orchestration_timeout": "1s"},
        "listeners": [
            {"type": "agent", "name": "travel", "port": port, "address": "127.0.0.1", "agents": LISTENER_AGENTS},
            {"type": "model", "name": "models", "port": model_port, "address": "127.0.0.1"},
        ],
    }
    g = Gateway(config, tmp_path_factory.mktemp("orchestrator")).start()
    g.agent_url = f"http://127.0.0.1:{port}"
    yield g
    g.stop()


@pytest.fixture(autouse=True)
def clean(team):
    team.reset()
    yield
    team.reset()


def ask(gw, messages, headers=None, stream=False) -> httpx.Response:
    body = {"model": "travel", "messages": messages}
    if stream:
        body["stream"] = True
    return httpx.post(f"{gw.agent_url}/v1/chat/completions", json=body, headers=headers or {}, timeout=30)


def user(text):
    return [{"role": "user", "content": text}]


def prompt_blocks(prompt: str) -> tuple[list[str], list[dict]]:
    routes = re.search(r"<routes>\n(.*?)\n</routes>", prompt, re.DOTALL)
    conversation = re.search(r"<conversation>\n(.*?)\n</conversation>", prompt, re.DOTALL)
    assert routes and conversation, prompt
    return routes.group(1).split("\n"), json.loads(conversation.group(1))


def test_oracle_embedded_router_differs_from_the_default():
    # the fallback tests below are only meaningful if these differ from the default agent
    assert embedded_choice(RAIN) == ["weather"]
    assert embedded_choice(BOTH) == ["weather", "flights"]


# -- the request to the orchestrator model ----------------------------------------------------


def test_orchestrator_request_protocol(gw, team):
    team["orch"].enqueue(route_reply("flights"))
    conversation = [
        {"role": "system", "content": "You are a travel assistant."},
        {"role": "developer", "content": "internal notes"},
        {"role": "user", "content": [{"type": "text", "text": "I plan a trip"}, {"type": "text", "text": "to Paris."}]},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "tool output must not be routed on"},
        {"role": "assistant", "content": "Great, how can I help?"},
        {"role": "user", "content": "Find me flights from NYC to Paris"},
    ]
    r = ask(gw, conversation, headers={"x-request-id": "req-orch-1", "authorization": "Bearer sk-client-key",
                                       "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
    assert r.status_code == 200, r.text
    [seen] = chat_posts(team["orch"])
    assert seen.path == "/v1/chat/completions"
    body = seen.body
    assert body["model"] == "orch"
    assert body["temperature"] == 0.01
    assert len(body["messages"]) == 1 and body["messages"][0]["role"] == "user"
    assert seen.headers["authorization"] == f"Bearer {ORCH_KEY}"
    assert "sk-client-key" not in json.dumps(seen.headers)
    assert seen.headers["x-request-id"] == "req-orch-1"
    assert seen.headers["traceparent"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"

    prompt = body["messages"][0]["content"]
    lines, turns = prompt_blocks(prompt)
    expected_routes = [{"name": a["id"], "description": " ".join(a["description"].split()), "parameters": EMPTY_PARAMS}
                       for a in LISTENER_AGENTS]
    assert [json.loads(line) for line in lines] == expected_routes  # one object per line, listener order
    assert all(line == json.dumps(json.loads(line)) for line in lines)  # python-style spacing
    assert turns == [
        {"role": "user", "content": "I plan a trip to Paris."},
        {"role": "assistant", "content": "Great, how can I help?"},
        {"role": "user", "content": "Find me flights from NYC to Paris"},
    ]
    assert "tool output" not in prompt and "internal notes" not in prompt and "travel assistant." not in prompt
    assert '{"route": [' in prompt
    # the agent got the client's conversation, not the orchestrator's prompt
    assert called_agents(team["agents"]) == ["flights"]
    assert chat_posts(team["agents"])[0].body["messages"] == conversation


def test_overflowing_latest_message_is_trimmed_in_the_middle(gw, team):
    team["orch"].enqueue(route_reply("weather"))
    head, tail = "HEAD-" + "h" * 100, "t" * 100 + "-TAIL"
    huge = head + "m" * 100_000 + tail
    r = ask(gw, [{"role": "user", "content": "older turn"}, {"role": "assistant", "content": "ok"},
                 {"role": "user", "content": huge}])
    assert r.status_code == 200, r.text
    _, turns = prompt_blocks(team["orch"].last.body["messages"][0]["content"])
    newest = turns[-1]["content"]
    assert newest.startswith(head) and newest.endswith(tail) and " … " in newest
    assert len(newest) < 8192 * 4  # fits the default 8192-token context
    assert len(turns) == 1  # the first overflowing message ends the walk; older turns are dropped
    assert chat_posts(team["agents"])[0].body["messages"][-1]["content"] == huge  # the agent gets it whole


# -- answers of the orchestrator model ---------------------------------------------------------


@pytest.mark.parametrize("content, expected", [
    ('{"route": ["flights"]}', ["flights"]),
    ("{'route': ['flights']}", ["flights"]),
    ('```json\n{"route": ["weather", "flights"]}\n```', ["weather", "flights"]),
    ('```\n{"route": ["flights"]}\n```', ["flights"]),
    ('Sure. {"route": ["flights"]} Hope that helps.', ["flights"]),
    ('{\\n"route": ["flights"]\\n}', ["flights"]),
    ('{"route": [" flights ", "", 7]}', ["flights"]),
    ('{"route": ["ghost", "flights", "phantom"]}', ["flights"]),
    ('{"route": ["flights", "weather", "flights"]}', ["flights", "weather", "flights"]),
    ('{"route": ["ghost"]}', ["helper"]),
    ('{"route": []}', ["helper"]),
], ids=["plain", "single-quotes", "fenced-json", "fenced", "prose", "literal-newlines", "blank-and-nonstring",
        "unknown-dropped", "duplicates-kept", "only-unknown->default", "empty->default"])
def test_route_answers(gw, team, content, expected):
    team["orch"].enqueue(route_reply(raw=content))
    r = ask(gw, user(RAIN))
    assert r.status_code == 200, r.text
    assert len(chat_posts(team["orch"])) == 1
    assert called_agents(team["agents"]) == expected
    assert r.json()["choices"][0]["message"]["content"] == f"echo: {RAIN}"  # the last agent's answer


def test_chain_from_orchestrator_hands_answers_forward(gw, team):
    team["orch"].enqueue(route_reply("weather", "flights"))
    team["agents"].enqueue(Reply("json", content="Rain expected in Tokyo."), Reply("json", content="JL 005 at 11:00"))
    r = ask(gw, user(RAIN))
    assert r.json()["choices"][0]["message"]["content"] == "JL 005 at 11:00"
    second = chat_posts(team["agents"])[1].body["messages"]
    assert second == [{"role": "assistant", "name": "weather", "content": "Rain expected in Tokyo."}, *user(RAIN)]


@pytest.mark.parametrize("reply", [
    Reply("json", content="I would pick the flights agent."),
    Reply("json", content='{"route": "flights"}'),
    Reply("json", content='{"destination": ["flights"]}'),
    Reply("json", body={"object": "chat.completion", "choices": []}),
    Reply("error", status=500, body={"error": {"message": "orchestrator overloaded"}}),
    Reply("error", status=401, body={"error": {"message": "bad key"}}),
    Reply("garbage"),
    Reply("reset"),
    Reply("hang"),  # longer than overrides.agent_orchestration_timeout (1s)
], ids=["prose", "route-not-list", "no-route-key", "no-choices", "http-500", "http-401", "garbage", "reset", "hang"])
@pytest.mark.parametrize("question", [RAIN, BOTH], ids=["rain", "weather+flights"])
def test_orchestrator_failure_falls_back_to_embedded_router(gw, team, reply, question):
    team["orch"].enqueue(reply)
    r = ask(gw, user(question))
    assert r.status_code == 200, r.text  # never a failed request
    assert len(chat_posts(team["orch"])) == 1
    assert called_agents(team["agents"]) == embedded_choice(question)
    assert r.json()["choices"][0]["message"]["content"] == f"echo: {question}"


def test_orchestrator_failure_fallback_streams_too(gw, team):
    team["orch"].enqueue(Reply("error", status=503, body="down", content_type="text/plain"))
    r = ask(gw, user(RAIN), stream=True)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert "data: [DONE]" in r.text
    assert called_agents(team["agents"]) == ["weather"]


def test_bad_input_never_reaches_the_orchestrator(gw, team):
    r = httpx.post(f"{gw.agent_url}/v1/chat/completions", content=b'{"messages": []}',
                   headers={"content-type": "application/json"})
    assert_openai_error(r, 400, "invalid_type")
    assert team.all_requests() == []


# -- unit: parse_route ----------------------------------------------------------------------


@pytest.mark.parametrize("content, expected", [
    ('{"route": ["a", "b"]}', ["a", "b"]),
    ("{'route': ['a']}", ["a"]),
    ('```json\n{"route": ["a"]}\n```', ["a"]),
    ('```\n{"route": ["a"]}\n```', ["a"]),
    ('  The answer is {"route": ["b"]}.  ', ["b"]),
    ('{\\n  "route": ["a"]\\n}', ["a"]),
    ('{"route": []}', []),
    ('{"route": ["a", "a", "b", "a"]}', ["a", "a", "b", "a"]),
    ('{"route": ["  a ", "", "   ", null, 3, {"x": 1}]}', ["a"]),
    ('{"route": ["unknown-agent"]}', ["unknown-agent"]),  # dropping unknown names is the caller's job
])
def test_parse_route(content, expected):
    assert parse_route(content) == expected


@pytest.mark.parametrize("content", [
    "",
    "flights please",
    '["a", "b"]',
    "{not json at all}",
    '{"route": "a"}',
    '{"routes": ["a"]}',
    '{"route": null}',
])
def test_parse_route_rejects(content):
    with pytest.raises(OrchestratorError):
        parse_route(content)


# -- unit: select_messages -------------------------------------------------------------------


def turn(role, text):
    return {"role": role, "content": text}


def test_select_messages_keeps_text_turns_of_users_and_assistants():
    messages = [
        turn("system", "sys"), turn("developer", "dev"),
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {}},
                                     {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": None, "tool_calls": []},
        turn("tool", "result"), turn("assistant", "   "), "not a message",
        turn("assistant", "  answer  "), turn("user", "next"),
    ]
    assert select_messages(messages, 8192, 0) == [turn("user", "a b"), turn("assistant", "answer"),
                                                  turn("user", "next")]
    assert select_messages([], 8192, 0) == []


def test_select_messages_caps_at_16_turns_newest_kept():
    messages = [turn("user" if i % 2 == 0 else "assistant", f"turn {i}") for i in range(24)]
    kept = select_messages(messages, 100_000, 0)
    assert MAX_ROUTING_TURNS == 16
    assert kept == [turn(m["role"], m["content"]) for m in messages[-16:]]


def test_select_messages_trims_overflowing_user_message_in_the_middle():
    older = "x" * 40
    big = "HEAD" + "a" * 300 + "b" * 300 + "TAIL"
    messages = [turn("user", older), turn("user", big), turn("assistant", "y" * 40), turn("user", "z" * 40)]
    # 11 tokens per 40-char message; 30 tokens left when the big message is reached
    kept = select_messages(messages, 52 + 100, 100)
    assert [m["role"] for m in kept] == ["user", "assistant", "user"]  # the older message is not reached
    assert kept[1:] == [turn("assistant", "y" * 40), turn("user", "z" * 40)]
    trimmed = kept[0]["content"]
    assert trimmed.startswith("HEAD") and trimmed.endswith("TAIL")
    head, sep, tail = trimmed.partition(" … ")
    assert sep and len(trimmed) < len(big)
    assert big.startswith(head) and big.endswith(tail)
    assert 0.5 < len(head) / (len(head) + len(tail)) < 0.7  # about 60 % head, 40 % tail
    assert len(trimmed) // 4 + 1 <= 30  # it fits what was left


def test_select_messages_does_not_trim_assistant_messages():
    messages = [turn("user", "first"), turn("assistant", "y" * 400), turn("user", "z" * 40)]
    assert select_messages(messages, 30, 0) == [turn("user", "z" * 40)]


@pytest.mark.parametrize("budget, prompt_tokens", [(0, 0), (100, 200), (5, 0)])
def test_select_messages_always_keeps_the_newest(budget, prompt_tokens):
    newest = "q" * 4000
    kept = select_messages([turn("user", "old"), turn("user", newest)], budget, prompt_tokens)
    assert kept == [turn("user", newest)]


def test_select_messages_trims_an_oversized_newest_message_to_fit():
    newest = "HEAD" + "q" * 4000 + "TAIL"
    kept = select_messages([turn("user", "old"), turn("user", newest)], 100, 0)
    assert len(kept) == 1
    assert kept[0]["content"].startswith("HEAD") and kept[0]["content"].endswith("TAIL")
    assert len(kept[0]["content"]) // 4 + 1 <= 100


# -- unit: build_prompt ------------------------------------------------------------------------


def test_build_prompt_routes_and_conversation():
    messages = [turn("system", "sys"), turn("user", "hello"), turn("assistant", "hi"), turn("user", "flights?")]
    prompt = build_prompt(SPECS, messages, 8192)
    lines, turns = prompt_blocks(prompt)
    assert lines == [json.dumps({"name": s.id, "description": " ".join(s.description.split()),
                                 "parameters": EMPTY_PARAMS}, ensure_ascii=False) for s in SPECS]
    assert lines[0].startswith('{"name": "weather", "description": "Weather information: current conditions and '
                               'forecasts (temperature, rain, wind) for cities.", "parameters": ')
    assert turns == [turn("user", "hello"), turn("assistant", "hi"), turn("user", "flights?")]
    conversation = prompt.split("<conversation>\n", 1)[1].split("\n</conversation>", 1)[0]
    assert conversation == json.dumps(turns, indent=4, ensure_ascii=False)  # 4-space pretty JSON
    assert '{"route": ["agent_name", ...]}' in prompt
    assert "{routes}" not in prompt and "{conversation}" not in prompt and "{{" not in prompt


def test_build_prompt_keeps_non_ascii_and_respects_the_context_budget():
    small = build_prompt(SPECS, [turn("user", "Météo à Zürich ☔?")], 8192)
    assert "Météo à Zürich ☔?" in small
    huge = "start " + "word " * 20_000 + " end"
    prompt = build_prompt(SPECS, [turn("user", "earlier"), turn("user", huge)], 1000)
    _, turns = prompt_blocks(prompt)
    assert len(turns) == 1 and " … " in turns[0]["content"]
    assert len(prompt) // 4 <= 1000 + 50  # template + routes + trimmed turn stay within the context
