"""Moved to :mod:`gateway.wire.errors` (the wire layer); re-exported for existing imports."""

from gateway.wire.errors import GatewayError, anthropic_error, bad_request, openai_error

__all__ = ["GatewayError", "anthropic_error", "bad_request", "openai_error"]
