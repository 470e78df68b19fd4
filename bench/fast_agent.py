"""A minimal, fast OpenAI-compatible agent for the agent-chain bench (raw ASGI).

Answers every chat request with a fixed JSON completion (or SSE when asked) and counts
the requests it served (``GET /count``), so the bench can check that plano really ran
the whole chain.
"""

import json

COUNT = {"n": 0}
BODY = json.dumps({
    "id": "chatcmpl-agent", "object": "chat.completion", "created": 0, "model": "agent",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Answer from the agent."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
}).encode()


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            if m["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif m["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    while True:
        m = await receive()
        if not m.get("more_body"):
            break
    if scope["path"] == "/count":
        out = json.dumps(COUNT).encode()
    elif scope["path"] == "/healthz":
        out = b"ok"
    else:
        COUNT["n"] += 1
        out = BODY
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})
