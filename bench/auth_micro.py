#!/usr/bin/env python3
"""What the edge middleware costs per model request, in process, interleaved (robust on a busy machine).

Three apps over the same config and the same instant fake upstream as ``listener_micro.py``:

* ``no edge``    the listener app called directly (what plano did before gateway/auth)
* ``edge``       the edge middleware without auth (JSON-depth check on POST bodies)
* ``edge+auth``  a listener with ``auth: {api_keys: [...]}`` and a Bearer key on every request
* ``edge+vkey``  a virtual key with a model allow-list and a token budget (body parsed, usage metered)

They run in alternating batches; the figure per variant is the best batch (least disturbed
by other processes), in µs per request.

    .venv/bin/python bench/auth_micro.py [ROUNDS] [BATCH]
"""
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PLANO_ACCESS_LOG", "/dev/null")

import orjson  # noqa: E402

from gateway.config import load_config_text  # noqa: E402
from gateway.server.app import GatewayApp  # noqa: E402

import contextlib  # noqa: E402

BODY = orjson.dumps({"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]})
ANSWER = orjson.dumps({"id": "x", "object": "chat.completion", "created": 1, "model": "mock-model",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})


class FakeResp:  # the same instant upstream as listener_micro.py
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

CFG = """version: v0.4.0
listeners:
  - {type: model, name: llm, port: 18000, address: 127.0.0.1 AUTH}
model_providers:
  - {model: openai/mock-model, access_key: sk-bench, base_url: 'http://127.0.0.1:9/v1', default: true}
auth:
  keys: [{id: vk, key: sk-plano-bench-vkey-0001, models: [openai/mock-model], budget: {tokens: 1000000000000, period: total}}]
"""


def app_for(auth: bool) -> GatewayApp:
    text = CFG.replace(" AUTH", ", auth: {api_keys: [sk-plano-bench-key-0001]}" if auth else "")
    app = GatewayApp(load_config_text(text))
    app.upstream.transport._session = FakeSession()
    return app


async def main(rounds: int, batch: int) -> None:
    plain, authed = app_for(False), app_for(True)
    inner = plain.by_port[18000].app  # the listener behind the edge
    base = [(b"host", b"x"), (b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
    variants = {
        "no edge": (inner, base),
        "edge": (plain.by_port[18000], base),
        "edge+auth": (authed.by_port[18000], base + [(b"authorization", b"Bearer sk-plano-bench-key-0001")]),
        "edge+vkey": (authed.by_port[18000], base + [(b"authorization", b"Bearer sk-plano-bench-vkey-0001")]),
    }

    async def receive():
        return {"type": "http.request", "body": BODY, "more_body": False}

    statuses = []

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "server": ("127.0.0.1", 18000),
             "query_string": b""}
    best = {name: float("inf") for name in variants}
    for r in range(rounds + 1):
        for name, (app, headers) in variants.items():
            t = time.perf_counter()
            for _ in range(batch):
                await app(dict(scope, headers=list(headers)), receive, send)
            dt = (time.perf_counter() - t) / batch * 1e6
            if r:  # round 0 warms up
                best[name] = min(best[name], dt)
    assert set(statuses) == {200}, set(statuses)
    for name, us in best.items():
        print(f"{name:10s} {us:7.2f} us/request")


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10, int(sys.argv[2]) if len(sys.argv) > 2 else 2000))
