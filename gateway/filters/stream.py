"""Output filters on a streamed answer: whole events, or a sliding window of text.

Plano runs output filters on raw network chunks, so a filter may see half an event
and a redactor misses a secret that two chunks split. Here a filter sees whole
messages, in one of two modes (``stream_mode`` on the filter):

``event`` (default)
    One call per SSE event with its parsed JSON payload (a ``chat.completion.chunk``);
    the answer is re-serialised. ``[DONE]``, comments and non-JSON events pass untouched.

``window``
    For redactors. The answer's text (``choices[0].delta.content``) is accumulated
    and held back; the filter is sent a synthetic chunk whose content is all the text
    not yet released, and what it returns is released as chunks. The rule that makes
    a split secret safe: after each call, the last ``window_chars`` characters of the
    held text must come back *unchanged* at the end of the filter's answer. Then
    everything before them is final — every released character was seen with at
    least ``window_chars`` characters of context after it — and only those last
    characters are held for the next call. If the filter changed something in that
    tail (a secret that may continue in the next chunk), nothing is released and the
    window grows until the change lies far enough back. So a secret of up to
    ``window_chars`` characters is always seen whole before any of it reaches the
    client, however the provider chunks it. Events that are not plain text deltas
    (role-only, tool calls, finish, usage) first flush the held text through the
    filter, then go through it as events; the end of the stream flushes everything.
    A filter that keeps changing the tail (say, appends a marker) stops being held
    once the window reaches four times its size, so memory stays bounded.

Filters compose as a pipeline of stages, each feeding the next. A filter that fails
open on one event is not called again for the rest of that stream (its policy lets
the answer through anyway; calling it per event would add its timeout per event).
"""

from __future__ import annotations

import logging

import orjson

from gateway.filters import shapes
from gateway.listeners.errors import GatewayError
from gateway.listeners.sse import event_data, split_events

_DONE = b"[DONE]"

log = logging.getLogger("plano.filters")


def _bypassed(stage) -> None:
    log.info("request_id=%s filter=%s failed open; not called again for this stream", stage.run.rid,
             stage.entry.spec.id)


class Event:
    """One SSE event on its way to the client: parsed JSON (``obj``) or bytes passed through."""

    __slots__ = ("fields", "is_data", "obj", "raw")

    def __init__(self, obj: dict | None, raw: bytes, fields: bytes = b"", is_data: bool = True) -> None:
        self.obj = obj  # the JSON object in ``data``; None: pass ``raw`` through untouched
        self.raw = raw  # the event as received (no trailing blank line)
        self.fields = fields  # non-data lines (``event:``, ``id:``) kept in front of a re-serialised event
        self.is_data = is_data  # False for comments / keep-alives (no data field)

    def encode(self) -> bytes:
        if self.obj is None:
            return self.raw + b"\n\n"
        return self.fields + b"data: " + orjson.dumps(self.obj) + b"\n\n"


def parse_event(block: bytes) -> Event:
    data = event_data(block)
    if data is None:
        return Event(None, block, is_data=False)
    if data.strip() == _DONE:
        return Event(None, block)
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return Event(None, block)
    if not isinstance(obj, dict):
        return Event(None, block)
    fields = b""
    if b"\n" in block:
        kept = [line for line in block.split(b"\n") if not line.startswith(b"data:")]
        fields = b"".join(line + b"\n" for line in kept)
    return Event(obj, block, fields)


class EventStage:
    """``stream_mode: event``: the filter sees each JSON event."""

    __slots__ = ("bypass", "entry", "path", "run")

    def __init__(self, entry, run, path: str) -> None:
        self.entry = entry
        self.run = run
        self.path = path
        self.bypass = False

    async def push(self, event: Event) -> list[Event]:
        if event.obj is not None and not self.bypass:
            event.obj, self.bypass = await self.entry.attempt(event.obj, self.path, self.run)
            if self.bypass:
                _bypassed(self)
        return [event]

    async def end(self) -> list[Event]:
        return []


class WindowStage:
    """``stream_mode: window``: the filter sees the not-yet-released text (see the module docstring)."""

    __slots__ = ("base", "bypass", "cap", "entry", "held", "path", "run", "window")

    def __init__(self, entry, run, path: str, window: int) -> None:
        self.entry = entry
        # The filter is told it sees overlapping windows (stateful stream redactors must not carry state).
        self.run = _windowed(run)
        self.path = path
        self.window = window
        self.cap = 4 * window
        self.held = ""  # text received and not yet released
        self.base: dict = {}  # id / model / created of the stream, for the chunks we make
        self.bypass = False

    async def push(self, event: Event) -> list[Event]:
        if self.bypass:  # failed open earlier: what is held goes out as it is, then everything else
            held, self.held = self.held, ""
            return [self._event({"content": held}), event] if held else [event]
        if event.obj is None:
            if not event.is_data:  # a comment or keep-alive: order does not matter
                return [event]
            out = await self._flush()  # [DONE] or a non-JSON event: the text goes first
            out.append(event)
            return out
        text = _text_delta(event.obj)
        if text is None:
            out = await self._flush()
            if not self.bypass:
                event.obj = await self._call(event.obj, None)
            out.append(event)
            return out
        content, role = text
        obj = event.obj
        self.base = {k: v for k, v in obj.items() if k != "choices"}
        out: list[Event] = []
        if role is not None:  # announce the role now; its text joins the window
            out.append(self._event({"role": role, "content": ""}))
        self.held += content
        if len(self.held) > self.window:
            out += await self._slide()
        return out

    async def end(self) -> list[Event]:
        return await self._flush()

    async def _slide(self) -> list[Event]:
        held, window = self.held, self.window
        text = await self._filter(held)
        tail = held[-window:]
        if text.endswith(tail):  # the tail came back unchanged: everything before it is final
            self.held = tail
            head = text[: len(text) - window]
            return [self._event({"content": head})] if head else []
        if len(held) > self.cap:  # the filter keeps changing the tail: stop holding
            self.held = ""
            return [self._event({"content": text})] if text else []
        return []

    async def _flush(self) -> list[Event]:
        if not self.held:
            return []
        text = await self._filter(self.held)
        self.held = ""
        return [self._event({"content": text})] if text else []

    async def _filter(self, text: str) -> str:
        if self.bypass:
            return text
        chunk = {**self.base, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
        out = await self._call(chunk, shapes.chunk_text)
        return out["choices"][0]["delta"]["content"]

    async def _call(self, obj: dict, check) -> dict:
        out, self.bypass = await self.entry.attempt(obj, self.path, self.run, check)
        if self.bypass:
            _bypassed(self)
        return out

    def _event(self, delta: dict) -> Event:
        return Event({**self.base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}, b"")


def _windowed(run):
    """A view of the request's FilterRun whose calls carry ``x-plano-stream-mode: window``."""
    from gateway.filters.context import FilterRun

    view = FilterRun(run.rid, {**run.headers, "x-plano-stream-mode": "window"})
    view.outcomes = run.outcomes  # outcomes still land on the request's record
    view.telemetry = run.telemetry
    return view


def _text_delta(obj: dict) -> tuple[str, str | None] | None:
    """(content, role) when the event is a plain text delta of the first choice, else None."""
    choices = obj.get("choices")
    if not isinstance(choices, list) or len(choices) != 1 or obj.get("usage") is not None:
        return None
    choice = choices[0]
    if not isinstance(choice, dict) or choice.get("index", 0) != 0 or choice.get("finish_reason") is not None:
        return None
    delta = choice.get("delta")
    if not isinstance(delta, dict) or not isinstance(delta.get("content"), str):
        return None
    if any(key not in ("role", "content") and value is not None for key, value in delta.items()):
        return None
    role = delta.get("role")
    return delta["content"], role if isinstance(role, str) else None


class StreamFilter:
    """An output chain applied to one SSE response: feed it aligned bytes, send what it returns.

    When a filter blocks or fails closed, the events before the one it stopped are still
    returned, and the error is left in :attr:`error`: the stream ends there.
    """

    __slots__ = ("error", "stages")

    def __init__(self, entries, run, path: str) -> None:
        self.stages = [WindowStage(e, run, path, e.spec.window_chars) if e.spec.stream_mode == "window"
                       else EventStage(e, run, path) for e in entries]
        self.error: GatewayError | None = None

    async def feed(self, aligned: bytes) -> bytes:
        out: list[Event] = []
        try:
            for block in split_events(aligned):
                events = [parse_event(block)]
                for stage in self.stages:
                    events = [result for event in events for result in await stage.push(event)]
                out += events
        except GatewayError as err:
            self.error = err
        return b"".join(event.encode() for event in out)

    async def finish(self) -> bytes:
        """Flush what the stages still hold (the stream ended), each flush going through the later stages."""
        events: list[Event] = []
        try:
            for stage in self.stages:
                events = [result for event in events for result in await stage.push(event)]
                events += await stage.end()
        except GatewayError as err:
            self.error = err
            return b""
        return b"".join(event.encode() for event in events)
