"""One agent invocation, collected: input filters → call → output filters, with its span.

The unit the task executor calls agents through. It is built from the same pieces as the agent
listener's chain (:mod:`gateway.orchestration.chain`): the agent's :class:`AgentEndpoint` (pool,
call policy, breakers, timeouts from the config), :func:`chain.stream_answer` (the one
``Upstream.call`` of an agent), :func:`chain.filter_conversation` / :func:`chain.filter_answer`
and a telemetry ``agent_call`` span with attempt spans. The listener's own request path is not
changed by it.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from gateway.filters import filter_run
from gateway.listeners.errors import GatewayError
from gateway.orchestration.chain import (
    AgentEndpoint,
    Deadline,
    filter_answer,
    filter_conversation,
    stream_answer,
)


@dataclass(slots=True)
class Answer:
    text: str
    usage: dict | None = None
    model: str | None = None


class AgentInvoker:
    """Calls one listener's agents as the listener would (one per listener per worker)."""

    def __init__(self, listener: str, upstream, endpoints: dict[str, AgentEndpoint]) -> None:
        self.listener = listener
        self.upstream = upstream
        self.endpoints = endpoints

    def __contains__(self, agent_id: str) -> bool:
        return agent_id in self.endpoints

    async def answer(self, agent_id: str, messages: list[dict], *, headers: dict[str, str], deadline: Deadline,
                     ctx=None, index: int | None = None, rid: str = "", extra: dict | None = None) -> Answer:
        """The agent's whole answer as text; raises :class:`GatewayError` like the listener's chain.

        ``ctx``: a telemetry request context; the call is its ``agent_call`` span (attempts below it).
        ``headers``: outbound headers (no credentials); the span's ``traceparent`` is added."""
        agent = self.endpoints[agent_id]
        call = ctx.agent_call(agent_id, index=index) if ctx is not None else None
        request = {"model": agent_id, "messages": messages, "stream": False, **(extra or {})}
        out = {**headers, "x-plano-agent-id": agent_id, "content-type": "application/json"}
        if call is not None:
            out = call.inject(out)
        try:
            run = None
            if agent.filtered:
                scope = {"headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
                run = filter_run(scope, rid, {"x-arch-agent-listener-name": self.listener})
                run.telemetry = ctx
            if agent.input_filters is not None:
                messages = await filter_conversation(agent, request, messages, run, deadline)
            payload = orjson.dumps({**request, "messages": messages})
            parts: list[str] = []
            usage, model = await stream_answer(self.upstream, agent, payload, out, deadline,
                                               attempt_spans(call), parts.append)
            text = "".join(parts)
            if agent.output_filters is not None:
                text = await filter_answer(agent, request, text, run, deadline)
        except GatewayError as err:
            if call is not None:
                call.finish(err.status, outcome=outcome(err), error=err.message)
            raise
        except BaseException:
            if call is not None:
                call.finish(None, outcome="cancelled")
            raise
        if call is not None:
            call.finish(200)
        return Answer(text, usage, model)


def attempt_spans(call):
    """Attempt spans under an agent call's span (only recorded for calls that may retry)."""
    span = getattr(call, "span", None)
    if span is None or not span.recording:
        return None
    from gateway.telemetry.tracing import AGENT, KIND_CLIENT

    def start(number: int, endpoint: str):
        return call.ctx.child(f"attempt {number}", AGENT, {"plano.attempt": number, "plano.endpoint": endpoint},
                              kind=KIND_CLIENT, parent=span)

    return start


def outcome(err: GatewayError) -> str:
    code = err.code or ""
    for kind in ("timeout", "connect", "invalid_response"):
        if code.endswith(kind):
            return kind
    return "timeout" if err.status == 504 else "error"
