"""Upstream targets: one resolved ``model_providers`` entry, ready to be called.

Everything that does not depend on the request (URL, auth header, extra headers,
timeouts) is computed once at start-up, so the hot path only copies a dict.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from gateway.config.providers import (
    AUTH_AZURE,
    AUTH_BEARER,
    AUTH_X_API_KEY,
    AZURE_API_VERSION,
    OPENAI_CHAT,
    PROVIDERS,
    ProviderSpec,
    canonical_provider,
)
from gateway.upstream.client import TimeoutPolicy, timeout_policy


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

    def for_model(self, model_id: str) -> "Target":
        """A wildcard entry's target specialised to a concrete model id."""
        url = chat_url(self.spec, self.base_url, model_id) if self.spec else self.url
        return replace(self, model_id=model_id, url=url, name=f"{self.name.rsplit('/', 1)[0]}/{model_id}")

    @property
    def is_openai_compatible(self) -> bool:
        return self.api == OPENAI_CHAT


def chat_url(spec: ProviderSpec, base_url: str | None, model_id: str) -> str:
    """The chat-completions URL for a provider, honouring a ``base_url`` path prefix.

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
        elif spec.name == "gemini" and not path.endswith("/openai"):
            path += "/openai"  # Gemini's OpenAI-compatible surface lives under .../openai
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
    url = f"{origin}{path}/chat/completions"
    return f"{url}?{query}" if query else url


def build_target(entry, *, default_timeout: float | None, connect_timeout: float = 5.0) -> Target:
    """Turn a validated ``ModelProvider`` config entry into a :class:`Target`."""
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
    if spec is not None:
        url = chat_url(spec, base_url, model_id)
    else:  # custom prefix without a known interface: OpenAI-compatible, unversioned suffix
        url = (base_url or "").rstrip("/") + "/chat/completions"
    key = entry.access_key
    auth: tuple[tuple[str, str], ...] = ()
    if key and not entry.passthrough_auth:
        auth = _auth_headers(auth_style, key)
    extra = tuple((str(k), str(v)) for k, v in (entry.headers or {}).items())
    http_host = getattr(entry, "http_host", None)
    if http_host:
        extra = (("Host", http_host), *extra)
    total = getattr(entry, "timeout", None) or default_timeout
    connect = getattr(entry, "connect_timeout", None) or connect_timeout
    return Target(
        name=entry.name or entry.model,
        provider=provider,
        display=spec.display if spec else provider,
        model_id=model_id,
        url=url,
        api=api,
        auth_style=auth_style,
        auth_headers=auth,
        extra_headers=extra,
        passthrough_auth=bool(entry.passthrough_auth),
        missing_key_env=getattr(entry, "access_key_env_missing", None),
        timeout=timeout_policy(total, connect),
        base_url=base_url,
        spec=spec,
    )


def _auth_headers(style: str, key: str) -> tuple[tuple[str, str], ...]:
    if style == AUTH_X_API_KEY:
        return (("x-api-key", key), ("anthropic-version", "2023-06-01"))
    if style == AUTH_AZURE:
        return (("api-key", key),)
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
