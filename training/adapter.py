"""Request-side adapter for the sentence encoder, learned on the synthetic corpus (issue 12).

Why: agent descriptions are abstract ("Recipes, cooking techniques and meal planning") and
requests concrete ("how long do I roast a 6 lb chicken"); all-MiniLM-L6-v2 puts the two far
apart, so a plain nearest-description router sends concrete requests to the default agent or
to a neighbour. That gap is a property of *how people write requests vs descriptions*, not of
any domain, so a map learned on hundreds of agents of other domains should carry to agents
it has never seen.

Model: one linear map ``A`` (384 x 384, initialised to the identity) applied to the request's
embedding before it is compared with the description units (`gateway/routing/semantic.py`
`description_units`; units themselves are unchanged, so descriptions are encoded once as
before): score(request, agent) = max over the agent's positive units of cos(A r, u).
Training: softmax cross-entropy over each suite's agents (the default agent included: its
requests and the suite's `negatives` teach "general question, not a task"), L2 pull towards
the identity, full-batch gradient descent in numpy (the encoder is frozen, so every text is
encoded once and cached). Early stopping on the corpus' validation suites (pairs.is_val),
never on routing_dev / routing_val.

    python -m training.adapter            # encode (cached in /tmp), train, write the .npy
    python -m training.adapter --eval     # accuracy of identity vs trained on the val suites

Status: an experiment, NOT shipped (the router has no hook for it). On the corpus'
validation suites it lifts default/negative accuracy (12% -> 67%) but single-intent requests
of unseen suites barely move (42% -> 47%) while the training suites reach 99%: the map
memorises the corpus' domains. In the router (max-cosine map, epoch 20, reg 0.01) it cost
routing_dev 2.5 points (87.5% -> 85.0%), so it was dropped; what did carry - "task or general
question?" - is `training/generality.py`. `build_data` (corpus texts and description units,
encoded once and cached) is shared with that script.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from gateway.routing.semantic import description_units  # noqa: E402
from training import pairs  # noqa: E402

OUT = "/tmp/plano_adapter.npy"
CACHE = os.environ.get("PLANO_ADAPTER_CACHE", "/tmp/plano_adapter_cache.npz")  # one per encoder
KINDS = ("single", "default", "negative", "side", "followup_last")


def _last_turn(text: str) -> str:
    return text.split(pairs.SEP)[-1]


def build_data(cache: str = CACHE):
    corpus = pairs.load()
    keys = sorted(corpus.agents)
    unit_text, unit_owner = [], []
    for k in keys:
        pos, _neg = description_units(corpus.agents[k].description)
        for t in pos or [corpus.agents[k].id.replace("_", " ")]:
            unit_text.append(t)
            unit_owner.append(k)
    items = [it for it in corpus.items if it.kind in ("single", "default", "negative", "side")]
    texts = [it.text for it in items]
    if os.path.exists(cache):
        z = np.load(cache, allow_pickle=False)
        if int(z["n_units"]) == len(unit_text) and int(z["n_texts"]) == len(texts):
            return corpus, keys, unit_owner, z["units"], items, z["texts"]
    from gateway.routing.encoder import get_encoder

    enc = get_encoder()
    t0 = time.time()
    U = enc.encode(unit_text)
    print(f"encoded {len(unit_text)} units in {time.time() - t0:.0f}s", flush=True)
    T = enc.encode(texts)
    print(f"encoded {len(texts)} texts in {time.time() - t0:.0f}s", flush=True)
    np.savez(cache, units=U, texts=T, n_units=len(unit_text), n_texts=len(texts))
    return corpus, keys, unit_owner, U, items, T


class Problem:
    """Per text: the unit rows of its suite's agents, and which agent is right."""

    def __init__(self, corpus, keys, unit_owner, U, items, T, split: str):
        self.U = U.astype(np.float32)
        rows_of: dict[str, list[int]] = {}
        for j, k in enumerate(unit_owner):
            rows_of.setdefault(k, []).append(j)
        self.groups = []  # (suite agents' unit-row lists, label index, text index)
        for i, it in enumerate(items):
            if pairs.is_val(it.suite) != (split == "val"):
                continue
            agents = corpus.suites[it.suite]
            self.groups.append(([rows_of[a] for a in agents], agents.index(it.positive[0]), i, it.kind))
        self.T = T.astype(np.float32)

    def step(self, A: np.ndarray, tau: float):
        """Loss, gradient wrt A and accuracy (per kind) over all groups."""
        Z = self.T @ A.T
        norm = np.linalg.norm(Z, axis=1, keepdims=True)
        R = Z / np.maximum(norm, 1e-9)
        sims = R @ self.U.T  # texts x units
        G = np.zeros_like(R)
        loss, hits = 0.0, {}
        for rows, y, i, kind in self.groups:
            best = [r[int(np.argmax(sims[i, r]))] for r in rows]
            s = sims[i, best] * tau
            s -= s.max()
            p = np.exp(s)
            p /= p.sum()
            loss -= np.log(p[y] + 1e-12)
            p[y] -= 1.0
            G[i] += tau * (p @ self.U[best])
            h = hits.setdefault(kind, [0, 0])
            h[0] += 1
            h[1] += int(np.argmax(sims[i, best]) == y)
        # through the normalisation: dL/dz = (I - r r^T) dL/dr / |z|
        Gz = (G - R * np.sum(G * R, axis=1, keepdims=True)) / np.maximum(norm, 1e-9)
        n = len(self.groups)
        return loss / n, (Gz.T @ self.T) / n, hits


def _acc(hits) -> str:
    tot = sum(v[0] for v in hits.values())
    ok = sum(v[1] for v in hits.values())
    per = " ".join(f"{k} {100 * v[1] / v[0]:.0f}%" for k, v in sorted(hits.items()))
    return f"{100 * ok / max(tot, 1):.1f}% ({per})"


def train(epochs: int, lr: float, reg: float, tau: float, out: str) -> None:
    data = build_data()
    tr = Problem(*data, split="train")
    va = Problem(*data, split="val")
    d = tr.U.shape[1]
    eye = np.eye(d, dtype=np.float32)
    A = eye.copy()
    _, _, h0 = va.step(A, tau)
    print(f"identity: val {_acc(h0)}", flush=True)
    best, best_A = sum(v[1] for v in h0.values()), A.copy()
    m = np.zeros_like(A)
    for ep in range(1, epochs + 1):
        loss, g, h = tr.step(A, tau)
        g = g + reg * (A - eye)
        m = 0.9 * m + g
        A -= lr * m
        if ep % 10 == 0 or ep == epochs:
            _, _, hv = va.step(A, tau)
            ok = sum(v[1] for v in hv.values())
            print(f"epoch {ep}: train loss {loss:.3f} acc {_acc(h)} | val {_acc(hv)}", flush=True)
            if ok > best:
                best, best_A = ok, A.copy()
    np.save(out, best_A.astype(np.float16))
    print(f"wrote {out} ({os.path.getsize(out) / 1e3:.0f} KB), best val hits {best}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--lr", type=float, default=0.5)
    ap.add_argument("--reg", type=float, default=0.01)
    ap.add_argument("--tau", type=float, default=20.0)
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args(argv)
    train(args.epochs, args.lr, args.reg, args.tau, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
