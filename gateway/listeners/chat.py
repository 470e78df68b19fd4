"""Moved to :mod:`gateway.wire.openai_chat` (the wire layer); re-exported for existing imports."""

from gateway.wire.openai_chat import message_text, parse_chat_request

__all__ = ["message_text", "parse_chat_request"]
