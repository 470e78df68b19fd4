"""OpenAI Responses on the wire: request parsing, error envelope, SSE framing, assembly.

``POST /v1/responses``: ``input`` is a string or a list of items (messages with string
or part-list content — ``input_text``, ``input_image``, ``output_text`` … — function
calls and their outputs). Errors use OpenAI's envelope; a stream is ``event:`` +
``data:`` pairs numbered by ``sequence_number`` (see
:mod:`gateway.wire.translate.responses_chat` for the sequence); an in-stream error is
``event: error`` whose data carries ``error`` (the OpenAI SDKs raise ``APIError``).

Conversation state (``previous_response_id``) works on stored *input items*: what a
turn saw (its input, the previous turns' included) plus its output re-expressed as
input items (:func:`output_as_input`), as Plano stores it.
"""

from __future__ import annotations


from gateway.config.providers import OPENAI_RESPONSES
from gateway.wire.api import ClientAPI
from gateway.wire.errors import GatewayError, bad_request, json_object_body
from gateway.wire.sse import named_event
from gateway.wire.translate.responses_chat import input_items, new_id

__all__ = ["RESPONSES", "input_items", "new_id", "output_as_input", "parse_responses_request", "response_as_sse"]


def parse_responses_request(body: bytes) -> dict:
    request = json_object_body(body)
    model = request.get("model")
    if model is not None and not isinstance(model, str):
        raise bad_request("'model' must be a string.", param="model", code="invalid_type")
    value = request.get("input")
    if value is None:
        raise bad_request("'input' is required.", param="input", code="missing_required_parameter")
    if isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise bad_request(f"'input[{i}]' must be an object.", param=f"input[{i}]", code="invalid_type")
    elif not isinstance(value, str):
        raise bad_request("'input' must be a string or an array of input items.", param="input", code="invalid_type")
    for key, kind, label in (("stream", bool, "a boolean"), ("store", bool, "a boolean"),
                             ("previous_response_id", str, "a string"), ("instructions", str, "a string"),
                             ("tools", list, "an array")):
        if request.get(key) is not None and not isinstance(request[key], kind):
            raise bad_request(f"'{key}' must be {label}.", param=key, code="invalid_type")
    return request


def output_as_input(output) -> list:
    """A response's output items as input items for the next turn."""
    items = []
    for item in output or ():
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "message":
            items.append({"type": "message", "role": "assistant", "content": [
                {"type": "output_text", "text": p.get("text") or ""} for p in item.get("content") or ()
                if isinstance(p, dict) and p.get("type") == "output_text"]})
        elif kind == "function_call":
            items.append({"type": "function_call", "call_id": item.get("call_id"), "name": item.get("name"),
                          "arguments": item.get("arguments") or ""})
    return items


def response_as_sse(response: dict) -> bytes:
    """A whole ``response`` re-expressed as the Responses stream (an upstream that ignored ``stream``)."""
    seq = 0
    out = []

    def emit(kind: str, payload: dict) -> None:
        nonlocal seq
        payload["type"] = kind
        payload["sequence_number"] = seq
        seq += 1
        out.append(named_event(kind, payload))

    shell = {**response, "status": "in_progress", "output": [], "usage": None}
    emit("response.created", {"response": shell})
    emit("response.in_progress", {"response": shell})
    for index, item in enumerate(response.get("output") or ()):
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "message":
            emit("response.output_item.added", {"output_index": index,
                                                "item": {**item, "status": "in_progress", "content": []}})
            for c, part in enumerate(item.get("content") or ()):
                text = part.get("text") or "" if isinstance(part, dict) else ""
                emit("response.content_part.added", {"item_id": item.get("id"), "output_index": index,
                                                     "content_index": c, "part": {**part, "text": ""}})
                emit("response.output_text.delta", {"item_id": item.get("id"), "output_index": index,
                                                    "content_index": c, "delta": text, "logprobs": []})
                emit("response.output_text.done", {"item_id": item.get("id"), "output_index": index,
                                                   "content_index": c, "text": text, "logprobs": []})
                emit("response.content_part.done", {"item_id": item.get("id"), "output_index": index,
                                                    "content_index": c, "part": part})
        elif kind == "function_call":
            emit("response.output_item.added", {"output_index": index,
                                                "item": {**item, "arguments": "", "status": "in_progress"}})
            emit("response.function_call_arguments.delta", {"item_id": item.get("id"), "output_index": index,
                                                            "delta": item.get("arguments") or ""})
            emit("response.function_call_arguments.done", {"item_id": item.get("id"), "output_index": index,
                                                           "name": item.get("name"),
                                                           "arguments": item.get("arguments") or ""})
        else:
            emit("response.output_item.added", {"output_index": index, "item": item})
        emit("response.output_item.done", {"output_index": index, "item": item})
    emit("response.completed" if response.get("status", "completed") == "completed" else "response.incomplete",
         {"response": response})
    return b"".join(out)


class Responses(ClientAPI):
    name = OPENAI_RESPONSES
    path = "/v1/responses"
    label = "responses"

    def parse(self, body: bytes) -> dict:
        return parse_responses_request(body)

    def error_body(self, err: GatewayError, rid: str | None = None) -> bytes:
        return err.openai_body()

    def error_event(self, message: str, type: str = "upstream_error", code: str | None = None) -> bytes:
        error = {"type": type, "code": code, "message": message, "param": None}
        return named_event("error", {"type": "error", "code": code, "message": message, "param": None,
                                     "sequence_number": 0, "error": error})

    def as_sse(self, answer: dict) -> bytes:
        return response_as_sse(answer)

    def event(self, name: str | None, payload: dict) -> bytes:
        return named_event(name or payload.get("type") or "message", payload)

    def messages(self, request: dict) -> list | None:
        value = request.get("input")
        if isinstance(value, str):
            return [{"role": "user", "content": value}]
        if isinstance(value, list):
            return [i for i in value if isinstance(i, dict) and "role" in i]
        return None


RESPONSES = Responses()
