"""Which agents handle a turn: picks the listener's routing strategy and applies its fallbacks.

- one agent on the listener: no routing at all;
- the LLM orchestrator when the listener asks for it (``router: llm``) or when an
  orchestration model is configured (``overrides.agent_orchestration_model`` /
  ``llm_routing_model``) and the listener does not say ``router: embedded``;
- ``router: hybrid``: the embedded router decides, and only a decision whose confidence is
  below the listener's ``router_confidence`` is handed to the LLM orchestrator (when an
  orchestration model is configured; without one, hybrid is the embedded router);
- otherwise the embedded router (offline, in process).

Who decided is recorded on the routing span (``routing.decided_by``: ``embedded``,
``embedded+matcher`` (its trained matcher re-ranked an unsure pick), ``llm``, or
``llm-fallback`` when the orchestrator failed and the embedded decision stands), with the
embedded decision's ``routing.confidence`` and ``routing.candidates``. The router metrics count
decisions by ``router`` (embedded / llm) and ``fallback`` (true for llm-fallback).

An orchestrator failure never fails the request: the embedded router decides and
the selection records why (``fallback``). An empty decision means the default agent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

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
    #: the embedded router's confidence in [0, 1] (None when it did not score the turn)
    confidence: float | None = None
    #: the embedded router's best candidates, best first: (agent id, score)
    candidates: list = field(default_factory=list)
    #: who made the decision: single | embedded | llm | llm-fallback
    decided_by: str | None = None


class AgentSelector:
    def __init__(self, listener, config, resolver, upstream) -> None:
        self.listener = listener
        self.specs = [AgentSpec(a.id, a.description or "", bool(a.default),
                                tuple(e for e in (getattr(a, "examples", None) or ()) if e and e.strip()))
                      for a in listener.agents or []]
        default = next((a.id for a in self.specs if a.default), None)
        self.default_agent = default or (self.specs[0].id if self.specs else None)
        self.embedded = None
        self.llm = None
        self.hybrid = listener.router == "hybrid"
        # Dependency between the chosen agents only changes how they run under ``answers: all``
        # (under ``last`` they are always chained), so the turn is re-read for order markers only then.
        self.order_matters = getattr(listener, "answers", "last") == "all"
        self.threshold = float(getattr(listener, "router_confidence", 0.6))
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
            if mode == "hybrid":
                log.warning("listener '%s' asks for router: hybrid but no orchestration model is configured "
                            "(overrides.agent_orchestration_model); using the embedded router alone",
                            self.listener.name)
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
        routing span, under which the orchestrator's own LLM call is recorded (and on which the
        confidence, candidates and who decided are set)."""
        selection = await self._select(messages, headers, telemetry, parent)
        if parent is not None and getattr(parent, "recording", False):
            attrs = {"routing.decided_by": selection.decided_by or selection.router}
            if self.hybrid:
                attrs["routing.mode"] = "hybrid"
                attrs["routing.confidence_threshold"] = self.threshold
            if selection.confidence is not None:
                attrs["routing.confidence"] = float(selection.confidence)
            if selection.candidates:
                attrs["routing.candidates"] = ",".join(f"{a}:{s:g}" for a, s in selection.candidates)
            parent.update(attrs)
        return selection

    async def _select(self, messages, headers, telemetry, parent) -> Selection:
        started = time.perf_counter()
        if self.embedded is None:
            agents = [self.default_agent] if self.default_agent else []
            return Selection(agents, "single", "single agent", None, 0.0, decided_by="single")
        if self.hybrid:
            return await self._hybrid(messages, headers, telemetry, parent, started)
        fallback = None
        if self.llm is not None:
            from gateway.routing.orchestrator import OrchestratorError

            try:
                decision = await self._ask_llm(messages, headers, telemetry, parent)
                return self._finish(decision.agents, "llm", decision.reason, None, started,
                                    self._order(decision, messages), decided_by="llm")
            except OrchestratorError as exc:
                fallback = str(exc)[:300]
                log.warning("request_id=%s orchestrator failed, embedded router decides: %s",
                            headers.get("x-request-id"), fallback)
        decision = await self._embedded(messages)
        return self._finish(decision.agents, "embedded", decision.reason, fallback, started,
                            self._order(decision, messages), decision,
                            decided_by="llm-fallback" if fallback else _local(decision))

    async def _hybrid(self, messages, headers, telemetry, parent, started) -> Selection:
        """The embedded router first; the orchestrator only for a decision it is unsure of."""
        local = await self._embedded(messages)
        sure = local.confidence is None or local.confidence >= self.threshold
        if self.llm is None or sure:
            return self._finish(local.agents, "embedded", local.reason, None, started,
                                self._order(local, messages), local, decided_by=_local(local))
        try:
            decision = await self._ask_llm(messages, headers, telemetry, parent)
        except Exception as exc:  # noqa: BLE001 - an orchestrator failure must never fail the request
            fallback = (str(exc) or type(exc).__name__)[:300]
            log.warning("request_id=%s orchestrator failed on an unsure turn (confidence %.2f), "
                        "embedded decision stands: %s", headers.get("x-request-id"), local.confidence, fallback)
            return self._finish(local.agents, "embedded", local.reason, fallback, started,
                                self._order(local, messages), local, decided_by="llm-fallback")
        reason = f"{decision.reason}; embedded confidence {local.confidence:.2f} < {self.threshold:g}"
        return self._finish(decision.agents, "llm", reason, None, started, self._order(decision, messages), local,
                            decided_by="llm")

    def _order(self, decision, messages: list[dict]) -> bool:
        return self.order_matters and _sequenced(decision, messages)

    async def _ask_llm(self, messages, headers, telemetry, parent):
        call = None
        if telemetry is not None:
            target = self.llm.target
            call = telemetry.llm_call(target.provider, target.name, target.model_id, parent=parent)
        return await self.llm.route(messages, headers, call)

    async def _embedded(self, messages):
        if self.embedded.sentences is not None:
            # The sentence encoder takes milliseconds of numpy per decision (which releases the GIL):
            # off the event loop, so other requests keep flowing while it runs.
            return await asyncio.to_thread(self.embedded.route, messages)
        return self.embedded.route(messages)  # word evidence only: ~0.3 ms, not worth a thread hop

    def _finish(self, agents, router, reason, fallback, started, sequenced: bool = False,
                local=None, decided_by: str | None = None) -> Selection:
        """``local``: the embedded decision whose confidence / candidates are recorded."""
        known = [a for a in agents if any(s.id == a for s in self.specs)]
        if not known:
            known = [self.default_agent]
            reason = f"{reason}; no route -> default agent"
        return Selection(known, router, reason, fallback, (time.perf_counter() - started) * 1000,
                         sequenced and len(known) > 1,
                         confidence=getattr(local, "confidence", None),
                         candidates=list(getattr(local, "candidates", None) or []),
                         decided_by=decided_by or router)


def _sequenced(decision, messages: list[dict]) -> bool:
    """Whether the selected agents depend on each other: the router says so, or the latest user
    turn states an order between its asks ("first ... then ...")."""
    if len(decision.agents) < 2:
        return False
    if getattr(decision, "sequenced", False):
        return True
    from gateway.routing.embedded_segment import explicit_order

    from gateway.telemetry.genai import last_user_text

    text = last_user_text(messages)
    return bool(text) and explicit_order(text)


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


def _local(decision) -> str:
    """Who decided locally: the embedded router, or its trained matcher re-ranking an unsure pick."""
    return "embedded+matcher" if getattr(decision, "reranked", False) else "embedded"
