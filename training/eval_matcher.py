#!/usr/bin/env python3
"""Evaluate the shipped matcher (gateway/routing/data/matcher.npz, plano's numpy runtime) on
the corpus' validation suites (training/pairs.py: is_val), which training never saw.

Each labelled text is scored against its whole suite (one listener: the suite's agents), and
decided the way the embedded router decides with the matcher alone: the best specialist if
its logit clears 0 and the default agent's, else the default agent; a multi-intent text is
right when its top-n specialists are its n agents. Plano's runtime only (numpy), no torch:

    .venv/bin/python training/eval_matcher.py [--matcher PATH] [--all-suites]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from gateway.routing.encoder import get_encoder  # noqa: E402
from gateway.routing.matcher import Matcher  # noqa: E402
from training import pairs as P  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--matcher", help="matcher .npz (default: the shipped one)")
    ap.add_argument("--all-suites", action="store_true", help="every suite, training ones included")
    args = ap.parse_args(argv)
    corpus = P.load()
    m = Matcher(get_encoder(), args.matcher)
    trained = set(m.config.get("trained_on", []))
    suites = [s for s in corpus.suites if args.all_suites or (P.is_val(s) and s not in trained)]
    print(f"suites: {', '.join(suites)}")
    per: dict[str, list[int]] = {}
    times = []
    for s in suites:
        keys = corpus.suites[s]
        descs = m.describe([corpus.agents[k].description for k in keys])
        d = next(i for i, k in enumerate(keys) if corpus.agents[k].default)
        for it in corpus.items:
            if it.suite != s:
                continue
            t0 = time.perf_counter()
            lg = m.scores(m.request([it.text])[0], descs)
            times.append(time.perf_counter() - t0)
            pos = {keys.index(k) for k in it.positive}
            if len(pos) > 1:
                spec = [i for i in np.argsort(-lg) if i != d][: len(pos)]
                ok = set(spec) == pos
            else:
                spec = [i for i in np.argsort(-lg) if i != d]
                b = spec[0]
                pick = b if lg[b] > 0 and lg[b] > lg[d] else d
                ok = pick in pos
            per.setdefault(it.kind, [0, 0])
            per[it.kind][0] += 1
            per[it.kind][1] += ok
    print(f"{'kind':<12}{'n':>6}{'right':>8}{'rate':>9}")
    for k, (n, good) in sorted(per.items()):
        print(f"{k:<12}{n:>6}{good:>8}{100 * good / n:>8.1f}%")
    n = sum(v[0] for v in per.values())
    good = sum(v[1] for v in per.values())
    times.sort()
    print(f"{'overall':<12}{n:>6}{good:>8}{100 * good / max(n, 1):>8.1f}%")
    if times:
        print(f"per text ({len(keys)} agents): p50 {times[len(times) // 2] * 1e3:.1f} ms, "
              f"p99 {times[int(len(times) * 0.99)] * 1e3:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
