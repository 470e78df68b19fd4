"""Zero-config ``plano up``: no config file → one model listener with wildcard providers (Plano §6.2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import openai
import yaml

from gateway.ops.zeroconfig import ZERO_CONFIG_PROVIDERS, synthesize
from tests.support.gateway import free_port, healthy

PROVIDER_KEY_VARS = [var for _, var in ZERO_CONFIG_PROVIDERS]


def plano(*args, cwd, env, timeout=90):
    clean = {k: v for k, v in os.environ.items() if k not in PROVIDER_KEY_VARS and not k.startswith("PLANO_")}
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=cwd, capture_output=True, text=True,
                          env={**clean, **env}, timeout=timeout)


def test_synthesized_config_uses_env_keys_or_passthrough_and_never_holds_a_key():
    text, described = synthesize(12345, {"OPENAI_API_KEY": "sk-secret-value", "PLANO_GROQ_BASE_URL": "http://x/v1"})
    config = yaml.safe_load(text)
    assert "sk-secret-value" not in text
    assert config["listeners"] == [{"type": "model", "name": "llm", "address": "127.0.0.1", "port": 12345}]
    by_model = {p["model"]: p for p in config["model_providers"]}
    assert by_model["openai/*"] == {"model": "openai/*", "access_key": "$OPENAI_API_KEY"}
    assert by_model["anthropic/*"] == {"model": "anthropic/*", "passthrough_auth": True}
    assert by_model["groq/*"]["base_url"] == "http://x/v1"
    assert {"openai/*", "anthropic/*", "gemini/*", "groq/*", "deepseek/*", "mistral/*"} <= set(by_model)
    assert not any(p.get("default") for p in config["model_providers"])
    assert "openai/*: key from $OPENAI_API_KEY" in described


def test_zero_config_up_serves_models_and_proxies_with_the_env_key(tmp_path, llm):
    port = free_port()
    home = tmp_path / "home"
    env = {"PLANO_HOME": str(home), "PLANO_ADMIN_PORT": "0",
           "OPENAI_API_KEY": "sk-zero-config-env", "PLANO_OPENAI_BASE_URL": f"{llm.url}/v1",
           "PLANO_GROQ_BASE_URL": f"{llm.url}/openai/v1"}
    empty = tmp_path / "project"
    empty.mkdir()
    r = plano("up", "--listener-port", str(port), cwd=empty, env=env)
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        out = r.stdout
        assert "zero-config" in out and f"http://127.0.0.1:{port}" in out
        assert "openai/*: key from $OPENAI_API_KEY" in out
        assert "anthropic/*: client's key (passthrough)" in out
        assert "is up" in out
        written = (home / "run" / "zero_config.yaml").read_text()
        assert "sk-zero-config-env" not in written

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=10) as resp:
            assert resp.status == 200
            listed = json.loads(resp.read())
        assert listed["object"] == "list" and isinstance(listed["data"], list)  # wildcards are not listed

        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="client-key", max_retries=0)
        reply = client.chat.completions.create(model="openai/gpt-4o-mini",
                                               messages=[{"role": "user", "content": "zero"}])
        assert reply.choices[0].message.content == "echo: zero"
        sent = llm.last
        assert sent.path == "/v1/chat/completions"
        assert sent.headers["authorization"] == "Bearer sk-zero-config-env"  # the env key, not the client's
        assert sent.body["model"] == "gpt-4o-mini"

        # a provider without a key in the environment passes the client's own key through
        reply = client.chat.completions.create(model="groq/llama-3.3-70b-versatile",
                                               messages=[{"role": "user", "content": "pass"}])
        assert reply.choices[0].message.content == "echo: pass"
        assert llm.last.path == "/openai/v1/chat/completions"
        assert llm.last.headers["authorization"] == "Bearer client-key"
    finally:
        down = plano("down", cwd=empty, env=env)
    assert down.returncode == 0
    assert not healthy(port)


def test_listener_port_needs_zero_config(tmp_path):
    (tmp_path / "plano.yaml").write_text("version: v0.4.0\nlisteners: []\n")
    r = plano("up", "--listener-port", "12001", cwd=tmp_path, env={"PLANO_HOME": str(tmp_path / "home")})
    assert r.returncode == 2 and "--listener-port applies only to zero-config" in r.stderr


def test_zero_config_foreground_says_what_it_did(tmp_path, llm):
    port = free_port()
    env = {"PLANO_HOME": str(tmp_path / "home"), "PLANO_ADMIN_PORT": "0", "PLANO_ACCESS_LOG": "off",
           "ANTHROPIC_API_KEY": "sk-ant-env"}
    clean = {k: v for k, v in os.environ.items() if k not in PROVIDER_KEY_VARS and not k.startswith("PLANO_")}
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "up", "--foreground", "--listener-port", str(port)],
                            cwd=tmp_path, env={**clean, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "config written to" in line:
                break
        text = "".join(lines)
        assert "anthropic/*: key from $ANTHROPIC_API_KEY" in text and "openai/*: client's key (passthrough)" in text
        import time

        deadline = time.monotonic() + 30
        while not healthy(port) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert healthy(port)
    finally:
        proc.terminate()
        proc.wait(30)
