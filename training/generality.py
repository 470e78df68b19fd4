"""The embedded router's "task or small talk / general knowledge?" classifier (issue 12, item 7).

Why: whether a turn asks an agent to *do* something or is chit-chat / trivia / an opinion
question does not depend on which agents a listener has, so a classifier learned on the
synthetic corpus' 32 suites carries to agents the router has never seen - unlike the word
lists of general-question forms, and unlike a map of requests onto descriptions
(`training/adapter.py`, which overfits the corpus' domains).

Model: logistic regression on the frozen sentence encoder's embedding (384 weights + bias,
1.5 KB as float32). Positives: the default agents' requests and every suite's `negatives`
(general questions in a specialist's vocabulary); negatives: specialists' single requests and
side-detail requests. Classes weighted to balance; L2 1e-3; 500 full-batch steps. Checked on
the corpus' validation suites (pairs.is_val), never on routing_dev / routing_val.

    python -m training.generality          # writes gateway/routing/data/generality.npy

Measured (validation suites, threshold 0.5): default-agent requests 83%, negatives 94%,
specialist requests kept as tasks 92%, side details 100%. The router uses it with
GEN_HI / GEN_LO (gateway/routing/embedded.py).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from training import pairs  # noqa: E402
from training.adapter import build_data  # noqa: E402

OUT = os.path.join(ROOT, "gateway", "routing", "data", "generality.npy")
GENERAL = ("default", "negative")


def fit(X: np.ndarray, y: np.ndarray, lam: float = 1e-3, steps: int = 500, lr: float = 2.0) -> np.ndarray:
    w = np.zeros(X.shape[1], np.float32)
    b = 0.0
    cw = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(X @ w + b)))
        g = (p - y) * cw
        w -= lr * (X.T @ g / len(y) + lam * w)
        b -= lr * float(g.mean())
    return np.concatenate([w, [b]]).astype(np.float32)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--lam", type=float, default=1e-3)
    args = ap.parse_args(argv)
    _corpus, _keys, _owner, _U, items, T = build_data()
    X = T.astype(np.float32)
    y = np.array([it.kind in GENERAL for it in items], dtype=np.float32)
    val = np.array([pairs.is_val(it.suite) for it in items])
    kinds = np.array([it.kind for it in items])
    wb = fit(X[~val], y[~val], args.lam)
    p = 1.0 / (1.0 + np.exp(-(X[val] @ wb[:-1] + wb[-1])))
    for k in ("default", "negative", "single", "side"):
        m = kinds[val] == k
        print(f"validation suites, {k}: {100 * np.mean((p[m] > 0.5) == (k in GENERAL)):.0f}% right (n={m.sum()})")
    np.save(args.out, wb)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
