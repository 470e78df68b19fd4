"""Catalog of the LLM providers plano knows by name.

Pure data, shared by config validation (which prefixes are built in, which need a
``base_url``) and by the model proxy (default hosts, path prefixes, auth style).
A provider is named by the prefix of a ``model_providers[].model`` entry
(``openai/gpt-4o`` -> ``openai``).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Upstream wire APIs.
OPENAI_CHAT = "openai_chat"
ANTHROPIC_MESSAGES = "anthropic_messages"
OPENAI_RESPONSES = "openai_responses"
BEDROCK_CONVERSE = "bedrock_converse"
GEMINI_GENERATE = "gemini_generate_content"  # Gemini API's native generateContent / streamGenerateContent
#: The ``plano[litellm]`` extra: ``litellm/<litellm provider>/<model>`` entries go through litellm's
#: transformations (gateway.wire.translate.litellm_extra). Both the model prefix and the upstream API.
LITELLM = "litellm"
#: How to install that extra (named in the errors of a config that needs it).
LITELLM_INSTALL = "pip install --no-deps --require-hashes -r constraints-litellm.txt"

#: How the credential is presented upstream.
AUTH_BEARER = "bearer"  # Authorization: Bearer <key>
AUTH_X_API_KEY = "x-api-key"  # Anthropic native
AUTH_AZURE = "api-key"  # Azure OpenAI key header
AUTH_GOOGLE = "x-goog-api-key"  # Gemini API key header


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """What plano knows about one provider prefix."""

    name: str
    display: str
    #: scheme://host[:port] used when the entry has no base_url (None: base_url required).
    default_origin: str | None
    #: Path prefix put before the API suffix (``/chat/completions``).
    path_prefix: str
    #: The provider's own wire API (what its default path serves): OPENAI_CHAT for OpenAI-compatible
    #: servers, ANTHROPIC_MESSAGES for Anthropic, ... Client APIs it does not speak are translated.
    chat_api: str = OPENAI_CHAT
    auth: str = AUTH_BEARER
    #: Listed in ``provider_interface`` choices for custom prefixes.
    interface: bool = False
    #: Also serves OpenAI Responses natively (``<prefix>/responses``): Responses clients pass through.
    responses: bool = False
    #: scheme://host with ``{region}`` for providers whose default host depends on the region
    #: (Bedrock): used when the entry has no base_url, the region resolved per entry.
    region_origin: str | None = None


def _spec(name, display, origin, prefix, **kw) -> ProviderSpec:
    return ProviderSpec(name, display, origin, prefix, **kw)


PROVIDERS: dict[str, ProviderSpec] = {
    s.name: s
    for s in (
        _spec("openai", "OpenAI", "https://api.openai.com", "/v1", interface=True, responses=True),
        _spec("anthropic", "Anthropic", "https://api.anthropic.com", "/v1", chat_api=ANTHROPIC_MESSAGES,
              auth=AUTH_X_API_KEY),
        # Native generateContent; a base_url whose path ends in /openai selects Gemini's OpenAI-compatible surface.
        _spec("gemini", "Google", "https://generativelanguage.googleapis.com", "/v1beta", chat_api=GEMINI_GENERATE,
              auth=AUTH_GOOGLE, interface=True),
        _spec("groq", "Groq", "https://api.groq.com", "/openai/v1", interface=True),
        _spec("mistral", "Mistral", "https://api.mistral.ai", "/v1", interface=True),
        _spec("deepseek", "DeepSeek", "https://api.deepseek.com", "/v1", interface=True),
        _spec("xai", "xAI", "https://api.x.ai", "/v1", responses=True),
        _spec("moonshotai", "Moonshot AI", "https://api.moonshot.ai", "/v1", interface=True),
        _spec("together_ai", "Together AI", "https://api.together.xyz", "/v1"),
        _spec("xiaomi", "Xiaomi", "https://api.xiaomimimo.com", "/v1", interface=True),
        _spec("digitalocean", "DigitalOcean", "https://inference.do-ai.run", "/v1", interface=True),
        _spec("zhipu", "Zhipu AI", "https://open.bigmodel.cn", "/api/paas/v4"),
        _spec("chatgpt", "ChatGPT", "https://chatgpt.com", "/backend-api/codex", chat_api=OPENAI_RESPONSES, interface=True),
        _spec("vercel", "Vercel AI Gateway", "https://ai-gateway.vercel.sh", "/v1", interface=True),
        _spec("openrouter", "OpenRouter", "https://openrouter.ai", "/api/v1", interface=True),
        _spec("edenai", "Eden AI", "https://api.edenai.run", "/v3/llm", interface=True),
        # base_url required
        _spec("azure_openai", "Azure OpenAI", None, "/openai/deployments", auth=AUTH_AZURE),
        _spec("ollama", "Ollama", None, "/v1"),
        _spec("qwen", "Qwen", None, "/compatible-mode/v1"),
        # No base_url: bedrock-runtime.{region}.amazonaws.com, the region from aws_region / AWS_REGION /
        # AWS_DEFAULT_REGION / the AWS profile's config (gateway.llm.auth.sigv4.aws_region).
        _spec("amazon_bedrock", "Amazon Bedrock", None, "", chat_api=BEDROCK_CONVERSE,
              region_origin="https://bedrock-runtime.{region}.amazonaws.com"),
        _spec("plano", "Plano", None, "/v1", interface=True),
    )
}

#: Prefixes that must come with ``base_url`` (Plano §1.4 rule 11; Bedrock's host follows its region).
BASE_URL_REQUIRED = frozenset(n for n, s in PROVIDERS.items() if s.default_origin is None and not s.region_origin)

#: Alternative spellings accepted in ``model`` prefixes.
PROVIDER_ALIASES: dict[str, str] = {
    "google": "gemini",
    "together": "together_ai",
    "amazon": "amazon_bedrock",
    "do": "digitalocean",
    "do_ai": "digitalocean",
    "azure": "azure_openai",
}

#: Values accepted for ``provider_interface`` on a custom prefix.
PROVIDER_INTERFACES = frozenset(n for n, s in PROVIDERS.items() if s.interface)

#: Azure OpenAI api-version used when the base_url does not carry one.
AZURE_API_VERSION = "2025-01-01-preview"


def canonical_provider(prefix: str) -> str:
    """Map an alias spelling to the canonical provider name (unknown prefixes unchanged)."""
    return PROVIDER_ALIASES.get(prefix, prefix)


def is_builtin(prefix: str) -> bool:
    return canonical_provider(prefix) in PROVIDERS


#: Extra ``provider_interface`` spellings accepted for custom prefixes: Plano's schema
#: also lists ``claude``; ``anthropic`` is our extension (Anthropic-compatible upstreams).
INTERFACE_ALIASES: dict[str, str] = {"claude": "anthropic", "anthropic": "anthropic"}


def canonical_interface(value: str) -> str | None:
    """Provider name whose wire API a custom prefix speaks, or None if ``value`` is unknown."""
    if value in PROVIDER_INTERFACES:
        return value
    return INTERFACE_ALIASES.get(value)
