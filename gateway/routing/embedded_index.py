"""Lexical index over agent profiles: IDF-weighted stem, prefix and bigram evidence.

Documents are agents (a listener has few), so IDF is computed across agents: a word
every description uses ("handles", "customer") weighs nothing, a word only one agent
uses is decisive. Words a description puts under a negation count *against* that agent,
but an exclusion names another agent's job as a phrase ("Does not change or cancel
orders"): a request that shares only one word of a longer exclusion ("my order says
delivered ...") merely mentions that object and is penalised by half as much.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from gateway.routing.embedded_profile import AgentProfile
from gateway.routing.embedded_text import PARTICLES

SCOPE_W = 1.0      # word from the agent's own scope sentences or id
EXAMPLE_W = 0.5    # word only seen in an example request (examples carry incidental names)
FUZZY_W = 0.6      # prefix/derivation match ("miles" ~ "mileage") instead of an exact stem
BIGRAM_W = 0.5     # adjacent pair also adjacent in the description ("time off", "sick leave")
NEG_W = 0.8        # a word the description excludes ("Does not track parcels")
NEG_LONE = 0.5     # ... when it is the only word the request shares with a longer exclusion
PARTICLE_W = 0.5   # "off", "back" ... outside a matching phrase


@dataclass
class Evidence:
    """Per-agent scores for one text, and how much of the text any agent recognised."""

    scores: list[float]
    known: float      # IDF mass of words some agent (or exclusion) knows
    unknown: int      # content words no agent knows


class LexicalIndex:
    """Stem -> agent weights, with IDF across agents."""

    def __init__(self, profiles: list[AgentProfile]) -> None:
        self.n = len(profiles)
        pos: dict[str, dict[int, float]] = defaultdict(dict)
        tf: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        neg: dict[str, set[int]] = defaultdict(set)
        # (agent, stem) -> the stem sets of the exclusions it occurs in
        clauses: dict[tuple[int, str], list[frozenset]] = defaultdict(list)
        bigrams: dict[tuple[str, str], set[int]] = defaultdict(set)
        for i, p in enumerate(profiles):
            for seq, w in [(s, SCOPE_W) for s in p.scope] + [(s, EXAMPLE_W) for s in p.examples]:
                for t in seq:
                    pos[t][i] = max(pos[t].get(i, 0.0), w)
                    tf[t][i] += 1
                for a, b in zip(seq, seq[1:]):
                    bigrams[(a, b)].add(i)
            for seq in p.exclusions:
                words = frozenset(seq)
                for t in words:
                    neg[t].add(i)
                    clauses[(i, t)].append(words)
        for t, per in pos.items():
            for i in per:
                per[i] *= 1.0 + 0.1 * (min(tf[t][i], 4) - 1)
        self.pos = dict(pos)
        self.neg = {t: s for t, s in neg.items()}
        self.clauses = dict(clauses)
        self.bigrams = dict(bigrams)
        self.unit = self._idf(1)
        # A word only ever excluded (df 0) must not outweigh a word unique to one agent.
        self.idf = {t: min(self._idf(len(self.pos.get(t, ()))), self.unit) for t in set(pos) | set(neg)}
        self._by_prefix: dict[str, list[str]] = defaultdict(list)
        for t in sorted(self.idf):  # sorted: fuzzy ties must not depend on hash order
            if len(t) >= 3:
                self._by_prefix[t[:3]].append(t)
        self._fuzzy_cache: dict[str, str | None] = {}

    def _idf(self, df: int) -> float:
        return math.log(1.0 + (self.n - df + 0.5) / (df + 0.5))

    def resolve(self, t: str) -> tuple[str | None, float]:
        """Map a request stem to an indexed stem: exact (1.0), derivational (FUZZY_W) or None."""
        if t in self.idf:
            return t, 1.0
        if t in self._fuzzy_cache:
            hit = self._fuzzy_cache[t]
        else:
            hit = None
            best, gap = 0, 0
            for c in self._by_prefix.get(t[:3], ()):
                short, long_ = (t, c) if len(t) <= len(c) else (c, t)
                p = 0
                while p < len(short) and short[p] == long_[p]:
                    p += 1
                ok = (p == len(short) and len(short) >= 4 and len(long_) - len(short) <= 3) or \
                     (p >= 5 and p >= 0.75 * len(long_))
                # Longest shared prefix wins; on a tie, the closest length ("mile" ~ "miles").
                if ok and (p, -abs(len(c) - len(t))) > (best, -gap):
                    best, hit, gap = p, c, abs(len(c) - len(t))
            self._fuzzy_cache[t] = hit
        return (hit, FUZZY_W) if hit else (None, 0.0)

    def evidence(self, stems: list[str], weights: list[float] | None = None) -> Evidence:
        """Score every agent for a sequence of request stems (optionally weighted)."""
        scores = [0.0] * self.n
        known = 0.0
        unknown = 0
        resolved: list[str | None] = []
        seen: set[str] = set()
        negs: list[tuple[int, str, float]] = []
        for k, t in enumerate(stems):
            r, m = self.resolve(t)
            resolved.append(r)
            if r is None:
                unknown += 1
                continue
            if r in seen:
                continue
            seen.add(r)
            if weights is not None:
                m *= weights[k]
            idf = self.idf[r]
            if r in PARTICLES:
                m *= PARTICLE_W
            known += idf
            per = self.pos.get(r, {})
            for i, w in per.items():
                scores[i] += idf * w * m
            for i in self.neg.get(r, ()):
                if i not in per:
                    negs.append((i, r, NEG_W * idf * m))
        for i, r, x in negs:
            # The whole excluded phrase (or a one-word exclusion) counts fully, a lone word of it half.
            full = any(len(c) == 1 or len(c & seen) >= 2 for c in self.clauses[(i, r)])
            scores[i] -= x if full else NEG_LONE * x
        for a, b in zip(resolved, resolved[1:]):
            if a and b and (a, b) in self.bigrams:
                bonus = BIGRAM_W * min(self.idf[a], self.idf[b])
                if a in PARTICLES or b in PARTICLES:  # restore the particle's full weight
                    bonus += PARTICLE_W * self.idf[a if a in PARTICLES else b]
                for i in self.bigrams[(a, b)]:
                    scores[i] += bonus
        return Evidence(scores, known, unknown)
