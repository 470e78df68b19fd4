"""Encoder-based agent scoring and routing (sentence embeddings of the descriptions).

Each description is cut into *units*, each embedded once when the router is built:
- its positive sentences (and, for a "head: a, b, c" sentence, each list item with the
  head in front), plus the whole positive text;
- its quoted examples (`Handles: 'x', 'y'`);
- its negations ("Does not book hotels and does not handle insurance claims") as
  *negative* units, the negation word removed ("book hotels", "handle insurance claims").

A request's score for an agent is its best cosine over the agent's positive units,
less NEG_W x how far its best negative unit beats that (the request is nearer to what the
agent says it does not do than to anything it does). The default agent competes like any
other (its description names small talk / general questions); a specialist must also
clear an absolute floor (`min_sim`) - the calibrated no-match margin.

`SemanticRouter` routes a conversation with those scores alone (plus the existing clause
segmenter and follow-up detector): it is the "encoder only" router of bench/routing_eval.py.
`SemanticScorer.scores()` is what the embedded router adds to its word evidence
(gateway/routing/embedded.py, SEM_ENC_W / SEM_ENC_FLOOR).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from gateway.routing.embedded_blocks import split_blocks
from gateway.routing.embedded_dialog import is_anaphoric, is_topic_shift, user_turns
from gateway.routing.embedded_profile import handoff_pattern
from gateway.routing.embedded_segment import split_pieces
from gateway.routing.embedded_text import is_social, spell_out_negations
from gateway.routing.types import AgentSpec, RoutingDecision

_QUOTED = re.compile(r"""(?:(?<=^)|(?<=[\s:(,;]))(['"\u2018\u201c])(.+?)['"\u2019\u201d](?=[\s,.;:)!?]|$)""")
_HANDLES = re.compile(r"\b(?:handles|examples?|e\.g\.|for example|such as)\s*:?\s*$", re.IGNORECASE)
_SENT = re.compile(r"(?<=[.!?;])\s+")
_NEG_START = re.compile(r"^\s*(?:(?:it|this agent|the agent)\s+)?(?:(?:does|do|will|can|should|is)\s+)?"
                        r"(?:not|never|no)\b\s*(?:for\b\s*)?", re.IGNORECASE)
_NEG_SPLIT = re.compile(r"\s*(?:,\s*)?\b(?:and|or|nor)\s+(?:does|do|will|can|is)\s+not\b\s*", re.IGNORECASE)


@dataclass
class Params:
    neg_w: float = 1.0        # weight of a negative unit's lead over the best positive one
    min_sim: float = 0.30     # a specialist below this cosine is no match (-> default agent)
    margin: float = 0.0       # a specialist must beat the default agent by this much
    clause_min: float = 0.40  # a clause of a multi-intent turn needs this cosine ...
    clause_margin: float = 0.05  # ... and this lead over the runner-up
    follow_w: float = 0.6     # weight of the previous turn's scores for an anaphoric turn
    top2: float = 0.5         # weight of the second-best positive unit (0: max only)


@dataclass
class Units:
    texts: list[str]
    agent: list[int]
    negative: list[bool]


def description_units(desc: str, handoff: re.Pattern | None = None) -> tuple[list[str], list[str]]:
    """(positive units, negative units) of one description. ``handoff``: a pattern for mentions of
    the listener's other agents (`embedded_profile.handoff_pattern`): a sentence that hands its
    topic to one of them ("Flights are handled by air_travel.") is a negative unit."""
    desc = " ".join((desc or "").split())
    examples = [m.group(2).strip() for m in _QUOTED.finditer(desc)]
    body = spell_out_negations(_QUOTED.sub(" ", desc))
    pos: list[str] = []
    neg: list[str] = []
    kept: list[str] = []
    for sent in _SENT.split(body):
        s = sent.strip(" ,.;")
        if not s or _HANDLES.search(s) and len(s.split()) <= 3:
            continue
        s = re.sub(r"\b(?:handles|examples?)\s*:\s*[,\s]*(?:and\s*)?$", "", s, flags=re.IGNORECASE).strip(" ,.;")
        if not s:
            continue
        if _NEG_START.match(s) or handoff is not None and handoff.search(s):
            for part in _NEG_SPLIT.split(_NEG_START.sub("", s, count=1)):
                part = part.strip(" ,.;")
                if part:
                    neg.append(part)
            continue
        # "..., and does not handle returns": the negated tail is negative evidence.
        m = re.search(r"[,;]?\s*\b(?:but|and)\s+(?:does|do|will|is)\s+not\b", s, re.IGNORECASE)
        if m:
            for part in _NEG_SPLIT.split(s[m.end():]):
                if part.strip(" ,.;"):
                    neg.append(part.strip(" ,.;"))
            s = s[:m.start()].strip(" ,.;")
        if not s:
            continue
        kept.append(s)
        pos.append(s)
        head, sep, items = s.partition(":")
        if sep and "," in items:
            for item in re.split(r",\s*(?:and\s+|or\s+)?|\s+and\s+(?=\w+ing\b)", items):
                item = item.strip(" ,.;")
                if item and len(item.split()) >= 1:
                    pos.append(f"{head.strip()}: {item}")
    if len(kept) > 1:
        pos.append(". ".join(kept))
    pos.extend(e for e in examples if e)
    return list(dict.fromkeys(pos)), list(dict.fromkeys(neg))


def _index_table(owner: list[int], negative: list[bool], agents: int, sentinel: int,
                 want_negative: bool) -> np.ndarray:
    """(agents, k) unit indices per agent (positive or negative units), padded with ``sentinel``;
    every row ends with at least two sentinels, so a row's best two are never padding alone."""
    rows: list[list[int]] = [[] for _ in range(agents)]
    for u, (a, is_neg) in enumerate(zip(owner, negative)):
        if is_neg == want_negative:
            rows[a].append(u)
    k = max((len(r) for r in rows), default=0) + 2
    return np.array([r + [sentinel] * (k - len(r)) for r in rows], dtype=np.intp).reshape(agents, k)


_UNITS: OrderedDict[tuple[int, str], np.ndarray] = OrderedDict()
_UNITS_MAX = 20_000
_UNITS_LOCK = threading.Lock()


def _unit_vectors(encoder, texts: list[str]) -> np.ndarray:
    """Description units' embeddings, shared by every router of the process (listeners with the
    same agents, reloads): a description is encoded once."""
    key = id(encoder)
    with _UNITS_LOCK:
        known = {t: _UNITS[(key, t)] for t in texts if (key, t) in _UNITS}
    missing = [t for t in dict.fromkeys(texts) if t not in known]
    if missing:
        fresh = dict(zip(missing, encoder.encode(missing)))
        known.update(fresh)
        with _UNITS_LOCK:
            _UNITS.update(((key, t), v) for t, v in fresh.items())
            while len(_UNITS) > _UNITS_MAX:
                _UNITS.popitem(last=False)
    if not texts:
        return np.zeros((0, getattr(encoder, "dim", 384)), np.float32)
    return np.stack([known[t] for t in texts])


class SemanticScorer:
    """Cosine evidence of a text for each agent, from the agents' description units."""

    def __init__(self, agents: list[AgentSpec], encoder=None, params: Params | None = None,
                 cache_size: int = 2048) -> None:
        if encoder is None:
            from gateway.routing.encoder import get_encoder

            encoder = get_encoder()
        self.encoder = encoder
        self.params = params or Params()
        self.n = len(agents)
        texts, owner, negative = [], [], []
        for i, a in enumerate(agents):
            pos, neg = description_units(a.description, handoff_pattern(a, agents))
            # Configured example requests are units like the description's quoted examples.
            pos = list(dict.fromkeys(pos + [" ".join(e.split()) for e in a.examples if e.strip()]))
            if not pos:
                pos = [a.id.replace("_", " ")]
            for t in pos:
                texts.append(t)
                owner.append(i)
                negative.append(False)
            for t in neg:
                texts.append(t)
                owner.append(i)
                negative.append(True)
        self.units = Units(texts, owner, negative)
        self.matrix = _unit_vectors(encoder, texts)  # (units, dim)
        self.owner = np.array(owner)
        self.negative = np.array(negative)
        # Per agent, the indices of its positive / negative units, padded with the index of a
        # sentinel similarity of -1 (at least two of them): pooling is then a gather and a sort,
        # not a Python loop over units (55 -> 22 us a text for 12 agents, 122 units).
        self._pos = _index_table(owner, negative, self.n, len(texts), want_negative=False)
        self._neg = _index_table(owner, negative, self.n, len(texts), want_negative=True)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings of texts, one batch for the ones not seen recently. Safe to call from
        several threads (the encoding itself runs outside the lock)."""
        with self._lock:
            known = {t: self._cache[t] for t in texts if t in self._cache}
        missing = [t for t in dict.fromkeys(texts) if t not in known]
        if missing:
            fresh = dict(zip(missing, self.encoder.encode(missing)))
            known.update(fresh)
            with self._lock:
                self._cache.update(fresh)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        with self._lock:
            for t in known:
                if t in self._cache:
                    self._cache.move_to_end(t)
        if not texts:
            return np.zeros((0, self.matrix.shape[1]), np.float32)
        return np.stack([known[t] for t in texts])

    def scores_from(self, vec: np.ndarray) -> np.ndarray:
        """One embedding's score for each agent."""
        return self._pool((self.matrix @ vec)[None, :])[0]

    def scores_of(self, vecs: np.ndarray) -> np.ndarray:
        """(texts, agents) scores of embeddings: per agent, its best positive unit's cosine
        (blended with the second best by ``top2``), lowered by how far its best negative unit
        ("Does not ...") comes closer than that; -1 for an agent without units."""
        # one matrix-vector product per text: the same float32 sums whatever the batch
        return self._pool(np.stack([self.matrix @ v for v in vecs]) if len(vecs) else
                          np.zeros((0, len(self.owner)), np.float32))

    def _pool(self, sims: np.ndarray) -> np.ndarray:
        """(texts, units) cosines -> (texts, agents) scores."""
        ext = np.concatenate([sims, np.full((sims.shape[0], 1), -1.0, sims.dtype)], axis=1)
        pos = np.sort(ext[:, self._pos], axis=2)                           # (texts, agents, k)
        out, second = pos[:, :, -1], pos[:, :, -2]
        neg = ext[:, self._neg].max(axis=2)
        p = self.params
        if p.top2:
            out = np.where(second > -1, (out + p.top2 * second) / (1 + p.top2), out)
        return out - p.neg_w * np.maximum(neg - out, 0.0)

    def scores(self, texts: list[str]) -> np.ndarray:
        """(len(texts), agents) scores."""
        return self.scores_of(self.embed(texts)) if texts else np.zeros((0, self.n))


# Encoder-only router's own setting, chosen by training/tune_semantic.py on the dev sets.
SEMANTIC_ONLY = Params(min_sim=0.25, margin=0.0, clause_min=0.25, clause_margin=0.0, top2=0.0)


class SemanticRouter:
    """Routes with sentence-embedding evidence only (the encoder-only baseline / component)."""

    def __init__(self, agents: list[AgentSpec], encoder=None, params: Params | None = None) -> None:
        if not agents:
            raise ValueError("SemanticRouter needs at least one agent")
        self.agents = list(agents)
        self.ids = [a.id for a in agents]
        defaults = [i for i, a in enumerate(agents) if a.default]
        self.default = defaults[0] if defaults else 0
        self.params = params or SEMANTIC_ONLY
        self.scorer = SemanticScorer(agents, encoder, self.params)

    def pick(self, s: np.ndarray, min_sim: float | None = None, margin: float = 0.0) -> int | None:
        p = self.params
        order = [int(i) for i in np.argsort(-s) if i != self.default]
        if not order:
            return None
        b = order[0]
        if s[b] < (p.min_sim if min_sim is None else min_sim) or s[b] < s[self.default] + p.margin:
            return None
        if margin and len(order) > 1 and s[b] - s[order[1]] < margin:
            return None
        return b

    def turn_scores(self, turns, depth: int = 3) -> tuple[np.ndarray, bool]:
        latest = turns[-1]
        own = self.scorer.scores([split_blocks(latest.text).ask or latest.text])[0]
        if len(turns) < 2 or depth <= 0 or is_topic_shift(latest.text) or is_social(turns[-2].text):
            return own, False
        if not is_anaphoric(latest.text) and self.pick(own) is not None:
            return own, False
        prev, _ = self.turn_scores(turns[:-1], depth - 1)
        if self.pick(prev) is None:
            return own, False
        blended = own + self.params.follow_w * prev
        return blended, True

    def multi(self, text: str) -> list[int] | None:
        pieces = [p for p in split_pieces(split_blocks(text).ask) if not p.background]
        if len(pieces) < 2:
            return None
        sc = self.scorer.scores([p.text for p in pieces])
        groups: list[tuple[int, bool]] = []
        for p, s in zip(pieces, sc):
            a = self.pick(s, self.params.clause_min, self.params.clause_margin)
            if a is None or (groups and groups[-1][0] == a):
                continue
            groups.append((a, p.goes_first))
        if len({g[0] for g in groups}) < 2:
            return None
        ordered: list[tuple[int, bool]] = []
        for g in groups:
            if g[1] and ordered:
                ordered.insert(len(ordered) - 1, g)
            else:
                ordered.append(g)
        out: list[int] = []
        for a, _ in ordered:
            if a not in out:
                out.append(a)
        return out

    def route(self, messages: list[dict]) -> RoutingDecision:
        if len(self.agents) == 1:
            return RoutingDecision([self.ids[0]], "single_agent")
        turns = user_turns(messages)
        if not turns or not turns[-1].text.strip():
            return RoutingDecision([self.ids[self.default]], "empty")
        m = self.multi(turns[-1].text)
        if m:
            return RoutingDecision([self.ids[i] for i in m], "multi")
        s, follow = self.turn_scores(turns)
        table = {self.ids[i]: round(float(v), 3) for i, v in enumerate(s)}
        b = self.pick(s)
        if b is None:
            return RoutingDecision([self.ids[self.default]], "no_match->default", table)
        return RoutingDecision([self.ids[b]], "followup" if follow else "single", table)

