"""Model routing on the model listener: preference routes, ranking, sessions (Plano §4.10–4.11).

:meth:`ModelRouting.decide` runs before the model is resolved, for every client API:

1. ``routing_preferences`` in the body (same schema as the config's) replace the config's routes
   for this request — invalid ones are ignored with a warning — and the field (with
   ``metadata.plano_preference_config`` / ``archgw_preference_config``) is removed before forwarding.
2. Session (``X-Model-Affinity``, or implicit, see :mod:`.sessions`): a conversation bound to a
   model stays on it when
   - ``routing.route_on_user_only`` is set and the turn is not a fresh user turn (tool results,
     assistant turns, envelope-only text) on a warm session: the bound model is replayed, the router
     is not asked;
   - it is pinned: an ``X-Model-Affinity`` session (or an implicit one with
     ``prompt_caching.session_affinity``) and no switch budget applies — its first decision holds
     (explicit: for ``routing.session_ttl_seconds``; implicit: while the provider's cache is warm);
   - a switch budget applies (``routing.routing_budget`` or the ``x-plano-max-switch-spend-pct``
     header) and switching to the router's candidate would cost more than the budget allows.
3. Otherwise the router picks a route (:class:`.preferences.PreferenceRouter`), its ``models`` are
   ranked by the route's ``selection_policy`` (:class:`.metrics.ModelMetrics`) and the first one is
   dispatched; no route → the requested model.

The Routing API (``POST /routing/v1/{chat/completions,messages,responses}``) runs the same
decision without calling a model and answers ``{"models", "route", "trace_id", "session_id"?,
"pinned", "switched"}``.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

import orjson

from gateway.model_routing.metrics import ModelMetrics
from gateway.model_routing.preferences import PreferenceRouter, Route, parse_inline, routes_from
from gateway.model_routing.sessions import (
    AFFINITY_HEADER,
    CACHE_HEADER,
    CACHE_WINDOW_S,
    SPEND_HEADER,
    Binding,
    cached_rate,
    context_tokens,
    conversation,
    fresh_user_turn,
    implicit_key,
    prefix_hash,
    session_store,
    switch_verdict,
)

log = logging.getLogger("plano.routing")

_METADATA_KEYS = ("plano_preference_config", "archgw_preference_config")
_HISTORY = 8  # (route, model) decisions kept per session
#: ``router`` label of the routing metrics / span per who decided (an embedded decision after the
#: router model failed is counted as embedded with ``fallback``, as agent selection does).
_ROUTER_LABEL = {"llm": "llm", "llm-fallback": "embedded", "embedded": "embedded", "session": "session"}


@dataclass
class Decision:
    """What routing decided for one request."""

    model: str | None  # the model to dispatch (None: the requested one)
    route: str | None
    models: list[str] = field(default_factory=list)  # the route's models, ranked (decided model first)
    decided_by: str = "none"  # llm | embedded | llm-fallback | session | none
    session_id: str | None = None
    pinned: bool = False
    switched: bool = False
    fallback: str | None = None
    reason: str = ""
    requested: str | None = None


def _headers(raw) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in raw:
        out[k.decode("latin-1").lower()] = v.decode("latin-1")
    return out


class ModelRouting:
    """Per model listener (see the module docstring). ``config`` may be None: inline prefs only."""

    def __init__(self, config, resolver, upstream) -> None:
        self.resolver = resolver
        self.routes: tuple[Route, ...] = routes_from(getattr(config, "routing_preferences", None))
        routing = getattr(config, "routing", None)
        overrides = getattr(config, "overrides", None)
        caching = getattr(config, "prompt_caching", None)
        self.router = PreferenceRouter(resolver, upstream, overrides, routing)
        self.metrics = ModelMetrics(getattr(config, "model_metrics_sources", None) or (), resolver)
        self.route_on_user_only = bool(getattr(routing, "route_on_user_only", False))
        self.budget = getattr(routing, "routing_budget", None)
        self.cache_affinity = bool(caching is not None and caching.affinity_active)
        cache = getattr(routing, "session_cache", None)
        self.tenant_header = (getattr(cache, "tenant_header", None) or "").lower() or None
        self.session_ttl = float(getattr(routing, "session_ttl_seconds", 600) or 600)
        self.implicit = self.cache_affinity or self.budget is not None or self.route_on_user_only
        self.sessions = session_store(config) if config is not None and routing is not None else None
        #: Whether every request goes through :meth:`decide` (else only those carrying inline prefs).
        self.active = bool(self.routes)
        self.router.prewarm(self.routes)

    # ------------------------------------------------------------------ the decision

    async def decide(self, api_name: str, raw_headers, request: dict, ctx=None, rid: str | None = None,
                     *, dry_run: bool = False) -> Decision | None:
        """The routing decision for ``request`` (whose routing fields are removed), or None when no
        routing applies. ``dry_run`` (the Routing API) decides the same way."""
        inline = request.pop("routing_preferences", None)
        metadata = request.get("metadata")
        if isinstance(metadata, dict) and any(k in metadata for k in _METADATA_KEYS):
            request["metadata"] = {k: v for k, v in metadata.items() if k not in _METADATA_KEYS}
        routes = self.routes
        if inline is not None:
            parsed, why = parse_inline(inline, self.resolver)
            if parsed is None:
                log.warning("request_id=%s inline routing_preferences ignored: %s", rid, why)
            else:
                routes = parsed
        requested = request.get("model") if isinstance(request.get("model"), str) else None
        if not routes:
            return Decision(None, None, requested=requested, reason="no routes") if dry_run else None
        headers = _headers(raw_headers)
        if rid:
            headers.setdefault("x-request-id", rid)
        span = None
        if ctx is not None:
            from gateway.telemetry import ROUTING

            span = ctx.routing(component=ROUTING, name="model routing")
        started = time.perf_counter()
        try:
            decision = await self._decide(routes, api_name, headers, request, requested, ctx, span)
        except BaseException:
            if span is not None:
                span.__exit__(None, None, None)
            raise
        if span is not None:
            span.finish_model(requested, decision.model or requested or "", route=decision.route,
                              router=_ROUTER_LABEL.get(decision.decided_by, decision.decided_by),
                              fallback=decision.fallback,
                              duration_ms=(time.perf_counter() - started) * 1000)
            if span.span.recording:
                span.span.update({"plano.session.pinned": decision.pinned, "plano.session.switched": decision.switched,
                                  "plano.routing.reason": decision.reason[:300]})
        return decision

    async def _decide(self, routes, api_name, headers, request, requested, ctx, span) -> Decision:
        messages = conversation(api_name, request)
        tenant = headers.get(self.tenant_header, "") if self.tenant_header else ""
        explicit = headers.get(AFFINITY_HEADER) or None
        key = explicit
        if key is None and self.implicit and headers.get(CACHE_HEADER, "").lower() != "off":
            key = implicit_key(tenant, messages, request)
        store_key = f"{tenant}:{key}" if key and tenant else key
        binding = None
        if store_key and self.sessions is not None:
            binding = await self.sessions.get(store_key)
        now = time.time()
        prefix = prefix_hash(tenant, messages, request)
        pct = self._spend_pct(headers)
        if binding is not None and binding.requested != requested:
            binding = None  # another lane: a new episode
        warm = binding is not None and now - binding.last_used <= CACHE_WINDOW_S and binding.prefix == prefix

        # 1. not a user turn: replay the bound model
        if warm and self.route_on_user_only and not fresh_user_turn(messages):
            return await self._keep(routes, binding, store_key, key, requested, now, "session", "not_user_turn",
                                    messages, request, pct)
        # 2. pinned sessions (no budget in play)
        if binding is not None and pct is None and (explicit or (self.cache_affinity and warm)):
            return await self._keep(routes, binding, store_key, key, requested, now, "session", "pinned", messages,
                                    request, pct)

        parent = span.span if span is not None else None
        choice = await self.router.choose(routes, messages, headers, ctx, parent)
        if choice.route is None:
            ranked: list[str] = []
            candidate = requested
        else:
            ranked = await self.metrics.rank(choice.route.models, choice.route.prefer)
            candidate = ranked[0]
        decision = Decision(candidate if choice.route is not None else None,
                            choice.route.name if choice.route else None, ranked, choice.decided_by,
                            key, fallback=choice.fallback, reason=choice.reason, requested=requested)
        if not store_key or self.sessions is None:
            return decision
        bound_model = candidate or ""
        if binding is not None and warm and binding.model != bound_model:
            if pct is not None and binding.model:
                # the never-switch path would have read this turn's context from the cache
                await self._grow_baseline(binding, messages, request, pct)
                tokens = context_tokens(messages, request)
                anchor_price = await self.metrics.price(binding.model)
                cand_price = await self.metrics.price(bound_model) if bound_model else None
                discount = self.budget.cache_read_discount if self.budget is not None else 0.1
                verdict = switch_verdict(binding, tokens, anchor_price, cand_price, pct, discount)
                if not verdict.allowed:
                    kept = await self._keep(routes, binding, store_key, key, requested, now, choice.decided_by,
                                            f"switch retained: {verdict.reason} (cost ${verdict.cost:.6f})",
                                            messages, request, pct, grow=False)
                    kept.fallback = choice.fallback
                    if self.budget is not None and self.budget.record_counterfactual and span is not None \
                            and span.span.recording:
                        span.span.set("plano.switch.counterfactual_route", decision.route or "none")
                    if span is not None and span.span.recording:
                        span.span.update({"plano.switch.decision": "retained", "plano.switch.reason": verdict.reason})
                    return kept
                decision.reason += f"; switch {verdict.reason}"
                replenish = self.budget.replenish_on_rebind if self.budget is not None else True
                binding.switch_spend = 0.0 if replenish else binding.switch_spend + verdict.cost
                if replenish:
                    binding.baseline_spend = 0.0
            decision.switched = True
            binding.switches += 1
            binding.model, binding.route = bound_model, decision.route
        elif binding is not None and (warm or explicit and pct is None):
            await self._grow_baseline(binding, messages, request, pct)
        else:  # a new session, or a cold / drifted one: a new episode (switching is free)
            if binding is not None and binding.model != bound_model:
                decision.switched = True
            binding = Binding(bound_model, decision.route, requested, prefix, now, now,
                              switches=(binding.switches + decision.switched) if binding is not None else 0)
        binding.prefix, binding.last_used = prefix, now
        binding.routes = [*binding.routes[-(_HISTORY - 1):], [decision.route, bound_model]]
        await self.sessions.put(store_key, binding)
        return decision

    async def _keep(self, routes, binding: Binding, store_key, key, requested, now, decided_by, reason, messages,
                    request, pct, grow: bool = True) -> Decision:
        """The session stays on its bound model."""
        if grow:
            await self._grow_baseline(binding, messages, request, pct)
        binding.last_used = now
        await self.sessions.put(store_key, binding)
        route = next((r for r in routes if r.name == binding.route), None)
        models = [binding.model] if binding.model else []
        if route is not None:
            models += [m for m in route.models if m != binding.model]
        return Decision(binding.model or None, binding.route, models, decided_by, key, pinned=True,
                        reason=reason, requested=requested)

    async def _grow_baseline(self, binding: Binding, messages, request, pct) -> None:
        """A warm turn on the anchor: the never-switch baseline grows by its cached read."""
        if pct is None or not binding.model:
            return
        price = await self.metrics.price(binding.model)
        discount = self.budget.cache_read_discount if self.budget is not None else 0.1
        binding.baseline_spend += context_tokens(messages, request) * cached_rate(price, discount) / 1e6

    def _spend_pct(self, headers: dict[str, str]) -> float | None:
        value = headers.get(SPEND_HEADER)
        if value is not None:
            try:
                pct = float(value)
                if 0.0 <= pct <= 100.0:
                    return pct
            except ValueError:
                pass
            log.warning("ignoring %s: %r is not a number between 0 and 100", SPEND_HEADER, value)
        return float(self.budget.max_switch_spend_pct) if self.budget is not None else None

    # ------------------------------------------------------------------ the Routing API

    def answer(self, decision: Decision, headers: dict[str, str], ctx=None) -> bytes:
        """The Routing API's 200 body for ``decision``."""
        models = list(decision.models)
        if decision.model and decision.model in models:
            models.remove(decision.model)
        if decision.model:
            models.insert(0, decision.model)
        body = {
            "models": models if decision.route is not None or decision.pinned and models else ["none"],
            "route": decision.route,
            "trace_id": _trace_id(headers, ctx),
            "pinned": decision.pinned,
            "switched": decision.switched,
        }
        if decision.session_id:
            body["session_id"] = decision.session_id
        return orjson.dumps(body)


def _trace_id(headers: dict[str, str], ctx) -> str:
    parent = headers.get("traceparent", "")
    parts = parent.split("-")
    if len(parts) >= 4 and len(parts[1]) == 32:
        return parts[1]
    trace = getattr(ctx, "trace_id", "") if ctx is not None else ""
    return trace or os.urandom(16).hex()
