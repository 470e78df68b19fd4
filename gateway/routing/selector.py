"""Which agents handle a turn: picks the listener's routing strategy and applies its fallbacks.

- one agent on the listener: no routing at all;
- the LLM orchestrator when the listener asks for it (``router: llm``) or when an
  orchestration model is configured (``overrides.agent_orchestration_model`` /
  ``llm_routing_model``) and the listener does not say ``router: embedded``;
- otherwise the embedded router (offline, in process).

An orchestrator failure never fails the request: the embedded router decides and
the selection records why (``fallback``). An empty decision means the default agent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from gateway.routing.types import AgentSpec

log = logging.getLogger("plano.routing")


@dataclass(slots=True)
class Selection:
    agents: list[str]
    router: str  # single | embedded | llm
    reason: str
    fallback: str | None
    duration_ms: float
    #: the agents depend on each other (explicit order such as "first ... then ...", or a
    #: dependency the router reported): they run chained even where independent ones may run
    #: side by side (``answers: all``)
    sequenced: bool = False


class AgentSelector:
    def __init__(self, listener, config, resolver, upstream) -> None:
        self.listener = listener
        self.specs = [AgentSpec(a.id, a.description or "", bool(a.default)) for a in listener.agents or []]
        default = next((a.id for a in self.specs if a.default), None)
        self.default_agent = default or (self.specs[0].id if self.specs else None)
        self.embedded = None
        self.llm = None
        if len(self.specs) > 1:
            from gateway.routing.embedded import EmbeddedRouter

            self.embedded = EmbeddedRouter(self.specs)
            self.llm = self._llm_strategy(config, resolver, upstream)

    def _llm_strategy(self, config, resolver, upstream):
        mode = self.listener.router
        if mode == "embedded":
            return None
        overrides = config.overrides
        model = (overrides.llm_routing_model or overrides.agent_orchestration_model) if overrides else None
        if not model:
            if mode == "llm":
                log.warning("listener '%s' asks for router: llm but no orchestration model is configured; "
                            "using the embedded router", self.listener.name)
            return None
        target = _resolve_orchestrator(resolver, model)
        if target is None:
            log.warning("orchestration model '%s' is not a configured model; listener '%s' uses the embedded router",
                        model, self.listener.name)
            return None
        from gateway.routing.orchestrator import LLMOrchestrator

        return LLMOrchestrator(self.specs, target, upstream, timeout=overrides.agent_orchestration_timeout,
                               context_tokens=overrides.orchestrator_model_context_length,
                               fallbacks=resolver.fallbacks(model, target))

    async def select(self, messages: list[dict], headers: dict[str, str], telemetry=None, parent=None) -> Selection:
        """The agents for this turn. ``telemetry``/``parent``: the request's telemetry context and the
        routing span, under which the orchestrator's own LLM call is recorded."""
        started = time.perf_counter()
        if self.embedded is None:
            agents = [self.default_agent] if self.default_agent else []
            return Selection(agents, "single", "single agent", None, 0.0)
        fallback = None
        if self.llm is not None:
            from gateway.routing.orchestrator import OrchestratorError

            call = None
            if telemetry is not None:
                target = self.llm.target
                call = telemetry.llm_call(target.provider, target.name, target.model_id, parent=parent)
            try:
                decision = await self.llm.route(messages, headers, call)
                return self._finish(decision.agents, "llm", decision.reason, None, started,
                                    _sequenced(decision, messages))
            except OrchestratorError as exc:
                fallback = str(exc)[:300]
                log.warning("request_id=%s orchestrator failed, embedded router decides: %s",
                            headers.get("x-request-id"), fallback)
        if self.embedded.sentences is not None:
            # The sentence encoder takes milliseconds of numpy per decision (which releases the GIL):
            # off the event loop, so other requests keep flowing while it runs.
            decision = await asyncio.to_thread(self.embedded.route, messages)
        else:
            decision = self.embedded.route(messages)  # word evidence only: ~0.3 ms, not worth a thread hop
        return self._finish(decision.agents, "embedded", decision.reason, fallback, started,
                            _sequenced(decision, messages))

    def _finish(self, agents, router, reason, fallback, started, sequenced: bool = False) -> Selection:
        known = [a for a in agents if any(s.id == a for s in self.specs)]
        if not known:
            known = [self.default_agent]
            reason = f"{reason}; no route -> default agent"
        return Selection(known, router, reason, fallback, (time.perf_counter() - started) * 1000,
                         sequenced and len(known) > 1)


def _sequenced(decision, messages: list[dict]) -> bool:
    """Whether the selected agents depend on each other: the router says so, or the latest user
    turn states an order between its asks ("first ... then ...")."""
    if len(decision.agents) < 2:
        return False
    if getattr(decision, "sequenced", False):
        return True
    from gateway.routing.embedded_segment import explicit_order

    text = _latest_user_text(messages)
    return bool(text) and explicit_order(text)


def _latest_user_text(messages: list[dict]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content
                                if isinstance(p, dict) and isinstance(p.get("text"), str))
            return ""
    return ""


def _resolve_orchestrator(resolver, model: str):
    """Plano's rule: the full name, else the part after the first '/' as a model id."""
    from gateway.listeners.errors import GatewayError

    for candidate in (model, model.partition("/")[2]):
        if not candidate:
            continue
        try:
            return resolver.resolve(candidate)
        except GatewayError:
            continue
    return None
