"""A2A tasks as plano's durable async tasks (``/v1/tasks``, :mod:`gateway.tasks`).

A client that asks not to wait — ``SendMessage`` with ``returnImmediately`` (0.3: ``message/send``
with ``blocking: false``) — hands plano a unit of work, which is exactly what an async task is. So on
a listener that serves ``/v1/tasks`` such a message becomes a plano task (its text is the task's
prompt; plano plans a workflow over the listener's agents, runs it, recovers, records a trace),
and the A2A task *is* that task: same id (``task_…``), answered from the durable store.

================================  ==============================================================
A2A                                plano async task
================================  ==============================================================
non-blocking ``SendMessage``       ``POST /v1/tasks`` (``Idempotency-Key`` = the ``messageId``, so a
                                   client's retry gets the same task)
``GetTask``                        ``GET /v1/tasks/{id}``
``CancelTask``                     ``POST /v1/tasks/{id}/cancel`` (a terminal task: -32002)
``SendMessage`` with the           ``POST /v1/tasks/{id}/input`` for a task waiting for input
``taskId`` of a waiting task
``SubscribeToTask``                the task followed until it ends or waits, each change a ``Task``
push notification config in the    the task's ``webhook_url``: plano's signed webhooks (durable
``SendMessage`` configuration      outbox, retries, ``X-Plano-Signature``); the config (id, token)
                                   rides in the task's metadata, which every webhook envelope echoes
                                   (``metadata.a2a.push``), so a receiver checks its token there
================================  ==============================================================

States: ``pending`` → submitted, ``running`` → working, ``waiting`` → input-required (its question as
the status message), ``complete`` → completed (the result's text as the ``answer`` artifact, its
``data`` as a data part), ``failed`` → failed (the error's message), ``cancelled`` → canceled.

Why call the tasks API in process (an ASGI request to the listener's task service) rather than its
store: the HTTP contract (``shared/reference/tasks-api.md``) is the tasks package's stable surface —
its validation (webhook URL allow-list, prompt size), rate limits, idempotency and telemetry apply
unchanged, and its internals can change freely. Tasks live in the shared store, so any worker or
replica answers ``GetTask`` and a task survives a restart.

Push URLs must match ``tasks.webhook.allowed_urls`` (else -32602, nothing created); a push config
cannot be added to or removed from a task after it is created (-32004), because a plano task has one
webhook target for its life. A listener with ``tasks.enabled: false`` keeps the SDK's in-memory tasks.
"""

from __future__ import annotations

import asyncio
import uuid

import orjson

PREFIX = "task_"  # plano task ids; the SDK's in-memory tasks have UUIDs
_FOLLOW_EVERY = 0.5
_KEEP = ("x-request-id", "traceparent", "tracestate", "user-agent")


class TaskCallFailed(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def is_plano_task(task_id: str) -> bool:
    return isinstance(task_id, str) and task_id.startswith(PREFIX)


class PlanoTasks:
    """The A2A side of one agent listener's task service."""

    def __init__(self, listener_app) -> None:
        self.app = listener_app

    @property
    def available(self) -> bool:
        return getattr(self.app, "tasks", None) is not None

    async def call(self, method: str, path: str, headers: dict[str, str], body: dict | None = None,
                   extra: tuple = ()) -> dict:
        """One tasks-API request in process; the task view, or :class:`TaskCallFailed`."""
        data = orjson.dumps(body) if body is not None else b""
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items() if k.lower() in _KEEP]
        raw += [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *extra]
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": raw, "client": ("127.0.0.1", 0), "server": ("127.0.0.1", 0)}
        sent = False

        async def receive():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": data, "more_body": False}
            return {"type": "http.disconnect"}

        out = {"status": 0, "body": b""}

        async def send(message) -> None:
            if message["type"] == "http.response.start":
                out["status"] = message["status"]
            elif message["type"] == "http.response.body":
                out["body"] += message.get("body", b"")

        await self.app.tasks(scope, receive, send)
        try:
            answer = orjson.loads(out["body"]) if out["body"] else {}
        except orjson.JSONDecodeError:
            answer = {}
        if out["status"] >= 400:
            err = answer.get("error") if isinstance(answer, dict) else None
            err = err if isinstance(err, dict) else {}
            raise TaskCallFailed(out["status"], str(err.get("code") or "error"),
                                 str(err.get("message") or f"HTTP {out['status']}"))
        return answer

    # -- the A2A operations ------------------------------------------------------------------

    async def create(self, message, configuration, headers: dict[str, str]) -> dict:
        text = _text(message)
        # a context id plano makes up is derived from the message id: a retry is the same body (idempotent)
        context_id = message.context_id or (uuid.uuid5(uuid.NAMESPACE_URL, f"a2a:{message.message_id}").hex
                                            if message.message_id else uuid.uuid4().hex)
        a2a = {"context_id": context_id, "message_id": message.message_id}
        body: dict = {"prompt": text}
        if configuration is not None and configuration.HasField("task_push_notification_config"):
            push = configuration.task_push_notification_config
            if not push.url:
                raise TaskCallFailed(400, "invalid_request", "The push notification config has no url.")
            a2a["push"] = {"id": push.id or "default", "url": push.url, **({"token": push.token} if push.token
                                                                           else {})}
            body["webhook_url"] = push.url
        body["metadata"] = {"a2a": a2a}
        extra = ((b"idempotency-key", message.message_id.encode("utf-8", "replace")[:255]),) \
            if message.message_id else ()
        return await self.call("POST", "/v1/tasks", headers, body, extra)

    async def get(self, task_id: str, headers: dict[str, str]) -> dict:
        return await self.call("GET", f"/v1/tasks/{task_id}", headers)

    async def cancel(self, task_id: str, headers: dict[str, str]) -> dict:
        return await self.call("POST", f"/v1/tasks/{task_id}/cancel", headers, {})

    async def answer(self, task_id: str, message, headers: dict[str, str]) -> dict:
        """The client's reply to a task waiting for input."""
        return await self.call("POST", f"/v1/tasks/{task_id}/input", headers, {"input": _text(message)})

    async def follow(self, task_id: str, headers: dict[str, str]):
        """The task's views, one per change, until it ends or waits for input."""
        last = None
        while True:
            view = await self.get(task_id, headers)
            key = (view.get("status"), view.get("updated_at"))
            if key != last:
                last = key
                yield view
            if view.get("status") in ("complete", "failed", "cancelled", "waiting"):
                return
            await asyncio.sleep(_FOLLOW_EVERY)


def _text(message) -> str:
    return "\n".join(p.text for p in message.parts if p.HasField("text")) if message is not None else ""


def push_config(view: dict):
    """The task's A2A push config (from its metadata), or None."""
    from a2a.types.a2a_pb2 import TaskPushNotificationConfig

    meta = view.get("metadata") if isinstance(view.get("metadata"), dict) else {}
    push = (meta.get("a2a") or {}).get("push") if isinstance(meta.get("a2a"), dict) else None
    if not isinstance(push, dict):
        return None
    return TaskPushNotificationConfig(task_id=view["id"], id=str(push.get("id") or "default"),
                                      url=str(push.get("url") or ""), token=str(push.get("token") or ""))


def to_a2a(view: dict, history_length: int | None = None):
    """The A2A ``Task`` for a plano task view (see the module docstring)."""
    from a2a.types.a2a_pb2 import Artifact, Message, Part, Role, Task, TaskState, TaskStatus
    from google.protobuf.json_format import ParseDict
    from google.protobuf.struct_pb2 import Value

    states = {"pending": TaskState.TASK_STATE_SUBMITTED, "running": TaskState.TASK_STATE_WORKING,
              "waiting": TaskState.TASK_STATE_INPUT_REQUIRED, "complete": TaskState.TASK_STATE_COMPLETED,
              "failed": TaskState.TASK_STATE_FAILED, "cancelled": TaskState.TASK_STATE_CANCELED}
    meta = view.get("metadata") if isinstance(view.get("metadata"), dict) else {}
    a2a = meta.get("a2a") if isinstance(meta.get("a2a"), dict) else {}
    context_id = str(a2a.get("context_id") or view["id"])
    status = view.get("status")
    note = None
    if status == "waiting":
        note = view.get("waiting_for") or "The task waits for input."
    elif status == "failed":
        err = view.get("error") if isinstance(view.get("error"), dict) else {}
        note = str(err.get("message") or "The task failed.")
    task_status = TaskStatus(state=states.get(status, TaskState.TASK_STATE_UNSPECIFIED))
    if note:
        task_status.message.CopyFrom(Message(message_id=f"{view['id']}-{status}", role=Role.ROLE_AGENT,
                                             task_id=view["id"], context_id=context_id, parts=[Part(text=note)]))
    stamp = view.get("updated_at")
    if isinstance(stamp, str):
        try:
            task_status.timestamp.FromJsonString(stamp)
        except ValueError:
            pass
    task = Task(id=view["id"], context_id=context_id, status=task_status)
    result = view.get("result") if isinstance(view.get("result"), dict) else None
    if status == "complete" and result is not None:
        parts = [Part(text=str(result.get("text") or ""))]
        if result.get("data") is not None:
            parts.append(Part(data=ParseDict(result["data"], Value())))
        task.artifacts.append(Artifact(artifact_id="answer", name="answer", parts=parts))
    if history_length != 0:
        task.history.append(Message(message_id=str(a2a.get("message_id") or f"{view['id']}-prompt"),
                                    role=Role.ROLE_USER, task_id=view["id"], context_id=context_id,
                                    parts=[Part(text=str(view.get("prompt") or ""))]))
    task.metadata.update({"plano": {"task_id": view["id"], "status": status, "trace_id": view.get("trace_id") or ""}})
    return task
