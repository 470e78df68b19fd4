"""Server-sent-events framing helpers.

The proxy forwards upstream SSE bytes without parsing them, but only on event
boundaries: a chunk is sent once it ends a complete event. That keeps streaming
unbuffered (an event goes out the moment its blank line arrives) while letting us
end a broken stream with a well-formed error event instead of half an event.
Output filters and the MCP client, which do need the events, split aligned
chunks with :func:`split_events` / :func:`event_data`.
"""

from __future__ import annotations

import orjson


#: The most bytes one SSE event may carry before it ends. An upstream that never sends the blank
#: line that ends an event would otherwise grow the held-back tail without bound.
MAX_EVENT_BYTES = 8 * 1024 * 1024


class EventAligner:
    """Splits a byte stream so every piece handed out ends on an SSE event boundary.

    An event still unfinished after ``limit`` bytes ends the stream as broken
    (:class:`~gateway.upstream.UpstreamError` ``broken``), which every caller already
    turns into a clean error for its client."""

    __slots__ = ("pending", "limit")

    def __init__(self, limit: int = MAX_EVENT_BYTES) -> None:
        self.pending = b""
        self.limit = limit

    def feed(self, chunk: bytes) -> bytes:
        data = self.pending + chunk if self.pending else chunk
        end = _boundary(data)
        if end < 0:
            if len(data) > self.limit:
                self.pending = b""
                from gateway.upstream.transport import UpstreamError

                raise UpstreamError("broken", "stream", f"an SSE event grew past {self.limit} bytes without ending")
            self.pending = data
            return b""
        self.pending = data[end:]
        if len(self.pending) > self.limit:
            self.pending = b""
            from gateway.upstream.transport import UpstreamError

            raise UpstreamError("broken", "stream", f"an SSE event grew past {self.limit} bytes without ending")
        return data[:end]


def _boundary(data: bytes) -> int:
    """Index just past the last blank line (``\\n\\n`` or ``\\r\\n\\r\\n``), or -1."""
    lf = data.rfind(b"\n\n")
    crlf = data.rfind(b"\r\n\r\n")
    if lf < 0 and crlf < 0:
        return -1
    return max(lf + 2 if lf >= 0 else -1, crlf + 4 if crlf >= 0 else -1)


def split_events(aligned: bytes) -> list[bytes]:
    """The events of a chunk that ends on an event boundary (see :class:`EventAligner`).

    Each event comes back as its lines joined by ``\\n``, without the blank line that
    ended it; CRLF line endings are normalised.
    """
    if b"\r" in aligned:
        aligned = aligned.replace(b"\r\n", b"\n")
    return [block for block in (p.strip(b"\n") for p in aligned.split(b"\n\n")) if block]


def event_data(block: bytes) -> bytes | None:
    """The ``data`` field of one event (its data lines joined by ``\\n``), or None without one."""
    if b"\n" not in block:  # the usual case: a single ``data:`` line
        if block.startswith(b"data:"):
            return block[6:] if block[5:6] == b" " else block[5:]
        return None
    parts = [line[6:] if line[5:6] == b" " else line[5:] for line in block.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(parts) if parts else None


def event_name(block: bytes) -> bytes | None:
    """The ``event`` field of one event block (see :func:`split_events`), or None without one."""
    if not block.startswith(b"event:") and b"\nevent:" not in block:
        return None
    for line in block.split(b"\n"):
        if line.startswith(b"event:"):
            return line[6:].strip()
    return None


def named_event(name: str, payload: dict) -> bytes:
    """One ``event: <name>`` + ``data: <json>`` event (Anthropic Messages and OpenAI Responses framing)."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def data_event(payload: dict) -> bytes:
    """One ``data: <json>`` event (OpenAI Chat Completions framing)."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def openai_error_event(message: str, type: str = "upstream_error", code: str | None = None) -> bytes:
    """An in-stream error as the OpenAI SDKs understand it (they raise ``APIError``)."""
    return b"data: " + orjson.dumps({"error": {"message": message, "type": type, "code": code, "param": None}}) + b"\n\n"
