"""``/v1/tasks`` on an agent listener (the contract: ``shared/reference/tasks-api.md``).

| method, path                 | answers |
|------------------------------|---------|
| ``POST /v1/tasks``           | 201 + the task (``pending``) at once; ``Idempotency-Key``: same key + body → the original (200), other body → 409 |
| ``GET /v1/tasks``            | ``{"data", "has_more"}``, newest first; ``status``, ``user_id``, ``limit`` (≤ 100), ``offset`` |
| ``GET /v1/tasks/{id}``       | the task |
| ``POST /v1/tasks/{id}/cancel`` | the cancelled task; 409 when it is already terminal |
| ``POST /v1/tasks/{id}/input``  | ``{"input": ...}`` for a ``waiting`` task (409 otherwise) |
| ``GET /v1/tasks/{id}/trace`` | ``{"task_id", "trace_id", "steps", "total_duration_ms"}`` |

Errors: ``{"error": {"code", "message"}}`` — 400 ``invalid_request``, 404 ``not_found``, 409
``conflict``, 422 ``prompt_too_long`` (> 10,000 characters), 429 ``rate_limit_exceeded``.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from urllib.parse import parse_qs

import orjson

from gateway.listeners.errors import GatewayError
from gateway.listeners.http import JSON_CT, ClientDisconnected, header, read_body, send_body
from gateway.tasks.store import dumps, loads
from gateway.tasks.webhooks import allowed, iso

MAX_PROMPT = 10_000
MAX_BODY = 1 << 20
_FIELDS = {"prompt", "user_id", "metadata", "sub_agent", "mode", "webhook_url"}


class TaskError(Exception):
    def __init__(self, status: int, code: str, message: str, headers=()) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def _id() -> str:
    return "task_" + secrets.token_urlsafe(12).replace("-", "x").replace("_", "y")


class TaskService:
    """The tasks API and the workflow parts (planner, invoker) of one agent listener."""

    def __init__(self, runtime, listener_app, planner, invoker, telemetry) -> None:
        self.runtime = runtime
        self.name = listener_app.name
        self.listener = listener_app
        self.planner = planner
        self.invoker = invoker
        self.telemetry = telemetry
        self.agents = set(planner.ids)

    async def __call__(self, scope, receive, send) -> None:
        try:
            await self._route(scope, receive, send)
        except TaskError as err:
            await _send(send, err.status, {"error": {"code": err.code, "message": err.message}}, err.headers)
        except GatewayError as err:
            await _send(send, err.status, {"error": {"code": err.code or "error", "message": err.message}},
                        err.headers)
        except ClientDisconnected:
            pass

    async def _route(self, scope, receive, send) -> None:
        method, path = scope["method"], scope["path"].rstrip("/")
        parts = path.split("/")[3:]  # ["", "v1", "tasks", ...]
        if not self.runtime.started:
            raise TaskError(503, "unavailable", "The task runtime is not running.")
        if not parts:
            if method == "POST":
                return await self.create(scope, receive, send)
            if method == "GET":
                return await self.list(scope, send)
        elif len(parts) == 1 and method == "GET":
            return await _send(send, 200, self.view(await self._get(parts[0])))
        elif len(parts) == 2 and parts[1] == "trace" and method == "GET":
            return await _send(send, 200, self.trace(await self._get(parts[0])))
        elif len(parts) == 2 and parts[1] == "cancel" and method == "POST":
            return await self.cancel(parts[0], send)
        elif len(parts) == 2 and parts[1] == "input" and method == "POST":
            return await self.input(parts[0], scope, receive, send)
        elif len(parts) <= 2:
            raise TaskError(405, "method_not_allowed", f"Method {method} is not allowed on {path}")
        raise TaskError(404, "not_found", f"Unknown path {path}")

    async def _get(self, task_id: str) -> dict:
        task = await self.runtime.store.get_task(task_id, self.name)
        if task is None:
            raise TaskError(404, "not_found", f"No task {task_id}")
        return task

    # -- create -------------------------------------------------------------------------------

    async def create(self, scope, receive, send) -> None:
        body = await read_body(scope, receive, MAX_BODY)
        limits = getattr(self.listener, "limits", None)
        if limits is not None:
            verdict = await limits.admit(scope["headers"])
            if verdict is not None:
                from gateway.upstream.limits import refusal

                raise refusal(verdict, getattr(self.telemetry, "metrics", None), self.name)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise TaskError(400, "invalid_request", "The body is not valid JSON.") from None
        req = self._validate(data)
        key = header(scope, b"idempotency-key")
        key = key.decode("utf-8", "replace")[:255] if key else None
        digest = hashlib.sha256(orjson.dumps(req, option=orjson.OPT_SORT_KEYS)).hexdigest() if key else None
        rt = self.runtime
        now = time.time()
        tel = self.telemetry
        rid = header(scope, b"x-request-id")
        task_id = _id()
        ctx = tel.start_request(self.name, "agent", "POST", "/v1/tasks", scope["headers"],
                                rid.decode("ascii", "replace") if rid else task_id, handler="task_create") \
            if tel is not None else None
        if ctx is not None and ctx.root.recording:
            traceparent = ctx.root.inject({})["traceparent"]
            trace_id = ctx.trace_id
        else:
            trace_id = (ctx.trace_id if ctx is not None else "") or secrets.token_hex(16)
            traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
        hold = rt.free > 0
        row = {"id": task_id, "listener": self.name, "status": "pending", "prompt": req["prompt"],
               "user_id": req.get("user_id"), "metadata": dumps(req.get("metadata")),
               "sub_agent": req.get("sub_agent"), "mode": req.get("mode") or "live",
               "webhook_url": req.get("webhook_url"), "idem_key": key, "idem_hash": digest, "created_at": now,
               "updated_at": now, "trace_id": trace_id, "traceparent": traceparent,
               "owner": rt.owner if hold else None, "lease_until": now + rt.cfg.lease if hold else None,
               "deadline": now + rt.cfg.task_timeout}
        status = 201
        try:
            task, created = await rt.store.create_task(row)
            if not created:
                if task["idem_hash"] != digest:
                    raise TaskError(409, "conflict", "This Idempotency-Key was used with a different body.")
                status = 200
            await _send(send, status, self.view(task), ((b"location", f"/v1/tasks/{task['id']}".encode()),))
        finally:
            if ctx is not None:
                ctx.root.set("plano.task.id", task_id) if ctx.root.recording else None
                ctx.finish(status)
        if created and hold:
            rt.launch(task)

    def _validate(self, data) -> dict:
        if not isinstance(data, dict):
            raise TaskError(400, "invalid_request", "The body must be a JSON object.")
        unknown = set(data) - _FIELDS
        if unknown:
            raise TaskError(400, "invalid_request", f"Unknown field(s): {', '.join(sorted(unknown))}.")
        prompt = data.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise TaskError(400, "invalid_request", "'prompt' is required (a non-empty string).")
        if len(prompt) > MAX_PROMPT:
            raise TaskError(422, "prompt_too_long", f"The prompt has {len(prompt)} characters; the limit is "
                            f"{MAX_PROMPT}.")
        for name in ("user_id", "sub_agent", "webhook_url", "mode"):
            if data.get(name) is not None and not isinstance(data[name], str):
                raise TaskError(400, "invalid_request", f"'{name}' must be a string.")
        if data.get("metadata") is not None and not isinstance(data["metadata"], dict):
            raise TaskError(400, "invalid_request", "'metadata' must be an object.")
        if data.get("mode") not in (None, "live", "test"):
            raise TaskError(400, "invalid_request", "'mode' must be 'live' or 'test'.")
        if data.get("sub_agent") is not None and data["sub_agent"] not in self.agents:
            raise TaskError(422, "unknown_agent", f"'sub_agent' {data['sub_agent']!r} is not an agent of this "
                            f"listener ({', '.join(sorted(self.agents))}).")
        url = data.get("webhook_url")
        if url is not None and not allowed(url, self.runtime.cfg.webhook.allowed_urls):
            raise TaskError(422, "webhook_url_not_allowed", "This webhook_url is not allowed by the gateway's "
                            "config (tasks.webhook.allowed_urls).")
        return {k: v for k, v in data.items() if v is not None}

    # -- list, cancel, input --------------------------------------------------------------------

    async def list(self, scope, send) -> None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        status = (query.get("status") or [None])[0]
        user = (query.get("user_id") or [None])[0]
        try:
            limit = int((query.get("limit") or ["20"])[0])
            offset = int((query.get("offset") or ["0"])[0])
        except ValueError:
            raise TaskError(400, "invalid_request", "'limit' and 'offset' must be integers.") from None
        if not 1 <= limit <= 100 or offset < 0:
            raise TaskError(400, "invalid_request", "'limit' must be 1..100 and 'offset' >= 0.")
        if status is not None and status not in ("pending", "running", "waiting", "complete", "failed", "cancelled"):
            raise TaskError(400, "invalid_request", f"Unknown status {status!r}.")
        rows, more = await self.runtime.store.list_tasks(self.name, status, user, limit, offset)
        await _send(send, 200, {"object": "list", "data": [self.view(r) for r in rows], "has_more": more})

    async def cancel(self, task_id: str, send) -> None:
        rt = self.runtime
        task, now = await rt.store.cancel_task(task_id, self.name,
                                               lambda t: rt.webhooks.event(t, "task.cancelled", {}))
        if task is None:
            raise TaskError(404, "not_found", f"No task {task_id}")
        if not now:
            raise TaskError(409, "conflict", f"Task {task_id} is already {task['status']}.")
        rt.cancel_local(task_id)  # in flight here: stop its agent calls now (elsewhere: at the next heartbeat)
        rt.nudge_webhooks()
        await _send(send, 200, self.view(task))

    async def input(self, task_id: str, scope, receive, send) -> None:
        body = await read_body(scope, receive, MAX_BODY)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise TaskError(400, "invalid_request", "The body is not valid JSON.") from None
        if not isinstance(data, dict) or "input" not in data:
            raise TaskError(400, "invalid_request", "Expected {\"input\": ...}.")
        task, ok = await self.runtime.store.supply_input(task_id, self.name, data["input"])
        if task is None:
            raise TaskError(404, "not_found", f"No task {task_id}")
        if not ok:
            raise TaskError(409, "conflict", f"Task {task_id} is {task['status']}, not waiting for input.")
        self.runtime._wake.set()  # the poller claims it now
        await _send(send, 200, self.view(task))

    # -- views --------------------------------------------------------------------------------

    def view(self, task: dict) -> dict:
        out = {"id": task["id"], "object": "task", "status": task["status"], "prompt": task["prompt"],
               "user_id": task.get("user_id"), "metadata": loads(task.get("metadata")),
               "sub_agent": task.get("sub_agent"), "mode": task.get("mode"),
               "created_at": iso(task["created_at"]), "updated_at": iso(task["updated_at"]),
               "completed_at": iso(task.get("completed_at")), "trace_id": task.get("trace_id")}
        if task["status"] == "complete":
            out["result"] = loads(task.get("result"))
        if task["status"] == "failed":
            out["error"] = loads(task.get("error"))
        if task["status"] == "waiting":
            state = loads(task.get("state")) or {}
            out["waiting_for"] = next((s.get("question") for s in state.get("steps", ())
                                       if s.get("status") == "waiting"), None)
        return out

    def trace(self, task: dict) -> dict:
        from gateway.tasks.executor import trace_step

        state = loads(task.get("state")) or {}
        end = task.get("completed_at") or time.time()
        return {"task_id": task["id"], "trace_id": task.get("trace_id"), "status": task["status"],
                "planner": state.get("planner"), "steps": [trace_step(s) for s in state.get("steps", ())],
                "total_duration_ms": round((end - task["created_at"]) * 1000, 1)}


async def _send(send, status: int, payload: dict, headers=()) -> None:
    await send_body(send, status, orjson.dumps(payload), [JSON_CT, *headers])
