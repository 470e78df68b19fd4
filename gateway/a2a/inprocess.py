"""Asking an agent listener a chat question in process: what its A2A and MCP endpoints do.

The listener's own ``POST /v1/chat/completions`` handler is called as an ASGI app with a
streaming request, so a question asked over A2A or MCP goes exactly the way an OpenAI client's
does — rate limits, routing, input/output filters, the chain or ``answers: all``, retries,
breakers, the listener's deadline and its telemetry (its root span continues the protocol
call's ``traceparent``). Its ``chat.completion.chunk`` deltas are handed on as they arrive.

``agent``: ask one agent of the listener directly (the MCP agent tools), skipping the router.
"""

from __future__ import annotations

import orjson

from gateway.listeners.errors import GatewayError
from gateway.listeners.sse import EventAligner, event_data, split_events

#: Client headers a protocol call hands on to the chat request (never credentials: the edge checked them).
_KEEP = ("x-request-id", "traceparent", "tracestate", "user-agent")


class ChatFailed(Exception):
    """The listener answered the question with an error (status, message)."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


async def ask(listener, messages: list[dict], headers: dict[str, str], on_text, *, agent: str | None = None) -> None:
    """Ask ``listener`` (an :class:`~gateway.listeners.agent.AgentListener`); raises :class:`ChatFailed`."""
    body = orjson.dumps({"messages": messages, "stream": True})
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items() if k.lower() in _KEEP]
    raw.append((b"content-type", b"application/json"))
    raw.append((b"content-length", str(len(body)).encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"",
             "root_path": "", "headers": raw, "client": ("127.0.0.1", 0), "server": ("127.0.0.1", 0)}
    sent = False

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    state = {"status": 0, "error": b"", "sse": False}
    aligner = EventAligner()

    async def send(message) -> None:
        if message["type"] == "http.response.start":
            state["status"] = message["status"]
            state["sse"] = any(k.lower() == b"content-type" and b"text/event-stream" in v
                               for k, v in message.get("headers") or ())
            return
        if message["type"] != "http.response.body":
            return
        chunk = message.get("body", b"")
        if state["status"] >= 400 or not state["sse"]:
            state["error"] += chunk
            return
        for block in split_events(aligner.feed(chunk)):
            payload = event_data(block)
            if not payload or payload.strip() == b"[DONE]":
                continue
            try:
                event = orjson.loads(payload)
            except orjson.JSONDecodeError:
                continue
            if isinstance(event, dict) and "error" in event:
                err = event["error"] if isinstance(event["error"], dict) else {"message": str(event["error"])}
                raise ChatFailed(502, str(err.get("message") or "the answer broke off"), err.get("code"))
            for choice in event.get("choices") or () if isinstance(event, dict) else ():
                delta = choice.get("delta") if isinstance(choice, dict) else None
                if isinstance(delta, dict) and isinstance(delta.get("content"), str) and delta["content"]:
                    on_text(delta["content"])

    if agent is not None:
        scope["plano.agent"] = agent  # the listener skips its router (only in process: clients cannot set it)
    await listener.chat_completions(scope, receive, send)
    if state["status"] >= 400 or (state["status"] and not state["sse"]):
        message, code = _error(state["error"], state["status"])
        raise ChatFailed(state["status"], message, code)


def _error(data: bytes, status: int) -> tuple[str, str | None]:
    try:
        err = orjson.loads(data)["error"]
        return str(err.get("message") or f"HTTP {status}"), err.get("code")
    except Exception:  # noqa: BLE001
        return (data.decode("utf-8", "replace")[:300] or f"HTTP {status}"), None


def failure(exc: ChatFailed) -> GatewayError:
    return GatewayError(exc.status, exc.message, code=exc.code)
