"""Prompt caching (Plano §4.12): ``cache_control`` breakpoints for Anthropic-family upstreams.

With ``prompt_caching: {enabled: true}`` (``inject_cache_control`` defaults to true), a request
whose stable prefix — tools, system prompt and the conversation before the newest turn — is
estimated (chars/4) at ``max(min_prefix_tokens, 1024)`` tokens or more gets ephemeral
breakpoints, at most 4: after the last tool, after the system prompt, at the end of the turn
before the newest one and at the end of the newest turn (so the next turn reads it back).

Per upstream: a native Anthropic Messages upstream gets them on its Messages body (Anthropic
clients, passed through) or on the chat request the translator turns into one (Chat clients:
text parts' and tools' ``cache_control`` are kept by the translation); OpenAI-compatible
gateways fronting Claude (``digitalocean``, ``openrouter``, ``edenai`` with a ``claude`` model)
get ``cache_control`` on content parts; everyone else (OpenAI-family automatic caching, Bedrock,
Gemini, Responses clients) nothing. A request that carries any ``cache_control`` of its own is
left as the client wrote it, and ``X-Plano-Cache: off`` turns injection off for one call. Each
model is handed its own copy, so a fallback to another provider never sees markers.

:class:`CacheOutcome` counts cache hits and misses from the response's usage
(``cache_read_input_tokens`` / ``prompt_tokens_details.cached_tokens``) in
``plano_prompt_cache_requests_total{model, outcome}``.
"""

from __future__ import annotations

import orjson

from gateway.config.providers import ANTHROPIC_MESSAGES, OPENAI_CHAT

EPHEMERAL = {"type": "ephemeral"}
MAX_BREAKPOINTS = 4
ANTHROPIC_MIN_TOKENS = 1024
_CLAUDE_GATEWAYS = frozenset({"digitalocean", "openrouter", "edenai"})
_UNCACHEABLE = frozenset({"thinking", "redacted_thinking"})


def _chars(value) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_chars(v) for v in value)
    if isinstance(value, dict):
        text = value.get("text")
        if isinstance(text, str):
            return len(text)
        if "content" in value:
            return _chars(value["content"])
        return len(orjson.dumps(value))
    return 0


def _has_markers(request: dict) -> bool:
    for tool in request.get("tools") or ():
        if isinstance(tool, dict) and "cache_control" in tool:
            return True
    system = request.get("system")
    if isinstance(system, list) and any(isinstance(b, dict) and "cache_control" in b for b in system):
        return True
    for m in request.get("messages") or ():
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):
            for b in content:
                if isinstance(b, dict) and ("cache_control" in b or any(
                        isinstance(c, dict) and "cache_control" in c for c in (b.get("content") or ())
                        if isinstance(b.get("content"), list))):
                    return True
    return False


def _mark_content(content):
    """``content`` (a string or a list of blocks/parts) with a breakpoint on its last cacheable text
    block, or None when it has none (empty text, only thinking blocks ...)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content, "cache_control": EPHEMERAL}] if content else None
    if not isinstance(content, list):
        return None
    for i in range(len(content) - 1, -1, -1):
        block = content[i]
        if not isinstance(block, dict) or block.get("type") in _UNCACHEABLE:
            continue
        if block.get("type") == "text" and not block.get("text"):
            continue
        out = list(content)
        out[i] = {**block, "cache_control": EPHEMERAL}
        return out
    return None


class PromptCaching:
    """The listener's prompt-caching policy (None when ``prompt_caching`` is off)."""

    def __init__(self, section) -> None:
        self.min_tokens = max(int(getattr(section, "min_prefix_tokens", 1024) or 0), ANTHROPIC_MIN_TOKENS)

    @classmethod
    def from_config(cls, config) -> PromptCaching | None:
        section = getattr(config, "prompt_caching", None)
        if section is None or not section.inject_active:
            return None
        return cls(section)

    def strategy(self, target, route) -> str | None:
        """``anthropic`` (Messages body), ``chat`` (chat request with content-part markers) or None."""
        if route is None:
            return None
        if route.api == ANTHROPIC_MESSAGES:
            return "anthropic" if route.translator is None else (
                "chat" if getattr(route.translator, "client", OPENAI_CHAT) == OPENAI_CHAT else None)
        if route.api == OPENAI_CHAT and route.translator is None and target.provider in _CLAUDE_GATEWAYS \
                and "claude" in target.model_id.lower():
            return "chat"
        return None

    def apply(self, request: dict, target, route, client_api: str) -> dict:
        """``request`` with breakpoints for ``target``, or ``request`` itself when none apply."""
        kind = self.strategy(target, route)
        if kind is None or (kind == "chat" and client_api != OPENAI_CHAT) \
                or (kind == "anthropic" and client_api != ANTHROPIC_MESSAGES):
            return request
        messages = request.get("messages")
        if not isinstance(messages, list) or _has_markers(request):
            return request
        if kind == "anthropic":
            system_chars = _chars(request.get("system"))
            convo = messages
        else:
            system_chars = sum(_chars(m.get("content")) for m in messages
                               if isinstance(m, dict) and m.get("role") in ("system", "developer"))
            convo = [m for m in messages if isinstance(m, dict) and m.get("role") not in ("system", "developer")]
        tools = request.get("tools") or []
        stable = system_chars + (len(orjson.dumps(tools)) if tools else 0) + sum(
            _chars(m.get("content")) for m in convo[:-1] if isinstance(m, dict))
        if stable // 4 < self.min_tokens:
            return request
        out = dict(request)
        left = MAX_BREAKPOINTS
        if tools and isinstance(tools[-1], dict):
            out["tools"] = [*tools[:-1], {**tools[-1], "cache_control": EPHEMERAL}]
            left -= 1
        new_messages = list(messages)
        if kind == "anthropic":
            marked = _mark_content(request.get("system"))
            if marked is not None:
                out["system"] = marked
                left -= 1
            positions = list(range(len(messages)))
        else:
            system_at = [i for i, m in enumerate(messages) if isinstance(m, dict)
                         and m.get("role") in ("system", "developer")]
            if system_at:
                i = system_at[-1]
                marked = _mark_content(messages[i].get("content"))
                if marked is not None:
                    new_messages[i] = {**messages[i], "content": marked}
                    left -= 1
            positions = [i for i, m in enumerate(messages) if isinstance(m, dict)
                         and m.get("role") not in ("system", "developer")]
        # the newest turn, then the one before it (most valuable first, while breakpoints remain)
        for i in reversed(positions[-2:]):
            if left <= 0:
                break
            m = messages[i]
            if not isinstance(m, dict):
                continue
            marked = _mark_content(m.get("content"))
            if marked is not None:
                new_messages[i] = {**m, "content": marked}
                left -= 1
        out["messages"] = new_messages
        return out


def cache_outcome(usage) -> str | None:
    """``hit`` / ``miss`` from a usage object (OpenAI or Anthropic shaped), None without usage."""
    if not isinstance(usage, dict):
        return None
    read = usage.get("cache_read_input_tokens")
    if read is None:
        details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details")
        read = details.get("cached_tokens") if isinstance(details, dict) else None
    if read is None and "input_tokens" not in usage and "prompt_tokens" not in usage:
        return None
    return "hit" if isinstance(read, int) and read > 0 else "miss"


class CacheOutcome:
    """A relay observer counting prompt-cache hits/misses for one call (wraps the next observer)."""

    __slots__ = ("inner", "metrics", "model", "usage")

    def __init__(self, inner, metrics, model: str) -> None:
        self.inner = inner
        self.metrics = metrics
        self.model = model
        self.usage = None

    def chunk(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.chunk(data)
        if b'"usage"' in data:
            for line in data.split(b"\n"):
                if line.startswith(b"data:") and b'"usage"' in line:
                    try:
                        event = orjson.loads(line[5:])
                    except orjson.JSONDecodeError:
                        continue
                    if not isinstance(event, dict):
                        continue
                    found = event.get("usage")
                    if found is None and isinstance(event.get("message"), dict):
                        found = event["message"].get("usage")
                    if found is None and isinstance(event.get("response"), dict):
                        found = event["response"].get("usage")
                    if isinstance(found, dict) and (self.usage is None or "input_tokens" in found
                                                    or "prompt_tokens" in found):
                        self.usage = found

    def finish(self, status, **kwargs) -> None:
        if self.inner is not None:
            self.inner.finish(status, **kwargs)
        if status is None or status >= 400:
            return
        usage = kwargs.get("usage")
        if usage is None and isinstance(kwargs.get("completion"), dict):
            usage = kwargs["completion"].get("usage")
        if usage is None:
            usage = self.usage
        outcome = cache_outcome(usage if isinstance(usage, dict) else None)
        if outcome is not None and self.metrics is not None:
            try:
                self.metrics.prompt_cache(self.model, outcome)
            except Exception:  # noqa: BLE001 - metrics never fail a request
                pass

    def __getattr__(self, name):
        return getattr(object.__getattribute__(self, "inner"), name)
