"""``plano cli_agent claude|codex``: the tool starts with its base URL on plano's model listener."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
import yaml

from tests.support.gateway import REPO, free_port

STUB = """#!{python}
import json, os, sys, urllib.request
record = {{"argv": sys.argv[1:], "env": dict(os.environ)}}
tool = os.path.basename(sys.argv[0])
if tool == "claude":  # talk to plano the way Claude Code does: Anthropic Messages at $ANTHROPIC_BASE_URL
    req = urllib.request.Request(os.environ["ANTHROPIC_BASE_URL"] + "/v1/messages", method="POST",
        data=json.dumps({{"model": "gpt-4o", "max_tokens": 50,
                          "messages": [{{"role": "user", "content": "from claude"}}]}}).encode(),
        headers={{"content-type": "application/json", "anthropic-version": "2023-06-01",
                  "authorization": "Bearer " + os.environ["ANTHROPIC_AUTH_TOKEN"]}})
else:  # Codex: OpenAI at $OPENAI_BASE_URL
    req = urllib.request.Request(os.environ["OPENAI_BASE_URL"] + "/chat/completions", method="POST",
        data=json.dumps({{"model": "gpt-4o", "messages": [{{"role": "user", "content": "from codex"}}]}}).encode(),
        headers={{"content-type": "application/json", "authorization": "Bearer " + os.environ["OPENAI_API_KEY"]}})
with urllib.request.urlopen(req, timeout=30) as resp:
    record["status"] = resp.status
    record["answer"] = json.loads(resp.read())
open({out!r}, "w").write(json.dumps(record))
sys.exit(7)
"""


def install_stub(bindir, name: str, out) -> None:
    bindir.mkdir(exist_ok=True)
    path = bindir / name
    path.write_text(STUB.format(python=sys.executable, out=str(out)))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def plano(*args, env, cwd=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=cwd or REPO, capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.fixture
def gateway(tmp_path, llm):
    port = free_port()
    cfg = tmp_path / "plano.yaml"
    cfg.write_text(yaml.safe_dump({
        "version": "v0.4.0",
        "listeners": [{"type": "model", "name": "llm", "port": port, "address": "127.0.0.1"}],
        "model_providers": [{"model": "openai/gpt-4o", "access_key": "sk-provider", "base_url": f"{llm.url}/v1",
                             "default": True},
                            {"model": "openai/gpt-4o-mini", "access_key": "sk-provider", "base_url": f"{llm.url}/v1"}],
        "model_aliases": {"arch.claude.code.small.fast": {"target": "openai/gpt-4o-mini"}},
    }))
    env = {**os.environ, "PLANO_HOME": str(tmp_path / "home"), "PLANO_ADMIN_PORT": "0", "PLANO_ACCESS_LOG": "off"}
    for var in ("ANTHROPIC_BASE_URL", "ANTHROPIC_SMALL_FAST_MODEL", "OPENAI_BASE_URL", "OPENAI_API_KEY",
                "CODEX_MODEL", "NON_INTERACTIVE_MODE", "CI"):
        env.pop(var, None)
    r = plano("up", str(cfg), env=env, timeout=90)
    assert r.returncode == 0, r.stderr
    try:
        yield port, env, cfg
    finally:
        plano("down", env=env)


def test_claude_gets_plano_base_url_token_small_fast_model_and_settings(tmp_path, gateway, llm):
    port, env, _ = gateway
    out = tmp_path / "claude.json"
    install_stub(tmp_path / "bin", "claude", out)
    env = {**env, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{env['PATH']}", "NON_INTERACTIVE_MODE": "1"}
    settings = {"ANTHROPIC_MODEL": "gpt-4o", "permissions": {"allow": ["Bash(ls)"]}}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = plano("cli_agent", "claude", "--settings", json.dumps(settings), "--", "-p", "hello", env=env, cwd=elsewhere)
    assert r.returncode == 7, r.stderr  # the tool's own exit code
    seen = json.loads(out.read_text())
    got = seen["env"]
    assert got["ANTHROPIC_BASE_URL"] == f"http://127.0.0.1:{port}"
    assert got["ANTHROPIC_AUTH_TOKEN"] == "test"
    assert got["API_TIMEOUT_MS"] == "600000"
    assert got["ANTHROPIC_SMALL_FAST_MODEL"] == "arch.claude.code.small.fast"  # the config has that alias
    assert got["ANTHROPIC_MODEL"] == "gpt-4o"
    assert got["CI"] == "true"
    assert seen["argv"] == ["--settings", json.dumps({"permissions": {"allow": ["Bash(ls)"]}}), "-p", "hello"]
    # and plano's model listener at that base URL answered Claude's Messages request
    assert seen["status"] == 200 and seen["answer"]["type"] == "message"
    assert llm.last.headers["authorization"] == "Bearer sk-provider"


def test_codex_gets_openai_base_url_and_model(tmp_path, gateway, llm):
    port, env, _ = gateway
    out = tmp_path / "codex.json"
    install_stub(tmp_path / "bin", "codex", out)
    env = {**env, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{env['PATH']}", "CODEX_MODEL": "gpt-4o"}
    r = plano("cli_agent", "codex", env=env)
    assert r.returncode == 7, r.stderr
    seen = json.loads(out.read_text())
    assert seen["env"]["OPENAI_BASE_URL"] == f"http://127.0.0.1:{port}/v1"
    assert seen["argv"] == ["--model", "gpt-4o"]
    assert seen["status"] == 200 and seen["answer"]["choices"][0]["message"]["content"] == "echo: from codex"
    assert llm.last.headers["authorization"] == "Bearer sk-provider"


def test_refuses_when_the_tool_is_not_installed(tmp_path, gateway):
    _, env, _ = gateway
    empty = tmp_path / "nobin"
    empty.mkdir()
    env = {**env, "PATH": str(empty)}
    r = subprocess.run([sys.executable, "-m", "gateway", "cli_agent", "claude"], cwd=REPO, capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 1
    assert "'claude' is not on PATH" in r.stderr and "npm install -g @anthropic-ai/claude-code" in r.stderr


def test_refuses_when_plano_is_not_running(tmp_path):
    out = tmp_path / "claude.json"
    install_stub(tmp_path / "bin", "claude", out)
    env = {**os.environ, "PLANO_HOME": str(tmp_path / "home"), "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    work = tmp_path / "work"
    work.mkdir()
    r = plano("cli_agent", "claude", env=env, cwd=work)  # no gateway started, no config here
    assert r.returncode == 1 and "plano is not running" in r.stderr and "plano up" in r.stderr
    # a config whose model listener nobody serves
    port = free_port()
    (work / "plano.yaml").write_text(yaml.safe_dump({
        "version": "v0.4.0", "listeners": [{"type": "model", "name": "llm", "port": port, "address": "127.0.0.1"}],
        "model_providers": [{"model": "openai/gpt-4o", "access_key": "k", "default": True}]}))
    r = plano("cli_agent", "claude", env=env, cwd=work)
    assert r.returncode == 1
    assert f"nothing answers http://127.0.0.1:{port}/healthz" in r.stderr
    assert not out.exists()  # the tool was never started
