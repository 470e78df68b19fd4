"""The embedded router's split gate (gateway/routing/embedded_gate.py): features, loading, and
what it does to turns the segmenter cuts into several asks (agents and prompts invented here)."""

from __future__ import annotations

import json

import pytest

from gateway.routing import embedded_gate as G
from gateway.routing.embedded import EmbeddedRouter
from gateway.routing.embedded_segment import split_pieces
from gateway.routing.types import AgentSpec


def clauses(text: str, margin: float = 2.0):
    return [(p, margin) for p in split_pieces(text)]


def test_features_read_the_shape_of_the_turn():
    f = G.split_features(clauses("Renew my library books. Fix the tap too."), 2, False)
    assert f["only_breaks"] == 1.0 and f["additive"] == 1.0 and f["all_ask"] == 1.0
    assert f["statements"] == 0.0 and f["min_words"] == 2.0 and f["n_agents"] == 2.0
    f = G.split_features(clauses("my boiler is leaking and the landlord is ignoring me"), 2, False)
    assert f["only_breaks"] == 0.0 and f["statements"] == 1.0 and f["all_ask"] == 0.0
    f = G.split_features(clauses("can you renew my books? please book a plumber"), 2, True)
    assert f["plain_asks"] == 1.0 and f["ordered"] == 1.0 and f["additive"] == 0.0
    f = G.split_features([(p, m) for (p, _), m in zip(clauses("a b c. d e f"), (0.5, 3.0))], 2, False)
    assert f["min_margin"] == 0.5


def test_the_gate_is_a_standardised_logistic_regression():
    n = len(G.FEATURES)
    gate = G.SplitGate(mean=(1.0,) * n, scale=(2.0,) * n, weights=(0.0,) * (n - 1) + (1.0,), bias=0.5)
    at_mean = {k: 1.0 for k in G.FEATURES}
    assert gate.p_multi(at_mean) == pytest.approx(1 / (1 + pow(2.718281828, -0.5)), rel=1e-6)
    higher = {**at_mean, G.FEATURES[-1]: 5.0}  # z = 0.5 + (5 - 1) / 2
    assert gate.p_multi(higher) == pytest.approx(1 / (1 + pow(2.718281828, -2.5)), rel=1e-6)
    assert 0.0 <= gate.p_multi({k: 1e9 for k in G.FEATURES}) <= 1.0  # no overflow


def test_the_shipped_gate_loads_and_names_our_features():
    with open(G.GATE_FILE, encoding="utf-8") as f:
        shipped = json.load(f)
    assert tuple(shipped["features"]) == G.FEATURES
    G._GATES.clear()
    assert isinstance(G.load_gate(), G.SplitGate)


@pytest.mark.parametrize("content", [
    "{not json", "[]", "",
    json.dumps({"features": list(G.FEATURES), "scale": [1] * len(G.FEATURES)}),                 # no mean
    json.dumps({"features": list(G.FEATURES), "mean": [0] * len(G.FEATURES), "scale": [0] * len(G.FEATURES),
                "weights": [1] * len(G.FEATURES), "bias": 0}),                                # zero scale
    json.dumps({"features": list(G.FEATURES), "mean": [0], "scale": [1], "weights": [1], "bias": 0}),  # short
    json.dumps({"features": list(G.FEATURES), "mean": [0] * len(G.FEATURES), "scale": [1] * len(G.FEATURES),
                "weights": [float("nan")] * len(G.FEATURES), "bias": 0}),                     # NaN
])
def test_an_unusable_gate_file_means_no_gate_and_routing_goes_on(tmp_path, monkeypatch, caplog, content):
    bad = tmp_path / "gate.json"
    bad.write_text(content)
    monkeypatch.setenv("PLANO_SPLIT_GATE_FILE", str(bad))
    G._GATES.clear()
    try:
        assert G.load_gate() is None
        r = EmbeddedRouter(AGENTS)
        assert r.split_gate is None
        assert r.route(u("Find me a hotel in Lisbon and tell me if it will rain there")).agents
    finally:
        G._GATES.clear()
    if content not in ("[]",):
        assert "split gate" in caplog.text


def test_a_gate_for_other_features_or_switched_off_is_not_used(tmp_path, monkeypatch):
    other = tmp_path / "gate.json"
    other.write_text(json.dumps({"features": ["x"], "mean": [0], "scale": [1], "weights": [1], "bias": 0}))
    monkeypatch.setenv("PLANO_SPLIT_GATE_FILE", str(other))
    G._GATES.clear()
    assert G.load_gate() is None
    monkeypatch.delenv("PLANO_SPLIT_GATE_FILE")
    monkeypatch.setenv("PLANO_ROUTER_SPLIT_GATE", "0")
    assert G.load_gate() is None
    G._GATES.clear()


AGENTS = [
    AgentSpec("flights", "Books, changes and cancels flights: fares, routes, seat selection, baggage "
              "allowance, check-in and flight status."),
    AgentSpec("hotels", "Finds and books hotel rooms: availability, nightly prices, amenities, and "
              "changing or cancelling a reservation."),
    AgentSpec("chitchat", "Greetings, thanks, small talk and general knowledge questions.", default=True),
    AgentSpec("weather", "Weather forecasts and current conditions: temperature, rain, snow, wind."),
    AgentSpec("laundry", "Laundry pickup and delivery: wash and fold, dry cleaning, stain treatment."),
    AgentSpec("handyman", "Books a local handyman for small jobs around the home: shelves, dripping "
              "taps, flat-pack furniture, hanging doors."),
]


@pytest.fixture(scope="module")
def routers():
    gated, ungated = EmbeddedRouter(AGENTS), EmbeddedRouter(AGENTS)
    if gated.split_gate is None:
        pytest.skip("needs the sentence encoder and the shipped gate")
    ungated.split_gate = None
    return gated, ungated


def u(text):
    return [{"role": "user", "content": text}]


@pytest.mark.parametrize("text, agent, proposed", [
    # a story before the ask names another agent's topic: one request with its context
    ("My flight got cancelled so I'm stuck in Oslo tonight. Find me a hotel near the airport.",
     "hotels", ["flights", "hotels"]),
    ("Money is tight since the hotel bill last month. Could someone do my washing cheaper than the "
     "usual pickup?", "laundry", ["hotels", "laundry"]),
])
def test_context_that_names_another_agent_is_not_a_second_ask(routers, text, agent, proposed):
    gated, ungated = routers
    assert ungated.route(u(text)).agents == proposed  # the segmentation proposes a split ...
    d = gated.route(u(text))
    assert d.agents == [agent]                         # ... and the gate turns it down
    assert d.scores["split_gate"] < 0.5
    assert d.confidence <= round(1.0 - 2.0 * d.scores["split_gate"], 3)


@pytest.mark.parametrize("text, agents", [
    ("Pick up my dry cleaning on Thursday and book a handyman to hang the bathroom door.", ["laundry", "handyman"]),
    ("Find me a hotel in Lisbon and tell me if it will rain there on Saturday", ["hotels", "weather"]),
    ("First move my flight to Monday, then book me a room near the airport.", ["flights", "hotels"]),
])
def test_several_asks_stay_several(routers, text, agents):
    d = routers[0].route(u(text))
    assert d.agents == agents and d.reason == "multi"
    assert d.scores["split_gate"] >= 0.5
    assert d.confidence <= round(2.0 * d.scores["split_gate"] - 1.0, 3)


README_PROMPT = "What's the weather in Paris and find me flights from NYC to Paris"


@pytest.mark.parametrize("listener", [
    [("weather", "Weather forecasts and current conditions for any city."),
     ("flights", "Books, changes and cancels flights.")],
    [("weather_agent", "Gives weather information."), ("flight_agent", "Searches for flights."),
     ("currency_agent", "Converts currencies.")],
    [("weather", "Provides current weather, hourly and 10-day forecasts, and severe weather alerts for a location."),
     ("travel", "Searches and books airline tickets: routes, dates, prices and baggage."),
     ("hotel", "Hotel search and booking.")],
])
def test_the_readme_prompt_keeps_both_asks_whatever_the_descriptions(listener):
    agents = [AgentSpec(i, d) for i, d in listener] + [AgentSpec("general", "Anything else.", default=True)]
    r = EmbeddedRouter(agents)
    if r.split_gate is None:
        pytest.skip("needs the sentence encoder and the shipped gate")
    assert r.route(u(README_PROMPT)).agents == [listener[0][0], listener[1][0]]
