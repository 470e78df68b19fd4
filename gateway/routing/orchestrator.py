"""The LLM orchestrator strategy: Plano-Orchestrator's routing protocol over plano's model proxy.

The prompt carries the listener's agents as ``<routes>`` (one JSON object per
line) and the trimmed conversation as ``<conversation>``; the model answers
``{"route": ["agent_a", "agent_b"]}``. Works with a self-hosted
Plano-Orchestrator (vLLM/Ollama) or any chat model. The call goes through the
same resolver and upstream layer as client traffic, in process.

Any failure (HTTP error, timeout, unparsable answer) raises
:class:`OrchestratorError`; the selector then lets the embedded router decide.
"""

from __future__ import annotations

import json
import re

import orjson

from gateway.listeners.chat import message_text
from gateway.routing.types import AgentSpec, RoutingDecision
from gateway.upstream import Upstream, UpstreamError, timeout_policy

MAX_ROUTING_TURNS = 16
_DROPPED_ROLES = frozenset({"system", "developer", "tool"})

_PROMPT = """You route a conversation to the agents that must handle its newest user request.

Agents you can choose from (one JSON object per line):
<routes>
{routes}
</routes>

The conversation, oldest message first:
<conversation>
{conversation}
</conversation>

Read the newest user message, using earlier turns only to understand what it refers to.
Choose every agent needed to fulfil it, in the order they must run (an agent whose answer
another one needs runs first). Choose no agent when the request is already fulfilled or no
agent fits. Use only the names listed above.
Answer with JSON only, exactly in this form: {{"route": ["agent_name", ...]}}"""


class OrchestratorError(Exception):
    """The orchestrator model could not give a usable decision."""


def _examples_text(agent: AgentSpec) -> str:
    """The agent's configured example requests, appended to its description the way
    descriptions quote them (the protocol has no field of its own for them)."""
    examples = [" ".join(e.split()) for e in getattr(agent, "examples", ()) or () if e.strip()]
    return (" Examples: " + "; ".join(f'"{e}"' for e in examples) + ".") if examples else ""


def routes_block(agents: list[AgentSpec]) -> str:
    lines = []
    for agent in agents:
        route = {
            "name": agent.id,
            "description": " ".join((agent.description + _examples_text(agent)).split()),
            "parameters": {"type": "object", "properties": {}, "required": []},
        }
        lines.append(json.dumps(route, ensure_ascii=False))
    return "\n".join(lines)


def select_messages(messages: list[dict], budget_tokens: int, prompt_tokens: int) -> list[dict]:
    """The conversation the orchestrator sees: text-only user/assistant turns, newest kept first.

    Keeps at most 16 turns and what fits ``budget_tokens`` (estimated as chars/4,
    the prompt template included); the first message that overflows is trimmed in the
    middle when it is a user message; the newest message is always kept.
    """
    turns = []
    for m in messages:
        if not isinstance(m, dict) or m.get("role") in _DROPPED_ROLES:
            continue
        text = message_text(m).strip()
        if text:
            turns.append({"role": m.get("role"), "content": text})
    turns = turns[-MAX_ROUTING_TURNS:]
    left = budget_tokens - prompt_tokens
    kept: list[dict] = []
    for m in reversed(turns):
        cost = len(m["content"]) // 4 + 1
        if cost <= left:
            kept.append(m)
            left -= cost
            continue
        if m["role"] == "user" and left > 8:
            keep_chars = max(left * 4 - 8, 16)
            head = int(keep_chars * 0.6)
            tail = keep_chars - head
            kept.append({"role": "user", "content": m["content"][:head] + " … " + m["content"][-tail:]})
        break
    if not kept and turns:
        kept.append(turns[-1])
    kept.reverse()
    return kept


def build_prompt(agents: list[AgentSpec], messages: list[dict], context_tokens: int) -> str:
    routes = routes_block(agents)
    skeleton = len(_PROMPT) // 4 + len(routes) // 4
    conversation = json.dumps(select_messages(messages, context_tokens, skeleton), indent=4, ensure_ascii=False)
    return _PROMPT.format(routes=routes, conversation=conversation)


_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")


def parse_route(content: str) -> list[str]:
    """Route names from the model's answer; tolerant of single quotes, fences and prose around it."""
    text = _FENCE.sub("", content.strip()).replace("\\n", " ").strip()
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise OrchestratorError(f"orchestrator answer has no JSON object: {content[:200]!r}")
    blob = text[start : end + 1]
    try:
        parsed = json.loads(blob)
    except ValueError:
        try:
            parsed = json.loads(blob.replace("'", '"'))
        except ValueError:
            raise OrchestratorError(f"orchestrator answer is not valid JSON: {content[:200]!r}") from None
    route = parsed.get("route") if isinstance(parsed, dict) else None
    if not isinstance(route, list):
        raise OrchestratorError(f"orchestrator answer has no 'route' list: {content[:200]!r}")
    return [r.strip() for r in route if isinstance(r, str) and r.strip()]


class LLMOrchestrator:
    """Asks the configured orchestration model which agents should run."""

    kind = "llm"

    def __init__(self, agents: list[AgentSpec], target, upstream: Upstream, *, timeout: float,
                 context_tokens: int = 8192, fallbacks=()) -> None:
        from gateway.llm.call import LLMCaller

        self.agents = agents
        self.known = {a.id for a in agents}
        self.target = target
        self.fallbacks = [t for t in fallbacks if t.is_openai_compatible]
        self.upstream = upstream
        self.caller = LLMCaller(upstream, upstream.metrics)
        self.timeout = timeout_policy(timeout, min(timeout, 5.0))
        self.context_tokens = context_tokens

    async def route(self, messages: list[dict], headers: dict[str, str], call=None) -> RoutingDecision:
        """Ask the model; ``call`` (optional) records the LLM call for telemetry."""
        try:
            return await self._route(messages, headers, call)
        except OrchestratorError as exc:
            if call is not None:
                call.finish(None, error=str(exc)[:300], error_class="other")
            raise

    async def _route(self, messages: list[dict], headers: dict[str, str], call) -> RoutingDecision:
        prompt = build_prompt(self.agents, messages, self.context_tokens)
        base = {k: v for k, v in headers.items() if k in ("x-request-id", "traceparent", "tracestate")}
        base["content-type"] = "application/json"
        if call is not None:
            call.inject(base)
        request = {"messages": [{"role": "user", "content": prompt}], "temperature": 0.01}

        def build(target) -> tuple[dict[str, str], bytes]:
            out = dict(base)
            out.update(target.auth_headers)
            out.update(target.extra_headers)
            return out, orjson.dumps({"model": target.model_id, **request})

        try:
            async with self.caller.open(self.target, self.fallbacks, build, timeout=self.timeout) as resp:
                data = await resp.read()
                status = resp.status
        except UpstreamError as exc:
            raise OrchestratorError(str(exc)) from None
        if status >= 400:
            if call is not None:
                call.finish(status, response_bytes=len(data), error=f"orchestrator model answered HTTP {status}")
            raise OrchestratorError(f"orchestrator model answered HTTP {status}: {data[:200].decode('utf-8', 'replace')}")
        try:
            completion = orjson.loads(data)
            content = completion["choices"][0]["message"]["content"] or ""
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
            raise OrchestratorError("orchestrator model answered without choices[0].message.content") from None
        if call is not None:
            call.finish(status, completion=completion, response_bytes=len(data))
        names = parse_route(content)
        chosen = [n for n in names if n in self.known]
        unknown = [n for n in names if n not in self.known]
        reason = "llm" if chosen else "llm:no_route->default"
        if unknown:
            reason += f" (ignored unknown routes: {', '.join(unknown[:5])})"
        return RoutingDecision(agents=chosen, reason=reason)
