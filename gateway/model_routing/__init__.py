"""Model routing on the model listener: preference routes, the Routing API, sessions (Plano §4.10–4.11).

- :mod:`.preferences`: routes, inline ``routing_preferences``, the router model and the embedded
  classifier it falls back to;
- :mod:`.metrics`: cost / latency per model for ``selection_policy`` and the switch budget;
- :mod:`.sessions`: session keys, bindings and their store (memory or Redis), turn kinds, the budget;
- :mod:`.router`: :class:`ModelRouting`, what the listener calls before resolving the model;
- :func:`routing_endpoint`: ``POST /routing/v1/{chat/completions,messages,responses}``.
"""

from __future__ import annotations

from gateway.model_routing.router import Decision, ModelRouting

ROUTING_PATHS = {"/routing/v1/chat/completions": "openai_chat", "/routing/v1/messages": "anthropic_messages",
                 "/routing/v1/responses": "openai_responses"}


def _invalid(message: str, status: int = 400) -> bytes:
    import orjson

    code = "InvalidRequest" if status == 400 else "PayloadTooLarge" if status == 413 else "InvalidRequest"
    return orjson.dumps({"error": {"code": code, "message": message, "type": "invalid_request_error",
                                   "details": {"reason": message}}})


async def routing_endpoint(listener, api, scope, receive, send) -> None:
    """The Routing API: the model listener's routing decision for a request of client API ``api``,
    without calling a model. 200 ``{"models", "route", "trace_id", "session_id"?, "pinned",
    "switched"}``; a body that does not parse → 400 ``{"error": {"code": "InvalidRequest", …}}``;
    nothing else fails (the router model failing means the embedded classifier decides)."""
    import orjson

    from gateway.listeners.http import JSON_CT, ClientDisconnected, read_body, request_id, send_body
    from gateway.wire.errors import GatewayError

    rid = request_id(scope)
    ctx = listener.tel.start_request(listener.name, "model", scope["method"], scope["path"], scope["headers"], rid)
    status = None
    error = None
    size = 0
    headers = [JSON_CT, (b"x-request-id", rid.encode())]
    try:
        try:
            body = await read_body(scope, receive, listener.max_body, listener.max_json_depth)
            size = len(body)
            request = api.parse(body)
        except GatewayError as err:
            status, error = err.status, err.message
            await send_body(send, err.status, _invalid(err.message, err.status), headers)
            return
        routing = listener.model_routing
        decision = await routing.decide(api.name, scope["headers"], request, ctx, rid, dry_run=True)
        hdrs = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        status = 200
        await send_body(send, 200, routing.answer(decision, hdrs, ctx), headers)
    except ClientDisconnected:
        error = "client disconnected"
    except Exception as exc:  # noqa: BLE001 - never a 500 without a body
        status, error = 500, str(exc) or type(exc).__name__
        await send_body(send, 500, orjson.dumps({"error": {"code": "InternalServerError",
                                                           "message": "Internal server error",
                                                           "details": {"reason": error[:300]}}}), headers)
    finally:
        ctx.finish(status, bytes_in=size, error=error)


__all__ = ["ROUTING_PATHS", "Decision", "ModelRouting", "routing_endpoint"]
