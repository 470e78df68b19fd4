#!/usr/bin/env python3
"""How much a better re-ranker could gain: the single-path decisions' candidates, measured.

The embedded router decides a single-intent turn from its evidence (words + sentence encoder) and,
when unsure, lets the matcher re-rank the top three specialists. This routes every labelled case of
the given sets, keeps the turns decided on that path whose expected agent is one specialist, and
reports, per group of sets:

- how often that specialist is first by the router's evidence, and in its top 2 / 3 / 4 / 5;
- how often the matcher alone, reading the turn with every specialist's description, puts it first;
- how often the router's decision (after any re-rank) is right.

The gap between "in the top 3" and "decision right" is what a re-ranker of the top three could win
(training/README.md, thirteenth session). Nothing here is used at run time.

    .venv/bin/python -m training.rerank_headroom                 # dev + the tests/data pool
    .venv/bin/python -m training.rerank_headroom --corpus        # the corpus' held-out suites
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from gateway.routing.embedded import EmbeddedRouter  # noqa: E402
from routing_eval import exact, load_agents, load_cases  # noqa: E402

POOL = ("third fourth heldout_like fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth "
        "fourteenth").split()


def listeners(corpus: bool):
    """(name, agents, cases) of each listener to measure."""
    if corpus:
        from training.eval_router_corpus import suite_cases
        from training.pairs import SUITES, is_val

        for path in sorted(glob.glob(os.path.join(SUITES, "*.yaml"))):
            with open(path, encoding="utf-8") as f:
                s = yaml.safe_load(f)
            if is_val(s["suite"]):
                agents, cases = suite_cases(s)
                yield s["suite"], agents, cases
        return
    dev = os.path.join(ROOT, "..", "shared", "routing_dev")
    if os.path.isdir(dev):
        yield "routing_dev", load_agents(os.path.join(dev, "agents.yaml")), load_cases(os.path.join(dev, "cases.jsonl"))
    for name in POOL:
        base = os.path.join(ROOT, "tests", "data", f"routing_{name}")
        yield name, load_agents(base + "_agents.yaml"), load_cases(base + ".jsonl")


def measure(agents, cases) -> list[dict]:
    """One record per single-path turn whose expected agent is one specialist."""
    r = EmbeddedRouter(agents)
    if r.matcher is None:
        raise SystemExit("the matcher is off or not shipped: nothing to measure")
    seen: dict = {}
    real = r._turn_scores

    def turn_scores(turns, depth):
        out = real(turns, depth)
        seen["last"] = (list(out[0]), out[1], turns)
        return out

    r._turn_scores = turn_scores
    records = []
    for c in cases:
        seen.clear()
        d = r.route(c["messages"])
        if "last" not in seen or not d.reason.startswith(("single", "followup")) or len(c["expected"]) != 1:
            continue
        want = r.ids.index(c["expected"][0])
        if want == r.default:
            continue
        scores, followup, turns = seen["last"]
        specialists = [i for i in range(len(r.ids)) if i != r.default]
        logits = r.matcher.logits(r._rerank_text(turns, followup), specialists)  # what a re-rank reads
        order = sorted(specialists, key=lambda i: -scores[i])
        records.append({"rank": order.index(want) + 1,
                        "matcher_first": specialists[int(logits.argmax())] == want,
                        "right": exact(c, d.agents)})
    return records


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", action="store_true", help="the corpus' held-out suites instead of dev + pool")
    args = ap.parse_args(argv)
    recs = []
    for name, agents, cases in listeners(args.corpus):
        recs += measure(agents, cases)
    n = len(recs)
    if not n:
        print("no single-path turns")
        return 1

    def pct(k: int) -> str:
        return f"{k}/{n} = {100 * k / n:.1f}%"

    print(f"single-path turns with one specialist expected: {n}")
    for k in (1, 2, 3, 4, 5):
        print(f"  expected specialist in the router's top {k} by evidence: {pct(sum(r['rank'] <= k for r in recs))}")
    print(f"  first by the matcher alone (every specialist):        {pct(sum(r['matcher_first'] for r in recs))}")
    print(f"  the router's decision right:                          {pct(sum(r['right'] for r in recs))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
