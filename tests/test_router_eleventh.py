"""Router behaviour added in the eleventh session (issue 12): each test fails without its change."""

from __future__ import annotations

import pytest

from gateway.routing import encoder
from gateway.routing.embedded import EmbeddedRouter
from gateway.routing.embedded_blocks import split_blocks
from gateway.routing.embedded_segment import explicit_order
from gateway.routing.types import AgentSpec

needs_encoder = pytest.mark.skipif(not encoder.available(), reason="sentence encoder weights not installed")


@pytest.mark.parametrize("text", [
    "book a room near the congress centre in Vienna, and once that's done tell me how to get there",
    "renew the TLS cert on the api box and once it is renewed email Sam the new expiry date",
    "reserve a car for Friday and when it's booked add the pickup to my calendar",
])
def test_a_clause_that_opens_on_the_earlier_one_being_done_states_an_order(text):
    assert explicit_order(text)


@pytest.mark.parametrize("text", [
    "book a room near the congress centre in Vienna and tell me how to get there",
    "reserve a car for Friday and add the pickup to my calendar",
    "once the invoice is paid I'm happy",  # one clause: nothing to order
])
def test_asks_joined_without_such_a_clause_state_no_order(text):
    assert not explicit_order(text)


@pytest.mark.parametrize("text, ask, material", [
    ("Turn these bullets into a one-page brief:\n- launch mid Nov\n- budget 40k\n- owner: Sam",
     "Turn these bullets into a one-page brief:", ["- launch mid Nov", "- budget 40k", "- owner: Sam"]),
    ("Receipt:\nHotel Nacional - 3 nights - 1.245,00 BRL\nTaxi to the centre - 180,00 BRL\nplease put these on my claim",
     "Receipt:\nplease put these on my claim", ["Hotel Nacional - 3 nights - 1.245,00 BRL", "Taxi to the centre - 180,00 BRL"]),
    ("can you summarise this for the team?\n---\nthe rollout slipped a week\nsupport tickets are up 20%",
     "can you summarise this for the team?", ["the rollout slipped a week", "support tickets are up 20%"]),
])
def test_lines_pasted_after_a_lead_in_are_material_not_asks(text, ask, material):
    blocks = split_blocks(text)
    assert blocks.ask == ask and blocks.quotes == material


@pytest.mark.parametrize("text", [
    "Quick status pls:\n- has the signed contract come back?\n- did the extra lights get ordered?\n- is the song cleared?",
    "book the flight to Oslo\ncheck the weather there",  # no lead-in: two lines of the user's own
])
def test_a_list_of_questions_after_a_lead_in_stays_the_ask(text):
    blocks = split_blocks(text)
    assert blocks.ask == text and not blocks.quotes


@needs_encoder
def test_bullets_after_a_lead_in_do_not_become_intents():
    agents = [AgentSpec("docs", "Writes and edits documents: briefs, reports, one-pagers, meeting notes."),
              AgentSpec("expenses", "Expense reports, budgets, receipts and reimbursements."),
              AgentSpec("hotels", "Finds and books hotels for business trips."),
              AgentSpec("chat", "General chit-chat and anything else.", default=True)]
    r = EmbeddedRouter(agents)
    text = "Turn these bullets into a proper one-page project brief:\n- launch mid Nov\n- budget 40k for the " \
           "offsite\n- hotel for 12 people near the venue\n- risk: vendor delay"
    assert r.route([{"role": "user", "content": text}]).agents == ["docs"]


@needs_encoder
def test_without_a_default_agent_the_first_agent_keeps_a_task_its_description_fits_best():
    """No `default: true`: the fallback is the first agent, a specialist like the others. A task its
    description matches clearly is not handed to another agent with a trace of evidence because
    the turn "is a task for some specialist"."""
    agents = [AgentSpec("tides", "Tide tables: high and low tide times for any harbour and coast."),
              AgentSpec("history", "History of empires, wars, kings and ancient civilisations."),
              AgentSpec("ghosts", "Haunted houses and ghost stories.")]
    r = EmbeddedRouter(agents)
    for text in ("When is high tide in the harbour of Saint-Malo?", "low tide times at Brighton on Sunday"):
        assert r.route([{"role": "user", "content": text}]).agents == ["tides"]


@needs_encoder
def test_a_task_step_has_no_replacement_in_an_agent_that_only_shares_a_city_with_it():
    from gateway.tasks.planner import Planner

    agents = [AgentSpec("weather", "Weather: current conditions and forecasts for cities."),
              AgentSpec("flights", "Flight search: flights, airlines and fares between cities."),
              AgentSpec("backup_flights", "Flight search backup: flights, airlines and fares between cities.")]
    planner = Planner.__new__(Planner)
    planner.router = EmbeddedRouter(agents)
    assert planner.candidates("Find flights from NYC to Paris", exclude={"flights"}) == ["backup_flights"]
