"""Every agent's answer as one reply (``answers: all`` on an agent listener).

The selected agents run in *stages*: the agents of one stage run side by side (asyncio
tasks); a stage starts when the one before it has finished and its agents see the earlier
stages' answers handed to them as today (assistant messages named after the agent). Intents
that do not depend on each other form one stage; a turn that states an order ("first ...
then ...") or a dependency the router reported gives one stage per agent, i.e. today's chain.

Each agent is called exactly like a chained one (``chain.stream_answer``) (its input filters, the upstream layer's
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
from collections.abc import AsyncIterator

import orjson

from gateway.listeners.errors import GatewayError

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
