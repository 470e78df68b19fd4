"""Model name -> upstream target, per Plano §4.2, built once per config.

Lookup order for a request's ``model``: alias (exact) -> provider ``name`` ->
``provider/model`` -> bare model id -> wildcard ``provider/*`` (specialised to the
requested id and cached). No ``model`` at all -> the ``default: true`` provider.
"""

from __future__ import annotations

from gateway.config.providers import canonical_provider
from gateway.listeners.errors import GatewayError
from gateway.llm.targets import Target, build_target

_WILDCARD_CACHE_MAX = 4096


class ModelResolver:
    def __init__(self, providers, aliases, *, default_timeout: float | None, connect_timeout: float = 5.0,
                 pools=None, retry_defaults: tuple = ()) -> None:
        self.targets: list[Target] = []
        self._exact: dict[str, Target] = {}
        self._bare: dict[str, Target] = {}
        self._wildcards: dict[str, Target] = {}
        self._specialised: dict[str, Target] = {}
        self.default: Target | None = None
        for entry in providers:
            target = build_target(entry, default_timeout=default_timeout, connect_timeout=connect_timeout,
                                  pools=pools, retry_defaults=retry_defaults)
            prefix, _, model_id = entry.model.partition("/")
            if model_id == "*":
                self._wildcards[prefix] = target
                self._wildcards.setdefault(canonical_provider(prefix), target)
                continue
            self.targets.append(target)
            self._exact.setdefault(target.name, target)
            self._exact.setdefault(entry.model, target)
            self._exact.setdefault(f"{canonical_provider(prefix)}/{model_id}", target)
            self._bare.setdefault(model_id, target)
            if entry.default:
                self.default = target
        self.aliases: dict[str, str] = {name: _alias_target(a) for name, a in (aliases or {}).items()}
        self.alias_fallbacks: dict[str, tuple[str, ...]] = {
            name: tuple(a.fallbacks) for name, a in (aliases or {}).items()
            if not isinstance(a, str) and getattr(a, "fallbacks", None)}
        # Aliases over several models: served round-robin, skipping models whose endpoints are all
        # behind open breakers; the others follow as fallbacks.
        self.alias_groups: dict[str, list[str]] = {
            name: list(a.targets) for name, a in (aliases or {}).items()
            if not isinstance(a, str) and getattr(a, "targets", None) and len(a.targets) > 1}
        self._turn: dict[str, int] = dict.fromkeys(self.alias_groups, 0)

    def fallbacks(self, requested: str | None, target: Target) -> list[Target]:
        """The models to try, in order, when ``target`` (resolved from ``requested``) fails before
        its first byte: the alias's ``fallbacks``, else the provider's ``fallback_models``, filtered
        by the provider's ``retry_policy.strategy``. Unknown names are skipped (validation warns)."""
        names = self.alias_fallbacks.get(requested or "") or target.fallbacks
        group = self.alias_groups.get(requested or "") if self.alias_groups else None
        if group:  # the alias's other models first, then its fallbacks
            names = (*(n for n in group if self._lookup(n) is not target), *names)
        if not names or target.strategy == "same_model":
            return []
        out: list[Target] = []
        for name in names:
            found = self._lookup(self.aliases.get(name, name))
            if found is not None and found is not target and found not in out:
                out.append(found)
        if target.strategy == "same_provider":
            out = [t for t in out if t.provider == target.provider]
        elif target.strategy == "different_provider":
            out.sort(key=lambda t: t.provider == target.provider)
        return out

    def resolve(self, requested: str | None) -> Target:
        """The target for a request's ``model`` or a :class:`GatewayError` (400/404)."""
        if not requested:
            if self.default is None:
                raise GatewayError(
                    400,
                    "The request has no 'model' and no model provider is marked 'default: true'.",
                    code="model_required",
                    param="model",
                )
            return self.default
        group = self.alias_groups.get(requested) if self.alias_groups else None
        name = self._next_in(requested, group) if group else self.aliases.get(requested, requested)
        target = self._lookup(name)
        if target is None:
            raise GatewayError(
                404,
                f"The model '{requested}' is not configured on this gateway. "
                "GET /v1/models lists the models you can use.",
                code="model_not_found",
                param="model",
            )
        return target

    def _lookup(self, name: str) -> Target | None:
        target = self._exact.get(name) or self._bare.get(name)
        if target is not None:
            return target
        target = self._specialised.get(name)
        if target is not None:
            return target
        prefix, sep, model_id = name.partition("/")
        if not sep or not model_id or model_id == "*":
            return None
        wildcard = self._wildcards.get(prefix) or self._wildcards.get(canonical_provider(prefix))
        if wildcard is None:
            return None
        target = wildcard.for_model(model_id)
        if len(self._specialised) < _WILDCARD_CACHE_MAX:
            self._specialised[name] = target
        return target

    def _next_in(self, alias: str, group: list[str]) -> str:
        """The group's next model in turn whose pool can take a call now (else simply the next)."""
        start = self._turn[alias]
        self._turn[alias] = (start + 1) % len(group)
        for i in range(len(group)):
            name = group[(start + i) % len(group)]
            target = self._lookup(name)
            if target is not None and (target.pool is None or target.pool.available()):
                return name
        return group[start]

    def model_list(self) -> list[dict]:
        """``GET /v1/models`` entries: every concrete model, then every alias."""
        data = [
            {"id": t.name, "object": "model", "created": 0, "owned_by": t.display}
            for t in self.targets
            if not t.internal
        ]
        seen = {d["id"] for d in data}
        for alias, target_name in self.aliases.items():
            if alias not in seen and self._lookup(target_name) is not None:
                data.append({"id": alias, "object": "model", "created": 0, "owned_by": "alias"})
        return data


def _alias_target(alias) -> str:
    return alias if isinstance(alias, str) else (alias.target or alias.targets[0])
