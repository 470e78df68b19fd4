"""Sequencing agents: call each in turn, hand earlier answers to later agents.

An intermediate agent's answer is collected as text (SSE deltas joined, or the JSON
message content — never raw JSON) and inserted as an assistant message named after
the agent just before the user's latest message, so the next agent sees it as
context for the question (Plano §2.1 step 5). A failing intermediate agent stops
the chain with its own status; its error text is never fed to the next agent.
An agent's own input and output filters apply to its call and its answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from gateway.filters import CHAT_PATH, FilterChain, FilterRun, shapes
from gateway.listeners.errors import GatewayError
from gateway.listeners.relay import classify_break, upstream_message
from gateway.listeners.sse import EventAligner, event_data, split_events
from gateway.upstream import (
    SINGLE,
    CallPolicy,
    Pool,
    Upstream,
    UpstreamError,
    resolve_policy,
    timeout_policy,
)


@dataclass(frozen=True, slots=True)
class AgentEndpoint:
    """One agent as a listener calls it: its pool of endpoints, its call policy, its filters."""

    id: str
    url: str  # full chat-completions URL of the first endpoint
    timeout: float | None
    input_filters: FilterChain | None = None  # run on the conversation before the call
    output_filters: FilterChain | None = None  # run on the answer
    filtered: bool = False  # either of the two
    urls: tuple[str, ...] = ()  # one chat-completions URL per endpoint of ``pool``
    pool: Pool | None = None
    policy: CallPolicy = SINGLE
    connect_timeout: float = 5.0
    #: ``type: a2a`` agents: their :class:`gateway.a2a.upstream.A2AAgent` (card, protocol version, calls)
    a2a: object | None = None

    @property
    def target(self) -> str:
        return f"agent '{self.id}'"


def chat_completions_url(base: str) -> str:
    """``{url}/v1/chat/completions``, keeping any path prefix in the configured url."""
    base = base.rstrip("/")
    return base if base.endswith("/chat/completions") else f"{base}/v1/chat/completions"


def agent_endpoint(agent, input_filters: FilterChain | None = None, output_filters: FilterChain | None = None,
                   *, pools=None, retry_defaults: tuple = ()) -> AgentEndpoint:
    """The runtime form of an ``agents:`` entry on one listener.

    Agents may have side effects, so by default only connect errors are retried (and only
    when there is another endpoint); ``retry`` on the agent, its listener or ``overrides``
    changes that.
    """
    bases = list(agent.endpoints) if hasattr(agent, "endpoints") else [agent.url]
    urls = tuple(chat_completions_url(b) for b in bases)
    pool = pools.agent(agent) if pools is not None else Pool(f"agent:{agent.id}", [b.rstrip("/") for b in bases])
    policy = resolve_policy(getattr(agent, "retry", None), *retry_defaults, idempotent=False, endpoints=len(urls))
    a2a = None
    if getattr(agent, "type", None) == "a2a":
        from gateway.a2a.upstream import A2AAgent  # only configs with A2A agents load it

        a2a = A2AAgent(agent.id, bases)
    return AgentEndpoint(agent.id, urls[0], getattr(agent, "timeout", None), input_filters, output_filters,
                         input_filters is not None or output_filters is not None, urls, pool, policy,
                         getattr(agent, "connect_timeout", None) or 5.0, a2a)


def agent_failed(agent_id: str, status: int, message: str) -> GatewayError:
    return GatewayError(status, f"Agent '{agent_id}' failed with HTTP {status}: {message}", code="agent_error")


def handoff(messages: list[dict], agent_id: str, answer: str) -> list[dict]:
    """The conversation for the next agent: the answer goes right before the latest user message."""
    if messages and messages[-1].get("role") == "user":
        return [*messages[:-1], {"role": "assistant", "name": agent_id, "content": answer}, messages[-1]]
    return [*messages, {"role": "assistant", "name": agent_id, "content": answer}]


async def filter_conversation(agent: AgentEndpoint, request: dict, messages: list[dict], run: FilterRun,
                              deadline: Deadline) -> list[dict]:
    """The conversation as ``agent``'s input filters hand it on: they see ``{model, messages}`` and
    only ``messages`` is read back (Plano's contract). The result is for this agent only; the
    hand-off to later agents builds on the unfiltered conversation."""
    body = {"model": request.get("model"), "messages": messages}
    out = await agent.input_filters.run(body, CHAT_PATH, run, shapes.agent_request, deadline.filter_limit())
    return out["messages"]


async def filter_answer(agent: AgentEndpoint, request: dict, answer: str, run: FilterRun,
                        deadline: Deadline) -> str:
    """An intermediate agent's answer through its output filters, as the ``chat.completion`` a
    non-streaming client would have received."""
    completion = {
        "id": f"chatcmpl-{run.rid}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model") or agent.id,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
    }
    out = await agent.output_filters.run(completion, CHAT_PATH, run, shapes.completion_text, deadline.filter_limit())
    return out["choices"][0]["message"]["content"]


class Deadline:
    """The listener's timeout for the whole chain, shared by every step."""

    def __init__(self, seconds: float | None) -> None:
        loop = asyncio.get_running_loop()
        self.seconds = seconds
        self.at = loop.time() + seconds if seconds else None
        self._loop = loop

    def remaining(self) -> float | None:
        if self.at is None:
            return None
        return self.at - self._loop.time()

    def expired_error(self) -> GatewayError:
        return GatewayError(504, f"The agent chain did not finish within the listener timeout of {self.seconds:g}s.",
                            code="listener_timeout")

    def filter_limit(self) -> float | None:
        """What is left of the chain's time for a filter call (a filter's own timeout may be shorter)."""
        left = self.remaining()
        if left is not None and left <= 0:
            raise self.expired_error()
        return left

    def policy(self, agent: AgentEndpoint):
        """The agent's timeout policy (its own ``timeout`` for all attempts; the chain's deadline is
        passed to the call separately). Raises the listener timeout when the chain is out of time."""
        left = self.remaining()
        if left is not None and left <= 0:
            raise self.expired_error()
        total = agent.timeout or None
        connect = agent.connect_timeout
        return timeout_policy(total, min(connect, total) if total else connect)


def agent_call(upstream: Upstream, agent: AgentEndpoint, body: bytes, headers: dict[str, str], deadline: Deadline,
               attempt_spans=None):
    """The one way an agent is called (listener chain, final relay, later the task executor)."""
    return upstream.call(agent.pool, agent.urls, headers=headers, body=body, timeout=deadline.policy(agent),
                         policy=agent.policy, deadline=deadline.at, attempt_spans=attempt_spans,
                         target=agent.target)


def agent_upstream_error(agent: AgentEndpoint, err: UpstreamError) -> GatewayError:
    return GatewayError(err.status, f"Agent '{agent.id}': {err}", code=f"agent_{err.kind}",
                        headers=err.response_headers())


async def collect_answer(upstream: Upstream, agent: AgentEndpoint, body: bytes, headers: dict[str, str],
                         deadline: Deadline, attempt_spans=None, *, span=None, metrics=None) -> str:
    """Call an intermediate agent and return its answer as plain text (or raise GatewayError)."""
    parts: list[str] = []
    await stream_answer(upstream, agent, body, headers, deadline, attempt_spans, parts.append, span=span,
                        metrics=metrics)
    return "".join(parts)


async def stream_answer(upstream: Upstream, agent: AgentEndpoint, body: bytes, headers: dict[str, str],
                        deadline: Deadline, attempt_spans, on_text: Callable[[str], None], *, span=None,
                        metrics=None) -> tuple[dict | None, str | None]:
    """Call ``agent`` and hand its answer text to ``on_text`` as it arrives (each SSE delta, or a
    JSON answer at once). Returns (usage, model); raises GatewayError like ``collect_answer``.

    An A2A agent (``type: a2a``) is called over A2A (``span``: its agent-call span, which gets the
    A2A method and task id; ``metrics``: per protocol method counts)."""
    if agent.a2a is not None:
        return await agent.a2a.stream_answer(upstream, agent, body, headers, deadline, attempt_spans, on_text,
                                             span=span, metrics=metrics)
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


def agent_event(agent_id: str, payload: bytes) -> dict | None:
    """One SSE ``data:`` payload of an agent's stream as a JSON object (None for ``[DONE]``, blanks
    and non-objects); an event that is not JSON, or an in-stream error, is the agent's failure."""
    payload = payload.strip()
    if not payload or payload == b"[DONE]":
        return None
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise GatewayError(502, f"Agent '{agent_id}' sent an SSE event that is not JSON.",
                           code="agent_invalid_response") from None
    if not isinstance(event, dict):
        return None
    if "error" in event:
        err = event["error"]
        message = err.get("message") if isinstance(err, dict) else str(err)
        raise GatewayError(502, f"Agent '{agent_id}' failed mid-stream: {message}", code="agent_error")
    return event
