"""``plano cli_agent claude|codex``: start a coding agent with its model traffic going through plano.

As Plano does (§6.3): Claude Code gets ``ANTHROPIC_BASE_URL=http://<model listener>``,
``ANTHROPIC_AUTH_TOKEN=test`` (plano holds the provider keys), ``API_TIMEOUT_MS=600000`` and
``ANTHROPIC_SMALL_FAST_MODEL`` (from ``--settings``, else the config's
``arch.claude.code.small.fast`` alias when there is one); other ``--settings`` keys go to
``claude --settings``. Codex gets ``OPENAI_BASE_URL=http://<model listener>/v1`` and the model
``$CODEX_MODEL`` (default ``gpt-5.3-codex``). ``NON_INTERACTIVE_MODE`` set → ``CI=true``.

The model listener is the config's (FILE / ``--path``) or the running background gateway's; the
command refuses when nothing answers its ``/healthz`` or the tool is not on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import urllib.request
from pathlib import Path

SMALL_FAST_ALIAS = "arch.claude.code.small.fast"
DEFAULT_CODEX_MODEL = "gpt-5.3-codex"
ENV_SETTINGS = ("ANTHROPIC_SMALL_FAST_MODEL", "ANTHROPIC_MODEL", "ANTHROPIC_DEFAULT_SONNET_MODEL",
                "ANTHROPIC_DEFAULT_OPUS_MODEL", "ANTHROPIC_DEFAULT_HAIKU_MODEL")
INSTALL_HINTS = {
    "claude": "install Claude Code: npm install -g @anthropic-ai/claude-code",
    "codex": "install Codex: npm install -g @openai/codex",
}


def _healthy(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=1.0) as resp:
            return resp.status == 200
    except OSError:
        return False


def find_model_listener(args) -> tuple[str, int, object] | str:
    """``(host, port, config or None)`` of the model listener to use, or a sentence saying why there is none."""
    from gateway.config import CONFIG_FILE_NAMES, ConfigError, find_config_file, load_config
    from gateway.ops.runstate import probe_host, read_state

    state = read_state()
    config_file = None
    if args.file or args.path:
        try:
            config_file = find_config_file(args.file, Path(args.path or "."))
        except ConfigError as err:
            return str(err)
    elif state is not None:
        config_file = state.get("config")
    elif any(Path(name).is_file() for name in CONFIG_FILE_NAMES):
        config_file = find_config_file(None, Path("."))
    config = None
    if config_file:
        try:
            config = load_config(config_file)
        except ConfigError as err:
            return f"the config does not load:\n{err}"
        listener = config.model_listener
        if listener is None:
            return f"{config_file} has no model listener (type: model) for the agent to talk to"
        return probe_host(listener.address), listener.port, config
    if state is not None:  # pragma: no cover - state always names its config
        for listener in state.get("listeners", []):
            if listener.get("type") == "model":
                return listener["host"], listener["port"], None
    return "plano is not running: start it with 'plano up' (or give the config file of a running plano)"


def build_env(tool: str, host: str, port: int, config, settings: dict, environ) -> tuple[dict, list[str]]:
    """The tool's environment and extra arguments."""
    env = dict(environ)
    extra: list[str] = []
    base = f"http://{host}:{port}"
    settings = dict(settings)
    if tool == "claude":
        env["ANTHROPIC_BASE_URL"] = base
        env["ANTHROPIC_AUTH_TOKEN"] = "test"
        env["API_TIMEOUT_MS"] = "600000"
        for key in ENV_SETTINGS:
            if key in settings:
                env[key] = str(settings.pop(key))
        if "ANTHROPIC_SMALL_FAST_MODEL" not in env and config is not None \
                and SMALL_FAST_ALIAS in (config.model_aliases or {}):
            env["ANTHROPIC_SMALL_FAST_MODEL"] = SMALL_FAST_ALIAS
        if settings:
            extra = ["--settings", json.dumps(settings)]
    else:
        env["OPENAI_BASE_URL"] = f"{base}/v1"
        env.setdefault("OPENAI_API_KEY", "test")
        model = str(settings.pop("model", None) or env.get("CODEX_MODEL") or DEFAULT_CODEX_MODEL)
        extra = ["--model", model]
        for key, value in settings.items():
            extra += ["-c", f"{key}={json.dumps(value)}"]
    if env.get("NON_INTERACTIVE_MODE"):
        env["CI"] = "true"
    return env, extra


def cmd_cli_agent(args) -> int:
    settings = {}
    if args.settings:
        try:
            settings = json.loads(args.settings)
        except ValueError as exc:
            print(f"plano cli_agent: --settings is not JSON: {exc}", file=sys.stderr)
            return 2
        if not isinstance(settings, dict):
            print("plano cli_agent: --settings must be a JSON object", file=sys.stderr)
            return 2
    found = find_model_listener(args)
    if isinstance(found, str):
        print(f"plano cli_agent: {found}", file=sys.stderr)
        return 1
    host, port, config = found
    if not _healthy(host, port):
        print(f"plano cli_agent: plano is not running: nothing answers http://{host}:{port}/healthz; "
              "start it with 'plano up'", file=sys.stderr)
        return 1
    executable = shutil.which(args.tool)
    if executable is None:
        print(f"plano cli_agent: '{args.tool}' is not on PATH; {INSTALL_HINTS[args.tool]}", file=sys.stderr)
        return 1
    env, extra = build_env(args.tool, host, port, config, settings, os.environ)
    shown = env.get("ANTHROPIC_BASE_URL") or env.get("OPENAI_BASE_URL")
    print(f"plano cli_agent: starting {args.tool} with its model traffic through plano ({shown})",
          file=sys.stderr, flush=True)
    sys.stdout.flush()
    os.execve(executable, [args.tool, *extra, *args.args], env)
    return 0  # pragma: no cover - execve does not return
