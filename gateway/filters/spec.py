"""One configured filter, resolved once at start-up.

Plano lets a chain name an ``agents`` entry as well as a ``filters`` entry (both
are "agents" to it); such an entry is an MCP filter whose tool is its id.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TIMEOUT = 5.0  # Plano has none: a hung filter would hang the request


@dataclass(frozen=True, slots=True)
class FilterSpec:
    id: str
    kind: str  # "http" | "mcp"
    url: str
    tool: str
    timeout: float
    on_error: str | None  # "fail_closed" | "fail_open" | None: decided by position (input/output)
    stream_mode: str  # "event" | "window"
    window_chars: int

    def fails_open(self, stage: str) -> bool:
        """Input filters fail closed, output filters fail open, unless ``on_error`` says otherwise."""
        if self.on_error is None:
            return stage == "output"
        return self.on_error == "fail_open"


def filter_spec(entry) -> FilterSpec:
    """From a config ``Filter`` (or an ``Agent`` named in a chain)."""
    timeout = getattr(entry, "timeout", None)
    return FilterSpec(
        id=entry.id,
        kind=getattr(entry, "type", "mcp") or "mcp",
        url=entry.url,
        tool=getattr(entry, "tool", None) or entry.id,
        timeout=float(timeout) if timeout else DEFAULT_TIMEOUT,
        on_error=getattr(entry, "on_error", None),
        stream_mode=getattr(entry, "stream_mode", "event") or "event",
        window_chars=getattr(entry, "window_chars", 256) or 256,
    )
