"""A2A JSON as plano reads and writes it, for protocol 1.0 and 0.3.

Outbound, a chat conversation becomes one user ``Message``: its latest user turn is the last
text part; earlier turns (and earlier agents' answers handed on by the chain) are one text
part before it ("Conversation so far: ..."), so an agent that reads only the user input still
sees the context; the OpenAI messages ride along in the message ``metadata`` (``openai_messages``)
for agents that want them structured.

Inbound, the two versions differ only in framing, so one reader handles both: 1.0 wraps
results (``{"task": …}``, ``{"message": …}``, ``{"statusUpdate": …}``, ``{"artifactUpdate": …}``)
and spells states ``TASK_STATE_COMPLETED`` and parts ``{"text": …}``; 0.3 tags them
(``"kind": "task" | "message" | "status-update" | "artifact-update"``), spells states
``completed`` and parts ``{"kind": "text", "text": …}``. Text parts are the answer; data parts
are rendered as JSON; file parts are skipped. Chunks of one artifact are joined as they are
(``append``); separate artifacts are separated by a blank line.
"""

from __future__ import annotations

import uuid

import orjson

METHODS = {
    "1.0": {"send": "SendMessage", "stream": "SendStreamingMessage", "get": "GetTask", "cancel": "CancelTask"},
    "0.3": {"send": "message/send", "stream": "message/stream", "get": "tasks/get", "cancel": "tasks/cancel"},
}

TERMINAL = frozenset({"completed", "failed", "canceled", "rejected"})
#: The agent waits for the user: its status message is the answer to this turn.
INTERRUPTED = frozenset({"input-required", "auth-required"})


def major(version: str | None) -> str:
    """``1.0`` or ``0.3`` for a protocol version string (anything before 1.0 speaks 0.3)."""
    if not version:
        return "1.0"
    head = version.strip().lstrip("v").split(".")
    try:
        return "1.0" if int(head[0]) >= 1 else "0.3"
    except ValueError:
        return "1.0"


def content_text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def user_message(messages: list[dict], version: str, *, message_id: str | None = None,
                 context_id: str | None = None) -> dict:
    """The A2A ``Message`` for a chat conversation (see the module docstring)."""
    latest_index = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].get("role") == "user"), None)
    latest = content_text(messages[latest_index].get("content")) if latest_index is not None else ""
    earlier = [m for i, m in enumerate(messages) if i != latest_index]
    texts = []
    if earlier:
        lines = []
        for m in earlier:
            role = m.get("role", "user")
            who = f"{role} ({m['name']})" if isinstance(m.get("name"), str) else role
            text = content_text(m.get("content"))
            if text:
                lines.append(f"{who}: {text}")
        if lines:
            texts.append("Conversation so far:\n" + "\n".join(lines))
    texts.append(latest)
    msg: dict = {"messageId": message_id or uuid.uuid4().hex}
    if version == "0.3":
        msg.update({"kind": "message", "role": "user", "parts": [{"kind": "text", "text": t} for t in texts]})
    else:
        msg.update({"role": "ROLE_USER", "parts": [{"text": t} for t in texts]})
    if context_id:
        msg["contextId"] = context_id
    msg["metadata"] = {"openai_messages": messages}
    return msg


def rpc(method: str, params: dict, request_id) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})


def state_of(status) -> str:
    """``completed``, ``working``, ``input-required`` … for a 1.0 or 0.3 status object."""
    if not isinstance(status, dict):
        return ""
    state = status.get("state")
    if not isinstance(state, str):
        return ""
    state = state.lower().removeprefix("task_state_").replace("_", "-")
    return "canceled" if state == "cancelled" else state


def parts_text(parts) -> str:
    out = []
    for part in parts or ():
        if not isinstance(part, dict):
            continue
        text = part.get("text")
        if isinstance(text, str):
            out.append(text)
        elif "data" in part and part.get("kind") in (None, "data"):
            out.append(orjson.dumps(part["data"]).decode())
    return "".join(out)


def message_text(message) -> str:
    return parts_text(message.get("parts")) if isinstance(message, dict) else ""


def event_kind(result) -> tuple[str, dict]:
    """(``task`` | ``message`` | ``status`` | ``artifact`` | "", the object) for a result or stream event."""
    if not isinstance(result, dict):
        return "", {}
    for key, kind in (("task", "task"), ("message", "message"), ("statusUpdate", "status"),
                      ("artifactUpdate", "artifact")):
        inner = result.get(key)
        if isinstance(inner, dict):
            return kind, inner
    kind = {"task": "task", "message": "message", "status-update": "status",
            "artifact-update": "artifact"}.get(result.get("kind"))
    if kind:
        return kind, result
    if "status" in result and "id" in result:  # a bare Task (GetTask's result in 1.0)
        return "task", result
    if "parts" in result and "role" in result:
        return "message", result
    return "", result


class AnswerText:
    """Turns an agent's A2A events into answer text, handing each new piece to ``on_text``.

    Tracks what was handed on per artifact, so a task snapshot (a poll's ``GetTask``, a final
    ``task`` event) after streamed chunks only adds what is new. ``state`` is the task's
    latest state, ``task_id`` its id; ``done`` once the answer is complete (a message, a
    terminal or interrupted state)."""

    __slots__ = ("_emitted", "_last", "done", "error", "on_text", "state", "task_id", "context_id", "any_text")

    def __init__(self, on_text) -> None:
        self.on_text = on_text
        self._emitted: dict[str, str] = {}
        self._last: str | None = None
        self.state = ""
        self.task_id: str | None = None
        self.context_id: str | None = None
        self.done = False
        self.error: str | None = None  # the agent's own failure text (failed / rejected / canceled)
        self.any_text = False

    def _emit(self, artifact: str | None, text: str) -> None:
        if not text:
            return
        if self.any_text and artifact != self._last:
            text = "\n\n" + text
        self._last = artifact
        self.any_text = True
        self.on_text(text)

    def _artifact(self, artifact: dict, append: bool) -> None:
        key = str(artifact.get("artifactId") or artifact.get("name") or "")
        text = parts_text(artifact.get("parts"))
        seen = self._emitted.get(key, "")
        if append:
            self._emitted[key] = seen + text
            self._emit(key, text)
        elif text.startswith(seen):  # a snapshot of what was streamed, maybe with more
            self._emitted[key] = text
            self._emit(key, text[len(seen):])
        else:  # replaced
            self._emitted[key] = text
            self._emit(key, text)

    def _status(self, status, final: bool = False) -> None:
        state = state_of(status)
        if state:
            self.state = state
        text = message_text(status.get("message")) if isinstance(status, dict) else ""
        if state in ("failed", "rejected", "canceled"):
            self.error = text or f"the task ended {state}"
            self.done = True
        elif state == "completed" or state in INTERRUPTED:
            if not self.any_text:
                self._emit(None, text)
            self.done = True
        elif final:
            self.done = True

    def feed(self, result) -> None:
        kind, obj = event_kind(result)
        if kind == "message":
            self._emit(None, message_text(obj))
            self.done = True
        elif kind == "task":
            self.task_id = obj.get("id") or self.task_id
            self.context_id = obj.get("contextId") or self.context_id
            for artifact in obj.get("artifacts") or ():
                if isinstance(artifact, dict):
                    self._artifact(artifact, False)
            self._status(obj.get("status"))
        elif kind == "artifact":
            self.task_id = obj.get("taskId") or self.task_id
            artifact = obj.get("artifact")
            if isinstance(artifact, dict):
                self._artifact(artifact, bool(obj.get("append")))
        elif kind == "status":
            self.task_id = obj.get("taskId") or self.task_id
            self._status(obj.get("status"), bool(obj.get("final")))
