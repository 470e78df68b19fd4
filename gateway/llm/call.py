"""The LLM call unit: target → auth → failover chain → the accepted response.

Shared by the model listener and the LLM orchestrator (and later the task
planner): they build the request body, this module sends it to the resolved
model and, when that model fails BEFORE its first byte — a connect error, a
timeout, an open breaker, a full concurrency limit, or a status in the target's
failover set (408, 429, 5xx by default; ``retry_policy.on_status_codes`` when
given), or a context-window 400 — to each fallback model in turn (an alias's
``fallbacks``, else the provider's ``fallback_models``). Retries of one model
happen below, in :meth:`gateway.upstream.Upstream.call`; failover is across models.

When a target has fallbacks, the response carries ``x-plano-model`` naming the
model that answered. Nothing is failed over once the response is yielded: the
caller may already be streaming it to the client.

Translation: callers build the request in their client API (``client``, OpenAI Chat
by default — the orchestrator's). Each target (the first and every fallback) is
reached through its :class:`~gateway.llm.targets.Route` for that API: the same API
sends the caller's bytes as they are; another API gets the request translated per
attempt and the answer handed back as a
:class:`~gateway.wire.translate.TranslatedResponse` in the client's API — so a Chat
client failing over from an Anthropic model to an OpenAI one sees one API throughout.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import orjson

from gateway.llm.targets import Target
from gateway.upstream import Response, TimeoutPolicy, Upstream, UpstreamError
from gateway.wire.errors import GatewayError
from gateway.wire.openai_chat import CHAT
from gateway.wire.translate import TranslatedResponse

log = logging.getLogger("plano.model")

#: Errors of the upstream layer after which the next model is tried.
_FAILOVER_ERRORS = frozenset({"connect", "reset", "timeout", "open", "overloaded"})

#: Builds (headers, body) for one target — the body in the caller's client API, as bytes or a dict;
#: raises GatewayError (e.g. a missing key).
Build = Callable[[Target], tuple[dict[str, str], "bytes | dict"]]
#: Told about a move to the next model: (from, to, reason).
OnFailover = Callable[[Target, Target, str], None]


def _context_window_error(data: bytes) -> bool:
    text = data[:4096].lower()
    return b"context_length_exceeded" in text or b"context window" in text or b"maximum context length" in text


class LLMCaller:
    """Calls a model with failover (one per worker, shared by everything that calls models)."""

    def __init__(self, upstream: Upstream, metrics=None) -> None:
        self.upstream = upstream
        self.metrics = metrics

    def open(self, target: Target, fallbacks: list[Target], build: Build, *,
             on_failover: OnFailover | None = None, deadline: float | None = None,
             attempt_spans=None, timeout: TimeoutPolicy | None = None, client=CHAT):
        """``async with`` it for the response, its body unread; after a failover ``resp.origin`` is
        the :class:`Target` that answered (None: ``target`` did).

        ``timeout`` replaces the targets' own (e.g. the orchestrator's routing budget);
        ``client``: the :class:`~gateway.wire.api.ClientAPI` the caller builds requests in."""
        if not fallbacks:  # the common case: no failover layer at all
            route = target.routes.get(client.name)
            if route is None:
                raise not_served(target, client)
            headers, body = build(target)
            if route.translator is not None:
                return self._translated(target, route, headers, body, client, deadline, attempt_spans, timeout)
            if type(body) is not bytes:
                body = orjson.dumps(body)
            return self.upstream.call(target.pool, route.urls, headers=headers, body=body,
                                      timeout=timeout or target.timeout, policy=target.policy, deadline=deadline,
                                      attempt_spans=attempt_spans, target=target.name)
        if client.name not in target.routes:
            raise not_served(target, client)
        fallbacks = [f for f in fallbacks if client.name in f.routes]  # those that can serve this client API
        if not fallbacks:
            return self.open(target, fallbacks, build, deadline=deadline, attempt_spans=attempt_spans,
                             timeout=timeout, client=client)
        return self._chain(target, fallbacks, build, on_failover, deadline, attempt_spans, timeout, client)

    @contextlib.asynccontextmanager
    async def _translated(self, target: Target, route, headers, body, client, deadline, attempt_spans,
                          timeout) -> AsyncIterator[TranslatedResponse]:
        request = body if type(body) is dict else orjson.loads(body)
        translator = route.translator
        data = orjson.dumps(translator.request(request, target))
        urls, headers = translator.prepare(route.urls, translator.headers(headers), data, request, target)
        async with self.upstream.call(target.pool, urls, headers=headers, body=data,
                                      timeout=timeout or target.timeout, policy=target.policy, deadline=deadline,
                                      attempt_spans=attempt_spans, target=target.name) as resp:
            yield translator.wrap(resp, request, client, target.name)

    @contextlib.asynccontextmanager
    async def _chain(self, target: Target, fallbacks: list[Target], build: Build, on_failover, deadline,
                     attempt_spans, timeout, client=CHAT) -> AsyncIterator[Response]:
        chain = [target, *fallbacks]
        last = len(chain) - 1
        tag = bool(fallbacks)
        for index, current in enumerate(chain):
            route = current.routes[client.name]
            headers, body = build(current)
            translator = route.translator
            request = None
            urls = route.urls
            if translator is not None:
                request = body if type(body) is dict else orjson.loads(body)
                body = orjson.dumps(translator.request(request, current))
                urls, headers = translator.prepare(urls, translator.headers(headers), body, request, current)
            elif type(body) is not bytes:
                body = orjson.dumps(body)
            more = index < last
            try:
                async with self.upstream.call(current.pool, urls, headers=headers, body=body,
                                              timeout=timeout or current.timeout, policy=current.policy,
                                              deadline=deadline,
                                              attempt_spans=attempt_spans, target=current.name) as resp:
                    status = resp.status
                    if more and status >= 400:
                        reason = None
                        if status in current.failover_statuses:
                            reason = f"status_{status}"
                        elif status == 400 and _context_window_error(await resp.read()):
                            reason = "context_window"
                        if reason is not None:
                            self._moved(current, chain[index + 1], reason, on_failover)
                            continue
                    if tag:
                        resp.with_header("x-plano-model", current.name)
                    resp.origin = current
                    yield resp if translator is None else translator.wrap(resp, request, client, current.name)
                    return
            except UpstreamError as err:
                if more and err.kind in _FAILOVER_ERRORS:
                    self._moved(current, chain[index + 1], err.kind, on_failover)
                    continue
                raise

    def _moved(self, current: Target, following: Target, reason: str, on_failover: OnFailover | None) -> None:
        log.info("model %s failed before its first byte (%s); trying %s", current.name, reason, following.name)
        if self.metrics is not None:
            try:
                self.metrics.failover(current.name, following.name, reason)
            except Exception:
                pass
        if on_failover is not None:
            on_failover(current, following, reason)



def not_served(target: Target, client) -> GatewayError:
    return GatewayError(
        501,
        f"Provider '{target.provider}' ({target.api}) is not supported for {client.label} yet.",
        code="provider_api_not_supported",
    )
