#!/usr/bin/env python3
"""In-process cost of one model-proxy request through plano's code, with an instant fake upstream.

No sockets: ASGI calls straight into GatewayApp, and the aiohttp session is replaced by one
that answers at once, so what is timed is plano's own per-request work (parse, resolve,
upstream layer, relay, telemetry, access log). Use it to compare two trees, or the cost of
a provider policy, far below the noise of a wrk run on a shared VM.

    .venv/bin/python bench/listener_micro.py [TREE] [N] [prof]
    POLICY=", retry: {attempts: 3}, circuit_breaker: {failure_threshold: 5}" .venv/bin/python bench/listener_micro.py

TREE (default: this repo) goes first on sys.path; ``prof`` prints a cProfile table.
"""
import sys, time, contextlib, cProfile, pstats
from pathlib import Path
if len(sys.argv) < 2:
    sys.argv.append(str(Path(__file__).resolve().parents[1]))
if len(sys.argv) < 3:
    sys.argv.append("20000")
sys.path.insert(0, sys.argv[1])
import orjson
from gateway.config import load_config_text
from gateway.server.app import GatewayApp

CFG = """version: v0.4.0
listeners:
  - {type: model, name: llm, port: 18000, address: 127.0.0.1}
model_providers:
  - {model: openai/mock-model, access_key: sk-bench, base_url: 'http://127.0.0.1:9/v1', default: true POLICY}
"""
import os
CFG = CFG.replace(" POLICY", os.environ.get("POLICY", ""))
# AUTH=1: the listener requires a key (auth.api_keys) and the request carries it (Bearer).
AUTH = os.environ.get("AUTH", "") not in ("", "0")
if AUTH:
    CFG = CFG.replace("address: 127.0.0.1}", "address: 127.0.0.1, auth: {api_keys: [sk-plano-bench-key-0001]}}")
BODY = orjson.dumps({"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]})
ANSWER = orjson.dumps({"id": "x", "object": "chat.completion", "created": 1, "model": "mock-model",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

class FakeResp:
    status = 200
    def __init__(self):
        from multidict import CIMultiDict
        self.headers = CIMultiDict({"content-type": "application/json"})
    async def read(self):
        return ANSWER

@contextlib.asynccontextmanager
async def fake_request(*a, **k):
    yield FakeResp()

class FakeSession:
    def request(self, *a, **k):
        return fake_request()

async def main(n, profile):
    import os
    os.environ.setdefault("PLANO_ACCESS_LOG", "/dev/null")
    app = GatewayApp(load_config_text(CFG))
    up = app.upstream
    if hasattr(up, "transport"):
        up.transport._session = FakeSession()
    else:
        up._session = FakeSession()
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "server": ("127.0.0.1", 18000),
             "headers": [(b"host", b"x"), (b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
                        + ([(b"authorization", b"Bearer sk-plano-bench-key-0001")] if AUTH else []),
             "query_string": b""}
    async def receive():
        return {"type": "http.request", "body": BODY, "more_body": False}
    async def send(m):
        pass
    for _ in range(2000):
        await app(dict(scope, headers=list(scope["headers"])), receive, send)
    pr = cProfile.Profile() if profile else None
    if pr: pr.enable()
    t = time.perf_counter()
    for _ in range(n):
        await app(dict(scope, headers=list(scope["headers"])), receive, send)
    dt = time.perf_counter() - t
    if pr:
        pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(25)
    print(f"{sys.argv[1]}: {dt / n * 1e6:.2f} us/request")

import uvloop
uvloop.run(main(int(sys.argv[2]), len(sys.argv) > 3))
