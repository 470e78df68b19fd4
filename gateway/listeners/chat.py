"""OpenAI chat-completions requests at the edge: parse once, check the structure cheaply.

Shared by the model listener and the agent listener. Only what the gateway itself
relies on is checked (object body, ``model`` string, non-empty ``messages`` of
objects with a ``role``, boolean ``stream``); everything else is the provider's
or agent's to judge, and passes through untouched.
"""

from __future__ import annotations

import orjson

from gateway.listeners.errors import bad_request


def parse_chat_request(body: bytes) -> dict:
    """Parse and check a chat-completions body at the edge (cheap structural checks only)."""
    if not body:
        raise bad_request("The request body is empty; expected a JSON object.", code="invalid_json")
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"The request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(request, dict):
        raise bad_request("The request body must be a JSON object.", code="invalid_json")
    model = request.get("model")
    if model is not None and not isinstance(model, str):
        raise bad_request("'model' must be a string.", param="model", code="invalid_type")
    messages = request.get("messages")
    if messages is None:
        raise bad_request("'messages' is required.", param="messages", code="missing_required_parameter")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array.", param="messages", code="invalid_type")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise bad_request(f"'messages[{i}]' must be an object.", param=f"messages[{i}]", code="invalid_type")
        if not isinstance(message.get("role"), str):
            raise bad_request(f"'messages[{i}].role' must be a string.", param=f"messages[{i}].role", code="invalid_type")
    stream = request.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise bad_request("'stream' must be a boolean.", param="stream", code="invalid_type")
    return request


def message_text(message: dict) -> str:
    """Plain text of a message whose content is a string or a list of text parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""
