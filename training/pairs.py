"""Corpus -> training examples for the matcher (training/corpus/suites/*.yaml, format in
training/corpus/README.md).

An example is a *group*: one conversation text and a sampled agent list (what one listener
would register), each agent labelled 1 (it must handle the text) or 0. The matcher scores
each (text, description) pair on its own (binary loss); the group also gives a listwise loss
(softmax over the listener's agents), which is what routing decides between.

- agent lists: the suite's default agent, the agents the text needs, a random subset of the
  suite's other specialists (hard negatives: neighbouring specialists), and sometimes 1-3
  specialists of other suites (easy negatives, and listeners that mix products); 4-12 agents;
- single requests: the agent positive, the others negative;
- the default agent's requests (small talk, general knowledge) and the suite's `negatives`
  (general questions in a specialist's vocabulary): the default agent positive, every
  specialist negative;
- follow-ups: "previous user turn [SEP] this turn" -> the agent of the conversation; switches:
  the same form -> the new agent positive, the previous one negative; sometimes a single
  request is prefixed with another agent's request as its previous turn (a clear new topic);
- multi-intent: every intent's agent positive; side details: only the expected agent.

Description variants (augmentation, training only): the description as written, without its
quoted examples, or its first sentence only - listeners describe agents at every length.

    python -m training.pairs --stats          # counts per split and kind
    python -m training.pairs --dump out.jsonl # one epoch's groups
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import random
import re
from dataclasses import dataclass, field

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SUITES = os.path.join(HERE, "corpus", "suites")
SEP = " [SEP] "  # previous user turn [SEP] this turn (gateway/routing/matcher.py: conversation_text)
VAL_MOD = 8      # suites whose name hashes to 0 mod VAL_MOD are the corpus' validation split


@dataclass
class Agent:
    key: str          # "suite/agent_id"
    suite: str
    id: str
    default: bool
    description: str


@dataclass
class Item:
    """One labelled text of the corpus (before an agent list is sampled for it)."""

    text: str
    suite: str
    positive: list[str]            # agent keys that must handle it
    kind: str
    hard: list[str] = field(default_factory=list)  # agent keys that must be in the list (labelled 0)


@dataclass
class Corpus:
    agents: dict[str, Agent]
    suites: dict[str, list[str]]   # suite -> agent keys
    sectors: dict[str, str]
    items: list[Item]


def is_val(suite: str) -> bool:
    return int(hashlib.md5(suite.encode()).hexdigest(), 16) % VAL_MOD == 0


def load(path: str = SUITES) -> Corpus:
    agents: dict[str, Agent] = {}
    suites: dict[str, list[str]] = {}
    sectors: dict[str, str] = {}
    items: list[Item] = []
    for fn in sorted(glob.glob(os.path.join(path, "*.yaml"))):
        with open(fn, encoding="utf-8") as f:
            data = yaml.safe_load(f)
        if not isinstance(data, dict) or not data.get("agents"):
            continue
        s = data["suite"]
        sectors[s] = str(data.get("sector", ""))
        keys = []
        default = None
        for a in data["agents"]:
            key = f"{s}/{a['id']}"
            ag = Agent(key, s, a["id"], bool(a.get("default")), " ".join(str(a.get("description", "")).split()))
            agents[key] = ag
            keys.append(key)
            if ag.default:
                default = key
            for r in a.get("requests") or ():
                items.append(Item(str(r), s, [key], "default" if ag.default else "single"))
            for fu in a.get("followups") or ():
                items.append(Item(conversation(fu["prev_user"], fu["user"]), s, [key], "followup"))
        suites[s] = keys
        if default is None:
            continue
        for r in data.get("negatives") or ():
            items.append(Item(str(r), s, [default], "negative"))
        for sw in data.get("switches") or ():
            new, old = f"{s}/{sw['expected']}", f"{s}/{sw['prev_agent']}"
            if new in agents and old in agents:
                items.append(Item(conversation(sw["prev_user"], sw["user"]), s, [new], "switch", [old]))
        for m in data.get("multi") or ():
            exp = [f"{s}/{e}" for e in m.get("expected") or ()]
            if exp and all(e in agents for e in exp):
                items.append(Item(str(m["user"]), s, list(dict.fromkeys(exp)), "multi"))
        for sd in data.get("side_details") or ():
            e = f"{s}/{sd['expected']}"
            if e in agents:
                items.append(Item(str(sd["user"]), s, [e], "side"))
    return Corpus(agents, suites, sectors, items)


def conversation(prev_user: str, user: str) -> str:
    return f"{prev_user}{SEP}{user}"


_QUOTED = re.compile(r"""(?:handles|examples?|e\.g\.|for example|such as)\s*:?\s*(?:['"\u2018\u201c][^'"\u2019\u201d]+['"\u2019\u201d][,;\s]*(?:and\s+|or\s+)?)+\.?""",
                     re.IGNORECASE)


def variants(desc: str) -> list[str]:
    """The description, without its quoted examples, and its first sentence."""
    out = [desc]
    bare = " ".join(_QUOTED.sub(" ", desc).split())
    if bare and bare != desc:
        out.append(bare)
    first = re.split(r"(?<=[.!?])\s+", bare or desc)[0]
    if first and first not in out and len(first.split()) >= 3:
        out.append(first)
    return out


def sample_group(item: Item, corpus: Corpus, rng: random.Random, pool: list[str],
                 augment: bool = True, near: list[str] | tuple = ()) -> dict:
    """One listener-like agent list for an item, labelled. ``near``: specialists that must be in
    it (labelled 0), e.g. the ones the encoder puts nearest the request (training/hard_negatives.py)."""
    keys = corpus.suites[item.suite]
    default = next(k for k in keys if corpus.agents[k].default)
    must = list(dict.fromkeys([default, *item.positive, *item.hard, *near]))
    others = [k for k in keys if k not in must]
    rng.shuffle(others)
    n_suite = rng.randint(min(2, len(others)), min(6, len(others)))
    chosen = must + others[:n_suite]
    if pool and rng.random() < 0.35:
        sector = corpus.sectors.get(item.suite)
        foreign = [k for k in pool if corpus.agents[k].suite != item.suite
                   and corpus.sectors.get(corpus.agents[k].suite) != sector]
        chosen += rng.sample(foreign, min(len(foreign), rng.randint(1, 3)))
    chosen = chosen[:12]
    rng.shuffle(chosen)
    text = item.text
    kind = item.kind
    if augment and kind == "single" and rng.random() < 0.12:
        # A clear new request after another agent's turn: the earlier turn must not pull it back.
        prev = [it for it in corpus_index(corpus)[item.suite] if it.kind == "single" and it.positive != item.positive]
        if prev:
            p = rng.choice(prev)
            text = conversation(p.text, item.text)
            kind = "switch"
            if p.positive[0] not in chosen:
                chosen[rng.randrange(len(chosen))] = p.positive[0] if default != chosen[0] else chosen[0]
    labels = [1 if k in item.positive else 0 for k in chosen]
    if not any(labels):  # a positive was dropped by the length cap
        chosen[0] = item.positive[0]
        labels = [1 if k in item.positive else 0 for k in chosen]
    descs = []
    for k in chosen:
        vs = variants(corpus.agents[k].description)
        r = rng.random()
        descs.append(vs[0] if not augment or r < 0.6 or len(vs) == 1 else vs[1] if r < 0.85 or len(vs) == 2 else vs[2])
    return {"text": text, "agents": chosen, "descriptions": descs, "labels": labels, "kind": kind,
            "suite": item.suite}


_INDEX: dict[int, dict[str, list[Item]]] = {}


def corpus_index(corpus: Corpus) -> dict[str, list[Item]]:
    idx = _INDEX.get(id(corpus))
    if idx is None:
        idx = {}
        for it in corpus.items:
            idx.setdefault(it.suite, []).append(it)
        _INDEX[id(corpus)] = idx
    return idx


def groups(corpus: Corpus, split: str, seed: int, augment: bool = True,
           near: dict[str, list[str]] | None = None) -> list[dict]:
    """One epoch of groups for the train or val split (val: no augmentation by default).
    ``near``: request text -> specialists every group of that request holds."""
    rng = random.Random(seed)
    want_val = split == "val"
    pool = [k for k, a in corpus.agents.items() if not a.default and is_val(a.suite) == want_val]
    out = []
    for it in corpus.items:
        if is_val(it.suite) != want_val:
            continue
        out.append(sample_group(it, corpus, rng, pool, augment, (near or {}).get(it.text, ())))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stats", action="store_true")
    ap.add_argument("--dump")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    corpus = load()
    val = sorted({s for s in corpus.suites if is_val(s)})
    print(f"{len(corpus.suites)} suites ({len(val)} validation: {', '.join(val)}), "
          f"{len(corpus.agents)} agents, {len(corpus.items)} labelled texts")
    for split in ("train", "val"):
        gs = groups(corpus, split, args.seed, augment=split == "train")
        kinds: dict[str, int] = {}
        for g in gs:
            kinds[g["kind"]] = kinds.get(g["kind"], 0) + 1
        pairs = sum(len(g["agents"]) for g in gs)
        print(f"{split}: {len(gs)} groups, {pairs} pairs, kinds {kinds}")
        if args.dump and split == "train":
            with open(args.dump, "w", encoding="utf-8") as f:
                for g in gs:
                    f.write(json.dumps(g) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
