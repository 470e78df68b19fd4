#!/usr/bin/env python3
"""The embedded router, whole, on the corpus' held-out suites: each suite is one listener.

routing_dev and the tests/data sets are small and were looked at while the router grew; the
corpus suites that training never saw (training/pairs.py: is_val) are a larger check of what
carries to agents the router was not tuned on ("CV" in training/README.md). Each suite's
requests, follow-ups, negatives, switches, multi-intent requests and side details become
routing cases, scored with bench/routing_eval.py's exact-match rules.

    .venv/bin/python training/eval_router_corpus.py              # the five suites of the README's CV figures
    .venv/bin/python training/eval_router_corpus.py --all-held-out --verbose
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from gateway.routing.embedded import EmbeddedRouter  # noqa: E402
from gateway.routing.types import AgentSpec  # noqa: E402
from routing_eval import evaluate  # noqa: E402
from training.pairs import SUITES, is_val  # noqa: E402

# The held-out suites of the corpus the CV figures in training/README.md were measured on
# (fixed, so figures stay comparable as suites are added; later held-out suites: --all-held-out).
CV_SUITES = ("atlas_freight_forwarding", "halcyon_hotels", "stratus_cloud_hosting", "tax_accounting_firm",
             "tessaly_sales_crm")


def _conversation(prev_user: str, prev_assistant: str, user: str) -> list[dict]:
    return [{"role": "user", "content": prev_user}, {"role": "assistant", "content": prev_assistant},
            {"role": "user", "content": user}]


def suite_cases(s: dict) -> tuple[list[AgentSpec], list[dict]]:
    """A suite as a listener's agents and labelled routing cases."""
    agents = [AgentSpec(a["id"], a["description"], default=bool(a.get("default"))) for a in s["agents"]]
    default = next(a["id"] for a in s["agents"] if a.get("default"))
    cases = []

    def add(messages, expected, kind, ordered=False):
        cases.append({"id": f"{s['suite']}:{len(cases)}", "messages": messages, "expected": expected,
                      "kind": kind, "ordered": ordered})

    for a in s["agents"]:
        for r in a.get("requests") or ():
            add([{"role": "user", "content": r}], [a["id"]], "default" if a.get("default") else "single")
        for f in a.get("followups") or ():
            add(_conversation(f["prev_user"], f["prev_assistant"], f["user"]), [a["id"]], "followup")
    for n in s.get("negatives") or ():
        add([{"role": "user", "content": n}], [default], "negative")
    for w in s.get("switches") or ():
        add(_conversation(w["prev_user"], w["prev_assistant"], w["user"]), [w["expected"]], "switch")
    for m in s.get("multi") or ():
        add([{"role": "user", "content": m["user"]}], list(m["expected"]), "multi", bool(m.get("ordered")))
    for d in s.get("side_details") or ():
        add([{"role": "user", "content": d["user"]}], [d["expected"]], "side")
    return agents, cases


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--all-held-out", action="store_true", help="every held-out suite, not only the five CV ones")
    ap.add_argument("--verbose", action="store_true", help="list the misses")
    args = ap.parse_args(argv)
    total: collections.Counter = collections.Counter()
    right: collections.Counter = collections.Counter()
    misses = []
    names = []
    for path in sorted(glob.glob(os.path.join(SUITES, "*.yaml"))):
        with open(path, encoding="utf-8") as f:
            s = yaml.safe_load(f)
        if not is_val(s["suite"]) or (not args.all_held_out and s["suite"] not in CV_SUITES):
            continue
        names.append(s["suite"])
        agents, cases = suite_cases(s)
        per, missed, _ = evaluate(EmbeddedRouter(agents), cases)
        for kind, (n, ok) in per.items():
            total[kind] += n
            right[kind] += ok
        misses += missed
    print("suites: " + ", ".join(names))
    print(f"{'kind':<12}{'n':>6}{'exact':>8}{'rate':>9}")
    for kind in sorted(k for k in total if total[k]):
        print(f"{kind:<12}{total[kind]:>6}{right[kind]:>8}{100 * right[kind] / total[kind]:>8.1f}%")
    n, ok = sum(total.values()), sum(right.values())
    print(f"{'overall':<12}{n:>6}{ok:>8}{100 * ok / max(n, 1):>8.1f}%")
    if args.verbose:
        for c, d in misses:
            text = c["messages"][-1]["content"].replace("\n", " ")[:120]
            print(f"  {c['id']} [{c['kind']}] expected {c['expected']} got {d.agents} ({d.reason}) :: {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
