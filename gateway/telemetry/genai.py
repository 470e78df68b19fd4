"""LLM call facts -> span attributes (Plano's ``llm.*`` keys and OpenTelemetry ``gen_ai.*`` beside them).

Kept apart from span plumbing so the same parsing feeds traces and metrics:
token usage is read from OpenAI (``prompt_tokens``, ``*_details.cached_tokens``,
``reasoning_tokens``) and Anthropic (``input_tokens``, ``cache_read_input_tokens``)
shapes, including the final ``usage`` event of a stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson


@dataclass(slots=True)
class Usage:
    prompt: int | None = None
    completion: int | None = None
    total: int | None = None
    cached: int | None = None  # prompt tokens served from a provider-side cache
    cache_creation: int | None = None
    reasoning: int | None = None


def parse_usage(usage) -> Usage | None:
    """An OpenAI or Anthropic ``usage`` object -> :class:`Usage` (None when absent or not an object)."""
    if type(usage) is not dict:
        return None
    get = usage.get
    prompt = get("prompt_tokens")
    if prompt is None:
        prompt = get("input_tokens")
    completion = get("completion_tokens")
    if completion is None:
        completion = get("output_tokens")
    total = get("total_tokens")
    if type(prompt) is not int:
        prompt = _int(prompt)
    if type(completion) is not int:
        completion = _int(completion)
    if type(total) is not int:
        total = _int(total)
        if total is None and prompt is not None and completion is not None:
            total = prompt + completion
    cached = reasoning = cache_creation = None
    details = get("prompt_tokens_details") or get("input_tokens_details")
    if details:
        cached = _int(details.get("cached_tokens")) if type(details) is dict else None
    if cached is None and "cache_read_input_tokens" in usage:
        cached = _int(get("cache_read_input_tokens"))
    if "cache_creation_input_tokens" in usage:
        cache_creation = _int(get("cache_creation_input_tokens"))
    out_details = get("completion_tokens_details") or get("output_tokens_details")
    if out_details and type(out_details) is dict:
        reasoning = _int(out_details.get("reasoning_tokens"))
    return Usage(prompt, completion, total, cached, cache_creation, reasoning)


def usage_from_sse(chunk: bytes) -> Usage | None:
    """The ``usage`` carried by an SSE chunk (usually the last event of a stream), else None.

    Cheap on chunks without usage: one substring search. Relays call it on every
    chunk they forward and keep the last non-None result.
    """
    if b'"usage"' not in chunk:
        return None
    found = None
    for line in chunk.split(b"\n"):
        if not line.startswith(b"data:") or b'"usage"' not in line:
            continue
        try:
            event = orjson.loads(line[5:])
        except orjson.JSONDecodeError:
            continue
        if isinstance(event, dict):
            parsed = parse_usage(event.get("usage"))
            if parsed is None and event.get("type") == "message_delta":  # Anthropic puts it one level down
                parsed = parse_usage((event.get("delta") or {}).get("usage"))
            if parsed is not None:
                found = parsed
    return found


_FIXED_CACHE: dict = {}


def request_fixed(provider: str, requested: str | None, resolved: str, stream: bool) -> tuple:
    """The request attributes that only depend on (provider, requested, resolved, stream), as cached pairs.

    ``llm.model`` is not among them: the response may name a more precise model.
    """
    key = (provider, requested, resolved, stream)
    found = _FIXED_CACHE.get(key)
    if found is None:
        pairs = [
            ("llm.provider", provider),
            ("llm.is_streaming", stream),
            ("gen_ai.operation.name", "chat"),
            ("gen_ai.provider.name", provider),
            ("gen_ai.request.model", requested or resolved),
        ]
        if requested and requested != resolved:
            pairs += [("model.requested", requested), ("model.alias_resolved", resolved)]
        found = tuple(pairs)
        if len(_FIXED_CACHE) < 4096:
            _FIXED_CACHE[key] = found
    return found


def request_facts(request: dict) -> tuple:
    """What an LLM span keeps of the request body: ``(temperature, max_tokens, max_completion_tokens,
    top_p, tool names)``, unchecked (see :func:`expand_facts`). Taken when the call starts, so a
    later change to the body does not show; tool schemas and the conversation are not kept."""
    get = request.get
    tools = get("tools")
    return (get("temperature"), get("max_tokens"), get("max_completion_tokens"), get("top_p"),
            tool_names(tools) if tools else None)


def tool_names(tools) -> str | None:
    """``name(...)`` per declared tool (the first 32), one per line, or None."""
    if not isinstance(tools, list):
        return None
    names = []
    for tool in tools[:32]:
        fn = tool.get("function") if isinstance(tool, dict) else None
        name = (fn or tool).get("name") if isinstance(fn or tool, dict) else None
        if isinstance(name, str):
            names.append(f"{name}(...)")
    return "\n".join(names) or None


# Attribute keys per sampling parameter of :func:`request_facts` (max_completion_tokens wins over max_tokens).
_PARAM_KEYS = (
    ("llm.temperature", "gen_ai.request.temperature"),
    ("llm.max_tokens", "gen_ai.request.max_tokens"),
    ("llm.max_tokens", "gen_ai.request.max_tokens"),
    ("llm.top_p", "gen_ai.request.top_p"),
)


# --------------------------------------------------------------------------- raw facts -> attributes
#
# On the request path an LLM span records only raw facts (the request's sampling parameters
# and tool names, the usage numbers, three fields of the response, duration and size); they
# become ``llm.*``/``gen_ai.*`` attributes where the span is encoded: the telemetry sidecar,
# or the exporter's batch in-process. A worker spends a few tuples per request instead of a
# few dozen dict writes.


def milliseconds(seconds: float) -> float:
    """Milliseconds to 3 decimals (``round(x, 3)`` goes through decimal conversion: several times slower)."""
    return int(seconds * 1_000_000.0 + 0.5) / 1000.0


# Attribute keys per field of a usage tuple (the order of :func:`usage_facts`).
_USAGE_KEYS = (
    ("llm.usage.prompt_tokens", "gen_ai.usage.input_tokens"),
    ("llm.usage.completion_tokens", "gen_ai.usage.output_tokens"),
    ("llm.usage.total_tokens",),
    ("llm.usage.cached_input_tokens", "gen_ai.usage.cache_read.input_tokens"),
    ("llm.usage.cache_creation_tokens", "gen_ai.usage.cache_creation.input_tokens"),
    ("llm.usage.reasoning_tokens", "gen_ai.usage.reasoning.output_tokens"),
)


def usage_facts(usage: Usage | None) -> tuple | None:
    """:class:`Usage` as a plain tuple (what the telemetry sidecar can be sent)."""
    if usage is None:
        return None
    return (usage.prompt, usage.completion, usage.total, usage.cached, usage.cache_creation, usage.reasoning)


def response_facts(completion: dict) -> tuple:
    """``(model, id, finish reasons)`` of a chat completion object, unchecked (see :func:`expand_facts`)."""
    choices = completion.get("choices")
    try:
        if len(choices) == 1:
            reasons = choices[0]["finish_reason"]
        else:
            reasons = tuple(c.get("finish_reason") for c in choices if type(c) is dict)
    except Exception:  # noqa: BLE001 - no choices, or not the usual shape: no finish reasons
        reasons = None
    return (completion.get("model"), completion.get("id"), reasons)


def expand_facts(facts, attrs: dict) -> dict:
    """Add the attributes an LLM span's raw facts stand for to ``attrs``.

    ``facts``: ``(request, usage, response, seconds, response bytes)`` — :func:`request_facts`,
    :func:`usage_facts`, :func:`response_facts`, the call's duration and the size of the
    answer (the last four None until the call finished). Values come from clients and
    upstreams: anything of an unexpected type is left out.
    """
    try:
        request, usage, response, seconds, response_bytes = facts
    except (TypeError, ValueError):
        return attrs
    if type(seconds) is float and 0.0 <= seconds < 1e9:
        attrs["llm.duration_ms"] = milliseconds(seconds)
    if type(response_bytes) is int:
        attrs["llm.response_bytes"] = response_bytes
    if type(request) in (tuple, list) and len(request) == 5:
        for value, keys in zip(request, _PARAM_KEYS):
            if type(value) is int or type(value) is float:
                attrs[keys[0]] = value
                attrs[keys[1]] = value
        if type(request[4]) is str and request[4]:
            attrs["llm.tools"] = request[4]
    if type(usage) in (tuple, list) and len(usage) == 6:
        for value, keys in zip(usage, _USAGE_KEYS):
            if type(value) is int:
                for key in keys:
                    attrs[key] = value
    if type(response) in (tuple, list) and len(response) == 3:
        model, rid, reasons = response
        if type(model) is str and model:
            attrs["llm.model"] = model
            attrs["gen_ai.response.model"] = model
        if type(rid) is str:
            attrs["gen_ai.response.id"] = rid
        if type(reasons) is str:
            reasons = (reasons,) if reasons else None
        elif type(reasons) in (list, tuple):
            reasons = tuple(r for r in reasons if type(r) is str and r)
        else:
            reasons = None
        if reasons:
            attrs["gen_ai.response.finish_reasons"] = reasons
    return attrs


def last_user_text(messages) -> str:
    """The latest user message as plain text (content parts joined)."""
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def content_text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _int(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None
