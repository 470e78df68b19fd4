"""Preference routes and who picks one: the router model, else the embedded classifier (Plano §4.10).

A route is a ``routing_preferences`` entry: ``{name, description, models, selection_policy}``.
The request's conversation goes to the **router model** (``overrides.llm_routing_model``, else
``agent_orchestration_model``, else the legacy ``routing.model``: any configured model, e.g. a
self-hosted Plano-Orchestrator) in the Plano-Orchestrator protocol
(:class:`gateway.routing.orchestrator.LLMOrchestrator`, through the LLM call unit); the first
route it names wins. When no router model is configured, or it is down, answers an error,
times out (``overrides.agent_orchestration_timeout``) or answers something unparsable, the
**embedded classifier** (:class:`gateway.routing.embedded.EmbeddedRouter`, offline, in process)
scores the latest user turn against the route descriptions, with a "no route" candidate for
small talk and anything no description covers. Nothing here ever fails a request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

log = logging.getLogger("plano.routing")

#: The embedded classifier's "no route" candidate (its default agent): small talk, general questions.
NO_ROUTE = "\x00no-route"
_NO_ROUTE_DESCRIPTION = "Greetings, small talk, thanks and general questions that need no specialist."
_EMBEDDED_CACHE = 32  # route sets whose embedded classifier is kept (config routes + inline ones)


@dataclass(frozen=True)
class Route:
    name: str
    description: str
    models: tuple[str, ...]
    prefer: str | None = None  # cheapest | fastest | none


def routes_from(prefs) -> tuple[Route, ...]:
    out = []
    for p in prefs or ():
        policy = getattr(p, "selection_policy", None)
        out.append(Route(p.name, " ".join((p.description or "").split()), tuple(p.models),
                         getattr(policy, "prefer", None) if policy is not None else None))
    return tuple(out)


def parse_inline(value, resolver) -> tuple[tuple[Route, ...] | None, str | None]:
    """A request body's ``routing_preferences`` → (routes, None), or (None, why they are ignored):
    the config schema, unique names, and every model configured on this gateway."""
    from pydantic import ValidationError

    from gateway.config.schema import RoutingPreference

    if not isinstance(value, list) or not value:
        return None, "routing_preferences must be a non-empty list"
    prefs = []
    try:
        for item in value:
            prefs.append(RoutingPreference.model_validate(item))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return None, f"invalid routing_preferences entry ({where}: {first.get('msg')})"
    names = [p.name for p in prefs]
    if len(set(names)) != len(names):
        return None, "duplicate routing preference names"
    for p in prefs:
        for m in p.models:
            try:
                resolver.resolve(m)
            except Exception:  # noqa: BLE001
                return None, f"routing preference '{p.name}' names model '{m}', which is not configured"
    return routes_from(prefs), None


def resolve_router_model(resolver, model: str | None):
    """Plano's rule for the orchestrator model: the full name, else what follows the first '/'."""
    if not model:
        return None
    for candidate in (model, model.partition("/")[2]):
        if not candidate:
            continue
        try:
            return resolver.resolve(candidate)
        except Exception:  # noqa: BLE001
            continue
    return None


@dataclass
class RouteChoice:
    route: Route | None
    decided_by: str  # llm | embedded | llm-fallback
    fallback: str | None = None  # why the router model was not used
    reason: str = ""


class PreferenceRouter:
    """Picks a route for a conversation (see the module docstring)."""

    def __init__(self, resolver, upstream, overrides=None, routing=None) -> None:
        self.resolver = resolver
        self.upstream = upstream
        model = None
        if overrides is not None:
            model = overrides.llm_routing_model or overrides.agent_orchestration_model
        if not model and routing is not None:
            model = getattr(routing, "model", None)
        self.model_name = model
        self.target = resolve_router_model(resolver, model)
        if model and self.target is None:
            log.warning("router model '%s' is not a configured model; preference routing uses the embedded "
                        "classifier", model)
        self.timeout = float(getattr(overrides, "agent_orchestration_timeout", 10.0) or 10.0)
        self.context_tokens = int(getattr(overrides, "orchestrator_model_context_length", 8192) or 8192)
        self.fallbacks = resolver.fallbacks(model, self.target) if self.target is not None else []
        self._llm: OrderedDict[tuple, object] = OrderedDict()
        self._embedded: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the decision

    async def choose(self, routes: tuple[Route, ...], messages: list[dict], headers: dict[str, str],
                     ctx=None, parent=None) -> RouteChoice:
        if not routes:
            return RouteChoice(None, "none", reason="no routes")
        fallback = None
        if self.target is not None:
            try:
                names = await self._ask_model(routes, messages, headers, ctx, parent)
                by_name = {r.name: r for r in routes}
                route = next((by_name[n] for n in names if n in by_name), None)
                return RouteChoice(route, "llm", reason="llm" if route else "llm: no route")
            except Exception as exc:  # noqa: BLE001 - the router model failing never fails the request
                fallback = (str(exc) or type(exc).__name__)[:300]
                log.warning("request_id=%s router model failed, the embedded classifier decides: %s",
                            headers.get("x-request-id"), fallback)
        try:
            name, reason = await self._embedded_choice(routes, messages)
        except Exception as exc:  # noqa: BLE001 - no route rather than an error
            log.warning("embedded route classifier failed: %s", exc)
            return RouteChoice(None, "llm-fallback" if fallback else "embedded", fallback, f"embedded error: {exc}")
        route = next((r for r in routes if r.name == name), None)
        return RouteChoice(route, "llm-fallback" if fallback else "embedded", fallback, reason)

    async def _ask_model(self, routes, messages, headers, ctx, parent) -> list[str]:
        from gateway.routing.orchestrator import LLMOrchestrator
        from gateway.routing.types import AgentSpec

        key = tuple((r.name, r.description) for r in routes)
        orchestrator = self._llm.get(key)
        if orchestrator is None:
            orchestrator = LLMOrchestrator([AgentSpec(r.name, r.description) for r in routes], self.target,
                                           self.upstream, timeout=self.timeout, context_tokens=self.context_tokens,
                                           fallbacks=self.fallbacks)
            self._llm[key] = orchestrator
            while len(self._llm) > _EMBEDDED_CACHE:
                self._llm.popitem(last=False)
        call = None
        if ctx is not None:
            target = self.target
            call = ctx.llm_call(target.provider, target.name, target.model_id, parent=parent, use_root=False)
        plain = [{"role": m.get("role"), "content": m.get("content") or ""} for m in messages]
        decision = await orchestrator.route(plain, headers, call)
        return list(decision.agents)

    # ------------------------------------------------------------------ the embedded classifier

    def prewarm(self, routes: tuple[Route, ...]) -> None:
        """Build the config routes' classifier in the background (loading the sentence encoder takes
        seconds), so the first decision that needs it — the first one without a router model, or the
        first one after the router model failed — does not pay for it."""
        if not routes:
            return

        def build() -> None:
            try:
                self._classifier(routes)
            except Exception as exc:  # noqa: BLE001 - the first decision will say so again
                log.warning("embedded route classifier could not be built: %s", exc)

        threading.Thread(target=build, name="plano-route-classifier", daemon=True).start()

    def _classifier(self, routes: tuple[Route, ...]):
        from gateway.routing.embedded import EmbeddedRouter
        from gateway.routing.types import AgentSpec

        key = tuple((r.name, r.description) for r in routes)
        with self._lock:
            found = self._embedded.get(key)
            if found is not None:
                self._embedded.move_to_end(key)
                return found
        specs = [AgentSpec(NO_ROUTE, _NO_ROUTE_DESCRIPTION, True)]
        specs += [AgentSpec(r.name, r.description or r.name) for r in routes]
        started = time.perf_counter()
        router = EmbeddedRouter(specs)
        log.debug("embedded route classifier for %d routes built in %.0f ms", len(routes),
                  (time.perf_counter() - started) * 1000)
        with self._lock:
            self._embedded[key] = router
            while len(self._embedded) > _EMBEDDED_CACHE:
                self._embedded.popitem(last=False)
        return router

    def _classify(self, routes, messages) -> tuple[str | None, str]:
        turns = [{"role": m.get("role"), "content": m.get("content") or ""} for m in messages
                 if m.get("role") in ("user", "assistant") and (m.get("content") or "").strip()]
        if not turns:
            return None, "embedded: no user text"
        decision = self._classifier(routes).route(turns)
        picked = next((a for a in decision.agents if a != NO_ROUTE), None)
        return picked, f"embedded: {decision.reason}"

    async def _embedded_choice(self, routes, messages) -> tuple[str | None, str]:
        # The sentence encoder takes milliseconds of numpy (and its first build longer): off the loop.
        return await asyncio.to_thread(self._classify, routes, messages)
