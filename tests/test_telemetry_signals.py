"""Conversation-quality signals (Plano §5.4) on crafted conversations."""

from __future__ import annotations

import time

import orjson

from gateway.telemetry.signals import analyze, severity


def user(text):
    return {"role": "user", "content": text}


def assistant(text, calls=None):
    message = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = [{"id": f"c{i}", "type": "function",
                                  "function": {"name": name, "arguments": orjson.dumps(args).decode()}}
                                 for i, (name, args) in enumerate(calls)]
    return message


def tool(text):
    return {"role": "tool", "tool_call_id": "c0", "content": text}


def leaves(report):
    return [s.type for s in report.signals]


def test_plain_question_is_neutral():
    report = analyze([{"role": "system", "content": "be nice"}, user("What is the weather in Paris?")])
    assert report.signals == [] and report.quality == "neutral" and report.score == 50
    assert report.turn_count == 1 and report.efficiency == 1.0 and not report.flagged
    assert report.attributes() == {"signals.quality": "neutral", "signals.quality_score": 50.0,
                                   "signals.turn_count": 1, "signals.efficiency_score": 1.0}


def test_gratitude_and_success_raise_the_score():
    report = analyze([user("My build fails with error X"), assistant("Try clearing the cache."),
                      user("That worked, thanks a lot!")])
    assert "interaction.satisfaction.success" in leaves(report)
    assert "interaction.satisfaction.gratitude" in leaves(report)
    assert report.counts["interaction.satisfaction"] == 2 and report.score == 66 and report.quality == "good"


def test_negated_praise_is_not_satisfaction():
    report = analyze([user("Summarise this"), assistant("Here it is."), user("that's not great")])
    assert not any(t.startswith("interaction.satisfaction") for t in leaves(report))


def test_escalation_makes_it_severe_and_flagged():
    report = analyze([user("I was charged twice"), assistant("Please restart the app."),
                      user("This is useless, I want to speak to a human agent")])
    assert "interaction.disengagement.escalation" in leaves(report)
    assert "interaction.disengagement.negative_stance" in leaves(report)
    assert report.quality == "severe" and report.score == 0 and report.flagged
    attrs = report.attributes()
    assert attrs["signals.interaction.disengagement.count"] == 2
    assert attrs["signals.interaction.disengagement.severity"] == 1


def test_corrections_and_rephrases_are_misalignment():
    report = analyze([
        user("Book a table for two at an Italian place tonight"),
        assistant("I booked a sushi restaurant for tomorrow."),
        user("No, that's not what I asked. I said Italian, tonight."),
        assistant("Sorry, which city?"),
        user("Book a table for two at an Italian restaurant tonight please"),
        assistant("Done."),
    ])
    assert "interaction.misalignment.correction" in leaves(report)
    assert "interaction.misalignment.rephrase" in leaves(report)
    # 2 of 3 user turns misaligned (> 30%): -15
    assert report.score == 35 and report.quality == "poor" and report.flagged


def test_user_repeating_themselves_is_stagnation():
    question = "How do I reset my password on the mobile app?"
    answer = "Open the settings screen and tap reset password."
    report = analyze([user(question), assistant(answer), user(question), assistant(answer), user(question)])
    assert leaves(report).count("interaction.stagnation.repetition") == 3  # the user twice, the assistant once
    assert report.counts["interaction.stagnation"] == 3 and report.flagged
    assert report.score == 50 - 8 * 2  # stagnation count > 2: -8 x severity 2


def test_long_conversations_drag():
    messages = []
    for i in range(8):
        messages += [user(f"question number {i} about topic {i * 7}"), assistant(f"answer {i}")]
    report = analyze(messages)
    assert "interaction.stagnation.dragging" in leaves(report)
    assert report.turn_count == 8 and abs(report.efficiency - 1 / (1 + 0.3 * 3)) < 1e-9


def test_tool_failures_loops_and_exhaustion():
    search = ("search_flights", {"from": "NYC", "to": "PAR"})
    report = analyze([
        user("Find me a flight to Paris"),
        assistant("", [search]), tool('{"error": "Rate limit exceeded (429), retry later"}'),
        assistant("", [search]), tool("Error: connection refused"),
        assistant("", [search]), tool("Error: unknown tool search_flights_v2"),
        assistant("", [("lookup_city", {"q": "Paris"})]), tool("ValidationError: missing required parameter 'country'"),
        assistant("", [("lookup_city", {"q": "Paris, FR"})]), tool("ok"),
        assistant("", [("lookup_city", {"q": "PAR"})]), tool("ok"),
    ])
    found = leaves(report)
    assert "environment.exhaustion.rate_limit" in found and "environment.exhaustion.network" in found
    assert "execution.failure.tool_not_found" in found and "execution.failure.invalid_args" in found
    assert "execution.loops.retry" in found and "execution.loops.parameter_drift" in found
    # 50 - 8*2 failures - 5*2 loops - 3*2 exhaustion = 18 -> severe
    assert report.score == 18 and report.quality == "severe" and report.flagged


def test_oscillating_tools_are_a_loop():
    calls = []
    for i in range(3):
        calls += [assistant("", [("open_file", {"p": "a"})]), tool("ok"), assistant("", [("close_file", {"p": "a"})]),
                  tool("ok")]
    report = analyze([user("edit the file"), *calls])
    assert "execution.loops.oscillation" in leaves(report)


def test_severity_buckets():
    assert [severity(n) for n in (0, 1, 2, 3, 4, 5, 9)] == [0, 1, 1, 2, 2, 3, 3]


def test_events_and_snippets():
    report = analyze([user("hello"), assistant("hi"), user(f"thanks, my email is bob@example.com {'x' * 300}")])
    [(name, attrs)] = report.events(with_snippets=True)
    assert name == "signal.interaction.satisfaction.gratitude"
    assert attrs["signal.type"] == "interaction.satisfaction.gratitude" and attrs["signal.message_index"] == 2
    assert "[EMAIL]" in attrs["signal.snippet"] and len(attrs["signal.snippet"]) <= 123
    assert orjson.loads(attrs["signal.metadata"]) == {"match": "thanks"}
    [(_, without)] = report.events(with_snippets=False)
    assert "signal.snippet" not in without


def test_garbage_input_is_ignored():
    report = analyze([None, 3, {"role": "user"}, {"role": "user", "content": [{"type": "text", "text": "thank you"}]},
                      {"role": "tool", "content": None}])
    assert leaves(report) == ["interaction.satisfaction.gratitude"]
    assert analyze("not a list").turn_count == 0


def test_fast_on_long_histories():
    long = "Please check the shipment status for order number 12345 and tell me when it arrives. " * 24
    messages = []
    for i in range(50):
        messages += [user(f"{long} ({i})"), assistant(f"Order {i} is in transit. " * 30)]
    started = time.perf_counter()
    analyze(messages)
    first = time.perf_counter() - started
    messages.append(user("ok thanks"))
    started = time.perf_counter()
    report = analyze(messages)  # the next turn: earlier messages come from the cache
    again = time.perf_counter() - started
    assert report.turn_count == 50  # only the last 100 messages count
    assert first < 0.5 and again < 0.05, (first, again)
