"""Router behaviour added in the twelfth session (issue 12): each test fails without its change.

A description that hands a topic over to another agent of the listener ("Flights are handled by
air_travel.", "...; that is inbox.", "for email or chat use messaging") names that topic: the
sentence is evidence against the agent that refuses it, like a "Does not ..." sentence, both for
the words (`embedded_profile`) and for the sentence encoder (`semantic.description_units`)."""

from __future__ import annotations

import pytest

from gateway.routing import encoder
from gateway.routing.embedded import EmbeddedRouter
from gateway.routing.embedded_profile import handoff_pattern, parse_description
from gateway.routing.semantic import description_units
from gateway.routing.types import AgentSpec

needs_encoder = pytest.mark.skipif(not encoder.available(), reason="sentence encoder weights not installed")

IDS = ["flight_desk", "ground_travel", "inbox", "calendar", "code", "handyman", "helpdesk"]
SPECS = [AgentSpec(i, "") for i in IDS]
GROUND = SPECS[1]


@pytest.mark.parametrize("sentence", [
    "Flights are handled by flight_desk.",
    "that is inbox",
    "Not for laptops; use helpdesk.",
    "Bugs in application code go to the code agent instead.",
    "the handyman service does that",
    "for email or chat ask inbox",
])
def test_a_sentence_that_names_another_agent_is_a_handoff(sentence):
    assert handoff_pattern(GROUND, SPECS).search(sentence)


@pytest.mark.parametrize("sentence", [
    "Adds events to the calendar and sends invites.",   # a sibling's one-word id as a plain noun
    "Explains code and reviews pull requests.",
    "Books a handyman visit.",
    "Ground travel between two cities.",                # its own name
])
def test_a_plain_noun_or_its_own_name_is_no_handoff(sentence):
    assert not handoff_pattern(GROUND, SPECS).search(sentence)


def test_no_other_agents_or_a_default_agent_no_pattern():
    solo = AgentSpec("solo", "")
    assert handoff_pattern(solo, [solo]) is None
    fallback = AgentSpec("general", "", default=True)
    assert handoff_pattern(fallback, SPECS + [fallback]) is None


DESC = ("Ground transportation: taxis, airport transfers, intercity rail and car rental. "
        "Flights are handled by flight_desk.")


def test_the_handoff_is_an_exclusion_of_the_words_and_a_negative_unit():
    prof = parse_description("ground_travel", DESC, handoff=handoff_pattern(GROUND, SPECS))
    assert ["flight", "handl", "flight", "desk"] in prof.exclusions
    assert all("flight" not in scope for scope in prof.scope)
    pos, neg = description_units(DESC, handoff_pattern(GROUND, SPECS))
    assert neg == ["Flights are handled by flight_desk"]
    assert not any("flight" in u.lower() for u in pos)
    # without the listener's ids, the sentence reads as scope (as before)
    assert any("Flights" in u for u in description_units(DESC)[0])


LISTENER = [
    AgentSpec("flight_desk", "Books flights. Changes, cancels and rebooks airline tickets, picks seats, "
              "and checks fare rules, baggage allowance and flight status."),
    AgentSpec("ground_travel", "Ground transportation: taxis and ride-hailing, airport transfers, "
              "intercity rail, car rental, and travel time between two places. Handles: a car to the "
              "airport, train tickets, how long a drive takes. Flights are handled by flight_desk."),
    AgentSpec("forecast", "Weather forecasts and current conditions: temperature, rain, wind, storms."),
    AgentSpec("stays", "Hotel and apartment bookings: search, reserve, change or cancel a stay."),
    AgentSpec("general", "Small talk and general questions.", default=True),
]


@needs_encoder
def test_the_readme_prompt_reaches_both_agents_when_a_sibling_hands_flights_over():
    r = EmbeddedRouter(LISTENER)
    d = r.route([{"role": "user", "content": "What's the weather in Paris and find me flights from NYC to Paris"}])
    assert d.agents == ["forecast", "flight_desk"]


@needs_encoder
@pytest.mark.parametrize("text", [
    "find me flights from nyc to paris",
    "any flights to Lisbon on friday morning?",
])
def test_a_flight_request_is_not_drawn_to_the_agent_that_hands_flights_over(text):
    r = EmbeddedRouter(LISTENER)
    d = r.route([{"role": "user", "content": text}])
    assert d.agents == ["flight_desk"]
    # the sentence that hands flights over no longer lends its words and meaning to ground_travel
    assert 2 * d.scores.get("ground_travel", 0) < d.scores["flight_desk"]


# Negations written short are negations: "Doesn't book hotels." is evidence against its agent,
# not a sentence the encoder matches hotel requests to.
@pytest.mark.parametrize("sentence, negated", [
    ("Doesn't book hotels.", "book hotels"),
    ("Won\u2019t handle refunds.", "handle refunds"),
    ("It cannot book appointments or fill prescriptions.", "book appointments or fill prescriptions"),
    ("Can't reset passwords.", "reset passwords"),
    ("It isn't for billing questions.", "billing questions"),
])
def test_a_contracted_negation_is_a_negative_unit(sentence, negated):
    pos, neg = description_units(f"Books flights and seats. {sentence}")
    assert neg == [negated]
    assert pos == ["Books flights and seats"]


def test_cannot_is_an_exclusion_of_the_words():
    prof = parse_description("claims", "Submits insurance claims. It cannot book appointments.")
    assert ["book", "appoint"] in prof.exclusions
    assert all("appoint" not in scope for scope in prof.scope)


def test_contractions_inside_quoted_examples_and_positive_sentences_stay():
    pos, neg = description_units("Fixes laptops that won't boot. Handles: 'my screen doesn't turn on'.")
    assert neg == []
    assert "my screen doesn't turn on" in pos


@needs_encoder
def test_the_default_agent_naming_the_others_keeps_what_it_covers():
    agents = [
        AgentSpec("flight_desk", "Books and changes flights."),
        AgentSpec("stays", "Books hotel rooms."),
        AgentSpec("general", "Fallback for anything the flight_desk and stays agents don't cover: greetings, "
                  "thanks, small talk and trivia.", default=True),
    ]
    r = EmbeddedRouter(agents)
    general = [u for u, o, n in zip(r.sentences.units.texts, r.sentences.owner, r.sentences.negative) if o == 2]
    assert any("small talk" in u for u in general)
    assert not any(r.sentences.negative[i] for i in range(len(r.sentences.owner)) if r.sentences.owner[i] == 2)
    d = r.route([{"role": "user", "content": "tell me a fun fact about octopuses"}])
    assert d.agents == ["general"]


def _pooled_by_loop(sc, vec):
    """The pooling as a loop over units (what `SemanticScorer` computed before it was vectorised)."""
    import numpy as np

    sims = sc.matrix @ vec
    p = sc.params
    out = np.full(sc.n, -1.0, dtype=np.float32)
    neg = np.full(sc.n, -1.0, dtype=np.float32)
    second = np.full(sc.n, -1.0, dtype=np.float32)
    for s, a, is_neg in zip(sims, sc.owner, sc.negative):
        if is_neg:
            neg[a] = max(neg[a], s)
        elif s > out[a]:
            second[a], out[a] = out[a], s
        elif s > second[a]:
            second[a] = s
    if p.top2:
        out = np.where(second > -1, (out + p.top2 * second) / (1 + p.top2), out)
    return out - p.neg_w * np.maximum(neg - out, 0.0)


@needs_encoder
@pytest.mark.parametrize("agents", [
    LISTENER,
    [AgentSpec("solo_a", "One sentence."), AgentSpec("solo_b", "")],      # no negative unit anywhere; an id-only agent
    [AgentSpec("x", "Does x. Does not do y. Not for z, and does not do w."), AgentSpec("y", "Does y, a, b and c.")],
])
def test_vectorised_pooling_equals_the_loop_exactly(agents):
    import numpy as np

    from gateway.routing.semantic import SemanticScorer

    sc = SemanticScorer(agents)
    rng = np.random.default_rng(7)
    vecs = rng.normal(size=(40, sc.matrix.shape[1])).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    vecs = np.concatenate([vecs, sc.matrix])  # exact hits on units, ties between an agent's units
    batch = sc.scores_of(vecs)
    for v, row in zip(vecs, batch):
        want = _pooled_by_loop(sc, v)
        assert np.array_equal(sc.scores_from(v), want)
        assert np.array_equal(row, want)
    assert sc.scores_of(vecs[:0]).shape == (0, len(agents))
