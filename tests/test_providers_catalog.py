"""Every provider of Plano §4.3 resolves to the right default host, path, upstream API and auth header.

Table-driven over gateway/config/providers.py: a provider added to the catalog without a row
here fails ``test_table_covers_the_catalog``. Where plano deliberately differs from Plano's
table (native Gemini and Anthropic for every client API), the row says so.
"""

from __future__ import annotations

import pytest

from gateway.config.providers import (
    ANTHROPIC_MESSAGES,
    BEDROCK_CONVERSE,
    GEMINI_GENERATE,
    OPENAI_CHAT,
    OPENAI_RESPONSES,
    PROVIDERS,
)
from gateway.config.schema import ModelProvider
from gateway.llm.resolver import ModelResolver
from gateway.llm.targets import build_target

BEARER = ("Authorization", "Bearer k")

# provider: (entry overrides, chat-client URL, upstream API, auth headers, responses-client URL if native)
TABLE = {
    "openai": ({"model": "openai/gpt-4o"}, "https://api.openai.com/v1/chat/completions", OPENAI_CHAT, (BEARER,),
               "https://api.openai.com/v1/responses"),
    # Plano sends chat/responses clients to Anthropic's OpenAI-compatible surface; plano translates to Messages.
    "anthropic": ({"model": "anthropic/claude-sonnet-4-6"}, "https://api.anthropic.com/v1/messages",
                  ANTHROPIC_MESSAGES, (("x-api-key", "k"), ("anthropic-version", "2023-06-01")), None),
    # Plano uses Gemini's OpenAI-compatible /v1beta/openai; plano speaks generateContent natively.
    "gemini": ({"model": "gemini/gemini-2.5-flash"},
               "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent",
               GEMINI_GENERATE, (("x-goog-api-key", "k"),), None),
    "groq": ({"model": "groq/llama-3.3-70b"}, "https://api.groq.com/openai/v1/chat/completions", OPENAI_CHAT,
             (BEARER,), None),
    "mistral": ({"model": "mistral/mistral-large"}, "https://api.mistral.ai/v1/chat/completions", OPENAI_CHAT,
                (BEARER,), None),
    "deepseek": ({"model": "deepseek/deepseek-chat"}, "https://api.deepseek.com/v1/chat/completions", OPENAI_CHAT,
                 (BEARER,), None),
    "xai": ({"model": "xai/grok-4-0709"}, "https://api.x.ai/v1/chat/completions", OPENAI_CHAT, (BEARER,),
            "https://api.x.ai/v1/responses"),
    "moonshotai": ({"model": "moonshotai/kimi-k2"}, "https://api.moonshot.ai/v1/chat/completions", OPENAI_CHAT,
                   (BEARER,), None),
    "together_ai": ({"model": "together_ai/meta-llama/Llama-3-70b"}, "https://api.together.xyz/v1/chat/completions",
                    OPENAI_CHAT, (BEARER,), None),
    "xiaomi": ({"model": "xiaomi/mimo-v2"}, "https://api.xiaomimimo.com/v1/chat/completions", OPENAI_CHAT,
               (BEARER,), None),
    "digitalocean": ({"model": "digitalocean/llama3-8b"}, "https://inference.do-ai.run/v1/chat/completions",
                     OPENAI_CHAT, (BEARER,), None),
    "zhipu": ({"model": "zhipu/glm-4.6"}, "https://open.bigmodel.cn/api/paas/v4/chat/completions", OPENAI_CHAT,
              (BEARER,), None),
    "qwen": ({"model": "qwen/qwen-max", "base_url": "https://dashscope-intl.aliyuncs.com"},
             "https://dashscope-intl.aliyuncs.com/compatible-mode/v1/chat/completions", OPENAI_CHAT, (BEARER,), None),
    "azure_openai": ({"model": "azure_openai/my-gpt4o", "base_url": "https://res.openai.azure.com"},
                     "https://res.openai.azure.com/openai/deployments/my-gpt4o/chat/completions"
                     "?api-version=2025-01-01-preview", OPENAI_CHAT, (("api-key", "k"),), None),
    "amazon_bedrock": ({"model": "amazon_bedrock/us.amazon.nova-premier-v1:0",
                        "base_url": "https://bedrock-runtime.us-west-2.amazonaws.com"},
                       "https://bedrock-runtime.us-west-2.amazonaws.com/model/us.amazon.nova-premier-v1%3A0/converse",
                       BEDROCK_CONVERSE, (BEARER,), None),
    "ollama": ({"model": "ollama/llama3.1", "base_url": "http://localhost:11434"},
               "http://localhost:11434/v1/chat/completions", OPENAI_CHAT, (BEARER,), None),
    "chatgpt": ({"model": "chatgpt/gpt-5-codex"}, None, OPENAI_RESPONSES, (BEARER,),
                "https://chatgpt.com/backend-api/codex/responses"),
    "vercel": ({"model": "vercel/openai/gpt-4o"}, "https://ai-gateway.vercel.sh/v1/chat/completions", OPENAI_CHAT,
               (BEARER,), None),
    "openrouter": ({"model": "openrouter/anthropic/claude-3.5-sonnet"}, "https://openrouter.ai/api/v1/chat/completions",
                   OPENAI_CHAT, (BEARER,), None),
    "edenai": ({"model": "edenai/openai/gpt-4o"}, "https://api.edenai.run/v3/llm/chat/completions", OPENAI_CHAT,
               (BEARER,), None),
    # Plano's default host archfc.katanemo.dev is its hosted router; plano requires a base_url.
    "plano": ({"model": "plano/katanemo/Plano-Orchestrator-4B", "base_url": "http://localhost:8000"},
              "http://localhost:8000/v1/chat/completions", OPENAI_CHAT, (BEARER,), None),
}


def _target(overrides: dict):
    return build_target(ModelProvider(access_key="k", **overrides), default_timeout=None)


def test_table_covers_the_catalog():
    assert set(TABLE) == set(PROVIDERS)


@pytest.mark.parametrize("provider", sorted(TABLE))
def test_default_host_path_api_and_auth(provider):
    overrides, chat_url, api, auth, responses_url = TABLE[provider]
    target = _target(overrides)
    assert target.provider == provider and target.api == api
    assert target.auth_headers == auth
    chat = target.route(OPENAI_CHAT)
    if chat_url is None:
        assert chat is None
    else:
        assert chat.urls == (chat_url,)
        assert chat.api == api and (chat.translator is None) == (api == OPENAI_CHAT)
    responses = target.route(OPENAI_RESPONSES)
    if responses_url is not None:
        assert responses.api == OPENAI_RESPONSES and responses.urls == (responses_url,) and responses.translator is None
    elif chat_url is not None:
        assert responses.urls == (chat_url,) and responses.translator is not None  # translated (stored state)
    messages = target.route(ANTHROPIC_MESSAGES)
    if chat_url is not None:
        assert messages.urls == (chat_url,) and (messages.translator is None) == (api == ANTHROPIC_MESSAGES)


@pytest.mark.parametrize("model, expected", [
    ("google/gemini-2.5-pro", "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:generateContent"),
    ("together/meta-llama/x", "https://api.together.xyz/v1/chat/completions"),
    ("azure/dep", None),  # base_url required
    ("amazon/anthropic.claude-3-haiku-20240307-v1:0", None),
    ("do/llama3", "https://inference.do-ai.run/v1/chat/completions"),
])
def test_aliases_resolve_like_their_provider(model, expected):
    if expected is None:
        target = _target({"model": model, "base_url": "https://h.example"})
        assert target.spec.default_origin is None
    else:
        assert _target({"model": model}).url == expected


@pytest.mark.parametrize("overrides, url", [
    # A non-root base_url path replaces the provider's default prefix and keeps the API suffix (§4.7).
    ({"model": "zhipu/glm-4.6", "base_url": "https://api.z.ai/api/coding/paas/v4"},
     "https://api.z.ai/api/coding/paas/v4/chat/completions"),
    ({"model": "openai/gpt-4o", "base_url": "https://proxy.example/ai-gateway/openai"},
     "https://proxy.example/ai-gateway/openai/chat/completions"),
    ({"model": "gemini/gemini-2.5-flash", "base_url": "https://proxy.example/google/v1beta"},
     "https://proxy.example/google/v1beta/models/gemini-2.5-flash:generateContent"),
    # Gemini's OpenAI-compatible surface when the base_url names it: chat passthrough, Bearer.
    ({"model": "gemini/gemini-2.5-flash", "base_url": "https://generativelanguage.googleapis.com/v1beta/openai/"},
     "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions"),
    ({"model": "azure_openai/dep", "base_url": "https://res.openai.azure.com/openai/v1"},
     "https://res.openai.azure.com/openai/v1/chat/completions"),
    ({"model": "azure_openai/dep", "base_url": "https://res.openai.azure.com?api-version=2024-10-21"},
     "https://res.openai.azure.com/openai/deployments/dep/chat/completions?api-version=2024-10-21"),
    ({"model": "amazon_bedrock/arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.x-v1:0",
      "base_url": "https://bedrock-runtime.us-east-1.amazonaws.com"},
     "https://bedrock-runtime.us-east-1.amazonaws.com/model/"
     "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.x-v1%3A0/converse"),
    ({"model": "perplexity/sonar", "base_url": "https://api.perplexity.ai"}, "https://api.perplexity.ai/chat/completions"),
    ({"model": "mycorp/llm-1", "base_url": "https://llm.mycorp.example/v1", "provider_interface": "openai"},
     "https://llm.mycorp.example/v1/chat/completions"),
    ({"model": "mycorp/gem", "base_url": "https://gem.mycorp.example", "provider_interface": "gemini"},
     "https://gem.mycorp.example/v1beta/models/gem:generateContent"),
])
def test_base_url_paths(overrides, url):
    target = _target(overrides)
    assert target.url == url
    if "openai/" in overrides.get("base_url", "") and overrides["model"].startswith("gemini/"):
        assert target.api == OPENAI_CHAT and target.auth_headers == (BEARER,)


def test_wildcards_specialise_native_paths():
    resolver = ModelResolver([ModelProvider(model="gemini/*", access_key="k"),
                              ModelProvider(model="amazon_bedrock/*", access_key="k",
                                            base_url="https://bedrock-runtime.eu-west-1.amazonaws.com")],
                             {}, default_timeout=None)
    gem = resolver.resolve("gemini/gemini-3-pro-preview")
    assert gem.route(ANTHROPIC_MESSAGES).urls == (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-3-pro-preview:generateContent",)
    bed = resolver.resolve("amazon_bedrock/cohere.command-r-v1:0")
    assert bed.url == "https://bedrock-runtime.eu-west-1.amazonaws.com/model/cohere.command-r-v1%3A0/converse"
    assert bed.route(OPENAI_RESPONSES).api == BEDROCK_CONVERSE


def test_bedrock_without_key_signs_with_sigv4(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAX")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    target = build_target(ModelProvider(model="amazon_bedrock/m", base_url="https://bedrock-runtime.ap-south-1.amazonaws.com"),
                          default_timeout=None)
    assert target.auth_headers == () and target.signer is not None and target.signer.region == "ap-south-1"
    assert target.missing_key_env is None
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    target = build_target(ModelProvider(model="amazon_bedrock/m", base_url="https://bedrock-runtime.ap-south-1.amazonaws.com"),
                          default_timeout=None)
    assert target.signer is None and target.missing_key_env == "AWS_ACCESS_KEY_ID"
