"""OpenAI Embeddings on the wire: ``POST /v1/embeddings`` request parsing.

Embeddings pass through to OpenAI-compatible providers (the model resolved like a chat
model, ``model`` rewritten to the provider's id, the answer relayed untouched); errors use
OpenAI's envelope. Only what plano relies on is checked: an object body, a string
``model`` when given, and an ``input`` that is a string or a non-empty array.
"""

from __future__ import annotations

from gateway.wire.errors import bad_request, json_object_body

PATH = "/v1/embeddings"


def parse_embeddings_request(body: bytes) -> dict:
    request = json_object_body(body)
    model = request.get("model")
    if model is not None and not isinstance(model, str):
        raise bad_request("'model' must be a string.", param="model", code="invalid_type")
    value = request.get("input")
    if value is None:
        raise bad_request("'input' is required.", param="input", code="missing_required_parameter")
    if not isinstance(value, (str, list)) or (isinstance(value, list) and not value):
        raise bad_request("'input' must be a string or a non-empty array.", param="input", code="invalid_type")
    return request
