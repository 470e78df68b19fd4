"""Upstream targets: one resolved ``model_providers`` entry, ready to be called.

Everything that does not depend on the request (URL, auth header, extra headers,
timeouts) is computed once at start-up, so the hot path only copies a dict.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import quote, urlsplit

from gateway.config.providers import (
    ANTHROPIC_MESSAGES,
    AUTH_AZURE,
    AUTH_BEARER,
    AUTH_GOOGLE,
    AUTH_X_API_KEY,
    AZURE_API_VERSION,
    BEDROCK_CONVERSE,
    GEMINI_GENERATE,
    LITELLM,
    OPENAI_CHAT,
    OPENAI_RESPONSES,
    PROVIDERS,
    ProviderSpec,
    canonical_provider,
)
from gateway.upstream.policy import SINGLE, CallPolicy, resolve_policy
from gateway.upstream.pool import Pool
from gateway.upstream.transport import TimeoutPolicy, timeout_policy
from gateway.wire.translate import can_translate, translator


#: The client APIs the model listener serves.
CLIENT_APIS = (OPENAI_CHAT, ANTHROPIC_MESSAGES, OPENAI_RESPONSES)

#: Path suffix of each upstream API under a provider's prefix.
_SUFFIX = {OPENAI_CHAT: "/chat/completions", ANTHROPIC_MESSAGES: "/messages", OPENAI_RESPONSES: "/responses",
           # native upstreams whose path names the model (the stream variant is chosen per request)
           GEMINI_GENERATE: "/models/{model}:generateContent", BEDROCK_CONVERSE: "/model/{model}/converse"}


@dataclass(frozen=True, slots=True)
class Route:
    """How one client API reaches a target: the upstream API, its URL per endpoint, and the
    translator between them (None: the same API, bytes pass through untouched)."""

    api: str
    urls: tuple[str, ...]
    translator: object | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how to send a chat request for one configured model."""

    name: str  # the provider entry's name, e.g. ``openai/gpt-4o``
    provider: str  # canonical provider, e.g. ``openai``
    display: str  # human name for /v1/models ``owned_by``
    model_id: str  # the model id the upstream expects
    url: str
    api: str  # upstream wire API (OPENAI_CHAT, ...)
    auth_style: str
    auth_headers: tuple[tuple[str, str], ...]  # injected credential (empty for passthrough/keyless)
    extra_headers: tuple[tuple[str, str], ...]
    passthrough_auth: bool
    missing_key_env: str | None  # access_key referenced an unset env var
    timeout: TimeoutPolicy
    base_url: str | None
    spec: ProviderSpec | None
    internal: bool = False
    #: One chat URL per endpoint of ``pool`` (``base_urls``), ``urls[0] == url``.
    urls: tuple[str, ...] = ()
    pool: Pool | None = None
    policy: CallPolicy = SINGLE
    #: Models tried in order when this one fails before its first byte (provider ``fallback_models``).
    fallbacks: tuple[str, ...] = ()
    #: Statuses that move on to the next model (default: 408, 429, 5xx).
    failover_statuses: frozenset[int] = frozenset()
    #: ``retry_policy.strategy`` of Plano's proposal: same_model | same_provider | different_provider.
    strategy: str | None = None
    base_urls: tuple[str, ...] = ()
    #: Client API → :class:`Route` (a client API missing here is not served for this model).
    routes: dict = None  # type: ignore[assignment]
    #: Signs each request over its final bytes (Bedrock SigV4, :mod:`gateway.llm.auth.sigv4`); None: keys only.
    signer: object | None = None

    def for_model(self, model_id: str) -> "Target":
        """A wildcard entry's target specialised to a concrete model id (same pool and policy)."""
        if self.spec:
            bases = self.base_urls or (self.base_url,)
            urls = tuple(chat_url(self.spec, base, model_id, _SUFFIX.get(self.api, "")) for base in bases)
            routes = build_routes(self.spec, self.api, bases, model_id, urls)
        else:
            urls, routes = self.urls, self.routes
        return replace(self, model_id=model_id, url=urls[0], urls=urls, routes=routes,
                       name=f"{self.name.rsplit('/', 1)[0]}/{model_id}")

    @property
    def is_openai_compatible(self) -> bool:
        """Whether OpenAI chat-completions clients can use this model (natively or translated)."""
        return OPENAI_CHAT in self.routes

    def route(self, client_api: str) -> Route | None:
        return self.routes.get(client_api)


def build_routes(spec: ProviderSpec | None, api: str, bases, model_id: str, native_urls: tuple[str, ...]) -> dict:
    """The :class:`Route` of each client API for a provider whose own API is ``api``."""
    routes: dict[str, Route] = {}
    for client in CLIENT_APIS:
        if client == api:
            routes[client] = Route(api, native_urls)
        elif client == OPENAI_RESPONSES and spec is not None and spec.responses:
            routes[client] = Route(OPENAI_RESPONSES, tuple(chat_url(spec, b, model_id, "/responses") for b in bases))
        elif can_translate(client, api):
            routes[client] = Route(api, native_urls, translator(client, api))
    return routes


def chat_url(spec: ProviderSpec, base_url: str | None, model_id: str, suffix: str = "/chat/completions") -> str:
    """The chat-completions (or other ``suffix``) URL for a provider, honouring a ``base_url`` path prefix.

    A non-root ``base_url`` path replaces the provider's default prefix and keeps the
    API suffix (Plano §4.7): ``https://proxy.example/ai/openai`` ->
    ``/ai/openai/chat/completions``. Unlike Plano we do not double the version
    segment (``https://api.groq.com/openai/v1`` -> ``/openai/v1/chat/completions``).
    """
    query = ""
    if base_url:
        parts = urlsplit(base_url)
        origin = f"{parts.scheme}://{parts.netloc}"
        path = parts.path.rstrip("/")
        query = parts.query
        if not path:
            path = spec.path_prefix
    else:
        origin = spec.default_origin or ""
        path = spec.path_prefix
    if spec.name == "azure_openai":
        if path.endswith("/openai/v1"):  # Azure's v1 surface: model travels in the body
            url = f"{origin}{path}/chat/completions"
        else:
            if not path.endswith("/openai/deployments"):
                path = path + "/openai/deployments" if path != spec.path_prefix else path
            url = f"{origin}{path}/{model_id}/chat/completions"
            if "api-version" not in query:
                query = f"{query}&api-version={AZURE_API_VERSION}" if query else f"api-version={AZURE_API_VERSION}"
        return f"{url}?{query}" if query else url
    if "{model}" in suffix:  # Gemini: models/{model}:generateContent, Bedrock: model/{model}/converse
        suffix = suffix.replace("{model}", _model_segment(spec, model_id))
    url = f"{origin}{path}{suffix}"
    return f"{url}?{query}" if query else url


def _model_segment(spec: ProviderSpec, model_id: str) -> str:
    """The model id as one path segment: Bedrock ids (``us.amazon.nova-premier-v1:0``, ARNs) fully
    percent-encoded, as AWS SDKs send them; Gemini's without a redundant ``models/``."""
    if spec.chat_api == GEMINI_GENERATE:
        return quote(model_id.removeprefix("models/"), safe="")
    return quote(model_id, safe="")


def gemini_openai_compatible(spec: ProviderSpec | None, base_url: str | None) -> bool:
    """A Gemini entry whose base_url path ends in ``/openai`` (``…/v1beta/openai``) uses Google's
    OpenAI-compatible surface (chat passthrough, Bearer key) instead of native generateContent."""
    return spec is not None and spec.chat_api == GEMINI_GENERATE and bool(base_url) \
        and urlsplit(base_url).path.rstrip("/").endswith("/openai")


DEFAULT_FAILOVER_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 529})


def build_target(entry, *, default_timeout: float | None, connect_timeout: float = 5.0, pools=None,
                 retry_defaults: tuple = ()) -> Target:
    """Turn a validated ``ModelProvider`` config entry into a :class:`Target`.

    ``pools``: the worker's :class:`~gateway.upstream.PoolRegistry` (a private pool when None);
    ``retry_defaults``: the listener's and the global ``retry`` blocks, in that order.
    """
    prefix, _, model_id = entry.model.partition("/")
    provider = canonical_provider(prefix)
    spec = PROVIDERS.get(provider)
    if spec is None and entry.interface:
        spec = PROVIDERS.get(entry.interface)  # custom prefix + provider_interface
    if spec is not None and provider == "perplexity":
        spec = None
    api = spec.chat_api if spec else OPENAI_CHAT
    auth_style = spec.auth if spec else AUTH_BEARER
    base_url = entry.base_url
    base_urls = tuple(getattr(entry, "base_urls", None) or ())
    if base_urls and not base_url:
        base_url = base_urls[0]
    if gemini_openai_compatible(spec, base_url):
        api, auth_style = OPENAI_CHAT, AUTH_BEARER
    if spec is not None and spec.region_origin and not base_url:  # Bedrock: the region's default host
        from gateway.llm.auth.sigv4 import aws_region

        base_url = spec.region_origin.format(region=aws_region(entry, None))
    bases = base_urls or (base_url,)
    if provider == LITELLM:  # the plano[litellm] extra: litellm's transformations, plano's HTTP
        from gateway.wire.translate.litellm_extra import LitellmAdapter, translators

        adapter = LitellmAdapter(model_id, base_url)
        api, urls = LITELLM, (adapter.url,)
        routes = {client: Route(LITELLM, urls, t) for client, t in translators(adapter).items()}
    elif spec is not None:
        urls = tuple(chat_url(spec, base, model_id, _SUFFIX.get(api, "")) for base in bases)
        routes = build_routes(spec, api, bases, model_id, urls)
    else:  # custom prefix without a known interface: OpenAI-compatible, unversioned suffix
        urls = tuple((base or "").rstrip("/") + "/chat/completions" for base in bases)
        routes = build_routes(spec, api, bases, model_id, urls)
    url = urls[0]
    key = entry.access_key
    auth: tuple[tuple[str, str], ...] = ()
    if key and not entry.passthrough_auth:
        auth = _auth_headers(auth_style, key)
    signer = None
    missing_key_env = getattr(entry, "access_key_env_missing", None)
    if api == BEDROCK_CONVERSE and not key and not entry.passthrough_auth:
        # No Bedrock API key: SigV4 with the entry's or the environment's AWS credentials.
        from gateway.llm.auth.sigv4 import bedrock_signer

        signer = bedrock_signer(entry, base_url)
        if signer is not None:
            missing_key_env = None
        elif missing_key_env is None:
            missing_key_env = "AWS_ACCESS_KEY_ID"
    extra = tuple((str(k), str(v)) for k, v in (entry.headers or {}).items())
    http_host = getattr(entry, "http_host", None)
    if http_host:
        extra = (("Host", http_host), *extra)
    total = getattr(entry, "timeout", None) or default_timeout
    connect = getattr(entry, "connect_timeout", None) or connect_timeout
    name = entry.name or entry.model
    proposal = getattr(entry, "retry_policy", None)
    retry = _proposal_retry(proposal)
    policy = resolve_policy(getattr(entry, "retry", None), retry, *retry_defaults, idempotent=True,
                            endpoints=len(urls))
    if pools is not None:
        pool = pools.provider(entry, name, [_origin(u) for u in urls])
    else:
        pool = Pool(f"provider:{name}", [_origin(u) for u in urls])
    fallbacks = tuple(getattr(entry, "fallback_models", None) or ())
    if proposal is not None and proposal.fallback_models:
        fallbacks += tuple(m for m in proposal.fallback_models if m not in fallbacks)
    failover = frozenset(proposal.on_status_codes) if proposal is not None and proposal.on_status_codes \
        else DEFAULT_FAILOVER_STATUSES
    return Target(
        urls=urls,
        pool=pool,
        policy=policy,
        fallbacks=fallbacks,
        failover_statuses=failover,
        strategy=proposal.strategy if proposal is not None else None,
        base_urls=tuple(b for b in bases if b),
        routes=routes,
        name=name,
        provider=provider,
        display=spec.display if spec else ("LiteLLM" if provider == LITELLM else provider),
        model_id=model_id,
        url=url,
        api=api,
        auth_style=auth_style,
        auth_headers=auth,
        extra_headers=extra,
        passthrough_auth=bool(entry.passthrough_auth),
        missing_key_env=missing_key_env,
        timeout=timeout_policy(total, connect),
        base_url=base_url,
        spec=spec,
        signer=signer,
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _proposal_retry(proposal):
    """Plano's proposed ``retry_policy`` as a ``retry`` block (None when it sets no retries)."""
    if proposal is None or (proposal.num_retries is None and proposal.on_status_codes is None):
        return None
    from gateway.config.reliability import RetryConfig

    fields = {"attempts": (proposal.num_retries or 0) + 1}
    if proposal.on_status_codes is not None:
        fields["on"] = ["connect_error", "timeout", *proposal.on_status_codes]
    if proposal.backoff is not None:
        fields["backoff"] = proposal.backoff
    if proposal.max_backoff is not None:
        fields["max_backoff"] = proposal.max_backoff
    return RetryConfig(**fields)


def _auth_headers(style: str, key: str) -> tuple[tuple[str, str], ...]:
    if style == AUTH_X_API_KEY:
        return (("x-api-key", key), ("anthropic-version", "2023-06-01"))
    if style == AUTH_AZURE:
        return (("api-key", key),)
    if style == AUTH_GOOGLE:
        return (("x-goog-api-key", key),)
    return (("Authorization", f"Bearer {key}"),)


def client_credential(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The caller's own key for ``passthrough_auth``: Authorization (Bearer stripped) wins over x-api-key."""
    bearer = api_key = None
    for k, v in headers:
        if k == b"authorization":
            text = v.decode("latin-1").strip()
            bearer = text[7:].strip() if text[:7].lower() == "bearer " else text
        elif k == b"x-api-key":
            api_key = v.decode("latin-1").strip()
    return bearer or api_key or None


def passthrough_headers(target: Target, credential: str) -> tuple[tuple[str, str], ...]:
    return _auth_headers(target.auth_style, credential)


def embeddings_urls(target: Target) -> tuple[str, ...] | None:
    """The ``/embeddings`` URL per endpoint of an OpenAI-compatible target (None: its provider has no
    OpenAI-shaped embeddings API plano can pass through — Anthropic, Bedrock Converse, native Gemini)."""
    if target.api != OPENAI_CHAT:
        return None
    out = []
    for url in target.urls:
        base, sep, query = url.partition("?")
        if not base.endswith("/chat/completions"):
            return None
        out.append(base.removesuffix("/chat/completions") + "/embeddings" + sep + query)
    return tuple(out)
