"""Clause segmentation, split-gate features and small talk changed in the tenth router session
(issue 12): numbered steps state an order, a "once <thing> is <done>" clause is a step of its own,
"I also need" is one clause, a change of subject is no scene, an additive joiner counts as an
addition, and a thanks that reports success is small talk. Texts and agents invented here."""

from __future__ import annotations

import pytest

from gateway.routing import embedded_gate as G
from gateway.routing.embedded import EmbeddedRouter
from gateway.routing.embedded_segment import asks, explicit_order, split_pieces
from gateway.routing.embedded_text import is_social
from gateway.routing.types import AgentSpec


def texts(text: str) -> list[str]:
    return [p.text for p in split_pieces(text)]


@pytest.mark.parametrize("text", [
    "step 1: book the train to Lyon. step 2: find a hotel near the station",
    "1) renew my passport. 2) get travel insurance for the trip",
])
def test_numbered_steps_state_an_order(text):
    assert explicit_order(text)


@pytest.mark.parametrize("text", [
    "book the train to Lyon. find a hotel near the station",   # two asks, no order stated
    "I have 2 kids and 1 dog. which hotel takes pets?",         # numbers that are no steps
])
def test_asks_without_numbered_steps_state_no_order(text):
    assert not explicit_order(text)


@pytest.mark.parametrize("text, first, then", [
    ("once the supplier invoice is paid, place next week's fish order",
     "the supplier invoice is paid", "place next week fish order"),  # normalised: no "'s"
    ("after the hotel in Munich has been cancelled, put the fee on my expense report",
     "the hotel in munich has been cancelled", "put the fee on my expense report"),
])
def test_a_state_reached_by_an_action_is_a_step_before_the_request(text, first, then):
    pieces = split_pieces(text)
    assert [p.text for p in pieces] == [first, then]
    assert not pieces[0].background and not pieces[1].goes_first  # the state comes first
    assert explicit_order(text)


@pytest.mark.parametrize("text", [
    "once I get home, order a pizza",                      # the user's doing: no subject we handle
    "once it arrives, leave a review",                     # no action reaches it
    "after the meeting, send the notes to Ana",
])
def test_other_once_clauses_are_not_split_as_states(text):
    assert len(split_pieces(text)) == 1


@pytest.mark.parametrize("text, expected", [
    ("Jamie is off sick today and I also need to pay for his museum trip",
     ["jamie is off sick today", "i also need to pay for his museum trip"]),
    ("the car needs a service. we also want a quote for new tyres",
     ["the car needs a service", "we also want a quote for new tyres"]),
])
def test_also_after_a_bare_subject_stays_inside_its_clause(text, expected):
    assert texts(text) == expected


def test_also_between_clauses_still_joins_two():
    pieces = split_pieces("renew my books also book a plumber")
    assert [p.text for p in pieces] == ["renew my books", "book a plumber"] and pieces[1].joiner == "also"


def test_a_change_of_subject_means_the_sentence_before_is_no_scene():
    pieces = split_pieces("Submit the taxi receipts from Berlin. Separately, I need a train to Hamburg on Thursday.")
    assert [p.background for p in pieces] == [False, False]
    # without the change of subject the same opening still sets the scene for a plain ask
    pieces = split_pieces("The taxi from Berlin was awful. I need a train to Hamburg on Thursday.")
    assert [p.background for p in pieces] == [True, False]


def test_an_additive_joiner_counts_as_an_addition():
    def features(text):
        return G.split_features([(p, 2.0) for p in split_pieces(text)], 2, False)

    plain = features("write up the fridge fault. get an engineer out")
    also = features("write up the fridge fault. also get an engineer out")
    assert plain["additive"] == 0.0 and also["additive"] == 1.0


@pytest.mark.parametrize("text, social", [
    # a thanks that reports success, a sign-off, thanks with praise: acknowledgements
    ("perfect, that worked, thank you so much 🙏", True),
    ("thanks, all sorted now", True),
    ("awesome, fixed it, cheers", True),
    ("that's everything for today, thanks", True),
    ("ok that is all for now", True),
    ("cheers for sorting the train earlier, you're a star", True),
    ("thanks so much, you've been super helpful with all the travel stuff 🙏", True),
    ("awesome, you're a lifesaver", True),
    # ... but not with a failure, a new ask or a complaint, nor a bare report
    ("thanks, but it still isn't working", False),
    ("it doesn't work, thanks", False),
    ("that worked, thanks! now book a taxi to the airport", False),
    ("fixed", False),
    ("cheers, you're a star, now book the 9am one", False),
    ("thanks, can you also book a taxi", False),
    ("great, you booked the wrong day", False),
    ("great, you are wrong about the fee", False),
])
def test_acknowledgements_are_small_talk_and_asks_or_complaints_are_not(text, social):
    assert is_social(text) is social


AGENTS = [
    AgentSpec("travel", "Books flights, trains and hotels for business trips."),
    AgentSpec("expenses", "Files expense claims and receipts and tracks reimbursements."),
    AgentSpec("calendar", "Creates, moves and cancels meetings on the work calendar."),
    AgentSpec("it", "IT support: laptops, VPN, passwords and accounts."),
    AgentSpec("tutor", "Homework help for primary school children: explains maths and English topics step by "
              "step."),
    AgentSpec("sitters", "Finds and books babysitters and nannies for evenings and weekends."),
    AgentSpec("general", "Small talk, general knowledge and anything else.", default=True),
]


@pytest.fixture(scope="module")
def router():
    r = EmbeddedRouter(AGENTS)
    if r.sentences is None:
        pytest.skip("needs the sentence encoder")
    return r


def test_a_thanks_for_a_fix_goes_to_the_default_agent(router):
    conv = [{"role": "user", "content": "reset my VPN token please"},
            {"role": "assistant", "content": "Done, a new token is in your authenticator app."},
            {"role": "user", "content": "perfect, that worked, thank you so much"}]
    assert router.route(conv).agents == ["general"]


def conv(*turns):
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]


@pytest.mark.parametrize("turns, agent", [
    (("explain what a prime number is in kid terms",
      "A prime number is a number bigger than 1 that you can only divide by 1 and itself: 2, 3, 5, 7 ...",
      "so is 1 prime or not?"), "tutor"),
    (("need a sitter saturday night for my 3 year old",
      "Aisha and Tom are free on Saturday from 6pm. Shall I book one of them?",
      "ok book aisha"), "sitters"),
])
def test_a_followup_that_asks_keeps_its_topic_though_it_sounds_general(router, turns, agent):
    assert router.route(conv(*turns)).agents == [agent]


@pytest.mark.parametrize("last", [
    "forget that for now, who won the World Cup in 2010?",   # a general-question form
    "perfect, that was quick",                              # a remark, not an ask
    "brilliant, cheers, that's everything for today",      # a sign-off
])
def test_a_general_question_remark_or_sign_off_after_a_topic_goes_to_the_default_agent(router, last):
    turns = conv("explain what a prime number is in kid terms",
                 "A prime number is a number bigger than 1 that you can only divide by 1 and itself.", last)
    assert router.route(turns).agents == ["general"]


@pytest.mark.parametrize("text, expected", [
    ("ok book aisha", True), ("so is 1 prime or not?", True), ("fine, put that through the books", True),
    ("awesome, you're a lifesaver", False), ("great, it arrived", False), ("perfect, that was quick", False),
])
def test_asks_tells_an_instruction_or_question_from_a_remark(text, expected):
    assert asks(text) is expected


def test_thanks_with_praise_after_a_topic_goes_to_the_default_agent(router):
    turns = conv("book me a train to Lyon on Friday", "Booked: the 08:12 from Paris, seat 42.",
                 "cheers for sorting the train, you're a star")
    assert router.route(turns).agents == ["general"]


@pytest.mark.parametrize("text, kept", [
    ("My shop got a nasty 1-star review yesterday, but anyway - the Lindqvist job is 30 days late, add the fee",
     ["the lindqvist job is 30 days late, add the fee"]),
    ("got some lovely reviews this week 🥹 anyway, can you trim the intro music on the next episode",
     ["can you trim the intro music on the next episode"]),
    ("forget that - I just need to know if Jamal's hours were approved",
     ["i just need to know if jamal hours were approved"]),
    ("please move Priya to the ground floor. Dev asked when his per diem lands, ignore that for now",
     ["please move priya to the ground floor"]),
])
def test_what_the_user_sets_aside_is_background(text, kept):
    assert [p.text for p in split_pieces(text) if not p.background] == kept


@pytest.mark.parametrize("text", [
    "can I reserve anyway just in case",          # no aside closed off
    "how is electricity made from gas anyway",    # a closing "anyway"
])
def test_anyway_without_an_aside_changes_nothing(text):
    assert [p.background for p in split_pieces(text)] == [False]


def test_a_thing_that_needs_something_is_a_request_not_a_statement():
    from gateway.routing.embedded_segment import is_statement

    assert not is_statement("my cat needs a follow-up to get her stitches out")
    assert not is_statement("the car needs a service")
    assert is_statement("my cat is fine now")


@pytest.mark.parametrize("text, expected", [
    ("whats the difference between median and mode and how should I answer a bad review",
     ["whats the difference between median and mode", "how should i answer a bad review"]),
    ("help the client choose between the matt and the gloss tiles",
     ["help the client choose between the matt and the gloss tiles"]),
    ("book the hotel and the car", ["book the hotel", "the car"]),   # no comparison: two things
])
def test_between_a_and_b_is_one_comparison(text, expected):
    assert texts(text) == expected
