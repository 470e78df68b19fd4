"""The model listener: an OpenAI-compatible proxy in front of the configured providers.

Routes: ``POST /v1/chat/completions``, ``GET /v1/models`` (+ CORS preflight),
``GET /healthz``. The request body is parsed once (orjson), checked at the edge,
its ``model`` rewritten to the provider's id, and forwarded; the response is relayed
as it arrives — JSON untouched, SSE event by event. With ``input_filters`` /
``output_filters`` the same path runs through :mod:`gateway.filters` instead.
"""

from __future__ import annotations

import logging
from functools import partial
from collections.abc import Callable

import orjson

from gateway.filters import CHAT_PATH, FilterRegistry, filter_run, shapes
from gateway.filters.output import relay_json_filtered, relay_stream_filtered
from gateway.listeners.chat import parse_chat_request
from gateway.listeners.errors import GatewayError
from gateway.listeners.http import (
    JSON_CT,
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    cors_preflight,
    dispatch,
    healthz,
    read_body,
    request_id,
    send_body,
    send_error,
)
from gateway.listeners.relay import relay_json, relay_stream
from gateway.llm.resolver import ModelResolver
from gateway.llm.targets import Target, client_credential, passthrough_headers
from gateway.telemetry import Telemetry
from gateway.llm.call import LLMCaller
from gateway.upstream.limits import RateLimits, refusal
from gateway.upstream.usage import estimate_tokens
from gateway.upstream import Upstream, UpstreamError
from gateway.upstream.headers import provider_headers

log = logging.getLogger("plano.model")



class ModelListener:
    """ASGI app for one ``type: model`` listener."""

    def __init__(self, listener, resolver: ModelResolver, upstream: Upstream,
                 filters: FilterRegistry | None = None, telemetry: Telemetry | None = None,
                 caller: LLMCaller | None = None, limits: RateLimits | None = None) -> None:
        self.name = listener.name
        self.tel = telemetry or Telemetry(None, metrics=False)
        self.max_body = getattr(listener, "max_body_bytes", None) or 10 * 1024 * 1024
        self.resolver = resolver
        self.upstream = upstream
        self.caller = caller or LLMCaller(upstream)
        self.rate_limits = limits  # token limits (``ratelimits``), asked per resolved model
        self.limits = limits.for_listener(self.name) if limits is not None else None  # request limits
        self.input_chain = filters.chain(listener.input_filters, "input") if filters else None
        self.output_chain = filters.chain(listener.output_filters, "output") if filters else None
        self.filtered = self.input_chain is not None or self.output_chain is not None
        self._models_body = orjson.dumps({"object": "list", "data": resolver.model_list()})
        self._routes = {
            ("POST", "/v1/chat/completions"): self.chat_completions,
            ("GET", "/v1/models"): self.list_models,
            ("OPTIONS", "/v1/models"): cors_preflight,
            ("GET", "/healthz"): healthz,
            ("GET", "/agents/v1/models"): self.list_models,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await dispatch(self._routes, self.name, scope, receive, send)

    async def list_models(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_body(send, 200, self._models_body, [JSON_CT, (b"access-control-allow-origin", b"*")])

    async def chat_completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        rid = request_id(scope)
        ctx = self.tel.start_request(self.name, "model", scope["method"], scope["path"], scope["headers"], rid)
        request: dict | None = None
        error: str | None = None
        status: int | None = None  # None: the LLM call recorded what the client got
        size = 0
        try:
            body = await read_body(scope, receive, self.max_body)
            size = len(body)
            request = parse_chat_request(body)
            if self.limits is not None:
                verdict = await self.limits.admit(scope["headers"])
                if verdict is not None:
                    raise refusal(verdict, self.tel.metrics, self.name)
            if self.filtered:
                await self._chat_filtered(scope, send, request, rid, ctx)
                return
            await self._call(scope, send, request, request.get("model"), rid, ctx, None, None)
        except GatewayError as err:
            error, status = err.message, err.status
            await send_error(ctx.wrap_send(send), err, rid)
        except UpstreamError as err:
            error, status = str(err), err.status
            log.warning("request_id=%s upstream=%s %s", rid, err.target, err)
            await send_error(ctx.wrap_send(send), GatewayError(err.status, error, code=f"upstream_{err.kind}",
                                                headers=err.response_headers()), rid)
        except ClientDisconnected:
            error = "client disconnected"
        finally:
            ctx.finish(status, bytes_in=size, messages=request.get("messages") if request else None, error=error)

    async def _call(self, scope: Scope, send: Send, request: dict, requested: str | None, rid: str, ctx,
                    output, run) -> None:
        """Resolve the request's model, call it (with failover) and relay the answer.

        ``requested`` is the model the client asked for (an input filter may have changed ``request``'s);
        ``output``/``run``: the listener's output filters, when it has any.
        """
        target = self._resolve(request.get("model"))
        fallbacks = [t for t in self.resolver.fallbacks(request.get("model"), target) if t.is_openai_compatible] \
            if target.fallbacks or self.resolver.alias_fallbacks or self.resolver.alias_groups else []
        stream = request.get("stream") is True
        charge = None
        if self.rate_limits is not None and self.rate_limits.token_rules:
            charge = self.rate_limits.tokens(f"{target.provider}/{target.model_id}", target.model_id,
                                             scope["headers"], name=target.name)
            if charge is not None:
                verdict = await charge.admit(estimate_tokens(request))
                if verdict is not None:
                    raise refusal(verdict, self.tel.metrics, self.name)
        call = ctx.llm_call(target.provider, requested, target.model_id, stream=stream, request=request)
        # What the relay reports to: telemetry, plus token usage when a token limit applies.
        observer = call if charge is None else charge.observe(call)
        forwarded = provider_headers(scope["headers"])  # an allow-list: no cookies, no oversized headers

        def build(current: Target) -> tuple[dict[str, str], bytes]:
            # With fallbacks each model gets its own copy: one provider's key never reaches another.
            headers = self._upstream_headers(scope, current, rid, dict(forwarded) if fallbacks else forwarded)
            call.inject(headers)
            request["model"] = current.model_id
            return headers, orjson.dumps(request)

        try:
            async with self.caller.open(target, fallbacks, build,
                                        on_failover=_failover_recorder(ctx, call) if fallbacks else None,
                                        attempt_spans=_attempt_spans(ctx, call.span)) as resp:
                current = resp.origin or target
                invalid = target_invalid(current)
                if stream:
                    if output is None:
                        await relay_stream(send, resp, rid, invalid_json=invalid, target=current.name, call=observer)
                    else:
                        await relay_stream_filtered(send, resp, rid, output, run, invalid_json=invalid,
                                                    target=current.name, call=observer)
                elif output is None:
                    await relay_json(send, resp, rid, invalid, call=observer)
                else:
                    await relay_json_filtered(send, resp, rid, output, run, invalid, call=observer)
        except BaseException as exc:
            _failed(observer, exc)
            raise

    def _resolve(self, model: str | None) -> Target:
        target = self.resolver.resolve(model)
        if not target.is_openai_compatible:
            raise GatewayError(
                501,
                f"Provider '{target.provider}' ({target.api}) is not supported for chat completions yet.",
                code="provider_api_not_supported",
            )
        return target

    async def _chat_filtered(self, scope: Scope, send: Send, request: dict, rid: str, ctx) -> None:
        """The same request path with the listener's filter chains: input filters see the whole client
        body before the model is resolved (a filter may change ``model``), output filters the answer."""
        run = filter_run(scope, rid)
        run.telemetry = ctx
        requested = request.get("model")
        if self.input_chain is not None:
            request = await self.input_chain.run(request, CHAT_PATH, run, shapes.chat_request)
        send = ctx.wrap_send(send)  # output filters change the body: count what the client really gets
        await self._call(scope, send, request, requested, rid, ctx, self.output_chain, run)

    def _upstream_headers(self, scope: Scope, target: Target, rid: str, headers: dict[str, str]) -> dict[str, str]:
        """``headers`` (the client's forwardable ones, updated in place) plus ours and ``target``'s auth."""
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


_ERROR_CLASS = {"connect": "connect", "reset": "connect", "open": "connect", "overloaded": "connect",
                "timeout": "timeout", "broken": "stream"}


def _failed(call, exc: BaseException) -> None:
    """Close an LLM call's telemetry when the upstream call failed before the relay could."""
    if isinstance(exc, UpstreamError):
        call.finish(exc.status, error=str(exc), error_class=_ERROR_CLASS.get(exc.kind, "other"))
    elif isinstance(exc, GatewayError):
        call.finish(exc.status, error=exc.message, error_class="parse")
    else:
        call.finish(None, error=type(exc).__name__, error_class="other")


def _failover_recorder(ctx, call):
    """Records a move to a fallback model on the LLM call's telemetry (span, metrics labels)."""

    def moved(current: Target, following: Target, reason: str) -> None:
        call.provider, call.model = following.provider, following.model_id
        span = call.span
        if span.recording:
            span.set("llm.model", following.model_id)
            span.set("plano.failover.from", current.name)
            span.set("plano.failover.reason", reason)
        if not call._owns_span:
            ctx.model, ctx.upstream = following.model_id, following.provider

    return moved


def _attempt_spans(ctx, parent):
    """Attempt spans (children of the LLM span) for calls that may retry; None with tracing off."""
    if not parent.recording:
        return None
    from gateway.telemetry.tracing import KIND_CLIENT, LLM

    def start(number: int, endpoint: str):
        return ctx.child(f"attempt {number}", LLM, {"plano.attempt": number, "plano.endpoint": endpoint},
                         kind=KIND_CLIENT, parent=parent)

    return start


def _invalid_response(target: Target) -> GatewayError:
    return GatewayError(
        502,
        f"Upstream {target.name} returned a response that is not a JSON object.",
        code="upstream_invalid_response",
    )


def target_invalid(target: Target) -> Callable[[], GatewayError]:
    """The (lazy) 502 for a target's non-JSON answer: built only when an upstream misbehaves."""
    return partial(_invalid_response, target)
