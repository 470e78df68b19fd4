"""Routing sessions (Plano §4.11): session keys, bindings, their store, turn kinds, the switch budget.

- **Session key**: the ``X-Model-Affinity`` header (explicit), else — when something needs it
  (``prompt_caching.session_affinity``, ``routing.routing_budget``, ``routing.route_on_user_only``)
  and the request does not say ``X-Plano-Cache: off`` — an implicit ``implicit:<fnv64>`` over the
  tenant, the system/developer text, the tool names and the first user message. Keys are scoped by
  the ``routing.session_cache.tenant_header`` value when configured.
- **Binding**: the model a session is on (its anchor), the route that chose it, the requested model
  ("lane"), a hash of the stable prefix (tenant + system + tools), when it was last used and the
  switch budget's running totals.
- **Store**: in memory (LRU of ``routing.session_max_entries``, entries expire after
  ``routing.session_ttl_seconds``) or Redis (``routing.session_cache: {type: redis, url}``, else
  ``state.redis_url``; keys ``<prefix>affinity:[tenant:]<session>`` with the TTL set on each write).
  Every cache error fails open: the request is routed as if the session were new.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field

import orjson

log = logging.getLogger("plano.routing")

AFFINITY_HEADER = "x-model-affinity"
CACHE_HEADER = "x-plano-cache"
SPEND_HEADER = "x-plano-max-switch-spend-pct"
#: How long a provider keeps a prompt prefix cached (Anthropic's default ephemeral window): a
#: session idle for longer is cold — switching then costs nothing extra, so a new episode starts.
CACHE_WINDOW_S = 300.0

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_SALT = b"plano-session-v1\x00"


def fnv64(*parts: str) -> str:
    h = _FNV_OFFSET
    for part in (_SALT, *(p.encode("utf-8", "replace") + b"\x00" for p in parts)):
        for byte in part:
            h ^= byte
            h = (h * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


# ----------------------------------------------------------------------------- conversation views


def _text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str) \
                    and part.get("type") in (None, "text", "input_text", "output_text"):
                out.append(part["text"])
        return " ".join(out)
    return ""


def _has_image(content) -> bool:
    return isinstance(content, list) and any(
        isinstance(p, dict) and p.get("type") in ("image", "image_url", "input_image", "document", "file", "input_file")
        for p in content)


def conversation(api_name: str, request: dict) -> list[dict]:
    """The request's conversation as OpenAI-shaped ``{role, content}`` text messages (system turns
    included), whatever the client API: what the router and the session logic read. Tool traffic
    keeps its role (``tool``; Anthropic ``tool_result``-only user turns become ``tool``)."""
    out: list[dict] = []
    if api_name == "anthropic_messages":
        system = request.get("system")
        if system:
            out.append({"role": "system", "content": _text(system)})
        for m in request.get("messages") or ():
            if not isinstance(m, dict):
                continue
            content = m.get("content")
            role = m.get("role")
            if role == "user" and isinstance(content, list) and content and all(
                    isinstance(b, dict) and b.get("type") == "tool_result" for b in content):
                out.append({"role": "tool", "content": _text([c for b in content for c in (
                    b.get("content") if isinstance(b.get("content"), list) else [b.get("content") or ""])])})
                continue
            out.append({"role": role, "content": _text(content), "_media": _has_image(content)})
        return out
    if api_name == "openai_responses":
        if isinstance(request.get("instructions"), str):
            out.append({"role": "system", "content": request["instructions"]})
        items = request.get("input")
        if isinstance(items, str):
            return [*out, {"role": "user", "content": items}]
        for item in items if isinstance(items, list) else ():
            if not isinstance(item, dict):
                continue
            kind = item.get("type")
            if kind == "function_call_output":
                out.append({"role": "tool", "content": str(item.get("output") or "")})
            elif kind in ("function_call", "reasoning"):
                out.append({"role": "assistant", "content": ""})
            elif "role" in item:
                content = item.get("content")
                out.append({"role": item["role"], "content": _text(content), "_media": _has_image(content)})
        return out
    for m in request.get("messages") or ():
        if isinstance(m, dict):
            content = m.get("content")
            out.append({"role": m.get("role"), "content": _text(content), "_media": _has_image(content)})
    return out


_ENVELOPES = re.compile(r"<(system-reminder|user-prompt-submit-hook)>.*?</\1>", re.DOTALL)


def fresh_user_turn(messages: list[dict]) -> bool:
    """Whether the conversation ends with a new user turn: text that is not only Claude Code-style
    envelopes (``<system-reminder>``…), or an image/document. Tool results, assistant turns and
    empty user turns are not."""
    if not messages:
        return False
    last = messages[-1]
    if last.get("role") != "user":
        return False
    if last.get("_media"):
        return True
    return bool(_ENVELOPES.sub("", last.get("content") or "").strip())


def tools_names(request: dict) -> list[str]:
    names = []
    for tool in request.get("tools") or ():
        if isinstance(tool, dict):
            fn = tool.get("function") if isinstance(tool.get("function"), dict) else tool
            name = fn.get("name")
            if isinstance(name, str):
                names.append(name)
    return names


def prefix_hash(tenant: str, messages: list[dict], request: dict) -> str:
    system = "\n".join(m["content"] for m in messages if m.get("role") in ("system", "developer"))
    return fnv64(tenant, system, ",".join(tools_names(request)))


def implicit_key(tenant: str, messages: list[dict], request: dict) -> str:
    system = "\n".join(m["content"] for m in messages if m.get("role") in ("system", "developer"))
    first = next((m["content"] for m in messages if m.get("role") == "user"), "")
    return "implicit:" + fnv64(tenant, system, ",".join(tools_names(request)), first)


def context_tokens(messages: list[dict], request: dict) -> int:
    chars = sum(len(m.get("content") or "") for m in messages)
    if request.get("tools"):
        chars += len(orjson.dumps(request["tools"]))
    return chars // 4 + 1


# ----------------------------------------------------------------------------- bindings and stores


@dataclass
class Binding:
    model: str  # the model the session is on (its anchor)
    route: str | None
    requested: str | None  # the model the client asked for (the session's "lane")
    prefix: str
    created: float
    last_used: float
    switches: int = 0
    baseline_spend: float = 0.0  # USD the never-switch path would have spent (cached reads)
    switch_spend: float = 0.0  # USD spent on switches this episode
    routes: list = field(default_factory=list)  # recent (route, model) decisions, newest last

    def dumps(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def loads(cls, data) -> Binding | None:
        try:
            raw = orjson.loads(data)
            return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})
        except (orjson.JSONDecodeError, TypeError, KeyError):
            return None


class MemorySessions:
    """Bounded LRU with a TTL, per worker."""

    kind = "memory"

    def __init__(self, ttl: float, max_entries: int) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def get(self, key: str) -> Binding | None:
        item = self._items.get(key)
        if item is None:
            return None
        expires, data = item
        if time.monotonic() >= expires:
            self._items.pop(key, None)
            return None
        self._items.move_to_end(key)
        return Binding.loads(data)

    async def put(self, key: str, binding: Binding) -> None:
        self._items[key] = (time.monotonic() + self.ttl, binding.dumps())
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class RedisSessions:
    """Bindings in Redis (shared by every worker and replica); errors fail open."""

    kind = "redis"

    def __init__(self, redis, ttl: float, prefix: str) -> None:
        self.redis = redis  # gateway.state.redis.SharedRedis
        self.ttl = max(1, int(ttl))
        self.prefix = prefix

    async def get(self, key: str) -> Binding | None:
        if not self.redis.available:
            return None
        try:
            data = await self.redis.client().get(self.prefix + key)
            self.redis.succeeded()
        except Exception as exc:  # noqa: BLE001 - fail open
            self.redis.failed("session read", exc)
            return None
        return Binding.loads(data) if data else None

    async def put(self, key: str, binding: Binding) -> None:
        if not self.redis.available:
            return
        try:
            await self.redis.client().set(self.prefix + key, binding.dumps(), ex=self.ttl)
            self.redis.succeeded()
        except Exception as exc:  # noqa: BLE001 - fail open
            self.redis.failed("session write", exc)


def session_store(config):
    """The store the config asks for (see the module docstring)."""
    routing = config.routing
    ttl = float(routing.session_ttl_seconds)
    cache = routing.session_cache
    state = getattr(config, "state", None)
    url = cache.url if cache.type == "redis" else getattr(state, "redis_url", None)
    if url:
        from gateway.state.redis import SharedRedis

        prefix = getattr(state, "key_prefix", None) or "plano:"
        try:
            return RedisSessions(SharedRedis(url, key_prefix=prefix), ttl, prefix + "affinity:")
        except Exception as exc:  # noqa: BLE001 - a bad URL is reported by validation; serve from memory
            log.warning("routing session cache at %s unusable (%s); sessions live in memory", url, exc)
    return MemorySessions(ttl, routing.session_max_entries)


# ----------------------------------------------------------------------------- the switch budget


@dataclass
class SwitchVerdict:
    allowed: bool
    reason: str  # free | within_cap | over_cap | no_pricing
    cost: float = 0.0


def switch_verdict(binding: Binding, tokens: int, anchor_price, candidate_price, pct: float,
                   cache_read_discount: float) -> SwitchVerdict:
    """Plano's rule: switching costs ``tokens × (candidate uncached rate − anchor cached rate)``;
    free when ≤ 0, else allowed while the episode's switch spend stays within ``pct`` % of the
    never-switch baseline."""
    if anchor_price is None or candidate_price is None:
        return SwitchVerdict(True, "no_pricing")
    anchor_cached = anchor_price.cached_input if anchor_price.cached_input is not None \
        else anchor_price.input * cache_read_discount
    cost = tokens * (candidate_price.input - anchor_cached) / 1e6
    if cost <= 0:
        return SwitchVerdict(True, "free", cost)
    if binding.switch_spend + cost <= pct / 100.0 * binding.baseline_spend:
        return SwitchVerdict(True, "within_cap", cost)
    return SwitchVerdict(False, "over_cap", cost)


def cached_rate(price, cache_read_discount: float) -> float:
    if price is None:
        return 0.0
    return price.cached_input if price.cached_input is not None else price.input * cache_read_discount
