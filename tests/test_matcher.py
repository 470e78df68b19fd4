"""The matcher's numpy runtime (gateway/routing/matcher.py) and its switch in the embedded router.

No trained weights are needed: a matcher whose upper layers are the sentence encoder's own,
with the cross-attention gates closed and the head zeroed, must score every (request,
description) pair as scale x cosine of the two sentence embeddings - which checks the whole
runtime path (split lower / upper layers, the description cache, batching of candidates,
padding) against the encoder itself.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from gateway.routing import encoder as enc

pytestmark = pytest.mark.skipif(not enc.available(), reason="sentence-encoder weights not installed")

SPLIT = 4
SCALE = 20.0


def _identity_matcher(path, e) -> None:
    arrs = {"seg": np.zeros((2, e.dim), np.float32)}
    for j, lay in enumerate(e.layers[SPLIT:]):
        p = f"l{j}."
        for name in ("qkv_w", "qkv_b", "o_w", "o_b", "ln1_w", "ln1_b", "i_w", "i_b", "f_w", "f_b",
                     "ln2_w", "ln2_b"):
            arrs[p + name] = np.asarray(getattr(lay, name), np.float16)
    arrs["gate"] = np.full((len(e.layers) - SPLIT, e.heads), -1e4, np.float32)
    arrs["pool_w"] = np.zeros((e.dim, e.dim), np.float16)
    arrs["pool_b"] = np.zeros(e.dim, np.float16)
    arrs["out_w"] = np.zeros(e.dim, np.float16)
    arrs["out_b"] = np.array([-5.0], np.float32)
    arrs["scale"] = np.array([SCALE], np.float32)
    arrs["config"] = np.frombuffer(json.dumps({"split": SPLIT, "layers": len(e.layers) - SPLIT}).encode(), np.uint8)
    np.savez(path, **arrs)


DESCRIPTIONS = [
    "Weather forecasts and current conditions for any city. Handles: 'Will it rain in Oslo tomorrow?'.",
    "Books, changes and cancels flights.",
    "General chit-chat and anything not covered by the other agents.",
]


@pytest.fixture(scope="module")
def identity(tmp_path_factory):
    # The matcher's layers run in numpy: compare it with the fp32 numpy encoder, not the int8 one.
    mp = pytest.MonkeyPatch()
    mp.setenv("PLANO_ENCODER_BACKEND", "numpy")
    e = enc.SentenceEncoder()
    mp.undo()
    path = tmp_path_factory.mktemp("m") / "matcher.npz"
    _identity_matcher(path, e)
    return e, path


def test_closed_gates_reduce_the_matcher_to_the_sentence_encoder(identity):
    from gateway.routing.matcher import Matcher

    e, path = identity
    m = Matcher(e, path)
    descs = m.describe(DESCRIPTIONS)
    dvec = e.encode(DESCRIPTIONS)
    for text in ["is it going to snow in Tromso this weekend", "move my flight to friday", "hi"]:
        got = m.scores(m.request([text])[0], descs)
        want = SCALE * (dvec @ e.encode(text)[0]) - 5.0
        # float16 storage of the upper layers: agreement to a few hundredths of a logit
        assert np.allclose(got, want, atol=0.15), (text, got, want)
        assert int(np.argmax(got)) == int(np.argmax(want))


def test_router_uses_the_matcher_only_when_shipped_and_enabled(identity, monkeypatch):
    from gateway.routing.embedded import EmbeddedRouter
    from gateway.routing.types import AgentSpec

    _, path = identity
    agents = [AgentSpec("weather", DESCRIPTIONS[0]), AgentSpec("flights", DESCRIPTIONS[1]),
              AgentSpec("chat", DESCRIPTIONS[2], default=True)]
    monkeypatch.delenv("PLANO_ROUTER_ENCODER", raising=False)
    monkeypatch.setenv("PLANO_MATCHER_FILE", str(path))
    monkeypatch.delenv("PLANO_ROUTER_MATCHER", raising=False)
    r = EmbeddedRouter(agents, encoder=True)
    assert r.matcher is not None
    d = r.route([{"role": "user", "content": "will it rain in Bergen tomorrow?"}])
    assert d.agents == ["weather"] and d.confidence is not None
    monkeypatch.setenv("PLANO_ROUTER_MATCHER", "0")
    assert EmbeddedRouter(agents, encoder=True).matcher is None
    monkeypatch.setenv("PLANO_ROUTER_MATCHER", "1")
    monkeypatch.setenv("PLANO_MATCHER_FILE", str(path) + ".missing")
    assert EmbeddedRouter(agents, encoder=True).matcher is None


# --------------------------------------------------------------------- re-ranking in the router
AGENTS3 = [("weather", DESCRIPTIONS[0]), ("flights", DESCRIPTIONS[1])]


class _Spy:
    """Stands in for MatcherScorer: records what it was asked, prefers a fixed agent."""

    def __init__(self, prefer: int) -> None:
        self.prefer = prefer
        self.calls: list[tuple[str, tuple]] = []

    def logits(self, text, only=None):
        self.calls.append((text, tuple(only)))
        return np.array([10.0 if i == self.prefer else -10.0 for i in only], np.float32)


def _router(monkeypatch):
    from gateway.routing.embedded import EmbeddedRouter
    from gateway.routing.types import AgentSpec

    monkeypatch.delenv("PLANO_ROUTER_ENCODER", raising=False)
    monkeypatch.setenv("PLANO_ROUTER_MATCHER", "0")  # the spy takes the shipped matcher's place
    agents = [AgentSpec("weather", DESCRIPTIONS[0]), AgentSpec("flights", DESCRIPTIONS[1]),
              AgentSpec("hotels", "Finds and books hotel rooms."),
              AgentSpec("chat", DESCRIPTIONS[2], default=True)]
    return EmbeddedRouter(agents, encoder=True)


TURNS = ["will it rain in Bergen tomorrow?", "move my flight to friday", "find me a room in Rome for two nights"]


def test_a_confident_pick_never_runs_the_matcher(monkeypatch):
    import gateway.routing.embedded as emb

    r = _router(monkeypatch)
    r.matcher = spy = _Spy(prefer=1)
    monkeypatch.setattr(emb, "RERANK_BELOW", -1e9)  # no margin is low enough
    got = [r.route([{"role": "user", "content": t}]).agents for t in TURNS]
    assert got == [["weather"], ["flights"], ["hotels"]]
    assert spy.calls == []


def test_an_unsure_pick_is_reranked_among_the_top_specialists_only(monkeypatch):
    import gateway.routing.embedded as emb

    r = _router(monkeypatch)
    r.matcher = spy = _Spy(prefer=2)  # hotels, whatever the turn
    monkeypatch.setattr(emb, "RERANK_BELOW", 1e9)  # every specialist pick is unsure
    monkeypatch.setattr(emb, "RERANK_TOP", 2)
    d = r.route([{"role": "user", "content": "will it rain in Bergen tomorrow?"}])
    text, only = spy.calls[-1]
    assert text == "will it rain in Bergen tomorrow?" and len(only) == 2 and r.default not in only
    # the matcher only re-orders the candidates it was shown
    assert d.agents == (["hotels"] if 2 in only else [r.ids[only[0]]])
    assert d.reranked and d.reason.endswith("+matcher") and any(k.startswith("matcher:") for k in d.scores)
    # a strong matcher preference among the candidates decides an unsure pick
    r.matcher = spy = _Spy(prefer=1)
    monkeypatch.setattr(emb, "RERANK_TOP", 3)
    d = r.route([{"role": "user", "content": "will it rain in Bergen tomorrow?"}])
    assert d.agents == ["flights"] and 1 in spy.calls[-1][1]


def test_default_agent_and_multi_intent_decisions_are_not_reranked(monkeypatch):
    import gateway.routing.embedded as emb

    r = _router(monkeypatch)
    r.matcher = spy = _Spy(prefer=0)
    monkeypatch.setattr(emb, "RERANK_BELOW", 1e9)
    assert r.route([{"role": "user", "content": "hi there!"}]).agents == ["chat"]
    d = r.route([{"role": "user", "content": "What's the weather in Paris and find me flights from NYC to Paris"}])
    assert d.agents == ["weather", "flights"]
    assert spy.calls == []


def test_a_followup_is_read_with_the_previous_user_turn(monkeypatch):
    import gateway.routing.embedded as emb

    r = _router(monkeypatch)
    r.matcher = spy = _Spy(prefer=0)
    monkeypatch.setattr(emb, "RERANK_BELOW", 1e9)
    d = r.route([{"role": "user", "content": "will it rain in Bergen tomorrow?"},
                 {"role": "assistant", "content": "Light rain after 3pm."},
                 {"role": "user", "content": "and the day after?"}])
    assert d.agents == ["weather"]
    assert spy.calls and spy.calls[-1][0] == "will it rain in Bergen tomorrow? [SEP] and the day after?"


needs_shipped = pytest.mark.skipif(
    __import__("gateway.routing.matcher", fromlist=["x"]).matcher_path() is None, reason="matcher weights not shipped")


@needs_shipped
def test_the_int8_graph_scores_like_the_numpy_layers(monkeypatch):
    """The shipped ONNX graph against the exact fp32 numpy path, same weights."""
    from gateway.routing.matcher import ONNX_FILE, Matcher

    if not ONNX_FILE.is_file() or __import__("importlib").util.find_spec("onnxruntime") is None:
        pytest.skip("matcher ONNX graph or onnxruntime not installed")
    e = enc.get_encoder()
    m = Matcher(e)
    assert m.backend == "onnxruntime-int8"
    descs = m.describe([d for _, d in AGENTS3] + ["Finds and books hotel rooms.", DESCRIPTIONS[2]])
    for text in ["is it going to snow in Tromso this weekend", "move my flight to friday",
                 "any rooms near the station for 2 nights? [SEP] and the day after?"]:
        fast = m.text_scores(text, descs)
        exact = m.scores(m.request([text])[0], descs)
        assert np.abs(fast - exact).max() < 1.0, (text, fast, exact)  # int8 weights: within a logit
        assert int(np.argmax(fast)) == int(np.argmax(exact))


@needs_shipped
def test_the_graph_is_not_run_for_other_encoder_layers(monkeypatch):
    """Built from the routing-tuned lower layers: with the wheel's own layers it must not run."""
    from gateway.routing.matcher import Matcher

    monkeypatch.setenv("PLANO_ENCODER_TUNED", "0")
    monkeypatch.setenv("PLANO_ENCODER_BACKEND", "numpy")
    m = Matcher(enc.SentenceEncoder())
    assert m.backend == "numpy"


@needs_shipped
def test_a_failing_onnx_run_falls_back_to_numpy(caplog):
    """A runtime error in ONNX Runtime costs that process its fast path, never a routing decision."""
    import logging

    from gateway.routing.matcher import Matcher

    m = Matcher(enc.get_encoder())
    if m.backend != "onnxruntime-int8":
        pytest.skip("matcher ONNX graph or onnxruntime not installed")
    descs = m.describe([d for _, d in AGENTS3])

    class Broken:
        def run(self, *_a, **_k):
            raise RuntimeError("boom")

    m._session = Broken()
    with caplog.at_level(logging.WARNING, logger="plano.routing"):
        got = m.text_scores("move my flight to friday", descs)
    assert m.backend == "numpy" and "matcher ONNX run failed" in caplog.text
    assert np.allclose(got, m.scores(m.request(["move my flight to friday"])[0], descs))


class _Recorder:
    """Wraps the real MatcherScorer: records what the router asks it, answers what it answers."""

    def __init__(self, scorer) -> None:
        self.scorer = scorer
        self.calls: list[str] = []

    def logits(self, text, only=None):
        self.calls.append(text)
        return self.scorer.logits(text, only)


@needs_shipped
def test_an_anaphoric_turn_is_read_with_its_context_even_when_its_own_words_switch(monkeypatch):
    """A turn that leans on the previous one ("and ... then") is read as "previous [SEP] turn" even
    when its own words already picked an agent (so it is no follow-up); a turn that announces a new
    subject, or stands on its own, is read alone. The shipped matcher answers."""
    import gateway.routing.embedded as emb
    from gateway.routing import matcher as m

    r = _router(monkeypatch)
    monkeypatch.delenv("PLANO_ROUTER_MATCHER")
    r.matcher = rec = _Recorder(m.MatcherScorer([a.description for a in r.agents], m.get_matcher(r.sentences.encoder)))
    monkeypatch.setattr(emb, "RERANK_BELOW", 1e9)  # every specialist pick is re-ranked
    first = [{"role": "user", "content": "will it rain in Bergen tomorrow?"},
             {"role": "assistant", "content": "Light rain after 3pm."}]
    d = r.route(first + [{"role": "user", "content": "and move my flight to friday then"}])
    # its own words decided it is no follow-up (reason "single"); the matcher still read it in context
    assert d.reason.startswith("single") and d.reranked
    assert rec.calls[-1] == "will it rain in Bergen tomorrow? [SEP] and move my flight to friday then"
    r.route(first + [{"role": "user", "content": "unrelated, but move my flight to friday"}])
    assert rec.calls[-1] == "unrelated, but move my flight to friday"
    standalone = "Please move my Lufthansa flight from Munich to Lisbon to Friday morning, window seat"
    r.route(first + [{"role": "user", "content": standalone}])
    assert rec.calls[-1] == standalone


def _real(monkeypatch):
    """The test listener with the shipped matcher, its calls recorded."""
    from gateway.routing import matcher as m

    r = _router(monkeypatch)
    monkeypatch.delenv("PLANO_ROUTER_MATCHER")
    r.matcher = rec = _Recorder(m.MatcherScorer([a.description for a in r.agents], m.get_matcher(r.sentences.encoder)))
    return r, rec


@needs_shipped
def test_a_general_turn_claimed_by_words_goes_default_when_the_matcher_finds_no_candidate_belongs(monkeypatch):
    """Shipped classifier and matcher. A general-sounding turn a specialist's words claim goes to the
    default agent when the matcher scores the default agent above every candidate; a task-sounding
    turn the matcher likes no better stays with a specialist."""
    import gateway.routing.embedded as emb

    r, rec = _real(monkeypatch)
    monkeypatch.setattr(emb, "RERANK_BELOW", 1e9)  # every specialist pick is re-ranked
    monkeypatch.setattr(emb, "GEN_CLAIM", 1.0)  # the flights agent's words claim the turn below
    general = "what is the plot of the book Flight Behavior"
    assert r._general(general) > emb.GEN_HI
    assert max(r.matcher.logits(general, [0, 1, 2])) < 0  # the shipped matcher: no candidate belongs
    d = r.route([{"role": "user", "content": general}])
    assert d.agents == ["chat"] and rec.calls  # (the matcher prefers the default agent: no re-rank needed)
    task = "somewhere to sleep near the airport after landing"
    assert r._general(task) < emb.GEN_HI and max(r.matcher.logits(task, [0, 1, 2])) < 0
    d = r.route([{"role": "user", "content": task}])
    assert d.agents == ["hotels"] and d.reranked
    # not general-sounding: the matcher is not asked against the default agent, the claim stands
    monkeypatch.setattr(emb, "GEN_HI", 1.0)
    assert r.route([{"role": "user", "content": general}]).agents == ["flights"]


@needs_shipped
def test_a_task_without_a_clear_specialist_is_left_to_the_matcher_not_the_default_agent(monkeypatch):
    """Shipped classifier and matcher. A turn more likely a task than not whose two leading
    specialists are close (no clear pick) is re-ranked by the matcher instead of going to the
    default agent; without the matcher it still goes to the default agent."""
    import gateway.routing.embedded as emb

    r, rec = _real(monkeypatch)

    def unsure(text: str) -> bool:  # a task by the classifier, close leaders: no pick by evidence
        scores = r._turn_text_scores(text)
        return r._general(text) < emb.GEN_LO and r._pick(scores, margin=1.0) is None \
            and r._pick_task(scores) is None and max(scores[:3]) > 0

    # Which of these vague turns has leaders close enough moves with the int8 kernels of the CPU
    # (AVX2 and AVX-512 VNNI round differently): the test takes the first that is unsure here.
    vague = ["sort out my Bergen on the 14th", "sort out Bergen for the 14th", "Bergen on the 14th, sort it out",
             "can you sort out Bergen on the 14th", "sort my Bergen thing for the 14th"]
    text = next((t for t in vague if unsure(t)), None)
    assert text is not None, "no vague turn left the evidence unsure"
    turn = [{"role": "user", "content": text}]
    scores = r._turn_text_scores(text)
    d = r.route(turn)
    assert d.reranked and rec.calls[-1] == text and d.agents != ["chat"]
    # the pick is the re-rank's: evidence + RERANK_W x the shipped matcher's logit, among the specialists
    top = sorted((0, 1, 2), key=scores.__getitem__, reverse=True)[:emb.RERANK_TOP]
    logits = r.matcher.logits(text, top)
    combined = [scores[i] / r.index.unit + emb.RERANK_W * float(x) for i, x in zip(top, logits)]
    assert d.agents == [r.ids[top[combined.index(max(combined))]]]
    r.matcher = None
    assert r.route(turn).agents == ["chat"]


@needs_shipped
def test_a_followup_of_a_followup_is_read_with_the_turn_that_named_the_topic(monkeypatch):
    """The matcher reads "previous [SEP] turn". When the previous turn only leaned on an earlier one
    ("did it land on time?") or only thanked, the previous is the nearest earlier turn that stood on
    its own words: "did it land on time?" alone says nothing of flights."""
    import gateway.routing.embedded as emb

    r, rec = _real(monkeypatch)
    monkeypatch.setattr(emb, "RERANK_BELOW", 1e9)  # every specialist pick is re-ranked
    topic = "move my Lufthansa flight from Munich to Lisbon to Friday morning"
    msgs = [{"role": "user", "content": topic}, {"role": "assistant", "content": "Moved to LH1172, Friday 7:05."},
            {"role": "user", "content": "did it land on time?"}, {"role": "assistant", "content": "Yes, at 9:40."},
            {"role": "user", "content": "and the one after that?"}]
    for between in ("did it land on time?", "great, thanks"):
        msgs[2] = {"role": "user", "content": between}
        rec.calls.clear()
        assert r.route(msgs).reranked
        assert rec.calls == [f"{topic} [SEP] and the one after that?"]
    # a previous turn that leans on an earlier one by its opener but names its own topic is read
    msgs[2] = {"role": "user", "content": "ok, also is there a hotel near the airport in Lisbon?"}
    rec.calls.clear()
    r.route(msgs)
    assert rec.calls == ["ok, also is there a hotel near the airport in Lisbon? [SEP] and the one after that?"]
    # a previous turn that stands on its own is the one read
    msgs[2] = {"role": "user", "content": "what is the weather forecast for Lisbon on Friday?"}
    rec.calls.clear()
    assert r.route(msgs).reranked
    assert rec.calls == ["what is the weather forecast for Lisbon on Friday? [SEP] and the one after that?"]


def test_a_general_sounding_turn_goes_to_the_specialist_the_matcher_prefers_to_the_default_agent(monkeypatch):
    """The matcher reads the turn with the default agent's description as well as the leading
    specialists': the turn leaves the default agent only when a specialist scores above it."""
    r = _router(monkeypatch)
    trivia = "who invented the first passenger flights?"
    assert r._turn_text_scores(trivia)[1] > 0  # the flights agent has evidence: a candidate
    r.matcher = spy = _Spy(prefer=3)  # the default agent ("chat") scores highest
    d = r.route([{"role": "user", "content": trivia}])
    assert d.agents == ["chat"] and d.reason == "general_question"
    assert spy.calls and spy.calls[-1][1][-1] == 3 and 3 not in spy.calls[-1][1][:-1]  # specialists, then default
    r.matcher = spy = _Spy(prefer=1)  # a specialist scores above the default agent
    d = r.route([{"role": "user", "content": trivia}])
    assert d.agents == ["flights"] and d.reason == "general_question+matcher" and d.reranked
    assert d.confidence == 0.0  # unsure: the router's own evidence did not pick it (hybrid escalates)
    assert d.scores["matcher:flights"] > d.scores["matcher:chat"]


def test_a_no_match_turn_goes_to_the_specialist_the_matcher_prefers_to_the_default_agent(monkeypatch):
    r = _router(monkeypatch)
    vague = "can you look into the thing I mentioned"  # no specialist's evidence clears the bar
    r.matcher = _Spy(prefer=3)
    d = r.route([{"role": "user", "content": vague}])
    assert d.agents == ["chat"] and d.reason == "no_match->default"
    r.matcher = _Spy(prefer=2)
    d = r.route([{"role": "user", "content": vague}])
    assert d.agents == ["hotels"] and d.reason == "no_match+matcher" and d.confidence == 0.0


@needs_shipped
def test_the_shipped_matcher_sends_a_learning_question_to_a_tutor_and_keeps_trivia_general(monkeypatch):
    from gateway.routing.embedded import EmbeddedRouter
    from gateway.routing.types import AgentSpec

    monkeypatch.delenv("PLANO_ROUTER_MATCHER", raising=False)
    monkeypatch.delenv("PLANO_ROUTER_ENCODER", raising=False)
    r = EmbeddedRouter([
        AgentSpec("invoices", "Creates and sends invoices to the user's clients, chases overdue ones and records payments."),
        AgentSpec("site", "The user's website: editing pages, domains, contact forms, and fixing the site when it is down."),
        AgentSpec("general", "Small talk, greetings, jokes, trivia and general-knowledge questions, and anything no "
                  "other agent covers.", default=True),
        AgentSpec("coding_mentor", "Programming mentor. Explains what code does, helps debug error messages, and "
                  "teaches languages and frameworks (Python, JavaScript, CSS, SQL)."),
    ])
    d = r.route([{"role": "user", "content": "whats the actual difference between let and const"}])
    assert d.agents == ["coding_mentor"] and d.reason == "general_question+matcher"
    for trivia in ("who invented the telephone", "what's the capital of australia", "tell me a joke about accountants",
                   "which year did the berlin wall fall"):
        assert r.route([{"role": "user", "content": trivia}]).agents == ["general"], trivia


def test_a_general_turn_a_specialist_claims_by_words_stays_general_when_the_matcher_prefers_the_default(monkeypatch):
    """GEN_CLAIM lets a specialist whose words clearly claim a general-sounding turn keep it; the
    matcher, reading the turn with the default agent's description too, overrules that claim when
    the default agent fits better - and only then."""
    import gateway.routing.embedded as emb

    r = _router(monkeypatch)
    monkeypatch.setattr(emb, "GEN_CLAIM", 1.0)  # the flights agent's words claim the turn below
    trivia = "is it true that flights get cancelled more often in winter?"
    monkeypatch.setattr(r, "_general", lambda t: 0.95)
    assert r._pick(r._turn_text_scores(trivia), margin=emb.GEN_CLAIM) == 1
    r.matcher = _Spy(prefer=3)  # the default agent fits best
    d = r.route([{"role": "user", "content": trivia}])
    assert d.agents == ["chat"] and d.reason == "general_question+matcher"
    assert d.reranked and d.confidence == 0.0 and d.scores["matcher:chat"] > d.scores["matcher:flights"]
    r.matcher = _Spy(prefer=1)  # the claiming specialist fits best: the claim stands
    assert r.route([{"role": "user", "content": trivia}]).agents == ["flights"]
    r.matcher = None  # no matcher: the words' claim decides, as before
    assert r.route([{"role": "user", "content": trivia}]).agents == ["flights"]


@needs_shipped
def test_the_matcher_reads_the_lower_layers_the_encoder_already_ran():
    """The encoder's graph hands over the states after the matcher's shared lower layers: a
    request the decision has just encoded costs the matcher no lower-layer run, one it has not
    costs one run of the encoder's graph, and both score exactly as the lower layers run anew."""
    from gateway.routing.matcher import Matcher

    e = enc.SentenceEncoder()
    m = Matcher(e)
    if m.backend != "onnxruntime-int8":
        pytest.skip("matcher ONNX graph or onnxruntime not installed")
    assert e.states_after == m.split
    descs = m.describe([d for _, d in AGENTS3])
    runs = []
    real = e._session

    class Counting:
        def run(self, outputs, feed):
            runs.append(tuple(outputs))
            return real.run(outputs, feed)

        def __getattr__(self, name):
            return getattr(real, name)

    e._session = Counting()
    text = "can you move my flight to friday morning"
    e.encode([text])                     # the decision encodes the turn ...
    assert runs == [("h", "hs")]
    kept = m.text_scores(text, descs)    # ... and the matcher reads it without another run
    assert runs == [("h", "hs")]
    e._lower.clear()
    fresh = m.text_scores(text, descs)   # not kept: one run for the states
    assert runs == [("h", "hs"), ("hs",)]
    np.testing.assert_array_equal(kept, fresh)
    exact = m.scores(m.request([text])[0], descs)
    assert int(np.argmax(kept)) == int(np.argmax(exact)) and np.abs(kept - exact).max() < 1.0


@needs_shipped
def test_an_encoder_graph_without_lower_states_leaves_the_matcher_on_numpy():
    """An encoder graph exported without the lower layers' output (or an encoder on numpy): the
    matcher's graph, which holds only the upper layers, cannot run, and numpy scores instead."""
    from gateway.routing.matcher import Matcher

    e = enc.SentenceEncoder()
    e.states_after = None
    m = Matcher(e)
    assert m.backend == "numpy"
    descs = m.describe([d for _, d in AGENTS3])
    assert int(np.argmax(m.text_scores("will it snow in Oslo tomorrow", descs))) == 0
    with pytest.raises(RuntimeError):
        e.lower_states([101, 102])
