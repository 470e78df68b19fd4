#!/usr/bin/env python3
"""Grid-search the encoder router's few parameters on the DEVELOPMENT sets only.

    .venv/bin/python training/tune_semantic.py [--router semantic|blend] [--top 10]

semantic: the encoder-only SemanticRouter; blend: the embedded router (words + encoder),
varying SEM_ENC_W / SEM_ENC_FLOOR (gateway/routing/embedded.py) and the scorer's Params.

Sets: ../shared/routing_dev plus tests/data/routing_{heldout_like,third,fourth}. The
objective is the mean exact-match over those four sets (so no single set's quirks win).
routing_val is never read here: it is for checking, with bench/routing_eval.py --both,
that a chosen setting generalises.
Embeddings are cached across the grid (one encoder pass per distinct text).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from dataclasses import replace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

import numpy as np
from routing_eval import exact, load_agents, load_cases

from gateway.routing.encoder import get_encoder
from gateway.routing.semantic import Params

SETS = [
    ("dev", os.path.join(ROOT, "..", "shared", "routing_dev", "agents.yaml"),
     os.path.join(ROOT, "..", "shared", "routing_dev", "cases.jsonl")),
] + [(n, os.path.join(ROOT, "tests", "data", f"routing_{n}_agents.yaml"),
      os.path.join(ROOT, "tests", "data", f"routing_{n}.jsonl")) for n in ("heldout_like", "third", "fourth")]


class CachedEncoder:
    def __init__(self, enc) -> None:
        self.enc = enc
        self.dim = enc.dim
        self.cache: dict[str, np.ndarray] = {}

    def encode(self, texts):
        if isinstance(texts, str):
            texts = [texts]
        miss = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if miss:
            for t, v in zip(miss, self.enc.encode(miss)):
                self.cache[t] = v
        return np.stack([self.cache[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)


def accuracy(make, agents, cases) -> float:
    r = make(agents)
    return sum(exact(c, r.route(c["messages"]).agents) for c in cases) / len(cases)


def corpus_val_sets() -> list:
    """The corpus' held-out suites as routing sets (single, default, negatives, side details,
    follow-ups, switches, multi-intent), in the cases.jsonl shape."""
    from gateway.routing.types import AgentSpec
    from training import pairs

    corpus = pairs.load()
    out = []
    for suite, keys in sorted(corpus.suites.items()):
        if not pairs.is_val(suite):
            continue
        agents = [AgentSpec(corpus.agents[k].id, corpus.agents[k].description, corpus.agents[k].default) for k in keys]
        cases = []
        for it in corpus.items:
            if it.suite != suite:
                continue
            turns = it.text.split(pairs.SEP)
            msgs = [{"role": "user", "content": t} for t in turns]
            if len(msgs) == 2:
                msgs.insert(1, {"role": "assistant", "content": "OK."})
            exp = [corpus.agents[k].id for k in it.positive]
            cases.append({"messages": msgs, "expected": exp, "kind": it.kind, "ordered": False})
        out.append((suite[:12], agents, cases))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--router", choices=("semantic", "blend"), default="semantic")
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--fine", action="store_true", help="blend: a finer grid around the wide grid's best")
    ap.add_argument("--corpus-val", action="store_true",
                    help="also score the synthetic corpus' held-out suites (training/pairs.is_val), "
                         "which no trained part of the router saw")
    args = ap.parse_args(argv)
    enc = CachedEncoder(get_encoder())
    data = [(n, load_agents(a), load_cases(c)) for n, a, c in SETS]
    if args.corpus_val:
        data += corpus_val_sets()
    if args.router == "semantic":
        from gateway.routing.semantic import SemanticRouter

        grid = {"min_sim": [0.2, 0.25, 0.3, 0.35], "margin": [-0.05, 0.0, 0.05],
                    "clause_min": [0.25, 0.3, 0.35, 0.4], "clause_margin": [0.0, 0.03, 0.06],
                    "neg_w": [0.0, 1.0], "follow_w": [0.6, 1.0]}

        def factory(p):
            return lambda agents: SemanticRouter(agents, enc, p)
    else:
        import gateway.routing.embedded as emb

        grid = {"sem_w": [3.0, 4.0, 5.0, 6.0], "sem_floor": [0.15, 0.2, 0.25], "top2": [0.0, 0.5], "neg_w": [0.0, 1.0],
                "gen_hi": [0.7, 0.8, 0.9]}
        if args.fine:  # around the best of the wide grid
            grid = {"sem_w": [5.0, 6.0, 8.0, 10.0], "sem_floor": [0.1, 0.15, 0.2], "top2": [0.5], "neg_w": [1.0],
                    "gen_hi": [0.8]}

        def factory(p):
            def make(agents):
                emb.SEM_ENC_W, emb.SEM_ENC_FLOOR, emb.GEN_HI = p.sem_w, p.sem_floor, p.gen_hi
                r = emb.EmbeddedRouter(agents, encoder=enc)
                r.sentences.params = p
                return r
            return make
    base = Params()
    if args.router == "blend":
        base.sem_w, base.sem_floor, base.gen_hi = 4.0, 0.2, 0.8
    results = []
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        kv = dict(zip(keys, values))
        p = replace(base, **{k: v for k, v in kv.items() if k in Params.__dataclass_fields__})
        for k, v in kv.items():
            if k not in Params.__dataclass_fields__:
                setattr(p, k, v)
        accs = [accuracy(factory(p), agents, cases) for _, agents, cases in data]
        results.append((float(np.mean(accs)), accs, dict(zip(keys, values))))
    results.sort(key=lambda r: -r[0])
    print("mean   " + "  ".join(f"{n:>12}" for n, _, _ in data))
    for mean, accs, p in results[:args.top]:
        print(f"{100 * mean:5.1f}  " + "  ".join(f"{100 * a:11.1f}%" for a in accs) + f"  {p}")
    default = [accuracy(factory(base), agents, cases) for _, agents, cases in data]
    print(f"defaults: {100 * np.mean(default):.1f}  " + "  ".join(f"{100 * a:.1f}%" for a in default))
    return 0


if __name__ == "__main__":
    sys.exit(main())
