"""An OpenAPI 3.1 description of plano's own HTTP endpoints: listeners and the admin port.

Served at ``GET /openapi.json`` on the admin port, generated from the running config (one
server entry per listener). Request bodies describe what plano itself checks at the edge
(the provider or agent judges the rest); every error is one of the documented envelopes.
"""

from __future__ import annotations

_OPENAI_ERROR = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["message", "type"], "properties": {
        "message": {"type": "string"}, "type": {"type": "string"},
        "code": {"type": ["string", "null"]}, "param": {"type": ["string", "null"]}}}},
}
_ANTHROPIC_ERROR = {
    "type": "object", "required": ["type", "error"],
    "properties": {"type": {"const": "error"}, "error": {"type": "object", "required": ["type", "message"],
                                                          "properties": {"type": {"type": "string"},
                                                                         "message": {"type": "string"}}}},
}
_MESSAGE = {"type": "object", "required": ["role"], "properties": {
    "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
    "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}, {"type": "null"}]},
    "name": {"type": "string"}}}
_CHAT_REQUEST = {"type": "object", "required": ["messages"], "properties": {
    "model": {"type": "string"}, "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
    "stream": {"type": "boolean"}, "temperature": {"type": "number"}, "max_tokens": {"type": "integer"}}}
_MESSAGES_REQUEST = {"type": "object", "required": ["model", "messages", "max_tokens"], "properties": {
    "model": {"type": "string"}, "max_tokens": {"type": "integer", "minimum": 1},
    "messages": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["role", "content"],
                 "properties": {"role": {"type": "string", "enum": ["user", "assistant"]},
                                "content": {"anyOf": [{"type": "string"},
                                                      {"type": "array", "items": {"type": "object"}}]}}}},
    "system": {"type": "string"}, "stream": {"type": "boolean"}}}
_RESPONSES_REQUEST = {"type": "object", "properties": {
    "model": {"type": "string"}, "input": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
    "stream": {"type": "boolean"}, "previous_response_id": {"type": "string"}, "store": {"type": "boolean"}}}
_KEY_SPEC = {"type": "object", "properties": {
    "id": {"type": "string", "pattern": "^[A-Za-z0-9_.:@-]+$"}, "key": {"type": "string"},
    "description": {"type": "string"}, "models": {"type": "array", "items": {"type": "string"}},
    "agents": {"type": "array", "items": {"type": "string"}},
    "listeners": {"type": "array", "items": {"type": "string"}},
    "mcp_tools": {"type": "array", "items": {"type": "string"}},
    "rate_limits": {"type": "array", "items": {"type": "object"}},
    "budget": {"type": "object", "properties": {"tokens": {"type": "integer"}, "cost_usd": {"type": "number"},
                                                "period": {"enum": ["hour", "day", "month", "total"]}}},
    "expires_at": {"type": "string", "format": "date-time"}}}


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _errors(*statuses: int, anthropic: bool = False) -> dict:
    schema = _ANTHROPIC_ERROR if anthropic else _OPENAI_ERROR
    texts = {400: "Malformed request", 401: "No, unknown, revoked or expired API key", 403: "Not allowed for this key",
             404: "Unknown model, path or id", 413: "Body over the listener's limit", 429: "Rate limit or budget",
             502: "Upstream failed", 503: "Overloaded or breaker open", 504: "Upstream timeout"}
    return {str(s): {"description": texts.get(s, "Error"), "content": _json(schema)} for s in statuses}


def _post(summary: str, body: dict, *, anthropic: bool = False, tags=("model",), stream: bool = True) -> dict:
    ok = {"description": "The answer (JSON, or text/event-stream with stream: true)", "content": _json({"type": "object"})}
    if stream:
        ok["content"]["text/event-stream"] = {"schema": {"type": "string"}}
    return {"post": {"summary": summary, "tags": list(tags), "requestBody": {"required": True, "content": _json(body)},
                     "responses": {"200": ok, **_errors(400, 401, 403, 404, 413, 429, 502, 503, 504,
                                                        anthropic=anthropic)}}}


def _get(summary: str, tags=("model",), schema: dict | None = None, errors=(401,)) -> dict:
    return {"get": {"summary": summary, "tags": list(tags),
                    "responses": {"200": {"description": "OK", "content": _json(schema or {"type": "object"})},
                                  **_errors(*errors)}}}


def listener_paths() -> dict:
    models = _get("Models served (OpenAI list)")
    return {
        "/v1/chat/completions": _post("OpenAI Chat Completions (model and agent listeners)", _CHAT_REQUEST,
                                      tags=("model", "agent")),
        "/v1/messages": _post("Anthropic Messages (model listener)", _MESSAGES_REQUEST, anthropic=True),
        "/v1/messages/count_tokens": _post("Anthropic token count estimate", _MESSAGES_REQUEST, anthropic=True,
                                           stream=False),
        "/v1/responses": _post("OpenAI Responses (model listener)", _RESPONSES_REQUEST),
        "/v1/models": models,
        "/agents/v1/chat/completions": _post("Agent listener chat (Plano's path)", _CHAT_REQUEST, tags=("agent",)),
        "/healthz": {"get": {"summary": "Liveness (no key needed)", "tags": ["model", "agent"],
                             "security": [], "responses": {"200": {"description": "OK"}}}},
    }


def admin_paths() -> dict:
    key_path = {"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "/metrics": {"get": {"summary": "Prometheus metrics", "tags": ["admin"], "security": [],
                             "responses": {"200": {"description": "text exposition"}}}},
        "/admin/keys": {
            "get": {"summary": "List virtual keys (never their secrets)", "tags": ["admin"],
                    "responses": {"200": {"description": "keys", "content": _json({"type": "object"})},
                                  **_errors(401)}},
            "post": {"summary": "Create a virtual key; the key is returned once", "tags": ["admin"],
                     "requestBody": {"required": True, "content": _json(_KEY_SPEC)},
                     "responses": {"201": {"description": "created", "content": _json({"type": "object"})},
                                   **_errors(400, 401, 409)}}},
        "/admin/keys/{key_id}": {"delete": {"summary": "Revoke a key (every worker and replica within 1 s)",
                                            "tags": ["admin"], "parameters": [key_path],
                                            "responses": {"200": {"description": "revoked"}, **_errors(401, 404)}}},
        "/admin/keys/{key_id}/usage": {"get": {"summary": "Tokens and cost spent by a key, per budget period",
                                               "tags": ["admin"], "parameters": [key_path],
                                               "responses": {"200": {"description": "usage"}, **_errors(401, 404)}}},
        "/admin/config": {"get": {"summary": "The effective config, secrets masked", "tags": ["admin"],
                                  "responses": {"200": {"description": "config"}, **_errors(401)}}},
        "/admin/reload": {"post": {"summary": "Re-read plano.yaml (hot reload hook)", "tags": ["admin"],
                                   "responses": {"202": {"description": "reload requested"}, **_errors(401, 501)}}},
    }


def openapi(config=None) -> dict:
    servers = []
    for listener in getattr(config, "listeners", None) or ():
        if listener.type in ("model", "agent"):
            host = listener.address if listener.address not in (None, "0.0.0.0", "::") else "127.0.0.1"
            scheme = "http"
            servers.append({"url": f"{scheme}://{host}:{listener.port}",
                            "description": f"{listener.type} listener '{listener.name}'"})
    paths = {**listener_paths(), **admin_paths()}
    return {
        "openapi": "3.1.0",
        "info": {"title": "plano", "version": _version(),
                 "description": "plano's own HTTP endpoints: the model and agent listeners (each server below) "
                                "and the admin port (/metrics, /admin/*, /openapi.json)."},
        "servers": servers,
        "components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            "planoKey": {"type": "apiKey", "in": "header", "name": "x-plano-api-key"}}},
        "security": [{"bearer": []}, {"apiKey": []}, {"planoKey": []}],
        "paths": paths,
    }


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("plano")
    except Exception:
        return "0"
