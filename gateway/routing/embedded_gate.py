"""The split gate: does a turn the segmenter cut into asks for several agents really hold several?

Why: clause segmentation proposes a split whenever two clauses each pick a different agent, and
on agents the router has never seen many of those splits are one request with its context
("We've moved house and the school is now 3.5 miles away. Does that mean he gets free travel?",
"Under-counter fridge died overnight. We moved everything to the walk-in. Just need the thing
fixed."). Whether a split is real depends on the *shape* of the turn - how its clauses are
joined, whether they ask or state, how clearly each picks its agent - not on which agents a
listener has. So the gate is a logistic regression over a few such domain-independent features,
learned on the synthetic corpus' training suites (`training/split_gate.py`), and it rejects a
split when P(several asks) < 0.5, the classifier's own decision boundary (no tuned cut). A
rejected split is routed as one request, by the whole turn.

Cost: a handful of regex tests and a dot product of nine numbers, only for turns that were
split; no encoder or matcher work (every input was computed by the segmentation already).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from gateway.routing.embedded_dialog import is_topic_shift
from gateway.routing.embedded_segment import SENTENCE_BREAK, Piece, has_subject, is_statement, plain_ask
from gateway.routing.embedded_text import content_stems

GATE_FILE = Path(__file__).parent / "data" / "split_gate.json"

#: The features, in the order of the shipped weights.
FEATURES = ("n_agents", "min_margin", "statements", "ordered", "only_breaks", "min_words", "plain_asks",
            "all_ask", "additive")

# Words inside a later clause that add to what came before ("Fix the tap too.", "... as well").
# ("too" / "as well" only closing the clause: "not too far" is no addition.)
_ADDITIVE_IN = re.compile(r"\b(?:too|as well)\s*$|\b(?:also|another thing|additionally|on top of that|"
                          r"while you(?:'re| are) at it)\b")

# A joiner that adds ("... . Also, ...", "and also", "additionally", "as well as"), not just "and".
_ADDITIVE_JOIN = re.compile(r"\b(?:also|additionally|as well as|plus)\b")


def split_features(clauses: list[tuple[Piece, float]], agents: int, ordered: bool) -> dict[str, float]:
    """Features of a proposed split. ``clauses``: each kept clause with its margin (clear words
    by which it picked its agent); ``agents``: how many distinct agents the split names;
    ``ordered``: the turn states an order between its asks ("first ..., then ...")."""
    n = len(clauses)
    return {
        "n_agents": float(agents),
        # the least clear clause: a weak second pick is more often a side detail
        "min_margin": min(m for _, m in clauses),
        # declarative clauses ("my landlord is a nightmare") tell, they do not ask
        "statements": sum(is_statement(p.text) for p, _ in clauses) / n,
        "ordered": float(ordered),
        # clauses joined only by sentence breaks, no "and" / "also" / "then"
        "only_breaks": float(all(SENTENCE_BREAK.fullmatch(p.joiner or ".") for p, _ in clauses[1:])),
        # the shortest clause's content words: a fragment is rarely an ask of its own
        "min_words": float(min(len(content_stems(p.text)) for p, _ in clauses)),
        # clauses in a plain request form (a question, "can you", "please", "I need")
        "plain_asks": sum(plain_ask(p) for p, _ in clauses) / n,
        # every clause asks: a request form, or no subject before its verb (an imperative,
        # "Fix the tap", or a bare request, "Flights to Oslo on Friday")
        "all_ask": float(all(plain_ask(p) or not has_subject(p.text) for p, _ in clauses)),
        # a later clause says it adds to the earlier ones ("... too", "... as well") or turns to
        # another matter ("separately, ...", "unrelated, but ...")
        "additive": float(any(_ADDITIVE_IN.search(p.text) or _ADDITIVE_JOIN.search(p.joiner) or is_topic_shift(p.text)
                              for p, _ in clauses[1:])),
    }


@dataclass(frozen=True)
class SplitGate:
    """Standardised logistic regression: P(several asks) of a split's features."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float

    def p_multi(self, features: dict[str, float]) -> float:
        z = self.bias + sum(w * (features[k] - m) / s
                            for k, m, s, w in zip(FEATURES, self.mean, self.scale, self.weights))
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    def to_json(self, **meta) -> str:
        return json.dumps({"features": list(FEATURES), "mean": list(self.mean), "scale": list(self.scale),
                           "weights": list(self.weights), "bias": self.bias, **meta}, indent=1)


_GATES: dict[str, SplitGate | None] = {}


def load_gate() -> SplitGate | None:
    """The shipped gate (``PLANO_SPLIT_GATE_FILE`` for another), or None when it is missing or
    switched off (``PLANO_ROUTER_SPLIT_GATE=0``: every proposed split stands, as before)."""
    if os.environ.get("PLANO_ROUTER_SPLIT_GATE", "").lower() in ("0", "false", "off", "no"):
        return None
    path = os.environ.get("PLANO_SPLIT_GATE_FILE") or str(GATE_FILE)
    if path not in _GATES:
        gate = None
        if os.path.isfile(path):
            try:
                gate = _read(path)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                logging.getLogger("plano.routing").warning(
                    "split gate %s unusable, every proposed split stands: %s", path, exc)
        _GATES[path] = gate
    return _GATES[path]


def _read(path: str) -> SplitGate | None:
    """The gate in ``path``; None when it names other features (weights that are not ours);
    ValueError when its numbers cannot make a gate (wrong lengths, a scale <= 0, not finite)."""
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    if not isinstance(d, dict) or tuple(d.get("features", ())) != FEATURES:
        return None
    mean, scale, weights = (tuple(float(x) for x in d[k]) for k in ("mean", "scale", "weights"))
    bias = float(d["bias"])
    n = len(FEATURES)
    if not (len(mean) == len(scale) == len(weights) == n):
        raise ValueError(f"{n} features but {len(mean)} / {len(scale)} / {len(weights)} numbers")
    if not all(math.isfinite(x) for x in (*mean, *scale, *weights, bias)) or min(scale) <= 0:
        raise ValueError("a number is not finite, or a scale is not positive")
    return SplitGate(mean, scale, weights, bias)
