"""``plano logs``: the background gateway's access log, filtered, and followed live."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from tests.support.gateway import REPO, free_port


def plano(*args, env, cwd=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=cwd or REPO, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=timeout)


@pytest.fixture
def running(tmp_path, llm):
    port = free_port()
    cfg = tmp_path / "plano.yaml"
    cfg.write_text(yaml.safe_dump({
        "version": "v0.4.0",
        "listeners": [{"type": "model", "name": "llm", "port": port, "address": "127.0.0.1"}],
        "model_providers": [{"model": "openai/gpt-4o", "access_key": "sk-test", "base_url": f"{llm.url}/v1",
                             "default": True}],
    }))
    env = {"PLANO_HOME": str(tmp_path / "home"), "PLANO_ADMIN_PORT": "0"}
    os_env = {k: v for k, v in os.environ.items() if k != "PLANO_ACCESS_LOG"}  # the default: run/access.log
    r = subprocess.run([sys.executable, "-m", "gateway", "up", str(cfg)], capture_output=True, text=True,
                       env={**os_env, **env}, timeout=90)
    assert r.returncode == 0, r.stderr
    assert f"access log: {tmp_path / 'home' / 'run' / 'access.log'}" in r.stdout
    try:
        yield port, env
    finally:
        plano("down", env=env)


def _chat(port: int, request_id: str, model: str = "gpt-4o") -> int:
    r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", headers={"x-request-id": request_id},
                   json={"model": model, "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
    return r.status_code


def _logs_until(env, predicate, *args, timeout=20.0):
    """Run ``plano logs`` until its output satisfies ``predicate`` (the writer flushes every 100 ms)."""
    deadline = time.monotonic() + timeout
    while True:
        r = plano("logs", *args, env=env)
        if predicate(r) or time.monotonic() > deadline:
            return r
        time.sleep(0.1)


def test_logs_shows_and_filters_requests(running):
    port, env = running
    assert _chat(port, "req-ok-1") == 200
    assert _chat(port, "req-missing-2", model="no-such-model") == 404

    r = _logs_until(env, lambda r: "req-missing-2" in r.stdout)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    ok = next(line for line in lines if "req-ok-1" in line)
    assert "llm" in ok and "POST /v1/chat/completions" in ok and "  200  " in ok and "model=gpt-4o" in ok
    assert any("req-missing-2" in line and "  404  " in line for line in lines)

    errors = plano("logs", "--status", "4xx", env=env).stdout
    assert "req-missing-2" in errors and "req-ok-1" not in errors
    assert "req-missing-2" in plano("logs", "--status", "error", env=env).stdout
    only = plano("logs", "--request-id", "req-ok-1", env=env).stdout
    assert "req-ok-1" in only and "req-missing-2" not in only
    assert plano("logs", "--listener", "other", env=env).stdout == ""
    assert "req-ok-1" in plano("logs", "--listener", "llm", "--status", "200", env=env).stdout

    records = [json.loads(line) for line in plano("logs", "--json", env=env).stdout.splitlines()]
    assert [r["request_id"] for r in records] == ["req-ok-1", "req-missing-2"]
    assert records[0]["type"] == "access" and records[0]["status"] == 200 and records[1]["status"] == 404


def test_logs_follow_shows_a_request_made_after_it_started(running):
    port, env = running
    assert _chat(port, "req-before") == 200
    _logs_until(env, lambda r: "req-before" in r.stdout)
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "logs", "--follow", "--json", "-n", "0"], cwd=REPO,
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        assert b"following" in proc.stderr.readline()  # it has read to the end of the log
        assert _chat(port, "req-after-follow") == 200
        assert _chat(port, "req-after-404", model="no-such-model") == 404
        got = b""
        deadline = time.monotonic() + 20
        while b"req-after-404" not in got and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                got += os.read(proc.stdout.fileno(), 65536)
        records = [json.loads(line) for line in got.decode().splitlines()]
        assert [r["request_id"] for r in records] == ["req-after-follow", "req-after-404"]
        assert records[0]["status"] == 200 and records[0]["listener"] == "llm"
    finally:
        proc.terminate()
        proc.wait(10)


def test_logs_follow_with_a_filter_and_without_a_gateway(tmp_path):
    env = {"PLANO_HOME": str(tmp_path / "home")}
    r = plano("logs", env=env)
    assert r.returncode == 1 and "no access log" in r.stderr and "plano up" in r.stderr
    log = tmp_path / "access.log"
    log.write_text("")
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "logs", "-f", "--file", str(log), "--status", "5xx"],
                            cwd=REPO, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        assert b"following" in proc.stderr.readline()
        with open(log, "a") as f:
            f.write('{"type":"access","listener":"a","method":"GET","path":"/x","status":200,"duration_ms":1,'
                    '"request_id":"fine"}\nnot json at all\n')
            f.write('{"type":"access","listener":"a","method":"GET","path":"/y","status":503,"duration_ms":2,'
                    '"request_id":"broken"}\n')
        got = b""
        deadline = time.monotonic() + 20
        while b"broken" not in got and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                got += os.read(proc.stdout.fileno(), 65536)
        text = got.decode()
        assert "request_id=broken" in text and "  503  " in text and "fine" not in text
    finally:
        proc.terminate()
        proc.wait(10)
