"""An agent that delegates work to plano's async tasks API and resumes on the webhook.

The seed's integration pattern (ploton-agent-integration): the agent's tool handler POSTs a
task with ``metadata`` naming its session and step, returns at once ("delegated"), and the
webhook handler verifies the signature and resumes the right session with the result.

    python examples/task_delegating_agent.py --plano http://127.0.0.1:8001 --port 9300 \
        --secret "$PLANO_WEBHOOK_SECRET"

with plano.yaml carrying::

    tasks:
      webhook: {url: http://127.0.0.1:9300/hooks/plano, secret: $PLANO_WEBHOOK_SECRET}

``POST /ask {"session": "s1", "question": "..."}`` delegates; ``GET /sessions/s1`` shows the
session (``delegated`` → ``resumed`` with the task's result). With the demo's agents a question
like "What's the weather in Paris and find flights from NYC to Paris" goes through two agents.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import time

import httpx
from aiohttp import web


def verify(secret: str, body: bytes, headers) -> bool:
    """Both signature forms: the plain body HMAC and the timestamped v1 (rejects replays > 5 min)."""
    plain = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(headers.get("X-Plano-Signature", ""), plain):
        return False
    parts = dict(p.split("=", 1) for p in headers.get("X-Plano-Signature-V1", "").split(",") if "=" in p)
    ts = parts.get("t", "0")
    if abs(time.time() - int(ts)) > 300:
        return False
    v1 = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(parts.get("v1", ""), v1)


def app(plano: str, secret: str) -> web.Application:
    sessions: dict[str, dict] = {}
    seen: set[str] = set()  # delivery ids: at-least-once delivery, handled once

    async def ask(request: web.Request) -> web.Response:
        data = await request.json()
        session = data["session"]
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.post(f"{plano}/v1/tasks", json={
                "prompt": data["question"], "user_id": data.get("user_id"),
                "metadata": {"agent_session": session, "step": "external_data"}},
                headers={"Idempotency-Key": f"{session}:{data['question']}"})
        task = r.json()
        sessions[session] = {"status": "delegated", "task_id": task.get("id"), "question": data["question"]}
        # the agent does not wait: it goes on with other work and resumes on the webhook
        return web.json_response({"status": "delegated_to_plano", "task_id": task.get("id")}, status=202)

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        if secret and not verify(secret, body, request.headers):
            return web.json_response({"error": "bad signature"}, status=401)
        delivery = request.headers.get("X-Plano-Delivery-Id", "")
        if delivery in seen:
            return web.json_response({"ok": True, "duplicate": True})
        seen.add(delivery)
        event = await request.json()
        session = (event.get("metadata") or {}).get("agent_session")
        if session in sessions and event["event"] in ("task.complete", "task.failed"):
            state = sessions[session]
            state["status"] = "resumed" if event["event"] == "task.complete" else "failed"
            state["result"] = event["data"]
        return web.json_response({"ok": True})

    async def show(request: web.Request) -> web.Response:
        return web.json_response(sessions.get(request.match_info["session"], {"status": "unknown"}))

    a = web.Application()
    a.router.add_post("/ask", ask)
    a.router.add_post("/hooks/plano", hook)
    a.router.add_get("/sessions/{session}", show)
    return a


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--plano", default="http://127.0.0.1:8001")
    ap.add_argument("--port", type=int, default=9300)
    ap.add_argument("--secret", default="")
    args = ap.parse_args()
    web.run_app(app(args.plano, args.secret), host="127.0.0.1", port=args.port)
