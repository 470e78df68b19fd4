"""``plano trace``: the built-in OTLP receiver (listen/down) and the terminal viewer; ``plano up --with-tracing``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import yaml

from gateway.config import load_config_text
from gateway.telemetry import Telemetry
from tests.support.gateway import REPO, free_port


def plano(*args, home: Path, timeout: float = 60):
    env = {**os.environ, "PLANO_HOME": str(home)}
    env.pop("PLANO_TRACE_PORT", None)
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)


def send_traces(port: int) -> tuple[str, str]:
    text = f"""
version: v0.4.0
listeners: [{{type: model, name: llm, port: 12000}}]
model_providers: [{{model: openai/gpt-4o, access_key: x, default: true}}]
tracing: {{random_sampling: 100, opentracing_grpc_endpoint: "http://127.0.0.1:{port}"}}
"""
    cfg = load_config_text(text)
    tel = Telemetry(cfg, access_log=False, environ={"OTEL_BSP_SCHEDULE_DELAY": "50"})
    agent = tel.start_request("travel", "agent", "POST", "/v1/chat/completions", [], "req-agent")
    agent.filter_call("guard").finish("pass")
    agent.routing().finish(["weather"], router="embedded")
    agent.agent_call("weather").finish(502, error="agent exploded")
    agent.finish(502)
    tel.tracing.force_flush()
    model = tel.start_request("llm", "model", "POST", "/v1/chat/completions", [], "req-model")
    call = model.llm_call("openai", "gpt-4o", "gpt-4o")
    call.finish(200, usage={"prompt_tokens": 9, "completion_tokens": 4})
    model.finish(200)
    tel.shutdown()
    return agent.trace_id, model.trace_id


@pytest.fixture
def listener(tmp_path):
    port = free_port()
    r = plano("trace", "listen", "--port", str(port), home=tmp_path)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "is up" in r.stdout and (tmp_path / "run" / "trace.pid").exists()
    yield port
    plano("trace", "down", home=tmp_path)


def test_listen_view_and_stop(tmp_path, listener):
    port = str(listener)
    again = plano("trace", "listen", "--port", port, home=tmp_path)
    assert again.returncode == 0 and "already running" in again.stdout
    empty = plano("trace", "--port", port, "--json", home=tmp_path)
    assert empty.returncode == 0 and orjson.loads(empty.stdout) == []

    agent_id, model_id = send_traces(listener)

    last = plano("trace", "--port", port, "--json", home=tmp_path)
    assert last.returncode == 0, last.stderr
    [trace] = orjson.loads(last.stdout)
    assert trace["trace_id"] == model_id
    [span] = trace["spans"]
    assert span["service"] == "plano(llm)" and span["attributes"]["llm.usage.prompt_tokens"] == 9

    listing = plano("trace", "--port", port, "--list", "--json", home=tmp_path)
    summaries = orjson.loads(listing.stdout)
    assert [s["trace_id"] for s in summaries] == [model_id, agent_id]
    assert summaries[1]["spans"] == 4 and summaries[1]["errors"] == 2 and summaries[1]["root"] == "travel"

    table = plano("trace", "--port", port, "--list", home=tmp_path)
    assert agent_id in table.stdout and model_id in table.stdout

    where = plano("trace", "any", "--port", port, "--where", "selection.agents=weather", "--json", home=tmp_path)
    assert [t["trace_id"] for t in orjson.loads(where.stdout)] == [agent_id]
    both = plano("trace", "any", "--port", port, "--where", "service=plano(llm)", "--json", home=tmp_path)
    assert {t["trace_id"] for t in orjson.loads(both.stdout)} == {model_id}

    unknown = plano("trace", "--port", port, "--where", "no.such.key=1", home=tmp_path)
    assert unknown.returncode == 2 and "unknown attribute key" in unknown.stderr

    tree = plano("trace", agent_id[:8], "--port", port, home=tmp_path)
    assert tree.returncode == 0
    out = tree.stdout
    assert f"trace {agent_id}" in out and "travel" in out and "plano(inbound)" in out
    assert "execute_filter (guard)" in out and "weather /v1/chat/completions" in out and "plano(agent)" in out
    assert "✗" in out and "agent exploded" in out and "selection.agents=weather" in out

    filtered = plano("trace", model_id, "--port", port, "--filter", "llm.usage.*", home=tmp_path)
    assert "llm.usage.prompt_tokens=9" in filtered.stdout and "llm.model=" not in filtered.stdout

    recent = plano("trace", "--port", port, "--since", "1h", "--list", "--json", home=tmp_path)
    assert len(orjson.loads(recent.stdout)) == 2
    bad_since = plano("trace", "--port", port, "--since", "soon", home=tmp_path)
    assert bad_since.returncode == 2
    missing = plano("trace", "0123abcd", "--port", port, home=tmp_path)
    assert missing.returncode == 1

    down = plano("trace", "down", home=tmp_path)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not (tmp_path / "run" / "trace.pid").exists()
    gone = plano("trace", "--port", port, home=tmp_path)
    assert gone.returncode == 1 and "plano trace listen" in gone.stderr


def test_up_with_tracing_starts_the_receiver_and_points_the_gateway_at_it(tmp_path, mock_llm):
    port, trace_port = free_port(), free_port()
    config = tmp_path / "plano.yaml"
    config.write_text(yaml.safe_dump({
        "version": "v0.4.0",
        "listeners": [{"type": "model", "name": "llm", "port": port, "address": "127.0.0.1"}],
        "model_providers": [{"model": "openai/gpt-4o", "access_key": "sk-x", "base_url": f"{mock_llm.url}/v1",
                             "default": True}],
    }))
    try:
        up = plano("up", str(config), "--with-tracing", "--tracing-port", str(trace_port), home=tmp_path)
        assert up.returncode == 0, up.stderr + up.stdout
        assert "trace listener is up" in up.stdout
        gateway_pid = int((tmp_path / "run" / "plano.pid").read_text())
        environ = Path(f"/proc/{gateway_pid}/environ").read_bytes().split(b"\0")
        assert f"PLANO_TRACING_ENDPOINT=http://127.0.0.1:{trace_port}".encode() in environ
        assert b"PLANO_TRACING_SAMPLING=100" in environ
        listing = plano("trace", "--port", str(trace_port), "--list", "--json", home=tmp_path)
        assert listing.returncode == 0 and isinstance(orjson.loads(listing.stdout), list)
    finally:
        plano("down", home=tmp_path)
        plano("trace", "down", home=tmp_path)
