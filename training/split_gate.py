#!/usr/bin/env python3
"""Fit the embedded router's split gate (gateway/routing/embedded_gate.py) on the corpus.

Why: the clause segmenter proposes a split whenever two clauses pick different agents, and on
unseen agents many of those are one request with its context. Whether a split is real is a
question about the turn's shape (joins, request forms, how clearly each clause picks), which
does not depend on the listener's agents, so it can be learned on the synthetic corpus and
carried to any listener.

Data: every routing case of the corpus' training suites (pairs.is_val false), each suite one
listener, routed by the shipped router with a pass-through gate that records the features of
every split the segmenter proposes. Label: the case holds several intents (a `multi` entry) or
not (requests, follow-ups, switches, side details, negatives). Model: logistic regression on
standardised features, L2 0.01, 3,000 full-batch steps; no class weights, so 0.5 is the
boundary of the calibrated P(several asks). The held-out suites only report.

    .venv/bin/python -m training.split_gate      # writes gateway/routing/data/split_gate.json
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from eval_router_corpus import suite_cases  # noqa: E402

from gateway.routing.embedded import EmbeddedRouter  # noqa: E402
from gateway.routing.embedded_gate import FEATURES, GATE_FILE, SplitGate  # noqa: E402
from training.pairs import SUITES, is_val  # noqa: E402


class _Recorder:
    """A gate that keeps every split and records the features the router hands it."""

    def __init__(self) -> None:
        self.seen: list[dict] = []

    def p_multi(self, features: dict) -> float:
        self.seen.append(features)
        return 1.0


def collect(held_out: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features and labels of every proposed split in the training (or held-out) suites."""
    X, y, where = [], [], []
    for path in sorted(glob.glob(os.path.join(SUITES, "*.yaml"))):
        with open(path, encoding="utf-8") as f:
            s = yaml.safe_load(f)
        if is_val(s["suite"]) != held_out:
            continue
        agents, cases = suite_cases(s)
        router = EmbeddedRouter(agents)
        if router.sentences is None:  # the gate reads margins in the sentence encoder's units
            raise SystemExit("the sentence encoder is not installed (make install): nothing to fit on")
        router.split_gate = gate = _Recorder()
        for c in cases:
            gate.seen.clear()
            router.route(c["messages"])
            for feats in gate.seen[-1:]:
                X.append([feats[k] for k in FEATURES])
                y.append(float(len(c["expected"]) > 1))
                where.append(c["kind"])
    return np.array(X, float), np.array(y, float), where


def fit(X: np.ndarray, y: np.ndarray, lam: float, steps: int = 3000, lr: float = 0.5) -> SplitGate:
    mean, scale = X.mean(0), X.std(0)
    scale = np.where(scale < 1e-6, 1.0, scale)  # a feature that never varies: no division by ~0
    Z = (X - mean) / scale
    w, b = np.zeros(Z.shape[1]), 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(Z @ w + b)))
        w -= lr * (Z.T @ (p - y) / len(y) + lam * w)
        b -= lr * float((p - y).mean())
    r = lambda a: tuple(round(float(v), 6) for v in a)  # noqa: E731 - stable, readable JSON
    return SplitGate(r(mean), r(scale), r(w), round(b, 6))


def report(name: str, gate: SplitGate, X: np.ndarray, y: np.ndarray, kinds: list[str]) -> None:
    p = np.array([gate.p_multi(dict(zip(FEATURES, x))) for x in X])
    keep = p >= 0.5
    print(f"{name}: {len(y)} proposed splits ({int(y.sum())} of real multi-intent turns); the gate keeps "
          f"{int((keep & (y == 1)).sum())} of those and rejects {int((~keep & (y == 0)).sum())} of the "
          f"{int((y == 0).sum())} others (accuracy {100 * np.mean(keep == (y == 1)):.1f}%)")
    for k in sorted(set(kinds)):
        m = np.array([x == k for x in kinds])
        print(f"  {k:<9} n={int(m.sum()):<4} kept {int(keep[m].sum())}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(GATE_FILE))
    ap.add_argument("--lam", type=float, default=0.01)
    args = ap.parse_args(argv)
    X, y, kinds = collect(held_out=False)
    gate = fit(X, y, args.lam)
    report("training suites", gate, X, y, kinds)
    Xv, yv, kv = collect(held_out=True)
    report("held-out suites", gate, Xv, yv, kv)
    print("weights:", dict(zip(FEATURES, gate.weights)), "bias", gate.bias)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(gate.to_json(trained_on=f"{len(y)} proposed splits of the corpus' training suites",
                             lam=args.lam) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
