"""An agent listener as one A2A agent: its agent card and its JSON-RPC endpoint.

- ``GET /.well-known/agent-card.json``: the 1.0 card — the listener as the agent (its name,
  the agents it routes to as skills, with their descriptions), two JSONRPC interfaces at
  ``<the URL the client used>/a2a`` (protocol 1.0 and 0.3), streaming on.
  ``GET /.well-known/agent.json``: the same card in 0.3's shape.
- ``POST /a2a``: the ``a2a-sdk`` JSON-RPC server (``DefaultRequestHandler``, 0.3 method names
  too): ``SendMessage``, ``SendStreamingMessage``, ``GetTask``, ``ListTasks``, ``CancelTask``,
  ``SubscribeToTask``; malformed JSON (-32700), not JSON-RPC (-32600), an unknown method
  (-32601), bad params (-32602), an unknown task (-32001), a task that cannot be canceled
  (-32002) are the SDK's, i.e. the protocol's own errors. A body over the listener's
  ``max_body_bytes`` is refused before it is read with -32600 ("Payload too large"), as the SDK does.

Every message becomes a task: plano's executor asks the listener the conversation in process
(:mod:`gateway.a2a.inprocess`, so routing, filters, the chain, limits and telemetry apply) and
streams the answer into the task as one ``answer`` artifact, then completes it; an error answer
fails the task with the error's message. Those tasks (blocking ``SendMessage``,
``SendStreamingMessage``) live in the SDK's in-memory store of the worker that ran them.

A client that asks not to wait — ``returnImmediately`` (0.3: ``blocking: false``) — gets a plano
async task instead (:mod:`gateway.a2a.tasks`, when the listener serves ``/v1/tasks``): durable,
shared by workers and replicas, planned over the listener's agents; ``GetTask``, ``CancelTask``,
``SubscribeToTask``, the answer to a task waiting for input and push notification configs (delivered
as plano's signed task webhooks) are answered from it, and the card says ``pushNotifications``.
``CancelTask`` of an in-memory task cancels the running question — the agent calls in flight are
abandoned (an upstream A2A agent is sent ``CancelTask`` too).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import orjson

from gateway.a2a import inprocess

log = logging.getLogger("plano.a2a")

RPC_PATH = "/a2a"


def build_server(listener_app, listener, metrics=None):
    """The SDK pieces for one agent listener: (card builder, Starlette JSON-RPC app, request handler)."""
    from a2a.server.agent_execution import AgentExecutor
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.routes import create_jsonrpc_routes
    from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
    from a2a.types.a2a_pb2 import (
        AgentCapabilities,
        AgentCard,
        AgentInterface,
        AgentSkill,
        Message,
        Part,
        Role,
        Task,
        TaskState,
        TaskStatus,
    )
    from starlette.applications import Starlette

    from gateway import __version__
    from gateway.a2a.tasks import PlanoTasks

    plano_tasks = PlanoTasks(listener_app)

    def card(base_url: str) -> AgentCard:
        skills = []
        for agent in listener.agents or []:
            endpoint = listener_app.endpoints.get(agent.id)
            described = agent.description or (endpoint.a2a.description if endpoint is not None and
                                              endpoint.a2a is not None else None) or agent.id
            skills.append(AgentSkill(id=agent.id, name=agent.id, description=" ".join(described.split()),
                                     tags=["plano", listener.name]))
        names = ", ".join(a.id for a in listener.agents or [])
        url = base_url.rstrip("/") + RPC_PATH
        return AgentCard(
            name=listener.name,
            description=f"plano agent listener '{listener.name}': each message is routed to the agents that "
                        f"handle it ({names}).",
            version=__version__,
            supported_interfaces=[AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0"),
                                  AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="0.3")],
            capabilities=AgentCapabilities(streaming=True, push_notifications=plano_tasks.available),
            default_input_modes=["text/plain"], default_output_modes=["text/plain"], skills=skills)

    class PlanoExecutor(AgentExecutor):
        async def execute(self, context, event_queue) -> None:
            task = context.current_task
            if task is None:
                task = Task(id=context.task_id, context_id=context.context_id,
                            status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED), history=[context.message])
                await event_queue.enqueue_event(task)
            updater = TaskUpdater(event_queue, task.id, task.context_id)
            await updater.start_work()
            call = context.call_context
            headers = dict(call.state.get("headers") or {}) if call is not None else {}
            messages = _conversation(task, context.message)
            span = _current_span()
            if span is not None and span.recording:
                span.update({"a2a.task_id": task.id, "a2a.context_id": task.context_id})
            first = True
            flushed = asyncio.Event()

            async def push(text: str) -> None:
                nonlocal first
                await updater.add_artifact([Part(text=text)], artifact_id="answer", name="answer",
                                           append=None if first else True)
                first = False

            queue: asyncio.Queue = asyncio.Queue()

            async def pump() -> None:
                while (piece := await queue.get()) is not None:
                    await push(piece)
                flushed.set()

            pumper = asyncio.create_task(pump())
            try:
                await inprocess.ask(listener_app, messages, headers, queue.put_nowait)
            except inprocess.ChatFailed as exc:
                queue.put_nowait(None)
                await flushed.wait()
                await updater.failed(Message(message_id=uuid.uuid4().hex, role=Role.ROLE_AGENT,
                                             task_id=task.id, context_id=task.context_id,
                                             parts=[Part(text=f"HTTP {exc.status}: {exc.message}")]))
                return
            except BaseException:
                pumper.cancel()
                raise
            queue.put_nowait(None)
            await flushed.wait()
            if first:  # an empty answer is still an answer
                await updater.add_artifact([Part(text="")], artifact_id="answer", name="answer")
            await updater.complete()

        async def cancel(self, context, event_queue) -> None:
            task = context.current_task
            if task is not None:
                await TaskUpdater(event_queue, task.id, task.context_id).cancel()

    handler_class = _plano_task_handler(DefaultRequestHandler, plano_tasks) if plano_tasks.available else \
        DefaultRequestHandler
    static_card = card("http://127.0.0.1")
    handler = handler_class(agent_executor=PlanoExecutor(), task_store=InMemoryTaskStore(), agent_card=static_card)
    app = Starlette(routes=create_jsonrpc_routes(handler, RPC_PATH, enable_v0_3_compat=True))
    return card, app, handler


def _plano_task_handler(base, tasks):
    """The SDK's request handler with A2A tasks mapped onto plano's async tasks (:mod:`gateway.a2a.tasks`):
    non-blocking sends create one; ``GetTask``, ``CancelTask``, ``SubscribeToTask``, input for a waiting
    task and the push configs of a ``task_…`` id are answered from it. Everything else — blocking and
    streaming sends, the SDK's own (UUID) tasks — is the SDK's."""
    from a2a.server.request_handlers.request_handler import validate_request_params
    from a2a.types.a2a_pb2 import ListTaskPushNotificationConfigsResponse
    from a2a.utils.errors import (
        InternalError,
        InvalidParamsError,
        TaskNotCancelableError,
        TaskNotFoundError,
        UnsupportedOperationError,
    )

    from gateway.a2a.tasks import TaskCallFailed, is_plano_task, push_config, to_a2a

    def headers_of(context) -> dict[str, str]:
        return dict(context.state.get("headers") or {}) if context is not None else {}

    async def guarded(coro, *, conflict=InvalidParamsError):
        try:
            return await coro
        except TaskCallFailed as exc:
            if exc.status == 404:
                raise TaskNotFoundError() from None
            if exc.status == 409:
                raise conflict(message=exc.message) from None
            if exc.status in (400, 422):
                raise InvalidParamsError(message=exc.message) from None
            raise InternalError(message=f"plano tasks: {exc.message}") from None

    def tag(view: dict) -> None:
        span = _current_span()
        if span is not None and span.recording:
            span.update({"a2a.task_id": view["id"], "plano.task.id": view["id"]})

    def history(config) -> int | None:
        return config.history_length if config is not None and config.HasField("history_length") else None

    class PlanoTaskHandler(base):
        @validate_request_params
        async def on_message_send(self, params, context):
            message, config = params.message, params.configuration
            if is_plano_task(message.task_id):  # the answer a waiting plano task asked for
                view = await guarded(tasks.answer(message.task_id, message, headers_of(context)))
                if not config.return_immediately:
                    async for view in tasks.follow(view["id"], headers_of(context)):
                        pass
                return to_a2a(view, history(config))
            if config.return_immediately:
                view = await guarded(tasks.create(message, config, headers_of(context)))
                tag(view)
                return to_a2a(view, history(config))
            return await super().on_message_send(params, context)

        @validate_request_params
        async def on_message_send_stream(self, params, context):
            message = params.message
            if not is_plano_task(message.task_id):
                async for event in super().on_message_send_stream(params, context):
                    yield event
                return
            view = await guarded(tasks.answer(message.task_id, message, headers_of(context)))
            async for view in tasks.follow(view["id"], headers_of(context)):
                yield to_a2a(view, history(params.configuration))

        @validate_request_params
        async def on_get_task(self, params, context):
            if not is_plano_task(params.id):
                return await super().on_get_task(params, context)
            view = await guarded(tasks.get(params.id, headers_of(context)))
            return to_a2a(view, params.history_length if params.HasField("history_length") else None)

        @validate_request_params
        async def on_cancel_task(self, params, context):
            if not is_plano_task(params.id):
                return await super().on_cancel_task(params, context)
            view = await guarded(tasks.cancel(params.id, headers_of(context)), conflict=TaskNotCancelableError)
            return to_a2a(view)

        @validate_request_params
        async def on_subscribe_to_task(self, params, context):
            if not is_plano_task(params.id):
                async for event in super().on_subscribe_to_task(params, context):
                    yield event
                return
            async for view in tasks.follow(params.id, headers_of(context)):
                yield to_a2a(view)

        @validate_request_params
        async def on_create_task_push_notification_config(self, params, context):
            if not is_plano_task(params.task_id):
                return await super().on_create_task_push_notification_config(params, context)
            await guarded(tasks.get(params.task_id, headers_of(context)))
            raise UnsupportedOperationError(message="A plano task's push notification config is set when it is "
                                                    "created (SendMessage configuration) and kept for its life.")

        @validate_request_params
        async def on_get_task_push_notification_config(self, params, context):
            if not is_plano_task(params.task_id):
                return await super().on_get_task_push_notification_config(params, context)
            config = push_config(await guarded(tasks.get(params.task_id, headers_of(context))))
            if config is None or (params.id and params.id != config.id):
                raise InvalidParamsError(message=f"Task {params.task_id} has no push notification config "
                                                 f"{params.id or ''}".rstrip())
            return config

        @validate_request_params
        async def on_list_task_push_notification_configs(self, params, context):
            if not is_plano_task(params.task_id):
                return await super().on_list_task_push_notification_configs(params, context)
            config = push_config(await guarded(tasks.get(params.task_id, headers_of(context))))
            return ListTaskPushNotificationConfigsResponse(configs=[config] if config is not None else [])

        @validate_request_params
        async def on_delete_task_push_notification_config(self, params, context):
            if not is_plano_task(params.task_id):
                return await super().on_delete_task_push_notification_config(params, context)
            await guarded(tasks.get(params.task_id, headers_of(context)))
            raise UnsupportedOperationError(message="A plano task's push notification config is kept for its "
                                                    "life; cancel the task to stop its notifications.")

    return PlanoTaskHandler


def card_json(card, legacy: bool) -> bytes:
    from google.protobuf.json_format import MessageToDict

    if not legacy:
        return orjson.dumps(MessageToDict(card))
    from a2a.compat.v0_3.conversions import to_compat_agent_card

    data = to_compat_agent_card(card).model_dump(mode="json", by_alias=True, exclude_none=True)
    data["protocolVersion"] = "0.3.0"
    data["url"] = card.supported_interfaces[0].url
    data["preferredTransport"] = "JSONRPC"
    data.pop("additionalInterfaces", None)
    return orjson.dumps(data)


def _conversation(task, message) -> list[dict]:
    """The task's history (earlier turns of an input-required task) plus the new message, as chat messages."""
    out = []
    seen = set()
    for item in [*(task.history if task is not None else ()), message]:
        if item is None or item.message_id in seen:
            continue
        seen.add(item.message_id)
        text = "\n".join(p.text for p in item.parts if p.HasField("text")) if item.parts else ""
        if not text:
            continue
        out.append({"role": "assistant" if item.role == 2 else "user", "content": text})
    return out or [{"role": "user", "content": ""}]


# The A2A request being served (its telemetry span), seen by the executor task it starts.
from contextvars import ContextVar  # noqa: E402

_SPAN: ContextVar = ContextVar("plano_a2a_span", default=None)


def _current_span():
    return _SPAN.get()


def bind_span(span) -> None:
    _SPAN.set(span)


def method_of(body: bytes) -> tuple[str, str | None]:
    """(the JSON-RPC method, a task id in its params) of a request body, for telemetry."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "invalid", None
    if not isinstance(data, dict) or not isinstance(data.get("method"), str):
        return "invalid", None
    params = data.get("params")
    task = params.get("id") if isinstance(params, dict) and isinstance(params.get("id"), str) else None
    return data["method"][:64], task


def now() -> float:
    return time.perf_counter()
