"""``answers: all`` on an agent listener: every agent's answer, independent agents side by side.

openai SDK -> plano (real process) -> mock agents on loopback. A mock orchestrator model fixes
the routing (``{"route": [...]}``) so routing is not what is tested here. The last test runs
the offline demo (plano.yaml, which sets ``answers: all``) and asks it two- and three-intent
questions.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.agent_mocks import (
    MockTeam,
    assert_openai_error,
    chat_posts,
    orchestrated_config,
    route_reply,
)
from tests.support.gateway import Gateway, free_port
from tests.support.mock_llm import Reply, completion
from tests.support.otlp import OTLPReceiver

REPO = Path(__file__).resolve().parents[1]

A_TEXT = "Sunny, 21°C in Paris."
B_TEXT = "AF 011 leaves JFK at 19:30."
C_TEXT = "100 EUR = 108.70 USD."
A_TOKENS = ["Sunny,", " 21°C", " in Paris."]
B_TOKENS = ["AF 011", " leaves JFK", " at 19:30."]
QUESTION = [{"role": "user", "content": "What's the weather in Paris and which flights go there from NYC?"}]


def joined(*sections: tuple[str, str]) -> str:
    """The reply's documented shape: ``**<agent id>**:`` heading lines, sections separated by a blank line."""
    return "\n\n".join(f"**{agent}**:\n{text}" for agent, text in sections)


@pytest.fixture(scope="module")
def receiver():
    r = OTLPReceiver()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def team():
    t = MockTeam("a", "b", "c", "orch").start()
    yield t
    t.stop()


@pytest.fixture(scope="module")
def gw(team, receiver, tmp_path_factory):
    ports = {name: free_port() for name in ("all", "last", "model")}
    agents = [
        {"id": "a", "description": "Weather: current conditions and forecasts for cities."},
        {"id": "b", "description": "Flight search: flights, airlines and fares between cities."},
        {"id": "c", "description": "Currency exchange rates and conversions."},
    ]
    config = orchestrated_config(team, ("a", "b", "c"), [
        {"type": "agent", "name": "every_answer", "port": ports["all"], "address": "127.0.0.1",
         "answers": "all", "agents": agents},
        {"type": "agent", "name": "last_answer", "port": ports["last"], "address": "127.0.0.1",
         "agents": agents[:2]},
    ], ports["model"], tracing={"random_sampling": 100, "opentracing_grpc_endpoint": receiver.endpoint})
    g = Gateway(config, tmp_path_factory.mktemp("answers-all")).start()
    g.urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    yield g
    g.stop()


@pytest.fixture(autouse=True)
def clean(team):
    team.reset()
    yield
    team.reset()


def sdk(gw, name: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.urls[name]}/v1", api_key="sk-client", max_retries=0, timeout=30)


def ask(gw, name: str, messages, stream: bool, **kwargs) -> str:
    client = sdk(gw, name)
    if stream:
        chunks = client.chat.completions.create(model="travel", messages=messages, stream=True, **kwargs)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return client.chat.completions.create(model="travel", messages=messages, **kwargs).choices[0].message.content


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def new_trace() -> tuple[str, dict]:
    trace_id = secrets.token_hex(16)
    return trace_id, {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}


def trace_spans(receiver, trace_id: str, names: set[str], timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        found = {s.name: s for s in receiver.spans() if s.trace_id == trace_id and s.name in names}
        if len(found) == len(names) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


# -- every answer, side by side -------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_two_intents_run_side_by_side_and_both_answer(gw, team, stream):
    """Both agents get their request while the other is still answering; the client gets both answers."""
    gates = {"a": threading.Event(), "b": threading.Event()}
    team["orch"].enqueue(route_reply("a", "b"))
    team["a"].enqueue(Reply("sse", tokens=A_TOKENS, gate=gates["a"]))  # holds its answer until released
    team["b"].enqueue(Reply("sse", tokens=B_TOKENS, gate=gates["b"]))
    result: dict = {}

    def call():
        try:
            result["text"] = ask(gw, "all", QUESTION, stream)
        except Exception as exc:  # noqa: BLE001 - surfaced below
            result["error"] = exc

    worker = threading.Thread(target=call)
    worker.start()
    try:
        both_asked = wait_until(lambda: chat_posts(team["a"]) and chat_posts(team["b"]))
    finally:
        for gate in gates.values():
            gate.set()
        worker.join(30)
    assert both_asked, "the second agent was only asked after the first had answered"
    assert "error" not in result, result.get("error")
    assert result["text"] == joined(("a", A_TEXT), ("b", B_TEXT))
    for name in ("a", "b"):  # independent: nobody's answer is handed to the other
        [seen] = chat_posts(team[name])
        assert seen.body["messages"] == QUESTION
        assert seen.headers["x-plano-agent-id"] == name


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_three_intents_every_answer_in_routed_order_and_spans_overlap(gw, team, receiver, stream):
    team["orch"].enqueue(route_reply("c", "a", "b"))
    # the first agent in routed order is the slowest: the others still come after it
    team["c"].enqueue(Reply("json", body=completion("m", C_TEXT), delay=0.8))
    team["a"].enqueue(Reply("json", body=completion("m", A_TEXT), delay=0.4))
    team["b"].enqueue(Reply("json", body=completion("m", B_TEXT), delay=0.4))
    trace_id, headers = new_trace()
    client = sdk(gw, "all")
    if stream:
        chunks = list(client.chat.completions.create(model="travel", messages=QUESTION, stream=True,
                                                     extra_headers=headers))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert chunks[0].object == "chat.completion.chunk"
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    else:
        reply = client.chat.completions.create(model="travel", messages=QUESTION, extra_headers=headers)
        text = reply.choices[0].message.content
        assert reply.object == "chat.completion"
        assert reply.usage.total_tokens == 3 * 8 and reply.usage.prompt_tokens == 3 * 5  # summed
    assert text == joined(("c", C_TEXT), ("a", A_TEXT), ("b", B_TEXT))

    names = {f"{agent} /v1/chat/completions" for agent in "abc"} | {"routing"}
    spans = trace_spans(receiver, trace_id, names)
    assert set(spans) == names, sorted(spans)
    agent_spans = [spans[f"{agent} /v1/chat/completions"] for agent in "abc"]
    assert max(s.start for s in agent_spans) < min(s.end for s in agent_spans), "agent spans do not overlap"
    assert spans["routing"].attributes["plano.agents.parallel"] == "c,a,b"
    assert spans["routing"].attributes["plano.answers"] == "all"
    for s in agent_spans:
        assert s.attributes["plano.agents.parallel"] == "c,a,b"


def test_stream_sends_first_answer_as_it_arrives_and_buffers_the_next(gw, team):
    gate = threading.Event()
    team["orch"].enqueue(route_reply("a", "b"))
    team["a"].enqueue(Reply("sse", tokens=A_TOKENS, gate=gate))
    team["b"].enqueue(Reply("json", body=completion("m", B_TEXT)))  # done long before a
    try:
        stream = sdk(gw, "all").chat.completions.create(model="travel", messages=QUESTION, stream=True)
        pieces = (c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content)
        first_two = [next(pieces), next(pieces)]
        gate_closed = not gate.is_set()
    finally:
        gate.set()
    rest = "".join(pieces)
    assert gate_closed, "a's first token only reached the client after a finished"
    assert first_two == ["**a**:\n", "Sunny,"]
    assert "".join(first_two) + rest == joined(("a", A_TEXT), ("b", B_TEXT))


# -- failures ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_one_failing_agent_still_returns_the_others(gw, team, stream):
    team["orch"].enqueue(route_reply("a", "b", "c"))
    team["a"].enqueue(Reply("json", body=completion("m", A_TEXT)))
    team["b"].enqueue(Reply("error", status=500, body={"error": {"message": "flight backend down"}}))
    team["c"].enqueue(Reply("json", body=completion("m", C_TEXT)))
    text = ask(gw, "all", QUESTION, stream)
    sections = text.split("\n\n")
    assert sections[0] == f"**a**:\n{A_TEXT}"
    assert sections[1].startswith("**b**:\n_(no answer: ") and "HTTP 500" in sections[1] \
        and "flight backend down" in sections[1], sections[1]
    assert sections[2] == f"**c**:\n{C_TEXT}"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_every_agent_failing_gets_the_first_failures_status(gw, team, stream):
    team["orch"].enqueue(route_reply("a", "b"))
    team["a"].enqueue(Reply("error", status=503, body={"error": {"message": "weather down"}}))
    team["b"].enqueue(Reply("error", status=500, body={"error": {"message": "flights down"}}))
    r = httpx.post(f"{gw.urls['all']}/v1/chat/completions", json={"messages": QUESTION, "stream": stream},
                   timeout=30)
    err = assert_openai_error(r, 503, "agent_error")
    assert "'a'" in err["message"]


# -- dependencies and the default ------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_explicit_order_chains_and_still_answers_every_intent(gw, team, receiver, stream):
    messages = [{"role": "user", "content": "First check the weather in Paris, then find me flights from NYC "
                                            "to Paris"}]
    team["orch"].enqueue(route_reply("a", "b"))
    team["a"].enqueue(Reply("json", body=completion("m", A_TEXT)))
    team["b"].enqueue(Reply("sse", tokens=B_TOKENS))
    trace_id, headers = new_trace()
    text = ask(gw, "all", messages, stream, extra_headers=headers)
    assert text == joined(("a", A_TEXT), ("b", B_TEXT))
    [seen_b] = chat_posts(team["b"])
    assert seen_b.body["messages"] == [{"role": "assistant", "name": "a", "content": A_TEXT}, *messages]
    spans = trace_spans(receiver, trace_id, {"routing"})
    assert spans["routing"].attributes.get("plano.agents.parallel") == ""


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_without_the_setting_chain_and_last_answer_only(gw, team, stream):
    team["orch"].enqueue(route_reply("a", "b"))
    team["a"].enqueue(Reply("json", body=completion("m", A_TEXT)))
    team["b"].enqueue(Reply("sse", tokens=B_TOKENS) if stream else Reply("json", body=completion("m", B_TEXT)))
    assert ask(gw, "last", QUESTION, stream) == B_TEXT
    [seen_b] = chat_posts(team["b"])
    assert seen_b.body["messages"] == [{"role": "assistant", "name": "a", "content": A_TEXT}, *QUESTION]


def test_one_selected_agent_is_relayed_unchanged(gw, team):
    team["orch"].enqueue(route_reply("b"))
    team["b"].enqueue(Reply("json", body=completion("m", B_TEXT)))
    assert ask(gw, "all", QUESTION, False) == B_TEXT  # no heading for a single answer


# -- the offline demo (plano.yaml sets answers: all) ----------------------------------------------

DEMO_PORTS = (8001, 12000, 10500, 10502, 10504, 10510, 10520, 10530, 10540)
TWO = "What's the weather in Paris and find me flights from NYC to Paris"
THREE = "What's the weather in Paris? Find me flights from NYC to Paris. Convert 100 EUR to USD."


def _port_busy(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=0.5) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def demo():
    busy = [p for p in DEMO_PORTS if _port_busy(p)]
    if busy:
        pytest.skip(f"the demo needs fixed ports; in use: {busy}")
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY" and not k.startswith("PLANO_")}
    proc = subprocess.Popen([sys.executable, "-m", "examples.run_demo"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        if not wait_until(lambda: _healthy(8001) and _healthy(12000), timeout=60):
            pytest.fail("the demo did not start")
        yield openai.OpenAI(base_url="http://127.0.0.1:8001/v1", api_key="none", max_retries=0, timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("question, agents", [(TWO, ["weather_agent", "flight_agent"]),
                                              (THREE, ["weather_agent", "flight_agent", "currency_agent"])],
                         ids=["two-intents", "three-intents"])
def test_demo_answers_every_intent(demo, question, agents, stream):
    messages = [{"role": "user", "content": question}]
    if stream:
        chunks = demo.chat.completions.create(model="demo", messages=messages, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        text = demo.chat.completions.create(model="demo", messages=messages).choices[0].message.content
    headings = [line[2:-3] for line in text.splitlines() if line.startswith("**") and line.endswith("**:")]
    assert headings == agents, text
    assert "°C" in text and "CDG" in text, text  # the weather agent's part and the flight agent's part
    if "currency_agent" in agents:
        assert "108.70 USD" in text or "USD" in text.split("**currency_agent**:")[1], text


# -- what counts as an explicit order ------------------------------------------------------------


@pytest.mark.parametrize("text, ordered", [
    ("What's the weather in Paris and find me flights from NYC to Paris", False),
    ("Flights from London to Tokyo on Friday, and the weather there?", False),
    ("Weather in Rome? Also find flights to Rome.", False),
    ("First find me flights to Tokyo, then tell me the weather there", True),
    ("Find flights to Rome and after that convert 500 USD to EUR", True),
    ("Before you book the hotel, check my balance", True),
    # a step that depends on the outcome of the one before it
    ("Check whether my card is unblocked; if it is, book the Lisbon flight.", True),
    ("Is it going to rain in Dublin on Friday? If so, find me a hotel near the airport.", True),
    ("Find me a hotel in Dublin - otherwise a room in Cork is fine", True),
    ("Find me a hotel in Dublin and tell me if it will rain there", False),
])
def test_explicit_order_is_detected_from_sequencing_markers(text, ordered):
    from gateway.routing.embedded_segment import explicit_order

    assert explicit_order(text) is ordered
