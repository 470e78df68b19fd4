"""Every agent's answer as one reply (``answers: all`` on an agent listener).

The selected agents run in *stages*: the agents of one stage run side by side (asyncio
tasks); a stage starts when the one before it has finished and its agents see the earlier
stages' answers handed to them as today (assistant messages named after the agent). Intents
that do not depend on each other form one stage; a turn that states an order ("first ...
then ...") or a dependency the router reported gives one stage per agent, i.e. today's chain.

Each agent is called exactly like a chained one (its input filters, the upstream layer's
retries / breakers / the listener deadline, its output filters, its own telemetry span). Its
answer text is collected in an :class:`AgentRun`; the reply presents the runs in the routed
order, each section headed by a line ``**<agent id>**:`` and separated by a blank line:

- JSON: one ``chat.completion`` whose content is the sections joined, ``usage`` summed;
- streaming: one SSE stream of ``chat.completion.chunk`` events: the first agent's answer as
  it arrives, then each next agent's answer (buffered while it waits for its turn), then
  ``data: [DONE]``.

An agent that fails gets a short note in its section and the others still answer (200);
only when every agent fails does the client get the first failure's error, as in a chain.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import orjson

from gateway.listeners.errors import GatewayError
from gateway.listeners.relay import classify_break, upstream_message
from gateway.listeners.sse import EventAligner, event_data, split_events
from gateway.orchestration.chain import (
    AgentEndpoint,
    Deadline,
    agent_call,
    agent_event,
    agent_failed,
    agent_upstream_error,
)
from gateway.upstream import Upstream, UpstreamError

NOTE_CHARS = 200  # how much of a failed agent's error its section shows


def stages(agents: list[str], sequenced: bool) -> list[list[str]]:
    """The order agents run in: one stage of independent agents, or one agent per stage."""
    return [[a] for a in agents] if sequenced else [list(agents)]


def heading(agent_id: str, position: int) -> str:
    return f"{'' if position == 0 else chr(10) * 2}**{agent_id}**:\n"


def error_note(err: GatewayError) -> str:
    message = err.message if len(err.message) <= NOTE_CHARS else err.message[:NOTE_CHARS - 1] + "…"
    return f"_(no answer: {message})_"


class AgentRun:
    """One agent's answer as it comes in: its text pieces, usage, and how it ended."""

    __slots__ = ("_queue", "agent_id", "changed", "done", "error", "model", "parts", "usage")

    def __init__(self, agent_id: str, changed: asyncio.Event) -> None:
        self.agent_id = agent_id
        self.changed = changed  # shared by the runs of one reply: set on any progress
        self.parts: list[str] = []
        self.usage: dict | None = None
        self.model: str | None = None
        self.error: GatewayError | None = None
        self.done = False
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def began(self) -> bool:
        """Some answer came in, or the agent finished without error."""
        return bool(self.parts) or (self.done and self.error is None)

    def add(self, text: str) -> None:
        if text:
            self.parts.append(text)
            self._queue.put_nowait(text)
            self.changed.set()

    def close(self, error: GatewayError | None = None) -> None:
        if self.done:
            return
        self.error = error
        self.done = True
        self._queue.put_nowait(None)
        self.changed.set()

    async def pieces(self) -> AsyncIterator[str]:
        """The answer's pieces in order, as they arrive (earlier ones at once)."""
        while (piece := await self._queue.get()) is not None:
            yield piece

    def section(self) -> str:
        """The answer as its section of the joined reply (without the heading)."""
        if self.error is None:
            return self.text
        return f"{self.text}\n{error_note(self.error)}" if self.parts else error_note(self.error)


async def wait_first_outcome(runs: list[AgentRun], changed: asyncio.Event) -> None:
    """Return once some agent has begun a good answer; raise the first failure (routed order)
    when every agent failed."""
    while True:
        if any(r.began for r in runs):
            return
        if all(r.done for r in runs):
            raise next(r.error for r in runs if r.error is not None)
        changed.clear()
        await changed.wait()


def sum_usage(runs: list[AgentRun]) -> dict | None:
    total: dict[str, int] = {}
    for run in runs:
        for key, value in (run.usage or {}).items():
            if isinstance(value, int) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value
    return total or None


def joined_text(runs: list[AgentRun]) -> str:
    return "".join(heading(r.agent_id, i) + r.section() for i, r in enumerate(runs))


def completion(rid: str, model: str, runs: list[AgentRun]) -> dict:
    body = {
        "id": f"chatcmpl-{rid}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": joined_text(runs)},
                     "finish_reason": "stop"}],
    }
    usage = sum_usage(runs)
    if usage is not None:
        body["usage"] = usage
    return body


class ChunkWriter:
    """``chat.completion.chunk`` events of the composed stream."""

    def __init__(self, rid: str, model: str) -> None:
        self.base = {"id": f"chatcmpl-{rid}", "object": "chat.completion.chunk", "created": int(time.time()),
                     "model": model}
        self.first = True

    def delta(self, text: str) -> bytes:
        delta = {"role": "assistant", "content": text} if self.first else {"content": text}
        self.first = False
        return self._event({**self.base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})

    def end(self, usage: dict | None) -> bytes:
        out = self._event({**self.base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if usage is not None:
            out += self._event({**self.base, "choices": [], "usage": usage})
        return out + b"data: [DONE]\n\n"

    @staticmethod
    def _event(payload: dict) -> bytes:
        return b"data: " + orjson.dumps(payload) + b"\n\n"


async def stream_answer(upstream: Upstream, agent: AgentEndpoint, body: bytes, headers: dict[str, str],
                        deadline: Deadline, attempt_spans, on_text: Callable[[str], None]) -> tuple[dict | None,
                                                                                                str | None]:
    """Call ``agent`` and hand its answer text to ``on_text`` as it arrives (each SSE delta, or a
    JSON answer at once). Returns (usage, model); raises GatewayError like ``collect_answer``."""
    failed: tuple[int, bytes] | None = None
    try:
        async with agent_call(upstream, agent, body, headers, deadline, attempt_spans) as resp:
            status = resp.status
            if status >= 400:
                failed = (status, await resp.read())
            elif "text/event-stream" in resp.headers.get("content-type", ""):
                return await _read_sse(agent, resp, on_text)
            else:
                data = await resp.read()
    except UpstreamError as err:
        raise agent_upstream_error(agent, err) from None
    if failed is not None:
        raise agent_failed(agent.id, failed[0], upstream_message(failed[1], failed[0])[1])
    return _read_json(agent.id, data, on_text)


def _read_json(agent_id: str, data: bytes, on_text) -> tuple[dict | None, str | None]:
    try:
        parsed = orjson.loads(data)
        message = parsed["choices"][0]["message"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        raise GatewayError(502, f"Agent '{agent_id}' returned a response that is not a chat completion.",
                           code="agent_invalid_response") from None
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if isinstance(content, str):
        on_text(content)
    usage = parsed.get("usage") if isinstance(parsed.get("usage"), dict) else None
    model = parsed.get("model") if isinstance(parsed.get("model"), str) else None
    return usage, model


async def _read_sse(agent: AgentEndpoint, resp, on_text) -> tuple[dict | None, str | None]:
    aligner = EventAligner()
    usage = model = None
    try:
        async for chunk in resp.chunks():
            for block in split_events(aligner.feed(chunk)):
                payload = event_data(block)
                event = agent_event(agent.id, payload) if payload is not None else None
                if event is None:
                    continue
                if isinstance(event.get("usage"), dict):
                    usage = event["usage"]
                if isinstance(event.get("model"), str):
                    model = event["model"]
                for choice in event.get("choices") or ():
                    delta = choice.get("delta") if isinstance(choice, dict) else None
                    if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                        on_text(delta["content"])
    except (GatewayError, UpstreamError):
        raise
    except Exception as exc:  # noqa: BLE001 - the body broke mid-way
        raise agent_upstream_error(agent, classify_break(exc, agent.target)) from None
    return usage, model
