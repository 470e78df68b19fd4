#!/usr/bin/env python3
"""What a request through the litellm extra costs plano, against a native path, in one process.

Per request, the CPU plano spends translating (the network is the same for every path and is
left out): a chat request to Cohere v2 through litellm's transformations (param mapping,
``transform_request``, ``validate_environment`` + ``get_complete_url``, and ``transform_response``
over an ``httpx.Response`` built from the bytes), against
- passthrough chat to an OpenAI-compatible upstream: plano sends the client's bytes as they are,
  so its cost is one parse of the answer the relay does anyway (``orjson.loads``);
- plano's own native translator for a comparable upstream (chat ⇄ Gemini generateContent).
Also the one-time cost: importing litellm (in a fresh interpreter) and building the adapter.

Needs the extra (a venv installed with ``-c constraints-litellm.txt '.[litellm]'``)::

    /tmp/ll-venv/bin/python bench/litellm_overhead.py [--n 3000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REQUEST = {"model": "m", "max_tokens": 256, "temperature": 0.2,
           "messages": [{"role": "system", "content": "You are terse."},
                        {"role": "user", "content": "What is the capital of France? " * 4}]}
COHERE_ANSWER = orjson.dumps({"id": "co-1", "finish_reason": "COMPLETE",
                              "message": {"role": "assistant", "content": [{"type": "text", "text": "Paris."}]},
                              "usage": {"billed_units": {"input_tokens": 30, "output_tokens": 2},
                                        "tokens": {"input_tokens": 30, "output_tokens": 2}}})
OPENAI_ANSWER = orjson.dumps({"id": "c1", "object": "chat.completion", "created": 0, "model": "m",
                              "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."},
                                           "finish_reason": "stop"}],
                              "usage": {"prompt_tokens": 30, "completion_tokens": 2, "total_tokens": 32}})
GEMINI_ANSWER = orjson.dumps({"candidates": [{"content": {"role": "model", "parts": [{"text": "Paris."}]},
                                              "finishReason": "STOP", "index": 0}],
                              "usageMetadata": {"promptTokenCount": 30, "candidatesTokenCount": 2,
                                                "totalTokenCount": 32}, "modelVersion": "gemini-2.5-flash"})
HEADERS = {"Authorization": "Bearer co-key", "content-type": "application/json", "x-request-id": "r1"}


def per_call_us(fn, n: int, rounds: int) -> float:
    fn()  # warm
    best = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(best)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    code = ("import os,time; os.environ.setdefault('LITELLM_LOCAL_MODEL_COST_MAP','True'); t=time.perf_counter();"
            "import litellm, sys; print(time.perf_counter()-t, len(sys.modules))")
    imp, mods = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()

    from gateway.config.providers import GEMINI_GENERATE, OPENAI_CHAT
    from gateway.wire.translate import translator
    from gateway.wire.translate.litellm_extra import LitellmAdapter, translators

    t = time.perf_counter()
    adapter = LitellmAdapter("cohere/command-r-plus", None)
    build_s = time.perf_counter() - t
    lt = translators(adapter)[OPENAI_CHAT]
    gt = translator(OPENAI_CHAT, GEMINI_GENERATE)

    def via_litellm():
        request = dict(REQUEST)
        body = orjson.dumps(lt.request(request))
        lt.prepare((adapter.url,), dict(HEADERS), body, request, None)
        call = lt._pending.pop(id(request))
        return orjson.dumps(adapter.response(COHERE_ANSWER, 200, {}, call, "litellm/cohere/command-r-plus"))

    def passthrough():
        return orjson.loads(OPENAI_ANSWER)

    def native_gemini():
        request = dict(REQUEST)
        orjson.dumps(gt.request(request))
        return orjson.dumps(gt.response(orjson.loads(GEMINI_ANSWER), request))

    rows = [("passthrough chat (OpenAI-compatible)", per_call_us(passthrough, args.n, args.rounds)),
            ("native translator (chat ⇄ Gemini)", per_call_us(native_gemini, args.n, args.rounds)),
            ("litellm extra (chat ⇄ Cohere v2)", per_call_us(via_litellm, args.n, args.rounds))]
    print(f"python {sys.version.split()[0]}, litellm {__import__('litellm').__version__ if hasattr(__import__('litellm'), '__version__') else '?'}")
    print(f"one-time: import litellm {float(imp):.2f} s ({mods} modules); adapter build {build_s * 1e3:.1f} ms")
    print(f"{'per request (CPU, µs)':40} {'median':>8}")
    for name, us in rows:
        print(f"{name:40} {us:8.1f}")
    print(f"litellm adds {rows[2][1] - rows[0][1]:.1f} µs over passthrough, "
          f"{rows[2][1] - rows[1][1]:.1f} µs over plano's native translator")


if __name__ == "__main__":
    main()
