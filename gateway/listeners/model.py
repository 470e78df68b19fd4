"""The model listener: an OpenAI-compatible proxy in front of the configured providers.

Routes: ``POST /v1/chat/completions``, ``GET /v1/models`` (+ CORS preflight),
``GET /healthz``. The request body is parsed once (orjson), checked at the edge,
its ``model`` rewritten to the provider's id, and forwarded; the response is relayed
as it arrives — JSON untouched, SSE event by event.
"""

from __future__ import annotations

import logging

import orjson

from gateway.listeners.errors import GatewayError, bad_request
from gateway.listeners.http import (
    JSON_CT,
    SSE_CT,
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    drain,
    healthz,
    read_body,
    request_id,
    send_body,
    send_error,
)
from gateway.listeners.sse import EventAligner, openai_error_event
from gateway.llm.resolver import ModelResolver
from gateway.llm.targets import Target, client_credential, passthrough_headers
from gateway.upstream import Upstream, UpstreamError, forward_headers, response_headers
from gateway.upstream.headers import CREDENTIALS

log = logging.getLogger("plano.model")

_CORS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
    (b"access-control-allow-headers", b"Authorization, Content-Type"),
    (b"access-control-max-age", b"86400"),
]
_MAX_ERROR_BODY = 1 << 20  # upstream error bodies relayed up to 1 MiB


class ModelListener:
    """ASGI app for one ``type: model`` listener."""

    def __init__(self, listener, resolver: ModelResolver, upstream: Upstream) -> None:
        self.name = listener.name
        self.max_body = getattr(listener, "max_body_bytes", None) or 10 * 1024 * 1024
        self.resolver = resolver
        self.upstream = upstream
        self._models_body = orjson.dumps({"object": "list", "data": resolver.model_list()})
        self._routes = {
            ("POST", "/v1/chat/completions"): self.chat_completions,
            ("GET", "/v1/models"): self.list_models,
            ("OPTIONS", "/v1/models"): self.cors_preflight,
            ("GET", "/healthz"): healthz,
            ("GET", "/agents/v1/models"): self.list_models,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self._routes.get((scope["method"], scope["path"]))
        if handler is None:
            await drain(receive)
            known = any(path == scope["path"] for _, path in self._routes)
            if known:
                err = GatewayError(405, f"Method {scope['method']} is not allowed on {scope['path']}", code="method_not_allowed")
            else:
                err = GatewayError(404, f"Unknown path {scope['path']} on model listener '{self.name}'", code="not_found")
            await send_error(send, err)
            return
        await handler(scope, receive, send)

    async def list_models(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_body(send, 200, self._models_body, [JSON_CT, (b"access-control-allow-origin", b"*")])

    async def cors_preflight(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": _CORS})
        await send({"type": "http.response.body", "body": b""})

    async def chat_completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        rid = request_id(scope)
        try:
            body = await read_body(scope, receive, self.max_body)
            request = parse_chat_request(body)
            target = self.resolver.resolve(request.get("model"))
            if not target.is_openai_compatible:
                raise GatewayError(
                    501,
                    f"Provider '{target.provider}' ({target.api}) is not supported for chat completions yet.",
                    code="provider_api_not_supported",
                )
            request["model"] = target.model_id
            headers = self._upstream_headers(scope, target, rid)
            payload = orjson.dumps(request)
            if request.get("stream") is True:
                await self._relay_stream(send, target, headers, payload, rid)
            else:
                await self._relay_json(send, target, headers, payload, rid)
        except GatewayError as err:
            await send_error(send, err, rid)
        except UpstreamError as err:
            log.warning("request_id=%s upstream=%s %s", rid, err.target, err)
            await send_error(send, GatewayError(err.status, str(err), code=f"upstream_{err.kind}"), rid)
        except ClientDisconnected:
            return

    def _upstream_headers(self, scope: Scope, target: Target, rid: str) -> dict[str, str]:
        headers = forward_headers(scope["headers"], CREDENTIALS)
        headers["x-request-id"] = rid
        headers["content-type"] = "application/json"
        if target.passthrough_auth:
            credential = client_credential(scope["headers"])
            if credential:
                headers.update(passthrough_headers(target, credential))
        elif target.auth_headers:
            headers.update(target.auth_headers)
        elif target.missing_key_env:
            raise GatewayError(
                401,
                f"No API key for model provider '{target.name}': environment variable "
                f"'{target.missing_key_env}' was not set when the gateway started.",
                code="missing_provider_key",
            )
        if target.extra_headers:
            headers.update(target.extra_headers)
        return headers

    async def _relay_json(self, send: Send, target: Target, headers, payload: bytes, rid: str) -> None:
        async with self.upstream.open(
            "POST", target.url, headers=headers, body=payload, timeout=target.timeout, target=target.name
        ) as resp:
            data = await resp.read()
            status = resp.status
            if status >= 400:
                await self._relay_error(send, status, resp.headers, data, rid)
                return
            try:
                parsed = orjson.loads(data)
            except orjson.JSONDecodeError:
                parsed = None
            if not isinstance(parsed, dict):
                raise GatewayError(
                    502,
                    f"Upstream {target.name} returned a response that is not a JSON object (status {status}).",
                    code="upstream_invalid_response",
                )
            out = response_headers(resp.headers, keep_type=False)
            out.append(JSON_CT)
            out.append((b"x-request-id", rid.encode()))
            await send_body(send, status, data, out)

    async def _relay_error(self, send: Send, status: int, upstream_headers, data: bytes, rid: str) -> None:
        """Upstream 4xx/5xx: relay its status and JSON body; wrap a non-JSON body in our envelope."""
        data = data[:_MAX_ERROR_BODY]
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            text = data.decode("utf-8", "replace").strip()[:500] or f"HTTP {status}"
            data = GatewayError(status, f"Upstream error: {text}", code="upstream_error").openai_body()
        out = response_headers(upstream_headers, keep_type=False)
        out.append(JSON_CT)
        out.append((b"x-request-id", rid.encode()))
        await send_body(send, status, data, out)

    async def _relay_stream(self, send: Send, target: Target, headers, payload: bytes, rid: str) -> None:
        started = False
        aligner = EventAligner()
        try:
            async with self.upstream.open(
                "POST", target.url, headers=headers, body=payload, timeout=target.timeout, target=target.name
            ) as resp:
                if resp.status >= 400:
                    await self._relay_error(send, resp.status, resp.headers, await resp.read(), rid)
                    return
                ctype = resp.headers.get("content-type", "")
                if "text/event-stream" not in ctype:
                    # An upstream that ignored stream=true: relay its JSON as is.
                    data = await resp.read()
                    out = response_headers(resp.headers)
                    out.append((b"x-request-id", rid.encode()))
                    await send_body(send, resp.status, data, out)
                    return
                out = response_headers(resp.headers, keep_type=False)
                out += [SSE_CT, (b"cache-control", b"no-cache"), (b"x-request-id", rid.encode())]
                await send({"type": "http.response.start", "status": resp.status, "headers": out})
                started = True
                async for chunk in resp.content.iter_any():
                    ready = aligner.feed(chunk)
                    if ready:
                        await send({"type": "http.response.body", "body": ready, "more_body": True})
            tail = aligner.pending.strip()
            end = openai_error_event("Upstream stream ended inside an event.", code="upstream_incomplete_event") if tail else b""
            await send({"type": "http.response.body", "body": end, "more_body": False})
        except UpstreamError as err:
            if not started:
                raise
            log.warning("request_id=%s upstream=%s stream failed: %s", rid, target.name, err)
            event = openai_error_event(str(err), code=f"upstream_{err.kind}")
            await send({"type": "http.response.body", "body": event, "more_body": False})


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
