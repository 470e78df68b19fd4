"""Behavioural tests of the embedded agent router (agents and prompts invented here)."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from gateway.routing.embedded import EmbeddedRouter
from gateway.routing.embedded_vectors import DATA, load_vectors
from gateway.routing.types import AgentSpec, RoutingDecision

HERE = os.path.dirname(os.path.abspath(__file__))

AGENTS = [
    AgentSpec("flights", "Books, changes and cancels flights: fares, routes, seat selection, baggage "
              "allowance, check-in and flight status. Handles: 'Find me a flight to Oslo on Friday', "
              "'Can I get an aisle seat?'. Does not book hotels."),
    AgentSpec("hotels", "Finds and books hotel rooms: availability, nightly prices, amenities such as "
              "pools or breakfast, and changing or cancelling a reservation. Handles: 'Any hotels "
              "near the harbour under 150 a night?'. Does not book flights."),
    AgentSpec("chitchat", "Friendly assistant for greetings, thanks, small talk, jokes and general "
              "knowledge questions. Handles: 'hi!', 'thank you'.", default=True),
    AgentSpec("weather", "Weather forecasts and current conditions: temperature, rain, snow, wind and "
              "storm alerts for any city. Handles: 'Will it rain in Dublin tomorrow?'. Does not book "
              "trips."),
    AgentSpec("banking", "Everyday banking: account balances, recent transactions, transfers to other "
              "accounts or people, freezing a lost card and disputing a charge. Handles: 'What is my "
              "checking balance?'. Does not give investment advice."),
    AgentSpec("it_support", "Employee IT support: password resets, account lockouts, VPN and Wi-Fi "
              "problems, laptop and printer issues. Handles: 'I am locked out of my email'. Does not "
              "handle banking."),
]


def u(text):
    return {"role": "user", "content": text}


def a(text):
    return {"role": "assistant", "content": text}


@pytest.fixture(scope="module")
def router():
    return EmbeddedRouter(AGENTS)


def test_single_intent(router):
    d = router.route([u("Please freeze my card, I think it was stolen")])
    assert isinstance(d, RoutingDecision)
    assert d.agents == ["banking"]
    assert router.route([u("The VPN drops every ten minutes")]).agents == ["it_support"]
    assert router.route([u("Is it going to snow in Denver this weekend?")]).agents == ["weather"]


def test_exclusion_sentence_does_not_count_as_scope(router):
    # "hotels" appears in the flights agent only under "Does not book hotels".
    assert router.route([u("Book me a hotel room with breakfast in Porto")]).agents == ["hotels"]


def test_multi_intent_in_text_order(router):
    d = router.route([u("Find me a flight to Rome on Friday and then book a hotel near the station")])
    assert d.agents == ["flights", "hotels"]
    assert d.reason == "multi"


def test_multi_intent_explicit_first_is_moved_ahead(router):
    d = router.route([u("Cancel my hotel reservation, but before that change my flight to Monday")])
    assert d.agents == ["flights", "hotels"]
    d = router.route([u("First check my checking balance, then reset my email password")])
    assert d.agents == ["banking", "it_support"]


def test_side_detail_does_not_split(router):
    # one ask (a flight) with a side detail joined by "and"
    d = router.route([u("Find me a flight to Lisbon with an aisle seat and extra baggage")])
    assert d.agents == ["flights"]


def test_background_sentence_is_not_a_second_ask(router):
    text = "Can I get a refund on the charge from the airline? My flight was cancelled."
    d = router.route([u(text)])
    # One ask, never [banking, flights]. Which agent is a judgement call ("refund on the charge"
    # is banking's "disputing a charge" by its words; the sentence encoder reads an airline
    # refund as the flights agent's), so the words-only router pins the old answer.
    assert len(d.agents) == 1 and d.agents[0] in ("banking", "flights")
    assert EmbeddedRouter(AGENTS, encoder=False).route([u(text)]).agents == ["banking"]


def test_followup_inherits_previous_topic(router):
    msgs = [u("Will it rain in London tomorrow?"), a("Yes, showers from noon."), u("what about the day after?")]
    d = router.route(msgs)
    assert d.agents == ["weather"]
    msgs = [u("What's my savings account balance?"), a("$4,210.55."), u("and checking?")]
    assert router.route(msgs).agents == ["banking"]


def test_followup_with_no_content_words_inherits(router):
    msgs = [u("Book the 7am flight to Oslo"), a("Done, confirmation ABC123."), u("when will it get there?")]
    assert router.route(msgs).agents == ["flights"]


def test_followup_switches_topic_on_strong_evidence(router):
    msgs = [u("Any hotels near Central Park?"), a("The Parkview has rooms at $185."),
            u("actually, transfer $500 from my savings account to my landlord first")]
    assert router.route(msgs).agents == ["banking"]


def test_smalltalk_goes_to_default_even_when_not_first(router):
    for text in ("hey there!", "thanks so much, you're great", "Who wrote Pride and Prejudice?"):
        d = router.route([u(text)])
        assert d.agents == ["chitchat"], text
    msgs = [u("Is it windy in Boston?"), a("Gusts up to 30 mph."), u("perfect, appreciate it")]
    assert router.route(msgs).agents == ["chitchat"]


def test_default_falls_back_to_first_agent_without_default_flag():
    # No default flag and no agent for small talk: a turn no agent claims goes to the first one.
    agents = [AgentSpec(x.id, x.description) for x in AGENTS if x.id != "chitchat"]
    r = EmbeddedRouter(agents)
    assert r.route([u("tell me something about penguins")]).agents == ["flights"]
    assert r.route([u("My laptop will not connect to the Wi-Fi")]).agents == ["it_support"]


def test_content_as_list_of_parts(router):
    msgs = [{"role": "system", "content": "You are helpful."},
            {"role": "user", "content": [{"type": "text", "text": "I forgot my password"},
                                         {"type": "image_url", "image_url": {"url": "x"}},
                                         {"type": "text", "text": "and can't log in"}]}]
    assert router.route(msgs).agents == ["it_support"]


@pytest.mark.parametrize("messages", [
    [],
    [{"role": "system", "content": "be nice"}],
    [{"role": "assistant", "content": "Hello!"}],
    [u("")],
    [u("   ")],
    [{"role": "user", "content": None}],
    [{"role": "user"}],
    [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
    ["not a dict", {"role": "user", "content": 42}],
    [u("?!?!")],
])
def test_empty_or_odd_messages_go_to_default(router, messages):
    d = router.route(messages)
    assert d.agents == ["chitchat"]


def test_single_agent_listener_needs_no_routing():
    r = EmbeddedRouter([AgentSpec("only", "Does everything.")])
    assert r.route([u("book me a flight")]).agents == ["only"]


@pytest.mark.parametrize("agents_file,cases_file,minimum", [
    ("routing_heldout_like_agents.yaml", "routing_heldout_like.jsonl", 0.85),   # travel/finance/IT
    ("routing_third_agents.yaml", "routing_third.jsonl", 0.85),  # IT/devtools/travel/finance/health
    # telecom/energy/food delivery/streaming/university; written before the changes it checks
    ("routing_fourth_agents.yaml", "routing_fourth.jsonl", 0.80),
    # written blind (not against the router) in the seventh session, with advice agents (tutors,
    # coaches) beside booking ones: home and hobbies / a freelancer's business
    ("routing_fifth_agents.yaml", "routing_fifth.jsonl", 0.75),
    ("routing_sixth_agents.yaml", "routing_sixth.jsonl", 0.60),
    # written blind in the eighth session (city resident services / a family farm and farm shop);
    # 74.2 % and 73.3 % at their first measurement, words alone 55.0 % and 60.8 %
    ("routing_seventh_agents.yaml", "routing_seventh.jsonl", 0.70),
    ("routing_eighth_agents.yaml", "routing_eighth.jsonl", 0.70),
    # written blind at the end of the eighth session (a school parent's assistant / a restaurant's
    # back office): 68.3 % and 71.7 % at their first measurement (5c75ab0: 65.8 / 70.8; words alone 50.0 / 54.2)
    ("routing_ninth_agents.yaml", "routing_ninth.jsonl", 0.65),
    ("routing_tenth_agents.yaml", "routing_tenth.jsonl", 0.65),
    # written blind in the ninth session (a building contractor's office / a film and TV production
    # office, with close neighbours on purpose): 69.2 % and 58.3 % at their first measurement, with
    # the split gate (43d5a4d, before it: 62.5 / 56.7; words alone 47.5 / 40.8)
    ("routing_eleventh_agents.yaml", "routing_eleventh.jsonl", 0.65),
    ("routing_twelfth_agents.yaml", "routing_twelfth.jsonl", 0.55),
    # written blind at the start of the tenth session (a company's travel and office assistant,
    # the style of the held-out set): 75.0 % at its first measurement (bf21254; words alone 50.8)
    ("routing_thirteenth_agents.yaml", "routing_thirteenth.jsonl", 0.70),
    # written blind in the same session (a travelling consultant's assistant), kept blind until its
    # end: 75.8 % before the session's changes, 76.7 % after (words alone 55.0)
    ("routing_fourteenth_agents.yaml", "routing_fourteenth.jsonl", 0.70),
    # written blind at the start of the eleventh session (a startup founder's travel and office
    # assistant / a travelling software engineer's assistant): 76.7 % and 66.7 % at their first
    # measurement (e02754c; words alone 60.8 / 45.8), 76.7 % and 71.7 % after that session's changes
    ("routing_fifteenth_agents.yaml", "routing_fifteenth.jsonl", 0.70),
    ("routing_sixteenth_agents.yaml", "routing_sixteenth.jsonl", 0.65),
    # written blind at the start of the thirteenth session (a freelance designer and musician's
    # assistant / a logistics operations manager's assistant): 70.0 % and 68.3 % at their first
    # measurement (5178b14, on an AVX2-only CPU)
    ("routing_seventeenth_agents.yaml", "routing_seventeenth.jsonl", 0.62),
    ("routing_eighteenth_agents.yaml", "routing_eighteenth.jsonl", 0.62),
])
def test_heldout_like_sets_generalise(agents_file, cases_file, minimum):
    """Author-written sets in other domains must stay well above the lexical baselines."""
    with open(os.path.join(HERE, "data", agents_file), encoding="utf-8") as f:
        spec = yaml.safe_load(f)["agents"]
    r = EmbeddedRouter([AgentSpec(x["id"], x["description"], bool(x.get("default"))) for x in spec])
    good = n = 0
    with open(os.path.join(HERE, "data", cases_file), encoding="utf-8") as f:
        for line in f:
            c = json.loads(line)
            got = r.route(c["messages"]).agents
            exp = c["expected"]
            ok = got == exp if c.get("ordered", c["kind"] != "multi") else sorted(got) == sorted(exp)
            good += ok
            n += 1
    assert good / n >= minimum


# --------------------------------------------------------------- semantic layer
needs_vectors = pytest.mark.skipif(load_vectors() is None, reason="numpy or static vector table missing")


@needs_vectors
def test_static_vector_table_is_compact_and_resolves_inflections():
    assert os.path.getsize(DATA) <= 5_000_000
    vec = load_vectors()
    hit = vec.lookup("storm")
    assert hit is not None and abs(float((hit[0] ** 2).sum()) - 1.0) < 1e-3
    assert vec.lookup("storms") is not None           # plural -> known base word
    assert vec.lookup("qwzxv") is None
    # SIF weights: a frequent word weighs less than a rare one.
    assert vec.lookup("good")[1] < vec.lookup("thunderstorm")[1]


@needs_vectors
def test_semantic_layer_rescues_synonyms_the_description_lacks(router):
    lexical = EmbeddedRouter(AGENTS, semantic=False)
    cases = {
        "is a hurricane heading for Miami?": "weather",
        "is it a thunderstorm tonight in Austin": "weather",
        "any cheap motels near the airport": "hotels",
        "I need a plane ticket to Rome": "flights",
    }
    for text, agent in cases.items():
        assert lexical.route([u(text)]).agents == ["chitchat"], text  # no shared word
        assert router.route([u(text)]).agents == [agent], text


@needs_vectors
def test_semantic_layer_keeps_general_knowledge_on_default(router):
    for text in ("Who painted the Mona Lisa?", "What is the capital of Australia?",
                 "How many legs does a spider have?", "tell me a fun fact about octopuses",
                 "recommend a good novel"):
        assert router.route([u(text)]).agents == ["chitchat"], text


@needs_vectors
def test_semantic_guess_does_not_cut_a_followup_off_its_topic(router):
    msgs = [u("Any hotels in Lyon for Friday?"), a("Hotel Bellecour has rooms at 120."),
            u("and what about the day after?")]
    assert router.route(msgs).agents == ["hotels"]


def test_router_works_without_semantic_layer():
    r = EmbeddedRouter(AGENTS, semantic=False)
    assert r.semantic is None
    assert r.route([u("Please freeze my card, I think it was stolen")]).agents == ["banking"]
    assert r.route([u("What is the capital of Australia?")]).agents == ["chitchat"]


# ------------------------------------------------ pasted material, dialogue, request forms
OFFICE = [
    AgentSpec("helpdesk", "Office IT support: password resets, laptops, printers, Wi-Fi and email "
              "problems. Handles: 'My laptop will not boot'. Does not handle code or builds."),
    AgentSpec("devplatform", "Developer platform: failing builds, CI pipelines, deployments, and "
              "debugging error messages and stack traces from our services. Handles: 'Why is the "
              "main build red?'."),
    AgentSpec("bookshop", "Searches the bookshop catalogue: finds books, compares editions and "
              "formats, and gives reading recommendations. Handles: 'Do you have the new Ishiguro?'."),
    AgentSpec("assistant", "General assistant for greetings, small talk, jokes and general "
              "knowledge questions; anything that is not an office request.", default=True),
    AgentSpec("payables", "Accounts payable: paying supplier invoices, invoice status and due dates, "
              "purchase orders. Handles: 'Has the Acme invoice been paid?'."),
    AgentSpec("clinic", "Books, moves and cancels appointments with the doctors and nurses of the "
              "company clinic. Handles: 'Book me in with Dr. Reyes on Monday'. Does not handle "
              "insurance."),
    AgentSpec("insurance", "Employee health insurance: what the plan covers, claims, copays and "
              "referrals. Handles: 'Is physiotherapy covered?'."),
]


@pytest.fixture(scope="module")
def office():
    return EmbeddedRouter(OFFICE)


def test_pasted_stack_trace_counts_as_an_error_not_as_its_identifiers(office):
    text = ("this started after the last merge, any idea?\n"
            "Traceback (most recent call last):\n"
            '  File "accounts/invoice_payments.py", line 41, in pay_supplier_invoice\n'
            "    total = invoice.amount / invoice.parts\n"
            "ZeroDivisionError: division by zero")
    assert office.route([u(text)]).agents == ["devplatform"]
    text = ("the clinic booking job dies on startup:\n"
            "java.lang.IllegalStateException: appointment calendar not initialised\n"
            "    at com.acme.clinic.AppointmentService.book(AppointmentService.java:88)")
    assert office.route([u(text)]).agents == ["devplatform"]


def test_pasted_email_is_context_for_the_ask_and_never_a_second_intent(office):
    text = ("Can you take care of this email?\n\n"
            "> From: billing@initech.example\n"
            "> Subject: Invoice 5521 overdue\n"
            "> Hello, invoice 5521 is now 45 days past its due date. Please arrange payment.")
    d = office.route([u(text)])
    assert d.agents == ["payables"]  # not helpdesk ("email"), not split into several asks
    text = ("My doctor's office sent this: 'Your appointment with Dr. Reyes on Tuesday at 9am is "
            "confirmed, reply STOP to cancel.' I can't make it, move it to Thursday please")
    assert office.route([u(text)]).agents == ["clinic"]


def test_named_assistant_reply_carries_the_topic_of_a_vague_followup(office):
    msgs = [u("any news on the thing from last week?"),
            {"role": "assistant", "name": "insurance", "content": "Claim C-771 is still being reviewed."},
            u("how long does that normally take?")]
    assert office.route(msgs).agents == ["insurance"]
    # Without a name, the reply's own words name the topic.
    msgs = [u("any news on the thing from last week?"), a("Your invoice INV-88 is scheduled for payment."),
            u("how long does that normally take?")]
    assert office.route(msgs).agents == ["payables"]


def test_followup_that_is_not_social_keeps_the_topic(office):
    msgs = [u("My laptop will not connect to the Wi-Fi"), a("Try forgetting the network and rejoining."),
            u("did that, still the same")]
    assert office.route(msgs).agents == ["helpdesk"]


def test_general_knowledge_forms_go_to_default_unless_personal(office):
    for text in ("How does a printer work, in general?", "Who invented the laptop?",
                 "tell me a joke about invoices", "What does 'referral' mean?",
                 "Why are hospital bills so confusing?"):
        assert office.route([u(text)]).agents == ["assistant"], text
    assert office.route([u("Why was my claim for the referral denied?")]).agents == ["insurance"]
    msgs = [u("Show me the build logs"), a("The build failed at the lint step."),
            u("never mind, who wrote War and Peace?")]
    assert office.route(msgs).agents == ["assistant"]


def test_search_shaped_request_goes_to_the_searching_agent(office):
    assert office.route([u("any hardback cookbooks under $30?")]).agents == ["bookshop"]
    assert office.route([u("which is the cheapest paperback edition?")]).agents == ["bookshop"]


def test_before_you_clause_runs_first(office):
    d = office.route([u("Before you book my clinic appointment, check whether my plan covers physiotherapy")])
    assert d.agents == ["insurance", "clinic"]
    d = office.route([u("Book me in with Dr. Reyes on Monday after you check whether my plan covers it")])
    assert d.agents == ["insurance", "clinic"]


def test_side_statement_and_abbreviation_do_not_split(office):
    assert office.route([u("Book a checkup with Dr. Reyes for my son, we are on the family insurance")]).agents \
        == ["clinic"]
    # A leading statement sets the scene for the request that follows it.
    assert office.route([u("My printer at home is broken - can you pay the Acme invoice by card instead?")]).agents \
        == ["payables"]


def test_anaphoric_subject_keeps_the_previous_topic(office):
    msgs = [u("Is physiotherapy covered by my plan?"), a("Yes, up to 12 sessions a year."),
            u("does that apply at the company clinic too?")]
    assert office.route(msgs).agents == ["insurance"]


# ------------------------------------ exclusions as phrases, follow-up meaning, topic shifts
def test_exclusion_counts_fully_only_as_a_phrase():
    # "Does not change or cancel orders" names another agent's job; a request that merely
    # mentions an order ("my order says delivered ...") is penalised by half as much.
    from gateway.routing.embedded_index import NEG_LONE, NEG_W, LexicalIndex
    from gateway.routing.embedded_profile import parse_description

    idx = LexicalIndex([parse_description("orders", "Changes and cancels open orders."),
                        parse_description("parcels", "Tracks parcels with the carrier. Does not "
                                          "change or cancel orders.")])
    lone = idx.evidence(["order"]).scores[1]
    phrase = idx.evidence(["cancel", "order"]).scores[1]
    assert lone == pytest.approx(-NEG_LONE * NEG_W * idx.idf["order"])
    assert phrase == pytest.approx(-NEG_W * (idx.idf["cancel"] + idx.idf["order"]))
    # A one-word exclusion ("Does not book hotels") still counts in full on its own.
    idx = LexicalIndex([parse_description("flights", "Books flights. Does not book hotels."),
                        parse_description("hotels", "Finds hotel rooms.")])
    assert idx.evidence(["hotel"]).scores[0] < 0


@needs_vectors
def test_followup_with_a_clear_new_meaning_switches_topic(router):
    # No word of the turn is in any description, but its meaning clearly points elsewhere.
    msgs = [u("Any hotels in Lyon for Friday?"), a("Hotel Bellecour has rooms at 120."),
            u("will a hurricane hit Lyon that weekend?")]
    assert router.route(msgs).agents == ["weather"]


def test_explicit_change_of_subject_inherits_nothing(router):
    msgs = [u("What is my checking balance?"), a("You have 1,240 dollars."),
            u("unrelated, but can you tell me something fun?")]
    assert router.route(msgs).agents == ["chitchat"]
    msgs[-1] = u("can you tell me more about that?")  # no marker: a follow-up keeps the topic
    assert router.route(msgs).agents == ["banking"]


def test_report_with_a_temporal_clause_is_one_intent(router):
    # "after I paid ..." tells what happened; only a request orders two steps.
    assert router.route([u("My card got blocked after I paid for the hotel")]).agents == ["banking"]
    assert router.route([u("Reset my password after you freeze my card")]).agents == ["banking", "it_support"]


def test_a_temporal_clause_about_the_user_is_context_not_a_second_ask(router):
    # "before I fly ..." / "once I land ..." is what the user will do: one request with its context.
    assert router.route([u("Freeze my card before I fly to Lisbon")]).agents == ["banking"]
    assert router.route([u("Once I land in Oslo, book me a hotel near the station")]).agents == ["hotels"]
    # ... while one addressed to the assistant is a step of its own, in the stated order.
    assert router.route([u("Freeze my card before you book my flight to Lisbon")]).agents == ["banking", "flights"]
    assert router.route([u("Once you've frozen my card, reset my VPN password")]).agents == ["banking", "it_support"]


def test_a_stated_order_between_asks_lowers_each_clauses_margin(router, monkeypatch):
    """"first ..., then ..." says the turn holds several asks: a clause whose best specialist leads
    the runner-up only narrowly still counts there, but not in a turn that states no order."""
    ids, unit = router.ids, router.index.unit

    def scores(text, *args, **kwargs):
        out = [0.0] * len(ids)
        if "card" in text:  # banking leads it_support by 1.1x: under MARGIN (1.2), over ORDERED_MARGIN
            out[ids.index("banking")], out[ids.index("it_support")] = 3.3 * unit, 3.0 * unit
        elif "room" in text:
            out[ids.index("hotels")] = 3.0 * unit
        return out

    monkeypatch.setattr(router, "_scores", scores)
    monkeypatch.setattr(router, "split_gate", None)  # (with the gate a clause need only lead: test_split_gate.py)
    ordered = router._multi("first freeze my card, then find me a room in Oslo")
    assert [ids[i] for i in ordered] == ["banking", "hotels"]
    assert router._multi("freeze my card and find me a room in Oslo") is None


def test_a_no_match_turn_goes_to_its_leading_specialist_when_more_likely_a_task(router, monkeypatch):
    """No specialist clears the bar: the generality classifier's own boundary (P = 0.5) decides
    between the leading specialist (a task) and the default agent (small talk / general)."""
    text = "it keeps kicking me off every few minutes"
    monkeypatch.setattr(router, "matcher", None)  # (the matcher may claim a no-match turn: tests/test_matcher.py)
    monkeypatch.setattr(router, "_general", lambda t: 0.4)
    assert router.route([u(text)]).agents == ["it_support"]
    monkeypatch.setattr(router, "_general", lambda t: 0.6)
    d = router.route([u(text)])
    assert d.agents == ["chitchat"] and d.reason == "no_match->default"


def test_availability_question_is_search_shaped(office):
    from gateway.routing.embedded_text import is_search_request

    assert is_search_request("Is the linen shirt back in stock?")
    assert not is_search_request("Is my order in the warehouse?")
    assert office.route([u("Is the Atwood boxset in stock?")]).agents == ["bookshop"]


# ---------------------------------------------------------- per-agent `examples:` (plano extension)
HOME = [
    AgentSpec("pantry", "Helps with the household."),
    AgentSpec("garage", "Helps with vehicles and their upkeep: servicing, tyres, repairs."),
    AgentSpec("general", "Small talk and general knowledge questions.", default=True),
]
PANTRY_EXAMPLES = ("how long do I boil an egg for a runny yolk", "what can I cook with leftover rice",
                   "substitute for buttermilk in pancakes")


@pytest.mark.parametrize("semantic", [True, False])
def test_configured_examples_bring_concrete_requests_to_a_vaguely_described_agent(semantic):
    ask = [u("how long should I boil eggs so the yolk stays runny?")]
    without = EmbeddedRouter(HOME, semantic=semantic)
    assert without.route(ask).agents != ["pantry"]  # "helps with the household" says nothing of eggs
    agents = [AgentSpec("pantry", HOME[0].description, examples=PANTRY_EXAMPLES)] + HOME[1:]
    with_examples = EmbeddedRouter(agents, semantic=semantic)
    assert with_examples.route(ask).agents == ["pantry"]
    # Examples add scope, they do not swallow other agents' requests or small talk.
    assert with_examples.route([u("my car needs new tyres before winter")]).agents == ["garage"]
    assert with_examples.route([u("hello there, how are you?")]).agents == ["general"]


def test_examples_are_read_from_the_config_and_shown_to_the_orchestrator():
    from types import SimpleNamespace

    from gateway.config.schema import ListenerAgent
    from gateway.routing.orchestrator import routes_block
    from gateway.routing.selector import AgentSelector

    agents = [ListenerAgent(id="pantry", description="Helps with the household.", examples=list(PANTRY_EXAMPLES)),
              ListenerAgent(id="general", description="Small talk.", default=True)]
    listener = SimpleNamespace(agents=agents, router="embedded", answers="last", router_confidence=0.6,
                               name="agents")
    sel = AgentSelector(listener, SimpleNamespace(overrides=None), None, None)
    assert sel.specs[0].examples == PANTRY_EXAMPLES and sel.specs[1].examples == ()
    block = routes_block(sel.specs)
    assert '"how long do I boil an egg for a runny yolk"' in json.loads(block.splitlines()[0])["description"]
    assert "Examples" not in json.loads(block.splitlines()[1])["description"]


# ------------------------------------- "task or general knowledge?" classifier (training/generality.py)
def test_generality_classifier_separates_tasks_from_trivia_in_any_domain(router):
    if router.generality is None:
        pytest.skip("sentence encoder not installed")
    assert router.generality.shape == (385,)
    general = ["how many moons does jupiter have?", "tell me a fun fact about octopuses",
               "what do you think about pineapple on pizza"]
    tasks = ["renew my library books before they are overdue", "my parking permit expired, can you extend it",
             "reschedule my dentist cleaning to next Thursday"]
    assert all(router._general(t) > 0.5 for t in general), [router._general(t) for t in general]
    assert all(router._general(t) < 0.5 for t in tasks), [router._general(t) for t in tasks]


def test_generality_off_switch_and_no_encoder_mean_no_classifier(monkeypatch):
    monkeypatch.setenv("PLANO_ROUTER_GENERALITY", "0")
    assert EmbeddedRouter(AGENTS).generality is None
    monkeypatch.delenv("PLANO_ROUTER_GENERALITY")
    assert EmbeddedRouter(AGENTS, encoder=False).generality is None


@pytest.mark.parametrize("text, agents", [
    # A serial list closed by ", and ...": every item is a clause and each claims its agent.
    ("Flights from London to Tokyo on Friday, the weather there, and a hotel near Shinjuku for 3 nights",
     ["flights", "weather", "hotels"]),
    ("weather in Rome tomorrow, a flight from Berlin to Rome on Saturday and my checking balance",
     ["weather", "flights", "banking"]),
    # ... or by ", then ...", which also states their order.
    ("check my checking balance, book a flight from Oslo to Rome on Friday, then tell me if it will rain "
     "in Rome that weekend", ["banking", "flights", "weather"]),
    # Items that claim no agent of their own ("near the station") add no intent.
    ("Find me a hotel in Oslo for Friday, near the station, and with breakfast included", ["hotels"]),
])
def test_serial_list_of_requests_gets_every_agent(router, text, agents):
    assert router.route([u(text)]).agents == agents


@pytest.mark.parametrize("text, agents", [
    # "we're flying in on Friday" says what the user is doing: context of the hotel request.
    ("Any hotels near the harbour under 150 a night? We're flying in from Oslo on Friday", ["hotels"]),
    ("Is it going to snow in Denver this weekend? I'm driving my rental car up there", ["weather"]),
    # ... while "I'm looking for ..." asks for something.
    ("Is it going to snow in Denver this weekend? I'm also looking for a flight there from Boston",
     ["weather", "flights"]),
])
def test_a_progressive_statement_is_context_not_an_ask(router, text, agents):
    assert router.route([u(text)]).agents == agents


@pytest.mark.parametrize("text, agents", [
    # A clause with no request form that a sentence ends before a plain ask sets the scene.
    ("Wifi at the hotel kept dropping all week. Can you find me a different hotel near the harbour?", ["hotels"]),
    ("Last transfer to my landlord bounced twice. Could you tell me if it will rain in Dublin tomorrow?",
     ["weather"]),
    # "can't" / "couldn't" state what is not possible; they ask nothing.
    ("The banking app couldn't load my balance all evening. Can you find me a hotel in Porto for Friday?",
     ["hotels"]),
    # ... and so does a whole first sentence of such clauses.
    ("My flight to Oslo landed late and the hotel shuttle had already left. Can you tell me if it will rain "
     "in Oslo tomorrow?", ["weather"]),
    # ... but a first sentence that asks is no scene.
    ("Is my flight to Oslo on time? The airport shuttle left already. Can you find me a hotel near the airport?",
     ["flights", "hotels"]),
    # ... nor an ask that adds itself to the first clause.
    ("Cancel my flight to Oslo. Can you also check my checking balance?", ["flights", "banking"]),
    ("My flight to Oslo was cancelled and the airline is not answering. Can you also find me a hotel near the "
     "airport?", ["flights", "hotels"]),
])
def test_a_leading_clause_without_a_request_form_sets_the_scene_for_a_plain_ask(router, text, agents):
    assert router.route([u(text)]).agents == agents


def test_a_thanks_in_between_does_not_cut_an_anaphoric_turn_off_its_topic(router):
    # "the same" points back past the thanks, to the flight; a turn that stands on its own after a
    # thanks is scored alone.
    msgs = [u("Book me a flight to Oslo on Friday"), a("Booked SK4411, Friday 8:05."), u("great, thanks"),
            a("You're welcome! Anything else?"), u("actually can you do the same for next Friday?")]
    assert router.route(msgs).agents == ["flights"]
    msgs[-1] = u("what is my checking balance?")
    d = router.route(msgs)
    assert d.agents == ["banking"] and d.reason == "single"
    # a short turn that does not point back starts afresh after the thanks
    for text, agents in (("tell me a joke", ["chitchat"]), ("how are you?", ["chitchat"]),
                         ("my laptop is slow", ["it_support"])):
        msgs[-1] = u(text)
        assert router.route(msgs).agents == agents, text


@pytest.mark.parametrize("text", ["separately, can you tell me something fun?", "thanks. separately, what's new",
                                  "different thing: how are you", "ok, separate issue - my card"])
def test_separately_and_a_separate_thing_change_the_subject(text):
    from gateway.routing.embedded_dialog import is_topic_shift

    assert is_topic_shift(text)


@pytest.mark.parametrize("text", ["I paid for the two rooms separately", "can you bill them separately?",
                                  "can you send the invoice and separately the receipt?",
                                  "another issue with the same booking: it shows the old date",
                                  "oh and another thing, make it two people", "new issue: it still shows the old time"])
def test_separately_inside_a_request_is_no_change_of_subject(text):
    from gateway.routing.embedded_dialog import is_topic_shift

    assert not is_topic_shift(text)




CHORES = [
    AgentSpec("library", "Public library account: borrowing and renewing books, reservations and holds on titles "
              "that are out, late fees, and booking study rooms."),
    AgentSpec("handyman", "Books a local handyman for small jobs around the home: puts up shelves, fixes dripping "
              "taps, assembles flat-pack furniture, hangs doors."),
    AgentSpec("laundry", "Laundry pickup and delivery: wash and fold, dry cleaning, stain treatment; change or "
              "cancel a pickup."),
    AgentSpec("sleep_coach", "Sleep coaching: bedtime routines, insomnia, waking at night, naps and jet lag."),
    AgentSpec("general", "Small talk, trivia, general knowledge and anything else.", default=True),
]


@pytest.fixture(scope="module")
def chores():
    return EmbeddedRouter(CHORES)


def ungated(agents):
    """A router whose proposed splits all stand: what the segmentation alone proposes (the split
    gate, tests/test_split_gate.py, then judges each proposal)."""
    r = EmbeddedRouter(agents)
    r.split_gate = None
    return r


@pytest.mark.parametrize("text, agents", [
    # a fragment sentence that reaches another agent only through an incidental word of its
    # description ("puts up", "change") goes on with the ask before it
    ("Is the new Ishiguro novel still out on loan? Put me on it.", ["library"]),
    ("I wake at 4am every night and can't get back to sleep. What should I change?", ["sleep_coach"]),
    # a terse ask with a meaning of its own is proposed as an intent
    ("Renew my library books. Fix the tap too.", ["library", "handyman"]),
])
def test_a_fragment_after_an_ask_is_an_intent_only_with_a_meaning_of_its_own(text, agents):
    chores = ungated(CHORES)
    if chores.sentences is None:
        pytest.skip("needs the sentence encoder")
    assert chores.route([u(text)]).agents == agents


@pytest.mark.parametrize("text, agents", [
    ("Book me a flight to Oslo on Friday. Weather there?", ["flights", "weather"]),
    ("I need a hotel in Rome. Will it rain?", ["hotels", "weather"]),
    ("Freeze my card. Reset my password too.", ["banking", "it_support"]),
])
def test_a_terse_new_ask_after_a_sentence_break_is_proposed_as_an_intent(text, agents):
    assert ungated(AGENTS).route([u(text)]).agents == agents


def test_a_statement_after_a_lone_opener_is_the_clause_not_its_background(router):
    from gateway.routing.embedded_segment import split_pieces

    text = "How much is a double room at the harbour hotel? And separately, my card has a charge I don't recognise"
    assert [p.background for p in split_pieces(text)][-1] is False
    assert router.route([u(text)]).agents == ["hotels", "banking"]
    # after an ask, a comma statement is still background ("..., we're on the family plan")
    assert split_pieces("Book a room at the harbour hotel, my card has the points")[-1].background


def test_trivia_in_a_coachs_subject_stays_with_the_default_agent(chores):
    # "sleep" claims the turn for the sleep coach by words; read with the default agent's
    # description, the shipped matcher finds it trivia.
    if chores.matcher is None:
        pytest.skip("needs the shipped matcher")
    assert chores.route([u("how many hours of sleep did Napoleon get?")]).agents == ["general"]


def test_ok_do_it_is_a_go_ahead_for_the_previous_topic_not_small_talk(router):
    from gateway.routing.embedded_text import is_social

    assert not is_social("ok do it") and is_social("ok thanks")
    msgs = [u("What is my checking balance?"), a("1,240 dollars. Want me to move 500 to savings?"), u("ok do it")]
    assert router.route(msgs).agents == ["banking"]
    assert router.route([u("ok do it")]).agents == ["chitchat"]  # nothing to go ahead with


@pytest.mark.parametrize("reply", ["fine, go for it", "ok get that one", "sure, make it 300", "ok let's do it"])
def test_a_go_ahead_with_a_verb_stays_with_the_offer_a_thanks_does_not(router, reply):
    from gateway.routing.embedded_text import is_social

    assert not is_social(reply)
    offer = [u("What is my checking balance?"), a("1,240 dollars. Want me to move 500 to savings?")]
    assert router.route(offer + [u(reply)]).agents == ["banking"]
    assert router.route(offer + [u("ok great, thanks!")]).agents == ["chitchat"]


@pytest.mark.parametrize("reply", ["bye, have to go now", "thanks, have to go", "ok thanks, let me know",
                                   "ok let me think"])
def test_a_farewell_or_a_pause_after_an_offer_is_small_talk(router, reply):
    offer = [u("What is my checking balance?"), a("1,240 dollars. Want me to move 500 to savings?")]
    assert router.route(offer + [u(reply)]).agents == ["chitchat"]


@pytest.mark.parametrize("text, agents", [
    # a statement before a question is its scene, though the question mark goes with the break
    ("I'm driving to the hotel later but first: has my card been unblocked yet?", ["banking"]),
    ("I'm flying to Oslo tonight but first: is my card unblocked?", ["banking"]),
    # a first sentence with no request form before "First ..., then ..." sets the scene for the steps
    ("Storm warning for Dublin tomorrow. First move my flight to Monday, then book a hotel near the airport.",
     ["flights", "hotels"]),
    # an ask before "First ..." with no list of steps after it is an ask, put second
    ("Cancel my hotel in Rome. First move my flight to Monday.", ["flights", "hotels"]),
    ("Reset my VPN password. First, freeze my card.", ["banking", "it_support"]),
])
def test_a_statement_before_a_question_or_a_list_of_steps_sets_the_scene(router, text, agents):
    assert router.route([u(text)]).agents == agents


def test_a_piece_remembers_its_question_mark():
    from gateway.routing.embedded_segment import split_pieces

    pieces = split_pieces("Is my card blocked? Book a hotel in Rome and is it near the station?")
    assert [p.question for p in pieces] == [True, False, True]
    assert [p.question for p in split_pieces("Book a hotel in Rome. Is it near the station? ")] == [False, True]
