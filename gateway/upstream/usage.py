"""Token usage of a chat completion, read from every response shape, for token rate limits.

OpenAI-style upstreams report ``usage`` in the JSON body of a complete answer, or in the
final chunk of a stream (``stream_options: {include_usage: true}``; Anthropic-shaped
streams in a ``message_delta``). :class:`UsageExtractor` is fed the relayed bytes chunk by
chunk, at any boundary (a ``data:`` line split across chunks is reassembled), and keeps
the last usage it saw. :class:`UsageObserver` is the relay-side adapter: it sits where the
relay expects its ``call`` observer (``chunk(bytes)`` / ``finish(status, ...)``), passes
every call on to the telemetry call it wraps, and reports the tokens used once at the end.
When the upstream sent no usage, the tokens are estimated: the request's estimated input
plus one token per streamed content event (OpenAI streams about one token per chunk) or a
quarter of the answer's characters for a JSON body.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from gateway.telemetry.genai import Usage, parse_usage

_USAGE = b'"usage"'
_DELTA = b'"delta"'


def estimate_tokens(request: dict | None) -> int:
    """A cheap upper-ish estimate of a chat request's input tokens: characters / 4 plus framing.

    Counts string contents, text parts, tool-call arguments and tool definitions; about 4
    characters per token for English text, plus 4 tokens of framing per message.
    """
    if not isinstance(request, dict):
        return 1
    chars = 0
    count = 0
    messages = request.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if not isinstance(message, dict):
                continue
            count += 1
            content = message.get("content")
            if isinstance(content, str):
                chars += len(content)
            elif isinstance(content, list):
                for part in content:
                    if isinstance(part, dict):
                        text = part.get("text")
                        if isinstance(text, str):
                            chars += len(text)
            calls = message.get("tool_calls")
            if isinstance(calls, list):
                for call in calls:
                    fn = call.get("function") if isinstance(call, dict) else None
                    if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                        chars += len(fn["arguments"])
    tools = request.get("tools")
    if tools:
        try:
            chars += len(orjson.dumps(tools))
        except TypeError:
            pass
    return max(1, (chars + 3) // 4 + 4 * count + 3)


def usage_tokens(usage: Usage | None) -> int | None:
    """Total tokens of a :class:`Usage` (prompt + completion when the total is missing), or None."""
    if usage is None:
        return None
    if usage.total is not None:
        return usage.total
    if usage.prompt is None and usage.completion is None:
        return None
    return (usage.prompt or 0) + (usage.completion or 0)


class UsageExtractor:
    """Incremental ``usage`` reader for SSE bytes fed at arbitrary chunk boundaries.

    Only complete lines are inspected; the unfinished tail of a chunk waits for the next
    one. Lines without ``"usage"`` cost one substring search per chunk. ``events`` counts
    content events (``"delta"``), the estimate used when no usage arrives.
    """

    __slots__ = ("_tail", "events", "usage")

    #: A line longer than this without a newline is dropped (no usage line is that long).
    MAX_TAIL = 1 << 20

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.events = 0
        self._tail = b""

    def feed(self, data: bytes) -> None:
        if self._tail:
            data = self._tail + data
        end = data.rfind(b"\n")
        if end < 0:
            self._tail = data if len(data) <= self.MAX_TAIL else b""
            return
        tail = data[end + 1:]
        self._tail = tail if len(tail) <= self.MAX_TAIL else b""
        complete = data[:end] if tail else data
        self.events += complete.count(_DELTA)
        if _USAGE in complete:
            self._scan(complete)

    def _scan(self, complete: bytes) -> None:
        for line in complete.split(b"\n"):
            if _USAGE not in line:
                continue
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            try:
                event = orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                continue
            if type(event) is not dict:
                continue
            parsed = parse_usage(event.get("usage"))
            if parsed is None and event.get("type") == "message_delta":
                delta = event.get("delta")
                parsed = parse_usage(delta.get("usage")) if isinstance(delta, dict) else None
            if parsed is not None:
                self.usage = parsed

    def finish(self) -> Usage | None:
        """Flush a final line that ended without a newline; the usage seen, or None."""
        if self._tail:
            tail, self._tail = self._tail, b""
            if _USAGE in tail:
                self._scan(tail)
        return self.usage


def completion_chars(completion: dict | None) -> int:
    """Characters of a ``chat.completion``'s answers (content and tool-call arguments)."""
    if not isinstance(completion, dict) or not isinstance(completion.get("choices"), list):
        return 0
    chars = 0
    for choice in completion["choices"]:
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            continue
        if isinstance(message.get("content"), str):
            chars += len(message["content"])
        for call in message.get("tool_calls") or ():
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                chars += len(fn["arguments"])
    return chars


class UsageObserver:
    """A relay observer that tees to ``inner`` (the telemetry call, or None) and reports tokens used.

    ``report(tokens, measured)`` is called exactly once, at ``finish``: the upstream's usage
    total when it sent one (``measured`` True), else an estimate; 0 when the upstream
    answered an error status without usage (providers do not bill those).
    """

    __slots__ = ("_done", "estimated_input", "extractor", "inner", "report")

    def __init__(self, inner, report: Callable[[int, bool], None], estimated_input: int = 0) -> None:
        self.inner = inner
        self.report = report
        self.estimated_input = estimated_input
        self.extractor = UsageExtractor()
        self._done = False

    def chunk(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.chunk(data)
        self.extractor.feed(data)

    def finish(self, status, **kwargs) -> None:
        if self.inner is not None:
            self.inner.finish(status, **kwargs)
        if self._done:
            return
        self._done = True
        completion = kwargs.get("completion")
        usage = kwargs.get("usage")
        if usage is not None and type(usage) is not Usage:
            usage = parse_usage(usage)
        if usage is None and isinstance(completion, dict):
            usage = parse_usage(completion.get("usage"))
        if usage is None:
            usage = self.extractor.finish()
        tokens = usage_tokens(usage)
        if tokens is not None:
            self.report(tokens, True)
            return
        if status is None or status >= 400:
            if not self.extractor.events:  # never reached the model, or refused: nothing consumed
                self.report(0, False)
                return
        if completion is not None:
            estimate = self.estimated_input + (completion_chars(completion) + 3) // 4
        else:
            estimate = self.estimated_input + self.extractor.events
        self.report(estimate, False)

    def __getattr__(self, name):  # anything else a listener asks of the call (inject, first_token ...)
        inner = object.__getattribute__(self, "inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)
