#!/usr/bin/env python3
"""Fine-tune the matcher (training/matcher_model.py) on the synthetic corpus, on the CPU, and
write gateway/routing/data/matcher.npz (float16) for plano's numpy runtime.

Needs torch (training only; plano does not depend on it), e.g.
    python3 -m venv /work/train-venv && /work/train-venv/bin/pip install torch==2.13.0 numpy pyyaml
    PLANO_ENCODER_DIR=<the wheel's model dir> /work/train-venv/bin/python -m training.train_matcher
(`make -C training matcher` does both; see training/README.md.)

Only the upper layers, the segment vectors and the head train; the lower layers' outputs for
every text are computed once (no gradient) and cached. Batches are drawn one suite at a time,
so a batch shares a handful of descriptions. Loss: binary cross-entropy per (text, agent) pair
plus a listwise cross-entropy over each group's agent list. Each epoch re-samples the agent
lists (training/pairs.py); the epoch with the best validation-suite accuracy is exported.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from gateway.routing.encoder import WordPieceTokenizer, model_dir  # noqa: E402
from training import pairs as P  # noqa: E402
from training.matcher_model import Lower, Upper, base_weights, pad, pad_states  # noqa: E402

OUT = os.path.join(ROOT, "gateway", "routing", "data", "matcher.npz")


class StateCache:
    """Lower-layer states per text (computed in batches, no gradient)."""

    def __init__(self, lower: Lower, tok: WordPieceTokenizer, max_tokens: int) -> None:
        self.lower, self.tok, self.max = lower, tok, max_tokens
        self.cache: dict[str, torch.Tensor] = {}

    def fill(self, texts) -> None:
        todo = sorted({t for t in texts if t not in self.cache}, key=len)
        for i in range(0, len(todo), 64):
            chunk = todo[i:i + 64]
            ids, mask = pad([self.tok.encode(t, self.max) for t in chunk])
            x = self.lower(ids, mask)
            for r, t in enumerate(chunk):
                self.cache[t] = x[r, : int(mask[r].sum())].clone()

    def __getitem__(self, t: str) -> torch.Tensor:
        return self.cache[t]


def batches(gs: list[dict], size: int, rng: random.Random) -> list[list[dict]]:
    by_suite: dict[str, list[dict]] = {}
    for g in gs:
        by_suite.setdefault(g["suite"], []).append(g)
    out = []
    for lst in by_suite.values():
        rng.shuffle(lst)
        out.extend(lst[i:i + size] for i in range(0, len(lst), size))
    rng.shuffle(out)
    return out


def run_batch(up: Upper, batch: list[dict], reqs: StateCache, descs: StateCache):
    dtexts = list(dict.fromkeys(d for g in batch for d in g["descriptions"]))
    dpos = {d: i for i, d in enumerate(dtexts)}
    D, dmask = pad_states([descs[d] for d in dtexts])
    kvs = up.describe(D, dmask)
    texts = [g["text"] for g in batch]
    R, rmask = pad_states([reqs[t] for t in texts])
    ridx, didx, labels, gid = [], [], [], []
    for gi, g in enumerate(batch):
        for d, y in zip(g["descriptions"], g["labels"]):
            ridx.append(gi)
            didx.append(dpos[d])
            labels.append(float(y))
            gid.append(gi)
    ridx_t = torch.tensor(ridx)
    logits = up(R[ridx_t], rmask[ridx_t], kvs, dmask, torch.tensor(didx))
    return logits, torch.tensor(labels), torch.tensor(gid)


def losses(logits, labels, gid, n_groups: int, list_w: float):
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
    if not list_w:
        return bce
    lw = []
    for g in range(n_groups):
        sel = gid == g
        lg, y = logits[sel], labels[sel]
        lw.append(-(torch.log_softmax(lg, 0) * (y / y.sum())).sum())
    return bce + list_w * torch.stack(lw).mean()


@torch.no_grad()
def evaluate(up: Upper, gs: list[dict], reqs: StateCache, descs: StateCache) -> dict:
    """Accuracy on whole groups: top-1 for one-positive groups (by kind), top-n set for multi;
    binary accuracy of every pair at logit 0."""
    up.eval()
    per: dict[str, list[int]] = {}
    pair_ok = pair_n = 0
    for i in range(0, len(gs), 32):
        batch = gs[i:i + 32]
        # one suite's descriptions at a time keeps padding small; here simply per chunk
        logits, labels, gid = run_batch(up, batch, reqs, descs)
        pair_ok += int(((logits > 0).float() == labels).sum())
        pair_n += len(labels)
        for g in range(len(batch)):
            sel = gid == g
            lg, y = logits[sel], labels[sel]
            n = int(y.sum())
            top = set(torch.topk(lg, n).indices.tolist())
            ok = top == set(torch.nonzero(y).flatten().tolist())
            k = batch[g]["kind"]
            per.setdefault(k, [0, 0])
            per[k][0] += 1
            per[k][1] += ok
    up.train()
    total = sum(v[0] for v in per.values())
    good = sum(v[1] for v in per.values())
    return {"group_acc": good / max(total, 1), "pair_acc": pair_ok / max(pair_n, 1),
            "per_kind": {k: round(v[1] / v[0], 3) for k, v in sorted(per.items())}}


def export(up: Upper, split: int, args, meta: dict, path: str) -> int:
    arrs = {k: v.astype(np.float16) for k, v in up.export().items()}
    cfg = {"base": "sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0)", "split": split,
           "layers": len(up.layers), "max_request": args.max_request, "max_description": args.max_description,
           **meta}
    arrs["config"] = np.frombuffer(json.dumps(cfg).encode(), dtype=np.uint8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez_compressed(tmp, **arrs)
    os.replace(tmp, path)
    return os.path.getsize(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", type=int, default=4, help="frozen lower layers (the rest train)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--minutes", type=float, default=14.0, help="stop training after this wall time")
    ap.add_argument("--batch", type=int, default=16, help="groups per step")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--head-lr", type=float, default=1e-3)
    ap.add_argument("--gate-lr", type=float, default=2e-2)
    ap.add_argument("--list-w", type=float, default=1.0)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--max-request", type=int, default=96)
    ap.add_argument("--max-description", type=int, default=160)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--all", action="store_true", help="train on every suite (no validation split)")
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--init", help="continue from an exported matcher .npz")
    ap.add_argument("--hard-negatives", help="JSON from training/hard_negatives.py: every group of a request "
                                             "holds the specialists the encoder puts nearest it")
    ap.add_argument("--hard-n", type=int, default=2)
    args = ap.parse_args(argv)
    near = None
    if args.hard_negatives:
        with open(args.hard_negatives, encoding="utf-8") as f:
            near = {t: ks[:args.hard_n] for t, ks in json.load(f).items()}
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    t_start = time.time()

    corpus = P.load()
    if args.all:
        P.VAL_MOD = 10 ** 9  # no suite hashes to 0 mod a huge number... except by chance
    w = base_weights()
    tok = WordPieceTokenizer.from_dir(model_dir())
    lower = Lower(w, args.split).eval()
    up = Upper(w, args.split, dropout=args.dropout)
    del w
    if args.init:
        up.load_export(np.load(args.init))
    reqs = StateCache(lower, tok, args.max_request)
    descs = StateCache(lower, tok, args.max_description)
    val = P.groups(corpus, "val", 1, augment=False)
    print(f"corpus: {len(corpus.suites)} suites, {len(corpus.agents)} agents, {len(corpus.items)} texts; "
          f"val groups {len(val)}", flush=True)

    head = [up.seg, up.scale, up.cut, *up.pool.parameters(), *up.out.parameters()]
    hid = {id(p) for p in head} | {id(up.gate)}
    body = [p for p in up.parameters() if id(p) not in hid]
    opt = torch.optim.AdamW([{"params": body, "lr": args.lr}, {"params": head, "lr": args.head_lr},
                             {"params": [up.gate], "lr": args.gate_lr, "weight_decay": 0.0}],
                            weight_decay=0.01)
    epochs = [P.groups(corpus, "train", args.seed * 100 + e, near=near) for e in range(args.epochs)]
    steps = sum(len(batches(g, args.batch, random.Random(0))) for g in epochs)
    warm = max(10, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * max(0.05, 1 - s / max(steps, 1)))
    t0 = time.time()
    descs.fill(d for e in epochs for g in e for d in g["descriptions"])
    descs.fill(d for g in val for d in g["descriptions"])
    reqs.fill(g["text"] for e in epochs for g in e)
    reqs.fill(g["text"] for g in val)
    print(f"lower-layer states: {len(reqs.cache)} texts, {len(descs.cache)} descriptions in "
          f"{time.time() - t0:.0f} s", flush=True)

    best = (-1.0, None, None)
    base = evaluate(up, val, reqs, descs) if val else None
    if base:
        print(f"before training: val {base}", flush=True)
    step = 0
    deadline = t_start + args.minutes * 60
    stopped = False
    for e, gs in enumerate(epochs):
        tl, n = 0.0, 0
        te = time.time()
        for batch in batches(gs, args.batch, rng):
            logits, labels, gid = run_batch(up, batch, reqs, descs)
            loss = losses(logits, labels, gid, len(batch), args.list_w)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(up.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            tl += float(loss.detach())
            n += 1
            if time.time() > deadline:
                stopped = True
                break
        res = evaluate(up, val, reqs, descs) if val else {"group_acc": 0.0}
        print(f"epoch {e + 1}: loss {tl / max(n, 1):.4f} ({n} steps, {time.time() - te:.0f} s); val {res}",
              flush=True)
        if not val or res["group_acc"] >= best[0]:
            best = (res["group_acc"], {k: v.detach().clone() for k, v in up.state_dict().items()}, res)
        if stopped:
            print("time budget reached", flush=True)
            break
    up.load_state_dict(best[1])
    meta = {"trained_on": sorted(s for s in corpus.suites if not P.is_val(s)),
            "validation_suites": sorted(s for s in corpus.suites if P.is_val(s)),
            "val": best[2], "seed": args.seed, "epochs": args.epochs, "lr": args.lr,
            "init": os.path.basename(args.init) if args.init else None}
    size = export(up, args.split, args, meta, args.out)
    print(f"wrote {args.out} ({size / 1e6:.1f} MB) in {time.time() - t_start:.0f} s total", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
