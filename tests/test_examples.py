"""The demo agents in examples/agents, each run as a real process and driven with the openai SDK."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.agent_procs import ExampleAgentProcess
from tests.support.mock_llm import Reply

DEMO_DATE = "2025-06-02"  # a Monday; pins "today" so answers are comparable
FLIGHT_NO = re.compile(r"\b[A-Z]{2} \d{3}\b")
CELSIUS = re.compile(r"-?\d+°C")


class AgentProcess(ExampleAgentProcess):
    """A demo agent with "today" pinned to :data:`DEMO_DATE`, driven with the openai SDK."""

    def __init__(self, module: str, log_dir: Path, env: dict | None = None) -> None:
        super().__init__(module, log_dir, env={"PLANO_DEMO_DATE": DEMO_DATE, **(env or {})})

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="unused", max_retries=0, timeout=10)


@pytest.fixture(scope="module")
def agents(tmp_path_factory):
    logs = tmp_path_factory.mktemp("agents")
    procs = {m: AgentProcess(m, logs).spawn() for m in ("weather", "flights", "currency", "general", "local_llm")}
    try:
        for p in procs.values():
            p.wait_healthy()
        yield procs
    finally:
        for p in procs.values():
            p.stop()


@pytest.fixture
def spawn(tmp_path):
    """Start an extra agent process with its own environment (the LLM-path tests)."""
    started: list[AgentProcess] = []

    def start(module: str, **env: str) -> AgentProcess:
        proc = AgentProcess(module, tmp_path, env).spawn()
        started.append(proc)
        return proc.wait_healthy()

    yield start
    for p in started:
        p.stop()


def user(text):
    return [{"role": "user", "content": text}]


def ask(agent: AgentProcess, messages, **kw) -> str:
    messages = user(messages) if isinstance(messages, str) else messages
    reply = agent.client().chat.completions.create(model="demo", messages=messages, **kw)
    assert reply.choices[0].finish_reason == "stop"
    return reply.choices[0].message.content


def ask_stream(agent: AgentProcess, messages, **kw) -> tuple[str, list]:
    messages = user(messages) if isinstance(messages, str) else messages
    chunks = list(agent.client().chat.completions.create(model="demo", messages=messages, stream=True, **kw))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


# --------------------------------------------------------------------------- the kit

@pytest.mark.parametrize("module,agent_id", [("weather", "weather_agent"), ("flights", "flight_agent"),
                                             ("currency", "currency_agent"), ("general", "general_agent"),
                                             ("local_llm", "plano-demo")])
def test_health_and_models(agents, module, agent_id):
    agent = agents[module]
    assert httpx.get(f"{agent.url}/healthz").json()["status"] == "ok"
    assert [m.id for m in agent.client().models.list()] == [agent_id]


def test_json_reply_shape(agents):
    reply = agents["weather"].client().chat.completions.create(model="my-model", messages=user("weather in Paris"))
    assert reply.object == "chat.completion"
    assert reply.model == "my-model"
    assert reply.choices[0].message.role == "assistant"
    assert reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_stream_is_word_by_word_and_matches_json(agents):
    weather = agents["weather"]
    text, chunks = ask_stream(weather, "weather in Paris")
    assert text.strip() == ask(weather, "weather in Paris").strip()
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len(chunks) > 10  # one delta per word, not one blob
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage.completion_tokens > 0


def test_stream_wire_format_ends_with_done(agents):
    body = {"model": "m", "messages": user("hello"), "stream": True}
    r = httpx.post(f"{agents['general'].url}/v1/chat/completions", json=body, headers={"x-request-id": "req-42"})
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-request-id"] == "req-42"
    events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["choices"][0]["finish_reason"] == "stop"


def test_content_parts_are_read(agents):
    parts = [{"type": "text", "text": "convert 100 EUR"}, {"type": "image_url", "image_url": {"url": "x"}},
             {"type": "text", "text": "to USD"}]
    assert "108.70 USD" in ask(agents["currency"], [{"role": "user", "content": parts}])


@pytest.mark.parametrize("raw,param", [
    (b"{not json", None),
    (b"[1, 2]", None),
    (json.dumps({"model": "m"}).encode(), "messages"),
    (json.dumps({"messages": []}).encode(), "messages"),
    (json.dumps({"messages": [{"role": "wizard", "content": "hi"}]}).encode(), "messages[0]"),
    (json.dumps({"messages": [{"role": "user", "content": 5}]}).encode(), "messages[0].content"),
    (json.dumps({"messages": [{"role": "system", "content": "only a system prompt"}]}).encode(), "messages"),
    (json.dumps({"messages": user("hi"), "stream": "yes"}).encode(), "stream"),
])
def test_bad_input_is_an_openai_400(agents, raw, param):
    r = httpx.post(f"{agents['weather'].url}/v1/chat/completions", content=raw,
                   headers={"content-type": "application/json"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert set(error) == {"message", "type", "code", "param"}
    assert error["type"] == "invalid_request_error" and error["message"]
    assert error["param"] == param


def test_bad_input_through_the_sdk(agents):
    with pytest.raises(openai.BadRequestError) as info:
        agents["flights"].client().chat.completions.create(model="m", messages=[])
    assert info.value.status_code == 400
    assert "messages" in info.value.body["message"]


def test_unknown_path_is_an_openai_404(agents):
    r = httpx.get(f"{agents['general'].url}/v1/nope")
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "not_found_error"


# --------------------------------------------------------------------------- weather

def test_weather_paris(agents):
    text = ask(agents["weather"], "What's the weather in Paris today?")
    assert "Paris" in text and CELSIUS.search(text)
    assert "Right now" in text


def test_weather_is_deterministic_per_city(agents):
    weather = agents["weather"]
    assert ask(weather, "weather in Tokyo") == ask(weather, "weather in Tokyo")
    assert ask(weather, "weather in Tokyo").replace("Tokyo, Japan", "") != \
        ask(weather, "weather in Seattle").replace("Seattle, United States", "")


@pytest.mark.parametrize("question,expected", [
    ("weather in NYC tomorrow", ["New York", "Tomorrow (Tue 3 Jun)"]),
    ("London forecast for the next 4 days", ["4-day forecast", "Thursday 5 Jun"]),
    ("Will it rain in Berlin this weekend?", ["Saturday 7 Jun", "Sunday 8 Jun"]),
    ("Seattle weather the day after tomorrow", ["Wednesday 4 Jun"]),
    ("weather in San Francisco and Berlin", ["San Francisco", "Berlin"]),
])
def test_weather_days_and_cities(agents, question, expected):
    text = ask(agents["weather"], question)
    for piece in expected:
        assert piece in text


def test_weather_follow_up_reuses_the_city(agents):
    weather = agents["weather"]
    first = ask(weather, "How's the weather in Tokyo?")
    convo = [*user("How's the weather in Tokyo?"), {"role": "assistant", "content": first},
             *user("and tomorrow?")]
    text = ask(weather, convo)
    assert "Tokyo" in text and "Tomorrow" in text and CELSIUS.search(text)


def test_weather_ignores_the_non_weather_part(agents):
    text = ask(agents["weather"], "Book me a flight from New York to Paris and tell me the weather there")
    assert "Paris" in text and "New York" not in text and CELSIUS.search(text)


def test_weather_without_a_city_asks(agents):
    text = ask(agents["weather"], "what's the weather like?")
    assert "Which city" in text and not CELSIUS.search(text)


# --------------------------------------------------------------------------- flights

def test_flights_nyc_to_paris(agents):
    text = ask(agents["flights"], "Find flights from NYC to Paris tomorrow")
    assert "CDG" in text or "ORY" in text
    assert re.search(r"\b(JFK|EWR)\b", text)
    assert FLIGHT_NO.search(text)
    assert "Tue 3 Jun 2025" in text


def test_flights_stream_and_dates(agents):
    text, _ = ask_stream(agents["flights"], "JFK to LHR on 2025-06-20")
    assert "Fri 20 Jun 2025" in text and "LHR" in text and FLIGHT_NO.search(text)


def test_flights_need_both_ends(agents):
    text = ask(agents["flights"], "I want to fly to Paris")
    assert "flying from" in text and not FLIGHT_NO.search(text)


def test_flights_hand_off_from_weather(agents):
    question = "What's the weather in Paris tomorrow, and find me flights from NYC to Paris"
    forecast = ask(agents["weather"], question)
    messages = [{"role": "assistant", "name": "weather_agent", "content": forecast}, *user(question)]
    text = ask(agents["flights"], messages)
    assert FLIGHT_NO.search(text) and ("CDG" in text or "ORY" in text)
    assert "from weather_agent" in text and CELSIUS.search(text)
    assert "from weather_agent" not in ask(agents["flights"], question)


# --------------------------------------------------------------------------- currency

def test_currency_convert(agents):
    text = ask(agents["currency"], "convert 100 EUR to USD")
    assert "108.70 USD" in text  # 100 / 0.92 from the demo table
    assert "2024-03-01" in text and "not live" in text


def test_currency_rate_and_stream(agents):
    text, _ = ask_stream(agents["currency"], "what is the exchange rate for GBP?")
    assert "1 GBP = 1.2658 USD" in text


def test_currency_words_and_symbols(agents):
    assert "15,000.00 JPY" in ask(agents["currency"], "how much is $100 in yen?")


# --------------------------------------------------------------------------- general + local model

def test_general_greets_and_helps(agents):
    assert ask(agents["general"], "hello there").startswith("Hello!")
    help_text = ask(agents["general"], "what can you do?")
    assert all(a in help_text for a in ("weather_agent", "flight_agent", "currency_agent"))


def test_local_llm_echoes_and_streams(agents):
    model = agents["local_llm"]
    text = ask(model, "Summarise the plano demo please")
    assert "plano-demo" in text and "Summarise the plano demo please" in text
    streamed, chunks = ask_stream(model, "Summarise the plano demo please")
    assert streamed == text and chunks[-1].usage.total_tokens > 0


def test_local_llm_answers_a_system_only_prompt(agents):
    r = httpx.post(f"{agents['local_llm'].url}/v1/chat/completions",
                   json={"model": "plano-demo", "messages": [{"role": "system", "content": "be brief"}]})
    assert r.status_code == 200 and "plano-demo" in r.json()["choices"][0]["message"]["content"]


# --------------------------------------------------------------------------- LLM path (PLANO_AGENT_USE_LLM=1)

TRACE = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "x-request-id": "req-abc"}


def test_llm_path_forwards_trace_headers_and_grounds_the_prompt(llm, spawn):
    weather = spawn("weather", PLANO_AGENT_USE_LLM="1", PLANO_LLM_URL=f"{llm.url}/v1")
    text = ask(weather, "weather in Paris?", extra_headers=TRACE)
    assert text == "echo: weather in Paris?"  # the mock model's answer, not the local one
    sent = llm.last
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["traceparent"] == TRACE["traceparent"]
    assert sent.headers["x-request-id"] == TRACE["x-request-id"]
    system = sent.body["messages"][0]
    assert system["role"] == "system" and "FACTS:" in system["content"] and "Paris" in system["content"]

    streamed, _ = ask_stream(weather, "weather in Paris?")
    assert streamed == "echo: weather in Paris?"


def test_llm_errors_fall_back_to_local_data(llm, spawn):
    weather = spawn("weather", PLANO_AGENT_USE_LLM="1", PLANO_LLM_URL=f"{llm.url}/v1")
    llm.enqueue(Reply(kind="error", status=500, body={"error": {"message": "boom"}}),
                Reply(kind="error", status=503, body={"error": {"message": "down"}}))
    text = ask(weather, "weather in Paris?")
    assert "Paris" in text and CELSIUS.search(text) and "echo" not in text
    streamed, _ = ask_stream(weather, "weather in Paris?")
    assert streamed.strip() == text.strip()
    assert len(llm.requests) == 2  # both modes really tried the LLM first


def test_agent_with_the_local_demo_model_end_to_end(agents, spawn):
    local = ask(agents["currency"], "convert 100 EUR to USD")
    via_llm = spawn("currency", PLANO_AGENT_USE_LLM="1", PLANO_LLM_URL=f"{agents['local_llm'].url}/v1")
    assert ask(via_llm, "convert 100 EUR to USD") == local  # the demo model restates the grounded facts
