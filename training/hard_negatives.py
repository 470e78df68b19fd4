"""The neighbours a request is confused with, for the matcher's training groups (experiment).

The router asks the matcher to choose among the top three specialists by its own evidence, so the
negatives that matter are the agents the sentence encoder puts nearest a request, not a random
subset of its suite. For every request of the corpus' training suites this writes the suite's
specialists (not the request's own agents, not the default agent) ranked by the encoder's score
(`SemanticScorer`, as the router scores them), top ``--k``; `train_matcher.py --hard-negatives`
puts them in every group of that request.

    .venv/bin/python -m training.hard_negatives --out /tmp/plano_hard_negatives.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from gateway.routing.semantic import SemanticScorer  # noqa: E402
from gateway.routing.types import AgentSpec  # noqa: E402
from training import pairs as P  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/plano_hard_negatives.json")
    ap.add_argument("--k", type=int, default=3)
    args = ap.parse_args(argv)
    corpus = P.load()
    by_suite: dict[str, list] = {}
    for it in corpus.items:
        if not P.is_val(it.suite) and it.kind in ("single", "side", "switch", "followup"):
            by_suite.setdefault(it.suite, []).append(it)
    out: dict[str, list[str]] = {}
    for suite, items in sorted(by_suite.items()):
        keys = corpus.suites[suite]
        agents = [AgentSpec(corpus.agents[k].id, corpus.agents[k].description, corpus.agents[k].default) for k in keys]
        scorer = SemanticScorer(agents)
        texts = [it.text.split(P.SEP)[-1] for it in items]
        rows = scorer.scores(texts)
        for it, row in zip(items, rows):
            ranked = sorted((i for i, k in enumerate(keys) if not corpus.agents[k].default and k not in it.positive),
                            key=lambda i: -float(row[i]))
            out[it.text] = [keys[i] for i in ranked[:args.k]]
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f)
    print(f"wrote {args.out}: {len(out)} requests of {len(by_suite)} training suites")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
