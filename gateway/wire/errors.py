"""Errors the gateway answers itself, rendered in the client API's own error envelope.

Every handler raises :class:`GatewayError`; the listener renders it in the shape the
client's SDK understands — OpenAI's ``{"error": {...}}`` for Chat Completions and
Responses, Anthropic's ``{"type": "error", "error": {"type", "message"}}`` for
Messages — so an SDK raises its own typed exception (``openai.NotFoundError``,
``anthropic.NotFoundError`` ...) with our message instead of a decoding error.
"""

from __future__ import annotations

import orjson

# OpenAI error `type` values by HTTP status, as the OpenAI API itself uses them.
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    408: "timeout_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    501: "not_implemented_error",
    502: "upstream_error",
    503: "service_unavailable_error",
    504: "timeout_error",
}

# Anthropic error `type` values by HTTP status (docs: "Errors" — HTTP errors).
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    409: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_type(status: int) -> str:
    return _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


class GatewayError(Exception):
    """A failure with a definite status and a message that is safe to show a client.

    Messages must never contain secrets (keys, Authorization values): they reach
    clients, logs and traces verbatim.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        type: str | None = None,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        super().__init__(message)
        self.headers = headers  # extra response headers, e.g. Retry-After
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type or _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")

    def openai_body(self) -> bytes:
        return openai_error(self.message, self.type, self.code, self.param)

    def anthropic_body(self, request_id: str | None = None) -> bytes:
        return anthropic_error(self.message, anthropic_type(self.status), request_id)


def openai_error(message: str, type: str, code: str | None = None, param: str | None = None) -> bytes:
    """OpenAI's envelope: ``{"error": {"message", "type", "code", "param"}}``."""
    return orjson.dumps({"error": {"message": message, "type": type, "code": code, "param": param}})


def anthropic_error(message: str, type: str, request_id: str | None = None) -> bytes:
    """Anthropic's envelope: ``{"type": "error", "error": {"type", "message"}, "request_id"}``."""
    body = {"type": "error", "error": {"type": type, "message": message}}
    if request_id:
        body["request_id"] = request_id
    return orjson.dumps(body)


def bad_request(message: str, *, param: str | None = None, code: str = "invalid_request") -> GatewayError:
    return GatewayError(400, message, code=code, param=param)


def json_object_body(body: bytes) -> dict:
    """A request body that must be one JSON object (every client API's first check), or a 400
    ``invalid_json`` in the caller's envelope."""
    import orjson

    if not body:
        raise bad_request("The request body is empty; expected a JSON object.", code="invalid_json")
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"The request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(request, dict):
        raise bad_request("The request body must be a JSON object.", code="invalid_json")
    return request

