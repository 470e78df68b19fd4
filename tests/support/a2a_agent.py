"""An A2A agent built with ``a2a-sdk``'s server, run as a real process on loopback for tests.

``python -m tests.support.a2a_agent --port P --name weather [--mode message|task|slow]
[--protocol 1.0|0.3] [--skill "..."]`` serves the SDK's agent-card route and its JSON-RPC
endpoint (``DefaultRequestHandler`` over an in-memory task store) with uvicorn:

``message``  answers every message with one agent ``Message``: ``<name>: <user input>``
``task``     opens a task, reports ``working``, streams the answer as two artifact chunks,
             completes
``slow``     like ``task`` but waits ``--delay`` seconds before its artifact (a long task: a
             non-blocking client polls it); ``--delay`` ≥ 1000 never finishes on its own
``ask``      answers ``INPUT_REQUIRED: Which city?`` (what plano's task executor reads as a question
             for the user) until the conversation holds that question and its answer, then
             ``<name>: pollen is low in <the last line>``

``--poll``: the card says no streaming and every ``SendMessage`` is answered at once with the task
still running (as if the client had asked ``returnImmediately``), so a caller must poll ``GetTask``.

``--protocol 0.3`` makes a 0.3-only agent: its card is the 0.3 card at ``/.well-known/agent.json``
only (``agent-card.json`` is 404) and its endpoint answers only 0.3 method names
(``message/send`` …; the 1.0 names get -32601), through the SDK's 0.3 compatibility adapter.

``GET /stats`` answers what arrived on the wire in front of the SDK app: each JSON-RPC call's
method, ``A2A-Version`` header, the user text and its ``traceparent``, and ``cards``: the agent
cards served (counted once sent; ``--card-delay S`` answers card requests S seconds late, so a test
can tell whether a caller waited for the card); ``GET /healthz`` 200.
"""

from __future__ import annotations

import argparse
import asyncio
import json


def build_app(name: str, mode: str, protocol: str, skill: str, delay: float, poll: bool = False):
    from a2a.helpers.proto_helpers import new_text_message, new_text_part, new_task_from_user_message
    from a2a.server.agent_execution import AgentExecutor
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
    from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
    from a2a.types.a2a_pb2 import AgentCapabilities, AgentCard, AgentInterface, AgentSkill, Role, TaskState
    from starlette.applications import Starlette

    stats: dict = {"calls": [], "cancels": 0, "cards": 0}

    class Executor(AgentExecutor):
        async def execute(self, context, event_queue) -> None:
            text = context.get_user_input()
            answer = f"{name}: {text}"
            if mode == "ask":
                answer = f"{name}: pollen is low in {text.splitlines()[-1].strip()}" if "Which city?" in text \
                    else "INPUT_REQUIRED: Which city?"
            if mode in ("message", "ask"):
                await event_queue.enqueue_event(new_text_message(answer, context_id=context.context_id,
                                                                 role=Role.ROLE_AGENT))
                return
            task = context.current_task or new_task_from_user_message(context.message)
            if context.current_task is None:
                await event_queue.enqueue_event(task)
            updater = TaskUpdater(event_queue, task.id, task.context_id)
            await updater.start_work(new_text_message(f"{name} is working", context_id=task.context_id,
                                                      task_id=task.id, role=Role.ROLE_AGENT))
            if mode == "slow":
                await asyncio.sleep(delay)
            half = len(answer) // 2
            await updater.add_artifact([new_text_part(answer[:half])], artifact_id="answer", name="answer")
            await updater.add_artifact([new_text_part(answer[half:])], artifact_id="answer", append=True,
                                       last_chunk=True)
            await updater.complete()

        async def cancel(self, context, event_queue) -> None:
            stats["cancels"] += 1
            task = context.current_task
            if task is not None:
                await TaskUpdater(event_queue, task.id, task.context_id).cancel()

    def card(url: str) -> AgentCard:
        return AgentCard(
            name=name, description=f"{name} agent (a2a-sdk test server)", version="1.0.0",
            supported_interfaces=[AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version=protocol)],
            capabilities=AgentCapabilities(streaming=not poll),
            default_input_modes=["text/plain"], default_output_modes=["text/plain"],
            skills=[AgentSkill(id=f"{name}_skill", name=f"{name} skill", description=skill, tags=[name])],
        )

    return stats, card, Executor, DefaultRequestHandler, InMemoryTaskStore, create_agent_card_routes, \
        create_jsonrpc_routes, Starlette


def make_asgi(port: int, name: str, mode: str, protocol: str, skill: str, delay: float, poll: bool = False,
              card_delay: float = 0.0):
    stats, card, Executor, Handler, Store, card_routes, rpc_routes, Starlette = build_app(
        name, mode, protocol, skill, delay, poll)
    url = f"http://127.0.0.1:{port}/"
    agent_card = card(url)
    handler = Handler(agent_executor=Executor(), task_store=Store(), agent_card=agent_card)
    routes = rpc_routes(handler, "/", enable_v0_3_compat=protocol == "0.3")
    if protocol != "0.3":
        routes = [*card_routes(agent_card), *routes]
    inner = Starlette(routes=routes)
    card_03 = None
    if protocol == "0.3":
        from a2a.compat.v0_3.conversions import to_compat_agent_card

        card_03 = to_compat_agent_card(agent_card).model_dump(mode="json", by_alias=True, exclude_none=True)
        card_03["protocolVersion"] = "0.3.0"
        card_03["url"] = url
        card_03["preferredTransport"] = "JSONRPC"
    methods_03 = {"message/send", "message/stream", "tasks/get", "tasks/cancel", "tasks/resubscribe"}

    async def send_json(send, status: int, payload) -> None:
        body = json.dumps(payload).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    async def app(scope, receive, send):
        if scope["type"] != "http":
            await inner(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        if method == "GET" and path == "/healthz":
            await send_json(send, 200, {"ok": True})
            return
        if method == "GET" and path == "/stats":
            await send_json(send, 200, stats)
            return
        if method == "GET" and path.startswith("/.well-known/agent"):
            if card_delay:
                await asyncio.sleep(card_delay)
            if protocol == "0.3" and path == "/.well-known/agent.json":
                await send_json(send, 200, card_03)
                stats["cards"] += 1
                return
            sent = {}

            async def counted(message):
                if message["type"] == "http.response.start":
                    sent["status"] = message["status"]
                await send(message)

            await inner(scope, receive, counted)
            stats["cards"] += sent.get("status") == 200
            return
        if method != "POST":
            await inner(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        try:
            rpc = json.loads(raw)
        except ValueError:
            rpc = {}
        rpc_method = rpc.get("method", "") if isinstance(rpc, dict) else ""
        params = rpc.get("params") if isinstance(rpc, dict) else None
        text = ""
        if isinstance(params, dict) and isinstance(params.get("message"), dict):
            text = "\n".join(p.get("text", "") for p in params["message"].get("parts") or [] if isinstance(p, dict))
        stats["calls"].append({"method": rpc_method, "version": headers.get("a2a-version"), "text": text,
                               "traceparent": headers.get("traceparent"),
                               "agent": headers.get("x-plano-agent-id")})
        if protocol == "0.3" and rpc_method not in methods_03:
            await send_json(send, 200, {"jsonrpc": "2.0", "id": rpc.get("id") if isinstance(rpc, dict) else None,
                                        "error": {"code": -32601, "message": "Method not found (0.3-only agent)"}})
            return
        if poll and rpc_method == "SendMessage" and isinstance(params, dict):
            params.setdefault("configuration", {})["returnImmediately"] = True
            raw = json.dumps(rpc).encode()
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        await inner(scope, replay, send)

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="agent")
    parser.add_argument("--mode", choices=["message", "task", "slow", "ask"], default="message")
    parser.add_argument("--protocol", choices=["1.0", "0.3"], default="1.0")
    parser.add_argument("--skill", default="Answers questions.")
    parser.add_argument("--delay", type=float, default=3.0)
    parser.add_argument("--poll", action="store_true")
    parser.add_argument("--card-delay", type=float, default=0.0)
    args = parser.parse_args()
    import uvicorn

    app = make_asgi(args.port, args.name, args.mode, args.protocol, args.skill, args.delay, args.poll,
                    args.card_delay)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
