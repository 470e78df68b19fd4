"""Moved to :mod:`gateway.wire.sse` (the wire layer); re-exported for existing imports."""

from gateway.wire.sse import EventAligner, event_data, openai_error_event, split_events

__all__ = ["EventAligner", "event_data", "openai_error_event", "split_events"]
