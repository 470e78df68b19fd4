"""An A2A agent built with ``a2a-sdk``, to put behind plano: the demo weather agent over A2A 1.0.

    pip install 'plano[a2a]' uvicorn
    python -m examples.a2a_weather_agent --port 10550

then ``examples/a2a/plano.yaml`` routes to it (``type: a2a``; no ``description``: plano reads this
agent's card at start-up and routes weather questions to it by its skill and examples), beside the
OpenAI-style demo agents. OpenAI-SDK clients, A2A clients and MCP clients of the listener all reach
it; see the README's "A2A agents behind plano".

What it shows, for a real agent (a LangGraph graph, an ADK agent …) to copy:

- **The card** at ``/.well-known/agent-card.json``: one JSONRPC interface (protocol 1.0), streaming,
  and a skill with ``examples`` — plano turns those into routing hints (``Handles: …``).
- **A task with streamed artifacts**: the executor opens a task, reports ``working``, streams the
  answer line by line as chunks of one ``answer`` artifact (plano hands each on to an OpenAI client
  as a ``chat.completion.chunk`` delta), then completes.
- **Context from plano**: plano sends the whole conversation as one message (earlier turns as a
  "Conversation so far" part) and, structured, in the message ``metadata.openai_messages``; this agent
  reads the structured form when present, so "and tomorrow?" follows up on the city asked before.

Built with ``a2a-sdk`` rather than LangGraph: LangGraph adds about 17 packages (langchain-core,
langsmith, compiled extras) to the examples extra, which the demo does not need; the executor below is
where a graph's ``ainvoke`` would go. The answers are the offline demo weather agent's
(:mod:`examples.agents.weather`): deterministic, no API key, no network.
"""

from __future__ import annotations

import argparse
import asyncio

DEFAULT_PORT = 10550


def build(url: str):
    """The ASGI app: card routes, the JSON-RPC endpoint at ``/``, ``GET /healthz``."""
    from a2a.helpers.proto_helpers import new_task_from_user_message, new_text_message, new_text_part
    from a2a.server.agent_execution import AgentExecutor
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
    from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
    from a2a.types.a2a_pb2 import AgentCapabilities, AgentCard, AgentInterface, AgentSkill, Role
    from google.protobuf.json_format import MessageToDict
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from examples.agents.common import Chat
    from examples.agents.weather import agent as weather

    def chat_of(context) -> Chat:
        """The question and earlier turns: plano's structured conversation when it sent one."""
        message = context.message
        meta = MessageToDict(message.metadata) if message is not None and message.HasField("metadata") else {}
        turns = [m for m in meta.get("openai_messages") or () if isinstance(m, dict)]
        texts = [(m.get("role"), m.get("content")) for m in turns if isinstance(m.get("content"), str)]
        users = [i for i, (role, _) in enumerate(texts) if role == "user"]
        if users:
            last = users[-1]
            return Chat(turns, "", False, texts[last][1], [t for _, t in texts[:last]])
        return Chat([], "", False, context.get_user_input(), [])

    class WeatherExecutor(AgentExecutor):
        async def execute(self, context, event_queue) -> None:
            task = context.current_task or new_task_from_user_message(context.message)
            if context.current_task is None:
                await event_queue.enqueue_event(task)
            updater = TaskUpdater(event_queue, task.id, task.context_id)
            await updater.start_work(new_text_message("Looking at the forecast…", context_id=task.context_id,
                                                      task_id=task.id, role=Role.ROLE_AGENT))
            answer = weather.answer(chat_of(context))  # a LangGraph agent: ``await graph.ainvoke(...)`` here
            lines = answer.split("\n")
            for i, line in enumerate(lines):
                await updater.add_artifact([new_text_part(line + ("\n" if i < len(lines) - 1 else ""))],
                                           artifact_id="answer", name="answer", append=i > 0 or None,
                                           last_chunk=i == len(lines) - 1)
                await asyncio.sleep(0)  # each chunk is its own stream event
            await updater.complete()

        async def cancel(self, context, event_queue) -> None:
            task = context.current_task
            if task is not None:
                await TaskUpdater(event_queue, task.id, task.context_id).cancel()

    card = AgentCard(
        name="weather", version="1.0.0",
        description="Weather forecasts for world cities (offline demo data).",
        supported_interfaces=[AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0")],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"], default_output_modes=["text/plain"],
        skills=[AgentSkill(id="forecast", name="forecast", tags=["weather"],
                           description="Current conditions and multi-day forecasts: temperature, rain, wind, "
                                       "humidity",
                           examples=["What's the weather in Paris?", "Will it rain in Tokyo tomorrow?",
                                     "3-day forecast for London"])])
    handler = DefaultRequestHandler(agent_executor=WeatherExecutor(), task_store=InMemoryTaskStore(), agent_card=card)

    async def healthz(_request):
        return JSONResponse({"ok": True})

    return Starlette(routes=[*create_agent_card_routes(card), *create_jsonrpc_routes(handler, "/"),
                             Route("/healthz", healthz)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    import uvicorn

    uvicorn.run(build(f"http://{args.host}:{args.port}/"), host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
