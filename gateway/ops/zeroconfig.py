"""Zero-config ``plano up``: with no config file, a model proxy for the common providers (Plano §6.2).

One model listener (``llm``, ``--listener-port``, default 12000, on 127.0.0.1: a proxy that
injects your keys is not exposed to the network without a config that says so) and a wildcard
provider per common provider (``openai/*``, ``anthropic/*``, ...). A provider whose key variable
is set gets ``access_key: $VAR`` (the key itself is never written to disk); one whose variable
is unset gets ``passthrough_auth: true`` (the client's own ``Authorization`` goes upstream).
``PLANO_<PROVIDER>_BASE_URL`` (e.g. ``PLANO_OPENAI_BASE_URL=http://127.0.0.1:8080/v1``) points a
provider elsewhere: a local mock, a proxy, a compatible server. No default model: a request
names ``provider/model``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import yaml

from gateway.config.providers import PROVIDERS

#: (provider, key variable) in the order they are listed; Plano's zero-config set plus xai / together / moonshot.
ZERO_CONFIG_PROVIDERS: tuple[tuple[str, str], ...] = (
    ("openai", "OPENAI_API_KEY"),
    ("anthropic", "ANTHROPIC_API_KEY"),
    ("gemini", "GEMINI_API_KEY"),
    ("groq", "GROQ_API_KEY"),
    ("deepseek", "DEEPSEEK_API_KEY"),
    ("mistral", "MISTRAL_API_KEY"),
    ("xai", "XAI_API_KEY"),
    ("together_ai", "TOGETHER_API_KEY"),
    ("moonshotai", "MOONSHOT_API_KEY"),
    ("digitalocean", "DO_API_KEY"),
    ("vercel", "AI_GATEWAY_API_KEY"),
    ("openrouter", "OPENROUTER_API_KEY"),
    ("edenai", "EDENAI_API_KEY"),
)

DEFAULT_LISTENER_PORT = 12000
ZERO_CONFIG_FILE = "zero_config.yaml"


def base_url_override_var(provider: str) -> str:
    return f"PLANO_{provider.upper()}_BASE_URL"


def synthesize(port: int = DEFAULT_LISTENER_PORT, environ: Mapping[str, str] | None = None,
               address: str = "127.0.0.1") -> tuple[str, list[str]]:
    """``(config YAML text, lines describing what was set up)``."""
    env = os.environ if environ is None else environ
    providers = []
    described = []
    for name, var in ZERO_CONFIG_PROVIDERS:
        if name not in PROVIDERS:  # pragma: no cover - the catalog and this list move together
            continue
        entry: dict = {"model": f"{name}/*"}
        if env.get(var):
            entry["access_key"] = f"${var}"
            how = f"key from ${var}"
        else:
            entry["passthrough_auth"] = True
            how = "client's key (passthrough)"
        override = env.get(base_url_override_var(name))
        if override:
            entry["base_url"] = override
            how += f", base_url {override}"
        providers.append(entry)
        described.append(f"{name}/*: {how}")
    config = {
        "version": "v0.4.0",
        "listeners": [{"type": "model", "name": "llm", "address": address, "port": port}],
        "model_providers": providers,
    }
    header = ("# Written by zero-config 'plano up' (no plano.yaml found). Copy it to plano.yaml to customise;\n"
              "# keys are read from the environment at start-up, never stored here.\n")
    return header + yaml.safe_dump(config, sort_keys=False), described
