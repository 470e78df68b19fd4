#!/usr/bin/env python3
"""Check corpus suites against the format and writing rules of corpus/README.md.

    python training/corpus/check.py                      # every suite
    python training/corpus/check.py suites/foo.yaml ...  # some suites

Structure: one default agent, at least 12 requests and 3 follow-ups per agent, 15 negatives,
4 switches, 8 multi-intent requests (2-3 distinct known agents), 5 side details, known ids
everywhere. Honesty: no text of five words or more may repeat another suite's text, and none
of four words or more may appear in the
labelled routing sets this corpus must stay apart from (routing_dev / routing_val when
`../shared` is present, and tests/data/routing_*), nor share an agent id + description with them.
Exits 1 when a check fails, listing every problem.
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ID = re.compile(r"^[a-z][a-z0-9_]*$")
COUNTS = {"requests": 12, "followups": 3}
SUITE_COUNTS = {"negatives": 15, "switches": 4, "multi": 8, "side_details": 5}


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", str(text).lower()).split())


def _held_out() -> tuple[set[str], set[str]]:
    """Normalised texts and descriptions of the labelled routing sets the corpus must not touch."""
    texts: set[str] = set()
    descs: set[str] = set()
    pairs = [(os.path.join(ROOT, "..", "shared", d, "agents.yaml"), os.path.join(ROOT, "..", "shared", d, "cases.jsonl"))
             for d in ("routing_dev", "routing_val")]
    for cases in glob.glob(os.path.join(ROOT, "tests", "data", "routing_*.jsonl")):
        pairs.append((cases[:-6] + "_agents.yaml", cases))
    for agents, cases in pairs:
        if os.path.isfile(agents):
            for a in (yaml.safe_load(open(agents, encoding="utf-8")) or {}).get("agents") or ():
                descs.add(_norm(a.get("description", "")))
        if os.path.isfile(cases):
            for line in open(cases, encoding="utf-8"):
                if line.strip():
                    for m in json.loads(line).get("messages", ()):
                        if isinstance(m.get("content"), str) and m.get("role") == "user":
                            texts.add(_norm(m["content"]))
    return texts, descs


def check_suite(path: str, data: dict) -> tuple[list[str], list[str]]:
    """Problems of one suite, and its texts (for the cross-suite duplicate check)."""
    errs: list[str] = []
    texts: list[str] = []
    name = os.path.basename(path)[:-5]

    def err(msg: str) -> None:
        errs.append(f"{name}: {msg}")

    if not isinstance(data, dict):
        return [f"{name}: not a mapping"], []
    if data.get("suite") != name:
        err(f"suite: {data.get('suite')!r} must equal the file name {name!r}")
    if not str(data.get("sector", "")).strip():
        err("sector missing")
    agents = data.get("agents") or []
    ids = [a.get("id") for a in agents if isinstance(a, dict)]
    if not 7 <= len(ids) <= 11:
        err(f"{len(ids)} agents (7-11 expected)")
    if len(set(ids)) != len(ids) or not all(isinstance(i, str) and ID.match(i) for i in ids):
        err(f"agent ids must be unique snake_case: {ids}")
    if sum(bool(a.get("default")) for a in agents) != 1:
        err("exactly one agent must have default: true")
    known = set(ids)
    for a in agents:
        if not str(a.get("description", "")).strip():
            err(f"{a.get('id')}: description missing")
        for key, n in COUNTS.items():
            items = a.get(key) or []
            if len(items) < n:
                err(f"{a.get('id')}: {len(items)} {key} (at least {n} expected)")
        texts.extend(str(r) for r in a.get("requests") or [])
        for fu in a.get("followups") or []:
            if not all(str(fu.get(k, "")).strip() for k in ("prev_user", "prev_assistant", "user")):
                err(f"{a.get('id')}: a follow-up lacks prev_user / prev_assistant / user")
            texts.append(str(fu.get("user", "")))
    for key, n in SUITE_COUNTS.items():
        if len(data.get(key) or []) < n:
            err(f"{len(data.get(key) or [])} {key} (at least {n} expected)")
    texts.extend(str(x) for x in data.get("negatives") or [])
    for sw in data.get("switches") or []:
        if sw.get("prev_agent") not in known or sw.get("expected") not in known or sw.get("prev_agent") == sw.get("expected"):
            err(f"switch with unknown or unchanged agents: {sw.get('prev_agent')} -> {sw.get('expected')}")
        texts.append(str(sw.get("user", "")))
    for m in data.get("multi") or []:
        exp = m.get("expected") or []
        if not 2 <= len(exp) <= 3 or len(set(exp)) != len(exp) or not set(exp) <= known:
            err(f"multi with bad expected {exp}")
        if not isinstance(m.get("ordered", False), bool):
            err("multi: ordered must be true or false")
        texts.append(str(m.get("user", "")))
    for sd in data.get("side_details") or []:
        if sd.get("expected") not in known:
            err(f"side detail with unknown agent {sd.get('expected')}")
        texts.append(str(sd.get("user", "")))
    return errs, texts


def main(argv: list[str]) -> int:
    paths = argv or sorted(glob.glob(os.path.join(HERE, "suites", "*.yaml")))
    # The corpus plus any suite named from elsewhere (a draft outside suites/ is checked against
    # the corpus, not silently skipped).
    every = sorted(glob.glob(os.path.join(HERE, "suites", "*.yaml")))
    every += [p for p in paths if os.path.abspath(p) not in {os.path.abspath(e) for e in every}]
    held_texts, held_descs = _held_out()
    problems: list[str] = []
    mine = {os.path.abspath(p) for p in paths}
    loaded = []
    owners: dict[str, set[str]] = {}
    for path in every:
        data = yaml.safe_load(open(path, encoding="utf-8"))
        errs, texts = check_suite(path, data)
        name = os.path.basename(path)[:-5]
        loaded.append((path, name, data, errs, texts))
        for t in texts:
            owners.setdefault(_norm(t), set()).add(name)
    for path, name, data, errs, texts in loaded:
        if os.path.abspath(path) not in mine:
            continue
        problems.extend(errs)
        for t in texts:
            n = _norm(t)
            if n in held_texts and len(n.split()) >= 4:
                problems.append(f"{name}: text appears in a held-out routing set: {t[:80]!r}")
            others = sorted(owners[n] - {name})
            if others and len(n.split()) >= 5:
                problems.append(f"{name}: text repeats suite {others[0]}: {t[:80]!r}")
        for a in (data or {}).get("agents") or []:
            if _norm(a.get("description", "")) in held_descs:
                problems.append(f"{name}: {a.get('id')} has a held-out set's description")
    for p in problems:
        print(p)
    print(f"{len(paths)} suite(s) checked, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
