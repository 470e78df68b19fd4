"""Moved to :mod:`gateway.wire.relay` (the wire layer); re-exported for existing imports."""

from gateway.wire.openai_chat import completion_as_sse
from gateway.wire.relay import (
    MAX_ERROR_BODY,
    Describe,
    Invalid,
    Observers,
    classify_break,
    client_headers,
    json_object,
    observers,
    relay_error,
    relay_json,
    relay_stream,
    upstream_message,
)

__all__ = ["MAX_ERROR_BODY", "Describe", "Invalid", "Observers", "classify_break", "client_headers",
           "completion_as_sse", "json_object", "observers", "relay_error", "relay_json", "relay_stream",
           "upstream_message"]
