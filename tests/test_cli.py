"""The ``plano`` command line: validate, up (background and foreground), down, --version."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest
import yaml

from gateway import __version__
from tests.support.gateway import REPO, Gateway, free_port, healthy
from tests.support.mock_llm import Reply


def plano(*args, cwd=None, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=cwd or REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def model_config(mock_url: str, port: int) -> dict:
    return {
        "version": "v0.4.0",
        "listeners": [{"type": "model", "name": "llm", "port": port, "address": "127.0.0.1"}],
        "model_providers": [{"model": "openai/gpt-4o", "access_key": "$TEST_OPENAI_KEY", "base_url": f"{mock_url}/v1",
                             "default": True}],
    }


def test_version():
    r = plano("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"plano {__version__}"


def test_validate_ok_and_discovery(tmp_path, mock_llm):
    (tmp_path / "plano.yaml").write_text(yaml.safe_dump(model_config(mock_llm.url, 12000)))
    r = plano("validate", cwd=tmp_path, env={"TEST_OPENAI_KEY": "sk-x"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("OK") and "plano.yaml" in r.stdout


def test_validate_config_yaml_fallback(tmp_path, mock_llm):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(model_config(mock_llm.url, 12000)))
    r = plano("validate", "--path", str(tmp_path), env={"TEST_OPENAI_KEY": "sk-x"})
    assert r.returncode == 0 and "config.yaml" in r.stdout


def test_validate_reports_every_error_with_lines(tmp_path):
    (tmp_path / "bad.yaml").write_text(
        "version: v0.4.0\n"
        "listeners:\n"
        "  - type: model\n"
        "    name: llm\n"
        "    port: not-a-port\n"
        "model_providers:\n"
        "  - model: gpt-4o\n"
        "    access_key: sk-literal-secret-value\n"
        "  - model: openai/gpt-4o-mini\n"
        "    default: true\n"
        "    base_url: ftp://example.com\n"
    )
    r = plano("validate", str(tmp_path / "bad.yaml"))
    assert r.returncode == 1
    err = r.stderr
    assert "bad.yaml:5: listeners[0].port" in err
    assert "bad.yaml:7: model_providers[0].model" in err and "Invalid model name" in err
    assert "bad.yaml:11: model_providers[1].base_url" in err and "valid URL with scheme" in err
    assert "sk-literal-secret-value" not in err + r.stdout


def test_validate_missing_env_var_names_variable_and_line(tmp_path):
    (tmp_path / "plano.yaml").write_text(
        "version: v0.4.0\nlisteners:\n  - type: model\n    name: llm\n    port: 12000\n"
        "model_providers:\n  - model: openai/gpt-4o\n    base_url: ${UNSET_BASE_URL_FOR_TEST}\n    default: true\n"
    )
    r = plano("validate", cwd=tmp_path)
    assert r.returncode == 1
    assert "plano.yaml:8: model_providers[0].base_url" in r.stderr and "UNSET_BASE_URL_FOR_TEST" in r.stderr


def test_validate_missing_file(tmp_path):
    r = plano("validate", cwd=tmp_path)
    assert r.returncode == 1 and "plano.yaml" in r.stderr


def test_up_background_then_down(tmp_path, llm):
    port = free_port()
    cfg = tmp_path / "plano.yaml"
    cfg.write_text(yaml.safe_dump(model_config(llm.url, port)))
    env = {"PLANO_HOME": str(tmp_path / "home"), "TEST_OPENAI_KEY": "sk-from-env"}
    r = plano("up", str(cfg), env=env)
    try:
        assert r.returncode == 0, r.stderr
        assert "is up" in r.stdout and f"http://127.0.0.1:{port}" in r.stdout
        pid = int((tmp_path / "home" / "run" / "plano.pid").read_text())
        assert healthy(port)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        assert client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "bg"}]).choices[0].message.content == "echo: bg"
        assert llm.last.headers["authorization"] == "Bearer sk-from-env"
        again = plano("up", str(cfg), env=env)
        assert again.returncode == 1 and "already running" in again.stderr
    finally:
        down = plano("down", env=env)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not healthy(port)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not (tmp_path / "home" / "run" / "plano.pid").exists()


def test_up_background_reports_startup_failure(tmp_path, mock_llm):
    busy = __import__("socket").socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    cfg = tmp_path / "plano.yaml"
    cfg.write_text(yaml.safe_dump(model_config(mock_llm.url, port)))
    try:
        r = plano("up", str(cfg), env={"PLANO_HOME": str(tmp_path / "home"), "TEST_OPENAI_KEY": "k"})
    finally:
        busy.close()
    assert r.returncode == 1
    assert "cannot bind" in r.stderr and str(port) in r.stderr


def test_foreground_sigterm_drains_in_flight_request(tmp_path, llm):
    port = free_port()
    gw = Gateway(model_config(llm.url, port), tmp_path, env={"TEST_OPENAI_KEY": "k"}).start()
    llm.enqueue(Reply("json", content="slow but complete", delay=1.0))
    result = {}

    def call():
        r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                       json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}, timeout=30)
        result["status"], result["body"] = r.status_code, r.json()

    t = threading.Thread(target=call)
    t.start()
    deadline = time.monotonic() + 10
    while not llm.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert llm.requests, "request never reached the upstream"
    os.killpg(gw.proc.pid, signal.SIGTERM)
    t.join(30)
    code = gw.proc.wait(30)
    assert result["status"] == 200 and result["body"]["choices"][0]["message"]["content"] == "slow but complete"
    assert code == 0, gw.log()
    gw.stop()


def test_two_workers_serve_requests(tmp_path, llm):
    port = free_port()
    with Gateway(model_config(llm.url, port), tmp_path, env={"TEST_OPENAI_KEY": "k"}, workers=2) as gw:
        client = openai.OpenAI(base_url=f"{gw.url()}/v1", api_key="x", max_retries=0)
        for i in range(20):
            r = httpx.post(f"{gw.url()}/v1/chat/completions", json={"model": "gpt-4o", "messages": [{"role": "user", "content": str(i)}]},
                           headers={"connection": "close"})
            assert r.json()["choices"][0]["message"]["content"] == f"echo: {i}"
        assert len(client.models.list().data) == 1
        workers = subprocess.run(["pgrep", "-P", str(gw.proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(workers) == 2
    assert gw.proc.returncode == 0


def test_unset_access_key_env_answers_clear_401(tmp_path, llm):
    port = free_port()
    config = model_config(llm.url, port)
    config["model_providers"][0]["access_key"] = "$PLANO_TEST_NEVER_SET_KEY"
    with Gateway(config, tmp_path, env={}) as gw:
        client = openai.OpenAI(base_url=f"{gw.url()}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as exc:
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        assert "PLANO_TEST_NEVER_SET_KEY" in exc.value.message
        assert llm.requests == []
        assert "PLANO_TEST_NEVER_SET_KEY" in gw.log()  # start-up warning names the variable
