"""Schema validation with YAML locations, normalisation and Plano's semantic rules.

Pipeline (:func:`build_config`):

1. every top-level section is validated on its own, list/map sections item by item, so
   one bad entry does not hide the errors of the others;
2. normalisation: legacy object ``listeners`` -> list form, ``llm_providers`` ->
   ``model_providers``, ``filter_chain`` -> ``input_filters``, inline
   ``routing_preferences`` -> top level (rule 3), implicit model listener;
3. semantic rules (Plano §1.4).  A rule that cross-references a section only runs when
   that section validated completely, so a typo does not cascade into bogus errors.

Every issue carries the YAML path *as written in the file* (normalisation keeps a
path remap) and its line.

Decision - "There must be at least one LLM Provider": Plano always adds internal
providers, so an agent-only config is valid there.  We require providers only when the
config *explicitly* declares a model or prompt listener (list form or legacy object
form).  A config with only agent listeners and no providers is accepted; the implicit
model listener on :12000 then answers 404 for every model.
"""

from __future__ import annotations

import importlib.util
import re
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, TypeAdapter, ValidationError

from .loader import ConfigError, ConfigIssue, LoadedYaml, PathT, format_path
from .providers import (
    BASE_URL_REQUIRED,
    INTERFACE_ALIASES,
    LITELLM,
    LITELLM_INSTALL,
    PROVIDER_INTERFACES,
    PROVIDERS,
    canonical_provider,
)
from .schema import (
    LATEST_VERSION,
    LegacyListeners,
    Listener,
    PlanoConfig,
    RoutingPreference,
    version_index,
)

_SECRET_WORDS = ("key", "authorization", "token", "secret", "password", "connection_string", "headers")

_ENDPOINT_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]*$")

_ADAPTERS: dict[Any, TypeAdapter] = {}


def _adapter(tp: Any) -> TypeAdapter:
    ad = _ADAPTERS.get(tp)
    if ad is None:
        ad = _ADAPTERS[tp] = TypeAdapter(tp)
    return ad


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _is_secret_path(path: Iterable[Any]) -> bool:
    return any(isinstance(p, str) and any(w in p.lower() for w in _SECRET_WORDS) for p in path)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else repr(value[:57] + "...")
    return repr(value)


# --------------------------------------------------------------------------- context


class _Context:
    def __init__(self, loaded: LoadedYaml, source: str) -> None:
        self.lines = loaded.lines
        self.source = source
        self.errors: list[ConfigIssue] = list(loaded.errors)
        self.warnings: list[ConfigIssue] = list(loaded.warnings)
        self.remaps: list[tuple[PathT, PathT]] = []
        self.incomplete: set[str] = set()
        self.top_keys: set[str] = set()
        self.env_error_paths = {format_path(p) for p in loaded.env_error_paths}

    # paths ---------------------------------------------------------------------------
    def remap(self, new: PathT, old: PathT) -> None:
        if new != old:
            self.remaps.append((new, old))

    def original(self, path: PathT) -> PathT:
        for new, old in reversed(self.remaps):
            if path[: len(new)] == new:
                path = old + path[len(new) :]
        return path

    def line(self, orig: PathT) -> int | None:
        p = orig
        while p not in self.lines and p:
            p = p[:-1]
        return self.lines.get(p)

    def _issue(self, path: PathT, message: str, severity: str) -> ConfigIssue:
        orig = self.original(tuple(path))
        return ConfigIssue(format_path(orig), self.line(orig), message, severity)  # type: ignore[arg-type]

    def error(self, path: PathT, message: str) -> None:
        issue = self._issue(path, message, "error")
        if issue.path not in self.env_error_paths:  # already reported: env variable not set
            self.errors.append(issue)

    def warn(self, path: PathT, message: str) -> None:
        self.warnings.append(self._issue(path, message, "warning"))

    def ok(self, *sections: str) -> bool:
        return not any(s in self.incomplete for s in sections)

    def fmt(self, path: PathT) -> str:
        """A current path rendered as written in the file (for messages)."""
        return format_path(self.original(tuple(path)))


def _resolve_loc(base: PathT, loc: tuple, data: Any) -> tuple[PathT, Any]:
    """Map a pydantic ``loc`` onto the data, dropping union tags and other non-data parts."""
    path = list(base)
    node = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
        elif isinstance(part, str) and isinstance(node, dict):
            if part in node:
                path.append(part)
                node = node[part]
            elif last:
                path.append(part)
                node = None
            # else: a union tag such as 'cost' -> skip
        # anything else (function-after[...], tags on non-dicts) is skipped
    return tuple(path), node


def _humanize(err: dict[str, Any], path: PathT, node: Any) -> str:
    typ = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    secret = _is_secret_path(path)
    got = "" if secret else f", got {_describe(value)}"
    if typ == "missing":
        return "required field is missing"
    if typ == "extra_forbidden":
        allowed = err.get("_allowed")
        msg = f"unknown field '{path[-1]}'" if path else "unknown field"
        return msg + (f" (allowed: {', '.join(allowed)})" if allowed else "")
    if typ in ("int_type", "int_parsing", "int_from_float"):
        return f"expected an integer{got}"
    if typ in ("float_type", "float_parsing"):
        return f"expected a number{got}"
    if typ in ("bool_type", "bool_parsing"):
        return f"expected a boolean (true/false){got}"
    if typ in ("string_type",):
        return f"expected a string{got}"
    if typ in ("list_type", "tuple_type"):
        return f"expected a list{got}"
    if typ in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping{got}"
    if typ == "literal_error":
        return f"must be one of {ctx.get('expected')}{got}"
    if typ == "union_tag_invalid":
        return f"'type' must be one of {ctx.get('expected_tags')}, got {_describe(ctx.get('tag'))}"
    if typ == "union_tag_not_found":
        return "required field 'type' is missing"
    if typ in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[typ]
        bound = next(iter(ctx.values()), "?")
        return f"must be {op} {bound}{got}"
    if typ == "too_short":
        return f"must contain at least {ctx.get('min_length')} item(s)"
    if typ == "value_error":
        msg = str(ctx.get("error") or err["msg"])
        return msg.removeprefix("Value error, ")
    msg = err["msg"]
    return msg if secret else f"{msg}{got}"


# --------------------------------------------------------------------------- stage 1


_FIELD_NAMES = tuple(PlanoConfig.model_fields)


def _validate_item(ctx: _Context, tp: Any, value: Any, path: PathT) -> tuple[bool, Any]:
    try:
        return True, _adapter(tp).validate_python(value)
    except ValidationError as exc:
        errs = exc.errors(include_url=False)
        for err in errs:
            p, node = _resolve_loc(path, err["loc"], value)
            if err["type"] == "extra_forbidden":
                err = dict(err)
                err["_allowed"] = _allowed_for(tp, err["loc"])
            ctx.error(p, _humanize(err, p, node))
        return False, None


def _allowed_for(tp: Any, loc: tuple) -> list[str] | None:
    """Field names allowed at the parent of ``loc`` (best effort, for error messages)."""
    tp = _strip_optional(tp)
    cur: Any = tp
    for part in loc[:-1]:
        cur = _strip_optional(cur)
        origin = typing.get_origin(cur)
        if origin is typing.Annotated:
            cur = _strip_optional(typing.get_args(cur)[0])
            origin = typing.get_origin(cur)
        if origin is typing.Union:
            # discriminated union: the part is the tag
            for arg in typing.get_args(cur):
                f = getattr(arg, "model_fields", {}).get("type")
                if f is not None and part in typing.get_args(f.annotation):
                    cur = arg
                    break
            continue
        if origin in (list, tuple) and isinstance(part, int):
            cur = typing.get_args(cur)[0]
            continue
        if origin is dict:
            cur = typing.get_args(cur)[1]
            continue
        if isinstance(cur, type) and issubclass(cur, BaseModel) and isinstance(part, str):
            f = cur.model_fields.get(part)
            if f is None:
                return None
            cur = f.annotation
            continue
    cur = _strip_optional(cur)
    if typing.get_origin(cur) is typing.Annotated:
        cur = typing.get_args(cur)[0]
    if isinstance(cur, type) and issubclass(cur, BaseModel):
        return list(cur.model_fields)
    return None


def _validate_sections(ctx: _Context, data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in data:
        if key not in PlanoConfig.model_fields:
            ctx.error((key,), f"unknown field '{key}' (allowed: {', '.join(_FIELD_NAMES)})")
    for name, field in PlanoConfig.model_fields.items():
        if name not in data:
            if field.is_required():
                ctx.error((name,), "required field is missing")
                ctx.incomplete.add(name)
                if name == "listeners":
                    out[name] = []
            continue
        value = data[name]
        tp = _strip_optional(field.annotation)
        origin = typing.get_origin(tp)
        if name == "listeners":
            ok, val = _validate_listeners(ctx, value)
            if not ok:
                ctx.incomplete.add(name)
            out[name] = val
            continue
        if origin is list:
            if not isinstance(value, list):
                ctx.error((name,), f"expected a list, got {_describe(value)}")
                ctx.incomplete.add(name)
                continue
            item_tp = typing.get_args(tp)[0]
            items = []
            for i, item in enumerate(value):
                ok, val = _validate_item(ctx, item_tp, item, (name, i))
                if ok:
                    if len(items) != i:
                        ctx.remap((name, len(items)), (name, i))
                    items.append(val)
                else:
                    ctx.incomplete.add(name)
            out[name] = items
        elif origin is dict:
            if not isinstance(value, dict):
                ctx.error((name,), f"expected a mapping, got {_describe(value)}")
                ctx.incomplete.add(name)
                continue
            item_tp = typing.get_args(tp)[1]
            items_d = {}
            for k, item in value.items():
                ok, val = _validate_item(ctx, item_tp, item, (name, k))
                if ok:
                    items_d[k] = val
                else:
                    ctx.incomplete.add(name)
            out[name] = items_d
        else:
            ok, val = _validate_item(ctx, field.annotation, value, (name,))
            if ok:
                out[name] = val
            else:
                ctx.incomplete.add(name)
    return out


def _validate_listeners(ctx: _Context, value: Any) -> tuple[bool, list[Listener]]:
    if isinstance(value, dict):
        ok, legacy = _validate_item(ctx, LegacyListeners, value, ("listeners",))
        if not ok:
            return False, []
        out: list[Listener] = []
        for key, typ in (("ingress_traffic", "prompt"), ("egress_traffic", "model")):
            entry = getattr(legacy, key)
            if entry is None:
                continue
            fields = entry.model_dump(exclude={"message_format"}, exclude_none=True)
            ctx.remap(("listeners", len(out)), ("listeners", key))
            out.append(Listener.model_validate({"name": key, "type": typ, **fields}))
        return True, out
    if not isinstance(value, list):
        ctx.error(("listeners",), f"expected a list (or the legacy ingress/egress mapping), got {_describe(value)}")
        return False, []
    items: list[Listener] = []
    complete = True
    for i, item in enumerate(value):
        ok, val = _validate_item(ctx, Listener, item, ("listeners", i))
        if ok:
            if len(items) != i:
                ctx.remap(("listeners", len(items)), ("listeners", i))
            items.append(val)
        else:
            complete = False
    return complete, items


# --------------------------------------------------------------------------- stage 2


def _normalise(ctx: _Context, cfg: PlanoConfig, loaded: LoadedYaml) -> None:
    # each listener carries the Responses API state settings (the model listener opens the store)
    for listener in cfg.listeners or ():
        listener._state_storage = cfg.state_storage
        listener._config = cfg  # model listeners: routing_preferences, routing, prompt_caching, metrics sources
    # credentials whose env var is unset
    for path, names in loaded.missing_credentials.items():
        section = path[0]
        if section in ("model_providers", "llm_providers"):
            lst = getattr(cfg, section) or []
            idx = _current_index(ctx, section, path[1], len(lst))
            if idx is not None:
                lst[idx]._access_key_env_missing = names[0]
        elif section == "tracing" and cfg.tracing and cfg.tracing.exporters:
            idx = path[2]
            if 0 <= idx < len(cfg.tracing.exporters):
                cfg.tracing.exporters[idx]._api_key_env_missing = names[0]

    # rule 2: llm_providers (deprecated) vs model_providers
    if cfg.llm_providers is not None:
        if "model_providers" in loaded.data:
            ctx.error(
                ("llm_providers",),
                "Please provide either llm_providers or model_providers, not both",
            )
            cfg.llm_providers = None
        else:
            ctx.warn(("llm_providers",), "llm_providers is deprecated; use model_providers")
            cfg.model_providers = cfg.llm_providers
            cfg.llm_providers = None
            ctx.remap(("model_providers",), ("llm_providers",))
            if "llm_providers" in ctx.incomplete:
                ctx.incomplete.add("model_providers")

    # filter_chain -> input_filters
    for i, lst in enumerate(cfg.listeners):
        _fold_filter_chain(ctx, lst, ("listeners", i))
        for j, ag in enumerate(lst.agents or []):
            _fold_filter_chain(ctx, ag, ("listeners", i, "agents", j))

    # legacy prompt gateway
    for key in ("prompt_targets", "system_prompt", "prompt_guards"):
        if getattr(cfg, key) is not None:
            ctx.warn((key,), f"{key} (legacy prompt gateway) is not supported by plano and is ignored")


def _current_index(ctx: _Context, section: str, orig_index: int, length: int) -> int | None:
    for k in range(length):
        if ctx.original((section, k)) == (section, orig_index):
            return k
    return None


def _fold_filter_chain(ctx: _Context, obj: Any, path: PathT) -> None:
    if obj.filter_chain is None:
        return
    if obj.input_filters is not None:
        ctx.error(path + ("filter_chain",), "use either 'filter_chain' or 'input_filters', not both")
    else:
        obj.input_filters = obj.filter_chain
        ctx.remap(path + ("input_filters",), path + ("filter_chain",))
    obj.filter_chain = None


# --------------------------------------------------------------------------- helpers


def _check_url(url: str, schemes: tuple[str, ...] = ("http", "https")) -> str | None:
    """Return a problem description, or None when ``url`` is ``scheme://host...``."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a bad port
    except ValueError as exc:  # the URL itself is not echoed: it may carry credentials
        return f"invalid URL: {exc}"
    if parts.scheme not in schemes:
        return f"scheme must be {' or '.join(schemes)}"
    if not parts.hostname:
        return "URL has no host"
    del port
    return None


def _valid_port(p: Any) -> bool:
    return isinstance(p, int) and 1 <= p <= 65535


class _ModelIndex:
    """Which model references resolve (names, full models, bare ids, wildcards)."""

    def __init__(self, providers: list[Any]) -> None:
        self.names: set[str] = set()
        self.wild_prefixes: set[str] = set()
        for p in providers:
            self.names.add(p.effective_name)
            self.names.add(p.model)
            if "/" in p.model:
                if p.is_wildcard:
                    self.wild_prefixes.add(p.provider)
                else:
                    self.names.add(p.model_id)

    def defined(self, ref: str) -> bool:
        if ref in self.names:
            return True
        if "/" in ref:
            return canonical_provider(ref.split("/", 1)[0]) in self.wild_prefixes
        # a bare id may be one of the models a wildcard expands to
        return bool(self.wild_prefixes)


# --------------------------------------------------------------------------- stage 3


def _rules_providers(ctx: _Context, cfg: PlanoConfig) -> None:
    names: dict[str, int] = {}
    models: dict[str, int] = {}
    ids: dict[str, int] = {}
    defaults: list[int] = []
    for i, p in enumerate(cfg.model_providers):
        base = ("model_providers", i)
        model = p.model
        # rule 9
        if "/" not in model or not p.prefix or not p.model_id:
            ctx.error(
                base + ("model",),
                f"Invalid model name '{model}'. Please provide model name in the format <provider>/<model_id>",
            )
            continue
        # rule 10
        if p.default:
            if p.is_wildcard:
                ctx.error(base + ("default",), f"Default models cannot be wildcards (model '{model}')")
            defaults.append(i)
        # rule 8
        name = p.effective_name
        if name in names:
            ctx.error(
                base + (("name",) if p.name else ("model",)),
                f"Duplicate model_provider name '{name}' (also used by {ctx.fmt(('model_providers', names[name]))})",
            )
        else:
            names[name] = i
            if not p.is_wildcard:
                if model in models:
                    ctx.error(base + ("model",), f"Duplicate model name '{model}' (also {ctx.fmt(('model_providers', models[model]))})")
                elif p.model_id in ids:
                    ctx.error(
                        base + ("model",),
                        f"Duplicate model_id '{p.model_id}' (also {ctx.fmt(('model_providers', ids[p.model_id]))}); "
                        "the same model id cannot be served by two providers",
                    )
            models.setdefault(model, i)
            if not p.is_wildcard:
                ids.setdefault(p.model_id, i)
        # rules 11-14
        if p.provider == LITELLM:
            _rules_litellm(ctx, p, base)
        elif p.is_builtin:
            if p.provider_interface is not None:
                ctx.error(
                    base + ("provider_interface",),
                    f"provider '{p.prefix}' is built in: Please provide provider interface as part of model name "
                    f"(remove provider_interface)",
                )
            if p.provider in BASE_URL_REQUIRED and not p.base_url:
                ctx.error(base + ("model",), f"Provider '{p.provider}' requires 'base_url'")
        else:
            if not p.base_url or not p.provider_interface:
                ctx.error(
                    base + ("model",),
                    f"Must provide base_url and provider_interface for unsupported provider '{p.prefix}' "
                    f"(built-in providers: {', '.join(sorted(PROVIDERS))})",
                )
            if p.provider_interface is not None and p.interface is None:
                choices = sorted(PROVIDER_INTERFACES | set(INTERFACE_ALIASES))
                ctx.error(
                    base + ("provider_interface",),
                    f"unknown provider_interface '{p.provider_interface}' (expected one of: {', '.join(choices)})",
                )
        if p.base_url is not None:
            problem = _check_url(p.base_url)
            if problem:
                ctx.error(
                    base + ("base_url",),
                    f"Please provide a valid URL with scheme (http/https) in base_url: {problem}",
                )
        if p.access_key is not None and p.passthrough_auth:
            ctx.warn(base + ("access_key",), "access_key is ignored because passthrough_auth is true")
    # rule 18
    if len(defaults) > 1:
        for i in defaults[1:]:
            ctx.error(
                ("model_providers", i, "default"),
                f"more than one default model provider ({ctx.fmt(('model_providers', defaults[0]))} is already the default); "
                "only one can be default",
            )


def _rules_litellm(ctx: _Context, p: Any, base: PathT) -> None:
    """A ``litellm/<litellm provider>/<model>`` entry (the ``plano[litellm]`` extra): one model, the
    extra installed, and — when it is — a provider litellm can translate for through plano."""
    if "/" not in p.model_id or p.model_id.endswith("/*") or p.is_wildcard:
        ctx.error(base + ("model",), f"Invalid litellm model '{p.model}': name one model as "
                  "litellm/<litellm provider>/<model> (e.g. litellm/cohere/command-r-plus); wildcards are not supported")
        return
    if p.provider_interface is not None:
        ctx.error(base + ("provider_interface",), "litellm entries take no provider_interface: litellm picks the "
                  "provider from the model name")
    if p.base_urls and len(p.base_urls) > 1:
        ctx.error(base + ("base_urls",), "litellm entries take one endpoint (base_url)")
    if importlib.util.find_spec("litellm") is None:  # not imported here: that alone takes seconds
        ctx.error(base + ("model",), f"model '{p.model}' goes through litellm, which is not installed: it is an "
                  f"optional extra, pinned with hashes — {LITELLM_INSTALL} (README › litellm)")
        return
    from gateway.wire.translate import litellm_extra

    try:
        litellm_extra.LitellmAdapter(p.model_id, p.base_url or (p.base_urls or [None])[0])
    except litellm_extra.LitellmError as exc:
        ctx.error(base + ("model",), str(exc))


def _migrate_inline_prefs(ctx: _Context, cfg: PlanoConfig) -> None:
    """Rule 3: inline per-provider routing_preferences -> top-level entries."""
    has_inline = [(i, p) for i, p in enumerate(cfg.model_providers) if p.routing_preferences]
    if not has_inline:
        return
    if version_index(cfg.version) >= version_index(LATEST_VERSION):
        # Plano: migration is a no-op from v0.4.0 on; the inline entries are unused.
        for i, _ in has_inline:
            ctx.warn(
                ("model_providers", i, "routing_preferences"),
                f"inline routing_preferences are ignored with version {cfg.version}; "
                "declare them in the top-level routing_preferences list",
            )
        return
    for i, p in has_inline:
        if p.is_wildcard:
            ctx.error(
                ("model_providers", i, "routing_preferences"),
                f"Model '{p.model}' uses wildcard (*). Models with routing preferences cannot be wildcards",
            )
    top_names = {rp.name for rp in cfg.routing_preferences}
    migrated: dict[str, RoutingPreference] = {}
    origin: dict[str, PathT] = {}
    for i, p in has_inline:
        if p.is_wildcard:
            continue
        seen: set[str] = set()
        for j, pref in enumerate(p.routing_preferences or []):
            path = ("model_providers", i, "routing_preferences", j)
            if pref.name in seen:
                ctx.error(path + ("name",), f"Duplicate routing preference name '{pref.name}' for model '{p.model}'")
                continue
            seen.add(pref.name)
            if pref.name in top_names:
                ctx.warn(
                    path + ("name",),
                    f"inline routing preference '{pref.name}' ignored: a top-level routing preference "
                    "with the same name takes precedence",
                )
                continue
            rp = migrated.get(pref.name)
            if rp is None:
                migrated[pref.name] = RoutingPreference(
                    name=pref.name, description=pref.description, models=[p.effective_name]
                )
                origin[pref.name] = path
            else:
                rp.models.append(p.effective_name)
                if pref.description != rp.description:
                    ctx.warn(
                        path + ("description",),
                        f"routing preference '{pref.name}' is declared by several models with different "
                        f"descriptions; keeping the first one ({format_path(ctx.original(origin[pref.name]))})",
                    )
        p.routing_preferences = None
    start = len(cfg.routing_preferences)
    for k, (name, rp) in enumerate(migrated.items()):
        cfg.routing_preferences.append(rp)
        ctx.remap(("routing_preferences", start + k), origin[name])
    ctx.warn(
        ("version",),
        f"inline model_providers[].routing_preferences are deprecated; migrated to top-level "
        f"routing_preferences and version bumped from {cfg.version} to {LATEST_VERSION}",
    )
    cfg.version = LATEST_VERSION  # type: ignore[assignment]


def _rules_routing(ctx: _Context, cfg: PlanoConfig, idx: _ModelIndex | None) -> None:
    prefs = cfg.routing_preferences
    if prefs and version_index(cfg.version) < version_index(LATEST_VERSION):
        ctx.error(
            ("routing_preferences",),
            f"top-level routing_preferences require version {LATEST_VERSION} (config has {cfg.version})",
        )
    seen: dict[str, int] = {}
    for i, rp in enumerate(prefs):
        base = ("routing_preferences", i)
        if rp.name in seen:
            ctx.error(base + ("name",), f"Duplicate routing preference name '{rp.name}'")
        else:
            seen[rp.name] = i
        for j, m in enumerate(rp.models):
            if m.endswith("/*") or m == "*":
                ctx.error(
                    base + ("models", j),
                    f"Model '{m}' uses wildcard (*). Models with routing preferences cannot be wildcards",
                )
            elif idx is not None and not idx.defined(m):
                ctx.error(
                    base + ("models", j),
                    f"Routing preference '{rp.name}' references model '{m}' which is not declared in model_providers",
                )
    # rule 17
    if not ctx.ok("model_metrics_sources"):
        return
    kinds: dict[str, int] = {}
    for i, src in enumerate(cfg.model_metrics_sources):
        if src.type in kinds:
            ctx.error(
                ("model_metrics_sources", i, "type"),
                f"only one '{src.type}' model_metrics_sources entry is allowed "
                f"({ctx.fmt(('model_metrics_sources', kinds[src.type]))} is one)",
            )
        else:
            kinds[src.type] = i
        if src.url is not None:
            problem = _check_url(src.url)
            if problem:
                ctx.error(("model_metrics_sources", i, "url"), f"Please provide a valid URL with scheme: {problem}")
    for i, rp in enumerate(prefs):
        if rp.selection_policy is None:
            continue
        need = {"cheapest": "cost", "fastest": "latency"}.get(rp.selection_policy.prefer)
        if need and need not in kinds:
            ctx.error(
                ("routing_preferences", i, "selection_policy", "prefer"),
                f"prefer: {rp.selection_policy.prefer} requires a model_metrics_sources entry with type: {need}",
            )
    budget = cfg.routing.routing_budget
    if budget is not None:
        base = ("routing", "routing_budget")
        if "cost" not in kinds:
            ctx.error(base, "routing_budget requires a model_metrics_sources entry with type: cost")
        if not 0 <= budget.max_switch_spend_pct <= 100:
            ctx.error(
                base + ("max_switch_spend_pct",),
                f"max_switch_spend_pct must be between 0 and 100, got {budget.max_switch_spend_pct:g}",
            )
        if not 0 <= budget.cache_read_discount <= 1:
            ctx.error(
                base + ("cache_read_discount",),
                f"cache_read_discount must be between 0 and 1, got {budget.cache_read_discount:g}",
            )


def _rules_session(ctx: _Context, cfg: PlanoConfig) -> None:
    cache = cfg.routing.session_cache
    if cache.type == "redis":
        if not cache.url:
            ctx.error(("routing", "session_cache", "url"), "url is required when session_cache type is redis")
        else:
            problem = _check_url(cache.url, ("redis", "rediss"))
            if problem:
                ctx.error(("routing", "session_cache", "url"), f"invalid redis url: {problem}")
    active = []
    if cfg.prompt_caching.affinity_active:
        active.append("prompt_caching.session_affinity")
    if cfg.routing.routing_budget is not None:
        active.append("routing.routing_budget")
    if cfg.routing.route_on_user_only:
        active.append("routing.route_on_user_only")
    if active and not cache.tenant_header:
        ctx.warn(
            ("routing",),
            f"{', '.join(active)} active without routing.session_cache.tenant_header: "
            "sessions of different tenants share one key space",
        )
    st = cfg.state_storage
    if st is not None and st.type == "postgres" and not st.connection_string:
        ctx.error(("state_storage", "connection_string"), "connection_string is required when state_storage type is postgres")


def _rules_aliases_overrides(ctx: _Context, cfg: PlanoConfig, idx: _ModelIndex) -> None:
    for alias, a in cfg.model_aliases.items():
        for k, target in enumerate(a.all_targets):
            if not idx.defined(target):
                ctx.error(
                    ("model_aliases", alias, "target") if a.targets is None else ("model_aliases", alias, "targets", k),
                    f"Model alias '{alias}' targets '{target}' which is not defined as a model",
                )
    for key in ("llm_routing_model", "agent_orchestration_model"):
        ref = getattr(cfg.overrides, key)
        if ref is None:
            continue
        bare = ref.split("/", 1)[1] if "/" in ref else ref
        if not (idx.defined(ref) or bare in idx.names):
            ctx.warn(
                ("overrides", key),
                f"'{ref}' does not match any model in model_providers; the orchestrator model will be unavailable",
            )


def _rules_agents(ctx: _Context, cfg: PlanoConfig) -> None:
    seen: dict[str, str] = {}
    for section in ("agents", "filters"):
        for i, item in enumerate(getattr(cfg, section)):
            base = (section, i)
            if item.id in seen:
                ctx.error(base + ("id",), f"Duplicate agent id '{item.id}' (already declared in {seen[item.id]})")
            else:
                seen[item.id] = format_path(ctx.original(base))
            urls = [("url", item.url)] if item.url is not None else []
            urls += [(("urls", k), u) for k, u in enumerate(getattr(item, "urls", None) or ())]
            for key, url in urls:
                problem = _check_url(url)
                if problem:
                    path = base + (key if isinstance(key, tuple) else (key,))
                    ctx.error(path, f"Please provide a valid URL with scheme (http/https) and host: {problem}")


def _rules_mcp_servers(ctx: _Context, cfg: PlanoConfig) -> None:
    seen: set[str] = set()
    for i, server in enumerate(cfg.mcp_servers):
        if server.name in seen:
            ctx.error(("mcp_servers", i, "name"), f"duplicate mcp server name '{server.name}'")
        seen.add(server.name)
        problem = _check_url(server.url)
        if problem:
            ctx.error(("mcp_servers", i, "url"), f"Please provide a valid URL with scheme (http/https) and host: "
                      f"{problem}")


def _rules_listeners(ctx: _Context, cfg: PlanoConfig) -> None:
    explicit_llm_listener = False
    names: dict[str, int] = {}
    ports: dict[int, int] = {}
    model_idx: list[int] = []
    agents_ok = ctx.ok("agents", "filters")
    agent_ids = {a.id for a in cfg.agents}
    filter_ids = agent_ids | {f.id for f in cfg.filters}

    def check_refs(path: PathT, kind: str, ids: list[str] | None) -> None:
        if not agents_ok:
            return
        for k, fid in enumerate(ids or []):
            if fid not in filter_ids:
                ctx.error(
                    path + (kind, k),
                    f"listener references {kind} id '{fid}' which is not defined in agents or filters",
                )

    for i, lst in enumerate(cfg.listeners):
        base = ("listeners", i)
        tls = getattr(lst, "tls", None)
        if tls is not None:
            tls.resolve(getattr(cfg, "_base_dir", None))
            try:
                tls.server_context()
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                ctx.error(base + ("tls",), f"cannot load the listener's certificate/key: {exc}")
        if lst.type in ("model", "prompt"):
            explicit_llm_listener = True
        if lst.type == "model":
            model_idx.append(i)
        if lst.name in names:
            ctx.error(base + ("name",), f"duplicate listener name '{lst.name}' (also {ctx.fmt(('listeners', names[lst.name]))})")
        else:
            names[lst.name] = i
        if lst.port is None:
            ctx.error(base + ("port",), f"{lst.type} listener '{lst.name}' requires 'port'")
        elif not _valid_port(lst.port):
            ctx.error(base + ("port",), f"port must be between 1 and 65535, got {lst.port}")
        elif lst.port in ports:
            ctx.error(
                base + ("port",),
                f"port {lst.port} is already used by listener '{cfg.listeners[ports[lst.port]].name}'",
            )
        else:
            ports[lst.port] = i
        if lst.max_body_bytes <= 0:
            ctx.error(base + ("max_body_bytes",), "max_body_bytes must be greater than 0")
        check_refs(base, "input_filters", lst.input_filters)
        check_refs(base, "output_filters", lst.output_filters)
        if lst.type == "agent":
            if not lst.agents:
                ctx.warn(base, f"agent listener '{lst.name}' declares no agents")
            seen: set[str] = set()
            default_seen: int | None = None
            for j, ag in enumerate(lst.agents or []):
                apath = base + ("agents", j)
                if ag.id in seen:
                    ctx.error(apath + ("id",), f"agent '{ag.id}' is listed twice in listener '{lst.name}'")
                seen.add(ag.id)
                if ctx.ok("agents") and ag.id not in agent_ids:
                    ctx.error(apath + ("id",), f"agent '{ag.id}' is not defined in agents")
                elif ag.description is None and ctx.ok("agents") and \
                        getattr(cfg.agent_by_id(ag.id), "type", "openai") != "a2a":
                    ctx.error(apath + ("description",), f"required field is missing: agent '{ag.id}' needs a 'description' (only an A2A "
                              "agent may omit it: its card describes it)")
                if ag.default:
                    if default_seen is not None:
                        ctx.error(
                            apath + ("default",),
                            f"only one agent can be default in listener '{lst.name}' "
                            f"(agents[{default_seen}] is already default)",
                        )
                    else:
                        default_seen = j
                check_refs(apath, "input_filters", ag.input_filters)
                check_refs(apath, "output_filters", ag.output_filters)
            known = {m.name for m in cfg.mcp_servers}
            for k, name in enumerate(lst.mcp_servers or ()):
                if name not in known:
                    ctx.error(base + ("mcp_servers", k), f"mcp server '{name}' is not defined in mcp_servers")
        elif lst.agents:
            ctx.warn(base + ("agents",), f"'agents' is only used by agent listeners; ignored on {lst.type} listener")

    for i in model_idx[1:]:
        ctx.error(("listeners", i, "type"), "only one model listener is allowed")

    if not model_idx and ctx.ok("listeners"):
        implicit = Listener(name="egress_traffic", type="model", port=12000, address="0.0.0.0", timeout=300.0)
        implicit._implicit = True
        if 12000 in ports:
            ctx.error(
                ("listeners", ports[12000], "port"),
                "port 12000 is used by the implicit model listener; declare a 'type: model' listener "
                "with another port or use a different port here",
            )
        if "egress_traffic" in names:
            ctx.error(
                ("listeners", names["egress_traffic"], "name"),
                "name 'egress_traffic' is reserved for the implicit model listener",
            )
        cfg.listeners.append(implicit)

    if cfg.admin is not None:
        if not _valid_port(cfg.admin.port):
            ctx.error(("admin", "port"), f"port must be between 1 and 65535, got {cfg.admin.port}")
        elif cfg.admin.port in {l.port for l in cfg.listeners}:
            ctx.error(("admin", "port"), f"admin port {cfg.admin.port} is already used by a listener")

    # rule 18: providers needed by explicitly declared model/prompt listeners
    if explicit_llm_listener and not cfg.model_providers and ctx.ok("model_providers", "llm_providers"):
        ctx.error(
            ("model_providers",) if "model_providers" in ctx.top_keys else ("listeners",),
            "There must be at least one LLM Provider (model_providers) when a model or prompt listener is declared",
        )


#: Sections plano accepts (Plano compatibility) but does not act on yet, and what will act on them.
_NOT_YET = {
    "routing_preferences": "preference-based model routing is not implemented yet",
    "model_metrics_sources": "cost/latency sources are used only by preference routing, not implemented yet",
}


def _rules_inert(ctx: _Context, cfg: PlanoConfig, idx) -> None:
    """No silent config: a section that validates but changes nothing is said at start-up."""
    for key, why in _NOT_YET.items():
        if getattr(cfg, key, None):
            ctx.warn((key,), f"'{key}' is accepted but has no effect in this version of plano ({why})")
    if cfg.prompt_caching.enabled:
        ctx.warn(("prompt_caching",), "'prompt_caching' is accepted but has no effect in this version of plano")
    if cfg.tracing is not None and cfg.tracing.exporters:
        ctx.warn(("tracing", "exporters"), "PostHog exporters are accepted but not implemented; spans go to OTLP only")
    if idx is not None:
        for i, p in enumerate(cfg.model_providers):
            for k, name in enumerate(p.fallback_models or ()):
                if not (idx.defined(name) or name in cfg.model_aliases):
                    ctx.warn(("model_providers", i, "fallback_models", k),
                             f"fallback model '{name}' is not a configured model or alias; it is skipped")
        for alias, a in cfg.model_aliases.items():
            for k, name in enumerate(a.fallbacks or ()):
                if not (idx.defined(name) or name in cfg.model_aliases):
                    ctx.warn(("model_aliases", alias, "fallbacks", k),
                             f"fallback model '{name}' is not a configured model or alias; it is skipped")
    state = cfg.state
    if state is not None and state.redis_url:
        problem = _check_url(state.redis_url, ("redis", "rediss", "unix"))
        if problem:
            ctx.error(("state", "redis_url"), f"invalid redis url: {problem}")


def _rules_misc(ctx: _Context, cfg: PlanoConfig) -> None:
    # endpoints
    name_re = _ENDPOINT_NAME
    for name, ep in cfg.endpoints.items():
        base = ("endpoints", name)
        if not name_re.match(name):
            ctx.error(base, f"invalid endpoint name '{name}' (must match ^[a-zA-Z][a-zA-Z0-9_]*$)")
        host, sep, port = ep.endpoint.rpartition(":")
        if sep and (not port.isdigit() or not _valid_port(int(port)) or not host):
            ctx.error(base + ("endpoint",), f"invalid endpoint '{ep.endpoint}' (expected host or host:port)")
    if cfg.overrides.use_agent_orchestrator and len(cfg.endpoints) != 1:
        ctx.error(
            ("overrides", "use_agent_orchestrator"),
            "use_agent_orchestrator requires exactly one entry in endpoints",
        )
    # rule 5: prompt targets
    if cfg.prompt_targets and ctx.ok("endpoints", "agents"):
        known = set(cfg.endpoints) | {a.id for a in cfg.agents}
        for i, t in enumerate(cfg.prompt_targets):
            ep = t.get("endpoint")
            name = ep.get("name") if isinstance(ep, dict) else None
            if isinstance(name, str) and name not in known:
                ctx.error(("prompt_targets", i, "endpoint", "name"), f"Unknown endpoint '{name}'")
    # tracing
    tr = cfg.tracing
    if tr is not None:
        if tr.random_sampling is not None and not 0 <= tr.random_sampling <= 100:
            ctx.error(("tracing", "random_sampling"), f"random_sampling must be between 0 and 100, got {tr.random_sampling}")
        ep = tr.opentracing_grpc_endpoint
        if ep is not None:
            try:
                parts = urlsplit(ep)
                parts.port  # noqa: B018 - raises ValueError on a bad port
            except ValueError:
                parts = None
            if parts is None or parts.scheme != "http" or not parts.hostname:
                why = "scheme must be http" if parts is None or parts.scheme != "http" else "a host is required"
                ctx.error(
                    ("tracing", "opentracing_grpc_endpoint"),
                    f"Invalid opentracing_grpc_endpoint '{ep}': {why}",
                )
            elif parts.path not in ("", "/") or parts.query:
                ctx.error(
                    ("tracing", "opentracing_grpc_endpoint"),
                    f"Invalid opentracing_grpc_endpoint '{ep}': path must be empty",
                )
        if tr.otlp_http_endpoint is not None:
            problem = _check_url(tr.otlp_http_endpoint)
            if problem:
                ctx.error(("tracing", "otlp_http_endpoint"), f"Please provide a valid URL with scheme: {problem}")
        for i, ex in enumerate(tr.exporters or []):
            problem = _check_url(ex.url)
            if problem:
                ctx.error(("tracing", "exporters", i, "url"), f"Please provide a valid URL with scheme: {problem}")


# --------------------------------------------------------------------------- entry


def build_config(loaded: LoadedYaml, source: str, base_dir: Path | None = None) -> PlanoConfig:
    """Validate loaded YAML data into a :class:`PlanoConfig`, or raise :class:`ConfigError`."""
    ctx = _Context(loaded, source)
    data = loaded.data
    if loaded.errors and data is None:
        raise ConfigError(_sorted(ctx.errors), _sorted(ctx.warnings), source)
    if not isinstance(data, dict):
        ctx.error((), f"config must be a mapping of top-level keys, got {_describe(data)}")
        raise ConfigError(_sorted(ctx.errors), _sorted(ctx.warnings), source)
    ctx.top_keys = set(data)
    # null top-level values behave as if the key were absent (except required keys)
    data = {k: v for k, v in data.items() if v is not None or k in ("version", "listeners")}

    sections = _validate_sections(ctx, data)
    cfg = PlanoConfig.model_construct(**sections)
    cfg._base_dir = base_dir  # rules resolve relative file paths (e.g. TLS certificates) against it
    loaded.data = data
    _normalise(ctx, cfg, loaded)

    _rules_providers(ctx, cfg)
    if ctx.ok("version"):
        _migrate_inline_prefs(ctx, cfg)
    providers_ok = ctx.ok("model_providers", "llm_providers")
    idx = _ModelIndex(cfg.model_providers) if providers_ok else None
    if ctx.ok("version", "routing_preferences", "routing"):
        _rules_routing(ctx, cfg, idx)
    if ctx.ok("routing", "prompt_caching", "state_storage"):
        _rules_session(ctx, cfg)
    if idx is not None and ctx.ok("model_aliases", "overrides"):
        _rules_aliases_overrides(ctx, cfg, idx)
    _rules_agents(ctx, cfg)
    _rules_mcp_servers(ctx, cfg)
    _rules_listeners(ctx, cfg)
    _rules_misc(ctx, cfg)
    _rules_inert(ctx, cfg, idx)

    if ctx.errors:
        raise ConfigError(_sorted(ctx.errors), _sorted(ctx.warnings), source)
    cfg._warnings = _sorted(ctx.warnings)
    cfg._source = source
    cfg._base_dir = base_dir
    return cfg


def _sorted(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    return sorted(issues, key=lambda i: (i.line is None, i.line or 0))
