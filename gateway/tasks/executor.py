"""Runs one task's workflow: plan once, then steps as their dependencies complete.

- Steps whose dependencies are complete start at once, side by side (asyncio tasks); a step's
  input is the outputs of its dependencies (assistant messages named after their agents, as the
  agent listener hands answers on) followed by its sub-request.
- Every agent call goes through :class:`gateway.orchestration.invoke.AgentInvoker` (the agent's
  filters, upstream policy, breakers, timeouts, an ``agent_call`` span under the task's span).
- A failed step is called again up to ``tasks.retry.attempts`` times, then **adapted**: the
  recovery execution memory remembers for this agent and failure kind; else an agent whose
  description matches the error (e.g. a token refresher for "token expired") runs first and the
  failed agent is called again (``prepare``); else another agent that can serve the sub-request
  answers instead (``replace``). Recovery steps carry ``parent`` = the failed step. Whether the
  recovery worked is remembered (:mod:`.memory`).
- An answer with a line ``NEEDS: <what>`` adds a step for the agent that serves that need and
  calls the asking agent again with its output; ``INPUT_REQUIRED: <question>`` makes the task
  ``waiting`` until ``POST /v1/tasks/{id}/input``.
- ``max_steps`` bounds the steps, recovery and added ones included (``workflow_depth_exceeded``);
  ``task_timeout`` bounds the whole task.
- The state (plan, steps, outputs) is saved after every change with a fenced write, so a task
  resumed after a crash re-runs only the steps that had not completed.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time

import orjson

from gateway.listeners.errors import GatewayError
from gateway.orchestration.chain import Deadline
from gateway.tasks import memory
from gateway.tasks.planner import PlanError, step
from gateway.tasks.store import Lost, dumps, loads

log = logging.getLogger("plano.tasks")

OUTPUT_CHARS = 20_000  # an output kept in the state (and handed to later steps)
TRACE_CHARS = 2_000  # what the trace shows of a request / output
_NEEDS = re.compile(r"^\s*NEEDS?:\s*(.+)$", re.I | re.M)
_INPUT = re.compile(r"^\s*INPUT_REQUIRED:\s*(.+)$", re.I | re.M)
_JSON_ASK = re.compile(r"\bjson\b", re.I)


class TaskFailed(Exception):
    def __init__(self, code: str, message: str, tool: str | None = None, recoverable: bool = False,
                 suggestion: str | None = None) -> None:
        super().__init__(message)
        self.error = {"code": code, "message": message, "tool": tool, "recoverable": recoverable,
                      "suggestion": suggestion}


class Run:
    """One run of one task on this worker (from claim to a terminal state, waiting, or a lost lease)."""

    def __init__(self, service, task: dict, owner: str) -> None:
        self.service = service
        self.rt = service.runtime
        self.cfg = service.runtime.cfg
        self.task = task
        self.owner = owner
        self.state = loads(task.get("state")) or {}
        self.steps: list[dict] = self.state.get("steps") or []
        self.ctx = None
        self.entries: list[dict] | None = None
        # what the next write carries along: fields (the status after planning) and outbox rows
        # (the progress event of a last step, written with the task's completion)
        self.carry: dict = {}
        self.carry_outbox: list[dict] = []

    # -- persistence --------------------------------------------------------------------------

    async def save(self, outbox: list[dict] = (), release: bool = False, **fields) -> None:
        """One fenced write of the state (and whatever was deferred to it). Deferring only merges
        writes that happen back to back without an agent call between them, so no effect (a call,
        a webhook) ever depends on a step that is not yet durable."""
        self.state["steps"] = self.steps
        if self.carry:
            fields = {**self.carry, **fields}
            self.carry = {}
        if self.carry_outbox:
            outbox = [*self.carry_outbox, *outbox]
            self.carry_outbox = []
        await self.rt.store.update_task(self.task["id"], self.owner, {"state": dumps(self.state), **fields}, outbox,
                                        release=release)

    def event(self, name: str, data) -> list[dict]:
        return self.rt.webhooks.event(self.task, name, data)

    # -- the run ------------------------------------------------------------------------------

    async def run(self) -> None:
        task = self.task
        tel = self.service.telemetry
        # The run is not a client request: its access-log line (and span attributes) say
        # "TASK /v1/tasks/{id}", request_id = the task id, so "POST /v1/tasks" lines are only
        # the clients' creates. Its trace continues the POST's (the stored traceparent).
        self.ctx = tel.start_request(self.service.name, "agent", "TASK", "/v1/tasks/{id}",
                                     [(b"traceparent", (task.get("traceparent") or "").encode())],
                                     task["id"], handler="task") if tel is not None else None
        status = 200
        try:
            if task["status"] == "waiting":  # waited past waiting_timeout
                raise TaskFailed("waiting_timeout", "No input arrived within the waiting timeout.")
            left = (task["deadline"] or time.time() + self.cfg.task_timeout) - time.time()
            if left <= 0:
                raise TaskFailed("task_timeout", f"The task did not finish within {self.cfg.task_timeout:g}s.")
            try:
                async with asyncio.timeout(left):
                    await self._run()
            except TimeoutError:
                raise TaskFailed("task_timeout", f"The task did not finish within {self.cfg.task_timeout:g}s.",
                                 recoverable=True, suggestion="Split the task or raise tasks.task_timeout.") from None
        except TaskFailed as failed:
            status = 500
            await self._fail(failed.error)
        except Lost:
            status = 409
            log.info("task %s: lease lost (cancelled or taken over); this worker stops", task["id"])
        except asyncio.CancelledError:
            status = 499
            raise
        finally:
            if self.ctx is not None:
                self.ctx.finish(status)

    async def _run(self) -> None:
        task = self.task
        first = not self.steps
        if first:
            await self._plan()
            if task["mode"] == "test":
                await self._finish({"plan": [_plan_view(s) for s in self.steps], "planner": self.state["planner"]})
                return
            # the plan and "running" go with the first steps' launch (one write, not two)
            self.carry["status"] = "running"
        else:
            for s in self.steps:  # in flight when the last owner stopped: run again
                if s["status"] == "running":
                    s["status"] = "pending"
            if task.get("input") is not None:
                value = loads(task["input"])
                for s in self.steps:
                    if s["status"] == "waiting":
                        s["status"] = "pending"
                        s.setdefault("inputs", []).append(value)
                self.state.setdefault("inputs", []).append(value)
                self.carry.update(status="running", input=None)  # written with the next launch
        await self._execute()

    async def _plan(self) -> None:
        svc = self.service
        headers = {"x-request-id": self.task["id"]}
        try:
            steps, planner = await svc.planner.plan(self.task["prompt"], self.task.get("sub_agent"), headers,
                                                    self.ctx)
        except PlanError as exc:
            raise TaskFailed(exc.code, exc.message) from None
        if self.cfg.memory.enabled and not self.task.get("sub_agent"):
            entries = await self._memory()
            steps = memory.apply(steps, entries, self.cfg.memory.min_successes, set(svc.planner.ids))
        self.state["planner"] = planner
        self.steps = steps
        if len(steps) > self.cfg.max_steps:
            raise TaskFailed("workflow_depth_exceeded", f"The workflow needs {len(steps)} steps; the limit is "
                             f"{self.cfg.max_steps} (tasks.max_steps).", suggestion="Split the task into smaller tasks.")

    async def _memory(self) -> list[dict]:
        if self.entries is None:
            self.entries = await self.rt.memory(self.service.name, self.service.planner.ids)
        return self.entries

    async def _execute(self) -> None:
        running: dict[asyncio.Task, dict] = {}
        try:
            while True:
                now = time.time()
                launched = False
                for s in self.steps:
                    if s["status"] == "pending" and s.get("not_before", 0) <= now and self._ready(s):
                        s["status"] = "running"
                        s["attempt"] = s.get("attempt", 0) + 1
                        s["started_at"] = now
                        running[asyncio.create_task(self._call(s))] = s
                        launched = True
                if launched:
                    await self.save()
                if not running:
                    later = [s["not_before"] for s in self.steps if s["status"] == "pending" and s.get("not_before")]
                    if later:
                        await asyncio.sleep(max(0.0, min(later) - time.time()))
                        continue
                    break
                wake = [s["not_before"] - now for s in self.steps if s["status"] == "pending" and s.get("not_before")]
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED,
                                             timeout=max(0.0, min(wake)) if wake else None)
                for t in done:
                    s = running.pop(t)
                    self.carry_outbox += await self._settle(s, t)
                if done and (running or any(s["status"] == "pending" for s in self.steps)):
                    await self.save()
                # else: nothing runs any more; the completed steps are written with the task's
                # end (complete / waiting / failed) in one transaction, before any webhook goes
        finally:
            for t in running:
                t.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        waiting = [s for s in self.steps if s["status"] == "waiting"]
        if waiting:
            await self._wait(waiting[0])
            return
        await self._finish(await self._result())

    def _effective(self, index: int) -> dict:
        s = self.steps[index]
        seen = 0
        while s.get("replaced_by") is not None and seen < len(self.steps):
            s = self.steps[s["replaced_by"]]
            seen += 1
        return s

    def _ready(self, s: dict) -> bool:
        return all(self._effective(d)["status"] == "complete" for d in s["deps"])

    async def _call(self, s: dict) -> str:
        messages = []
        for d in s["deps"]:
            dep = self._effective(d)
            messages.append({"role": "assistant", "name": dep["tool"], "content": dep.get("output") or ""})
        messages.append({"role": "user", "content": s["request"]})
        for value in s.get("inputs") or ():
            if s.get("question"):
                messages.append({"role": "assistant", "name": s["tool"], "content": s["question"]})
            messages.append({"role": "user", "content": value if isinstance(value, str) else
                             orjson.dumps(value).decode()})
        svc = self.service
        remaining = (self.task["deadline"] or 0) - time.time()
        limit = self.cfg.step_timeout or None
        seconds = min(x for x in (limit, remaining if remaining > 0 else None) if x) if (limit or remaining > 0) \
            else None
        headers = {"x-request-id": f"{self.task['id']}.{s['index']}.{s['attempt']}",
                   "x-plano-task-id": self.task["id"], "x-plano-task-step": str(s["index"]),
                   "x-plano-task-attempt": str(s["attempt"])}
        answer = await svc.invoker.answer(s["tool"], messages, headers=headers, deadline=Deadline(seconds),
                                          ctx=self.ctx, index=s["index"], rid=headers["x-request-id"])
        return answer.text

    async def _settle(self, s: dict, t: asyncio.Task) -> list[dict]:
        """Record a finished call; returns the outbox rows it produced."""
        now = time.time()
        s["duration_ms"] = round((now - s["started_at"]) * 1000, 1)
        exc = t.exception()
        if exc is None:
            text = t.result()
            asked = _INPUT.search(text)
            if asked:
                s["status"] = "waiting"
                s["question"] = asked.group(1).strip()
                return []
            need = _NEEDS.search(text)
            if need and not s.get("needs_done"):
                s["output"] = text[:OUTPUT_CHARS]
                self._add_need(s, need.group(1).strip())
                return []
            s["status"] = "complete"
            s["output"] = text[:OUTPUT_CHARS]
            s.pop("error", None)
            if s.get("recovery") and s.get("parent") is not None:
                failed = self.steps[s["parent"]]
                await self._remember(failed["tool"], s["failure"], s["recovery"], True)
            return self.event("task.progress", {"step": trace_step(s)})
        if not isinstance(exc, GatewayError):
            log.error("task %s step %s: %s", self.task["id"], s["index"], exc, exc_info=exc)
            exc = GatewayError(500, f"internal error ({type(exc).__name__})", code="internal_error")
        s["error"] = {"code": exc.code, "status": exc.status, "message": exc.message[:500]}
        if s["attempt"] < self.cfg.retry.attempts:
            s["status"] = "pending"
            s["not_before"] = now + self.cfg.retry.backoff
            return []
        s["status"] = "failed"
        await self._adapt(s, exc)
        return []

    async def _remember(self, agent: str, failure: str, recovery: str, worked: bool) -> None:
        if not self.cfg.memory.enabled:
            return
        try:
            await self.rt.store.remember(self.service.name, agent, failure, recovery, worked,
                                         self.cfg.memory.max_entries)
            self.rt.forget_memory(self.service.name)
        except Exception:  # noqa: BLE001 - memory is advice, never a reason to fail a task
            log.exception("execution memory write failed")

    def _room(self, n: int) -> None:
        if len(self.steps) + n > self.cfg.max_steps:
            raise TaskFailed("workflow_depth_exceeded", f"Adapting the workflow would exceed "
                             f"{self.cfg.max_steps} steps (tasks.max_steps), recovery steps included.",
                             suggestion="Split the task or fix the failing agent.")

    async def _adapt(self, s: dict, err: GatewayError) -> None:
        kind = memory.failure_kind(err)
        planner = self.service.planner
        if s.get("recovery") and s.get("parent") is not None:  # a recovery that did not work
            await self._remember(self.steps[s["parent"]]["tool"], s["failure"], s["recovery"], False)
        origin = self.steps[s["parent"]] if s.get("parent") is not None and s.get("recovery") else s
        tried = set(origin.get("tried") or [origin["tool"]]) | {s["tool"]}
        done = set(origin.get("recoveries") or [])
        choice = None
        remembered = memory.best(await self._memory(), origin["tool"], 1, failure=kind)
        if remembered and remembered["recovery"] not in done and remembered["recovery"].partition(":")[2] in planner.ids:
            choice = (remembered["recovery"], memory.describe(remembered))
        # A request error (the agent refused what it was asked, not a fault of the agent) is met
        # with the request reformulated first; an agent that is down with another agent first.
        # Each is tried once per failed step.
        rephrase = f"reformulate:{origin['tool']}"
        if choice is None and _request_error(err) and rephrase not in done:
            choice = (rephrase, f"{origin['tool']} refused the request ({kind}); asked again, reformulated")
        if choice is None:
            # an agent for the failure itself ("token expired" -> the one that refreshes tokens), not
            # one that does the same job (that is a replacement, below)
            fixer = planner.pick(err.message, exclude={origin["tool"]})
            if fixer and f"prepare:{fixer}" not in done and fixer not in planner.candidates(origin["request"]):
                choice = (f"prepare:{fixer}", f"{origin['tool']} failed ({kind}); {fixer} handles that, then "
                          f"{origin['tool']} is called again")
        if choice is None:
            for other in planner.candidates(origin["request"], exclude=tried):
                if f"replace:{other}" not in done:
                    choice = (f"replace:{other}", f"{origin['tool']} failed ({kind}) after {s['attempt']} "
                              f"attempt(s); {other} can serve this request")
                    break
        if choice is None and _request_error(err):
            # nobody else serves it either: the other agents that were tried, reformulated
            for other in sorted(tried - {origin["tool"]}):
                if f"reformulate:{other}" not in done:
                    choice = (f"reformulate:{other}", f"{other} refused the request ({kind}); asked again, "
                              "reformulated")
                    break
        if choice is None:
            raise TaskFailed("step_failed", f"Step {s['index']} ({s['tool']}: {s['action']}) failed: "
                             f"{err.message}", tool=s["tool"], recoverable=err.status >= 500 or err.status == 429,
                             suggestion="Check the agent, or retry the task later.")
        recovery, note = choice
        kind_of, _, agent = recovery.partition(":")
        origin.setdefault("recoveries", []).append(recovery)
        origin["tried"] = sorted(tried | {agent})
        parent = origin["index"]
        if kind_of == "reformulate":
            self._room(1)
            request, how = await self._reformulate(origin, err, agent)
            again = step(len(self.steps), agent, request, origin["deps"], parent=parent, recovery=recovery,
                         failure=kind, note=f"{note} ({how})")
            self.steps.append(again)
            s["replaced_by"] = again["index"]
        elif kind_of == "prepare":
            self._room(2)
            prep = step(len(self.steps), agent, f"{origin['tool']} failed: {err.message[:300]}. Fix this so "
                        f"it can answer: {origin['request']}", origin["deps"], parent=parent, note=note)
            self.steps.append(prep)
            again = step(len(self.steps), origin["tool"], origin["request"], [*origin["deps"], prep["index"]],
                         parent=parent, recovery=recovery, failure=kind,
                         note=f"{origin['tool']} again after {agent}")
            self.steps.append(again)
            s["replaced_by"] = again["index"]
        else:
            self._room(1)
            other = step(len(self.steps), agent, origin["request"], origin["deps"], parent=parent,
                         recovery=recovery, failure=kind, note=note)
            self.steps.append(other)
            s["replaced_by"] = other["index"]
        if s is not origin:
            origin["replaced_by"] = s["replaced_by"]

    async def _reformulate(self, origin: dict, err: GatewayError, agent: str) -> tuple[str, str]:
        """(the request put another way for ``agent``, who put it): the orchestration model when
        one is configured, else the planner's offline restatement."""
        planner = self.service.planner
        headers = {"x-request-id": f"{self.task['id']}.{origin['index']}.reformulate"}
        if planner.llm is not None:
            try:
                return await planner.reformulate_llm(origin["request"], err.message, agent, self.task["prompt"],
                                                     headers, self.ctx), "by the orchestration model"
            except PlanError as exc:
                log.warning("task %s: the model could not reformulate step %s (%s); restated offline",
                            self.task["id"], origin["index"], exc.message)
        return planner.reformulate(origin["request"], err.message, self.task["prompt"]), "restated offline"

    def _add_need(self, s: dict, need: str) -> None:
        planner = self.service.planner
        agent = planner.pick(need, exclude={s["tool"]}) or next(
            iter(planner.candidates(need, exclude={s["tool"]})), None)
        if agent is None:
            s["status"] = "complete"  # nobody can serve it: the answer stands as it is
            s["note"] = f"needed '{need[:100]}' but no agent serves it"
            return
        self._room(2)
        added = step(len(self.steps), agent, need, s["deps"], parent=s["index"],
                     note=f"added: {s['tool']} needs {need[:100]}")
        self.steps.append(added)
        again = step(len(self.steps), s["tool"], s["request"], [*s["deps"], added["index"]], parent=s["index"],
                     needs_done=True, note=f"{s['tool']} again with {agent}'s answer")
        self.steps.append(again)
        s["status"] = "complete"
        s["replaced_by"] = again["index"]

    async def _result(self) -> dict:
        live = [self._effective(s["index"]) for s in self.steps if s.get("parent") is None]
        seen: dict[int, dict] = {}
        for s in live:
            seen.setdefault(s["index"], s)
        needed = {self._effective(d)["index"] for s in seen.values() for d in s["deps"]}
        sinks = [s for i, s in seen.items() if i not in needed]
        text = "\n\n".join(s.get("output") or "" for s in sinks)
        result = {"text": text, "steps": [{"index": s["index"], "tool": s["tool"], "action": s["action"],
                                           "output": s.get("output")} for s in self.steps
                                          if s["status"] == "complete"]}
        if _JSON_ASK.search(self.task["prompt"]):
            await self._structured(result, text, sinks)
        return result

    async def _structured(self, result: dict, text: str, sinks: list[dict]) -> None:
        """``result.data``: the answer as the JSON the prompt asked for, checked against the shape the
        prompt shows (its keys and value types), with one repair request to the agent that answered
        last. The repair is a step of its own (``parent`` = that agent's step), so a task resumed
        after a crash uses its answer instead of asking again."""
        shape = _shape(self.task["prompt"])
        data = _parse_json(text)
        problem = _check(data, shape)
        repair = next((s for s in self.steps if s.get("repair")), None)
        if problem and repair is None and sinks and len(self.steps) < self.cfg.max_steps:
            last = sinks[-1]
            want = f" in this shape: {_shape_text(shape)}" if shape is not None else ""
            repair = step(len(self.steps), last["tool"], f"Return only valid JSON (no prose){want}, for this request: "
                          f"{last['request']}\nThe problem with your previous answer: {problem}.\nYour previous "
                          f"answer was:\n{text[:4000]}", last["deps"], parent=last["index"], repair=True,
                          note=f"repair: {problem}")
            repair.update(status="running", attempt=1, started_at=time.time())
            self.steps.append(repair)
            await self.save()  # the completed steps (and this one) are durable before another call
            try:
                repair["output"] = (await self._call(repair))[:OUTPUT_CHARS]
                repair["status"] = "complete"
            except GatewayError as exc:
                repair["status"] = "failed"
                repair["error"] = {"code": exc.code, "status": exc.status, "message": exc.message[:500]}
            repair["duration_ms"] = round((time.time() - repair["started_at"]) * 1000, 1)
        if problem and repair is not None and repair["status"] == "complete":
            data = _parse_json(repair["output"] or "")
            problem = _check(data, shape)
            result["steps"].append({"index": repair["index"], "tool": repair["tool"], "action": repair["action"],
                                    "output": repair.get("output")})
        result["data"] = data if problem is None else None
        if problem is not None:
            result["data_error"] = f"{problem} (after one repair attempt)"

    async def _finish(self, result: dict) -> None:
        now = time.time()
        await self.save(self.event("task.complete", result), status="complete", result=dumps(result),
                        completed_at=now, release=True)
        self.rt.nudge_webhooks()

    async def _fail(self, error: dict) -> None:
        now = time.time()
        try:
            await self.save(self.event("task.failed", {"error": error}), status="failed", error=dumps(error),
                            completed_at=now, release=True)
        except Lost:
            return
        self.rt.nudge_webhooks()

    async def _wait(self, s: dict) -> None:
        until = time.time() + self.cfg.waiting_timeout
        await self.save(self.event("task.waiting", {"step": trace_step(s), "question": s.get("question")}),
                        status="waiting", wait_until=until, release=True)
        self.rt.nudge_webhooks()


def _request_error(err: GatewayError) -> bool:
    """The agent refused the request itself (400, 404, 413, 422 ...): asking differently may help.
    Not auth (401/403: a fixer's job), rate limits (429) or timeouts (408): the request is fine."""
    return err.status is not None and 400 <= err.status < 500 and err.status not in (401, 403, 408, 429)


_TYPE_WORDS = {"string": "string", "str": "string", "text": "string", "number": "number", "float": "number",
               "int": "integer", "integer": "integer", "boolean": "boolean", "bool": "boolean",
               "array": "array", "list": "array", "object": "object", "dict": "object"}


def _shape(prompt: str):
    """The JSON shape a prompt shows, if any: ``{key: type}`` for an object (type None = any), or
    ``[shape]`` for a list of them. Read from the first ``{...}`` in the prompt, either valid JSON
    (``{"city": "Paris", "temp_c": 21}``: the example values' types) or a sketch with bare type
    names (``{"city": string, "temp_c": number}``)."""
    start = prompt.find("{")
    if start < 0:
        return None
    depth, end, quoted = 0, -1, False
    for i in range(start, len(prompt)):
        c = prompt[i]
        if c == '"' and prompt[i - 1] != "\\":
            quoted = not quoted
        elif not quoted and c == "{":
            depth += 1
        elif not quoted and c == "}":
            depth -= 1
            if depth == 0:
                end = i
                break
    if end < 0:
        return None
    literal = prompt[start:end + 1]
    as_list = prompt[:start].rstrip().endswith("[")
    try:
        example = orjson.loads(literal)
        shape = {k: _type_of(v) for k, v in example.items()} if isinstance(example, dict) else None
    except orjson.JSONDecodeError:
        pairs = re.findall(r'"([^"\\]{1,64})"\s*:\s*("[^"]*"|[A-Za-z]+|-?\d[\d.]*|\[|\{)', literal)
        shape = {k: _type_of_token(v) for k, v in pairs} or None
    if not shape:
        return None
    return [shape] if as_list else shape


def _type_of(value) -> str | None:
    if isinstance(value, str):  # "number" names a type; "Paris" is an example of a string
        return _TYPE_WORDS.get(value.strip().lower(), "string")
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "array" if isinstance(value, list) else "object" if isinstance(value, dict) else None


def _type_of_token(token: str) -> str | None:
    if token.startswith('"'):
        return _type_of(token.strip('"'))
    if token in ("[", "{"):
        return "array" if token == "[" else "object"
    if token in ("true", "false"):
        return "boolean"
    if token[0].isdigit() or token[0] == "-":
        return "number"
    return _TYPE_WORDS.get(token.lower())


def _fits(value, kind: str | None) -> bool:
    if kind is None:
        return True
    if kind in ("number", "integer"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok and (kind == "number" or float(value).is_integer())
    return isinstance(value, {"string": str, "boolean": bool, "array": list, "object": dict}[kind])


def _check(data, shape) -> str | None:
    """What is wrong with ``data`` for ``shape`` (None: it fits)."""
    if data is None:
        return "the answer is not valid JSON"
    if shape is None:
        return None
    if isinstance(shape, list):
        if not isinstance(data, list):
            return "expected a JSON array"
        for n, item in enumerate(data):
            wrong = _check(item, shape[0])
            if wrong:
                return f"item {n}: {wrong}"
        return None
    if not isinstance(data, dict):
        return "expected a JSON object"
    missing = [k for k in shape if k not in data]
    if missing:
        return f"missing key(s): {', '.join(missing)}"
    for key, kind in shape.items():
        if not _fits(data[key], kind):
            return f"'{key}' should be {'an' if kind[0] in 'aeiou' else 'a'} {kind}"
    return None


def _shape_text(shape) -> str:
    if isinstance(shape, list):
        return f"[{_shape_text(shape[0])}, ...]"
    return "{" + ", ".join(f'"{k}": {v or "any"}' for k, v in shape.items()) + "}"


def _parse_json(text: str):
    t = text.strip()
    if t.startswith("```"):
        t = t.strip("`")
        t = t[t.find("\n") + 1:] if "\n" in t else t
    for opener, closer in (("{", "}"), ("[", "]")):
        a, b = t.find(opener), t.rfind(closer)
        if a >= 0 and b > a:
            try:
                return orjson.loads(t[a:b + 1])
            except orjson.JSONDecodeError:
                continue
    return None


def _plan_view(s: dict) -> dict:
    out = {"index": s["index"], "tool": s["tool"], "action": s["action"], "request": s["request"],
           "depends_on": s["deps"]}
    if s.get("note"):
        out["note"] = s["note"]
    return out


def trace_step(s: dict) -> dict:
    from gateway.telemetry.redact import redact_secrets
    from gateway.tasks.webhooks import iso

    out = {"index": s["index"], "tool": s["tool"], "action": s["action"], "status": s["status"],
           "duration_ms": s.get("duration_ms", 0), "parent": s.get("parent"), "attempt": s.get("attempt", 0),
           "started_at": iso(s.get("started_at")), "depends_on": s["deps"],
           "request": redact_secrets(s["request"][:TRACE_CHARS])}
    if s.get("output") is not None:
        out["output"] = redact_secrets(s["output"][:TRACE_CHARS])
    if s.get("note"):
        out["note"] = s["note"]
    if s.get("error"):
        out["error"] = s["error"]
    if s.get("question"):
        out["question"] = s["question"]
    return out
