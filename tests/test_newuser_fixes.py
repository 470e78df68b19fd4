"""Fixes for problems found by trying plano as a new user would (issue 11, item 11).

Each test fails on the old behaviour: ``plano up`` trusting any ``/healthz`` answer, provider
headers forwarded by deny-list, access-log lines that hid broken streams and error bytes,
duplicate ``cache-control``, the scrubber eating words, ``plano validate`` naming the wrong
file and hiding warnings, ``plano down`` forgetting the trace receiver, the demo's curl
quoting, the README model, the schema generator's ``--help`` and the license table.
"""

from __future__ import annotations

import http.server
import os
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from tests.support.gateway import REPO, free_port, healthy


def plano(*args, home: Path, cwd=None, env=None, timeout=90):
    full = {**os.environ, "PLANO_HOME": str(home), **(env or {})}
    full.pop("PLANO_TRACE_PORT", None)
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=cwd or REPO, capture_output=True,
                          text=True, env=full, timeout=timeout, check=False)


def model_config(port: int, base_url: str = "http://127.0.0.1:9/v1") -> dict:
    return {
        "version": "v0.4.0",
        "listeners": [{"type": "model", "name": "llm", "port": port, "address": "127.0.0.1"}],
        "model_providers": [{"model": "openai/gpt-4o", "access_key": "sk-x", "base_url": base_url,
                             "default": True}],
    }


# --------------------------------------------------------------------------- plano up on a busy port


class _Healthz(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        body = b'{"status":"ok"}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def impostor():
    """Another process's HTTP server on a port, answering ``GET /healthz`` with 200 like plano does."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_up_on_a_busy_port_that_answers_healthz_fails_naming_the_port(tmp_path, impostor):
    port = impostor
    assert healthy(port)
    cfg = tmp_path / "plano.yaml"
    cfg.write_text(yaml.safe_dump(model_config(port)))
    home = tmp_path / "home"
    (home / "run").mkdir(parents=True)
    (home / "run" / "plano.log").write_text("".join(f"stale line {i} from an earlier run\n" for i in range(60)))
    for _ in range(3):  # every time, not by luck of timing
        r = plano("up", str(cfg), home=home)
        try:
            assert r.returncode != 0, r.stdout + r.stderr
            last = r.stderr.strip().splitlines()[-1]
            assert str(port) in last and "cannot bind" in last, r.stderr
            assert "stale line" not in r.stderr  # only this run's log lines
            assert "is up" not in r.stdout
            assert not (home / "run" / "plano.pid").exists()
        finally:
            if r.returncode == 0:
                plano("down", home=home)
    assert (home / "run" / "plano.log.1").exists()  # the earlier run's log is kept, not appended to


def test_healthz_names_the_instance_it_was_given(tmp_path):
    """``plano up`` hands its gateway an instance id; ``/healthz`` answers with it."""
    import urllib.request

    from tests.support.gateway import Gateway

    port = free_port()
    with Gateway(model_config(port), tmp_path, env={"PLANO_INSTANCE_ID": "inst-0123abcd"}):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            assert resp.status == 200 and resp.headers["x-plano-instance"] == "inst-0123abcd"


def test_up_then_down_still_works_with_instance_check(tmp_path):
    port = free_port()
    cfg = tmp_path / "plano.yaml"
    cfg.write_text(yaml.safe_dump(model_config(port)))
    home = tmp_path / "home"
    up = plano("up", str(cfg), home=home)
    try:
        assert up.returncode == 0, up.stderr
        assert "is up" in up.stdout and healthy(port)
    finally:
        down = plano("down", home=home)
    assert down.returncode == 0 and "stopped" in down.stdout


# --------------------------------------------------------------------------- plano validate


_WARN_ONLY = (
    "version: v0.4.0\n"
    "listeners:\n"
    "  - {type: model, name: llm, port: 12000}\n"
    "model_providers:\n"
    "  - model: openai/gpt-4o\n"
    "    access_key: $NEWUSER_UNSET_KEY_FOR_TEST\n"
    "    default: true\n"
)


def test_validate_names_the_file_it_validated_in_warnings(tmp_path):
    cfg = tmp_path / "my-gateway.yaml"
    cfg.write_text(_WARN_ONLY)
    r = plano("validate", str(cfg), home=tmp_path / "home")
    assert r.returncode == 0, r.stderr
    assert "my-gateway.yaml:6: model_providers[0].access_key" in r.stderr
    assert "NEWUSER_UNSET_KEY_FOR_TEST" in r.stderr and "plano.yaml" not in r.stderr


def test_validate_shows_warnings_alongside_errors(tmp_path):
    cfg = tmp_path / "broken.yaml"
    cfg.write_text(_WARN_ONLY.replace("port: 12000", "port: not-a-port"))
    r = plano("validate", str(cfg), home=tmp_path / "home")
    assert r.returncode == 1
    assert "broken.yaml:3: listeners[0].port" in r.stderr
    assert "warning: " in r.stderr and "broken.yaml:6: model_providers[0].access_key" in r.stderr
    assert "NEWUSER_UNSET_KEY_FOR_TEST" in r.stderr and "plano.yaml" not in r.stderr


# --------------------------------------------------------------------------- plano down and the trace receiver


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_down_stops_the_receiver_that_up_with_tracing_started(tmp_path):
    port, trace_port = free_port(), free_port()
    cfg = tmp_path / "plano.yaml"
    cfg.write_text(yaml.safe_dump(model_config(port)))
    home = tmp_path / "home"
    try:
        up = plano("up", str(cfg), "--with-tracing", "--tracing-port", str(trace_port), home=home)
        assert up.returncode == 0, up.stderr + up.stdout
        receiver = int((home / "run" / "trace.pid").read_text())
        down = plano("down", home=home)
        assert down.returncode == 0
        assert "plano (pid" in down.stdout and "plano trace listener" in down.stdout, down.stdout
        assert not _alive(receiver)
        assert not (home / "run" / "trace.pid").exists()
    finally:
        plano("down", home=home)
        plano("trace", "down", home=home)


def test_down_says_when_a_separately_started_receiver_keeps_running(tmp_path):
    port, trace_port = free_port(), free_port()
    cfg = tmp_path / "plano.yaml"
    cfg.write_text(yaml.safe_dump(model_config(port)))
    home = tmp_path / "home"
    try:
        listen = plano("trace", "listen", "--port", str(trace_port), home=home)
        assert listen.returncode == 0, listen.stderr
        receiver = int((home / "run" / "trace.pid").read_text())
        up = plano("up", str(cfg), "--with-tracing", "--tracing-port", str(trace_port), home=home)
        assert up.returncode == 0, up.stderr + up.stdout
        down = plano("down", home=home)
        assert down.returncode == 0
        assert "still running" in down.stdout and "plano trace down" in down.stdout, down.stdout
        assert _alive(receiver)
    finally:
        plano("down", home=home)
        plano("trace", "down", home=home)


# --------------------------------------------------------------------------- the secret scrubber and ordinary words


def test_startup_warning_about_an_unset_key_keeps_its_words(tmp_path):
    from tests.support.gateway import Gateway
    from tests.support.telemetry_checks import gateway_env

    config = model_config(free_port())
    config["model_providers"][0]["access_key"] = "$NEWUSER_UNSET_KEY_FOR_TEST"
    with Gateway(config, tmp_path, env=gateway_env()) as gw:
        pass
    log = gw.log()
    assert "access_key: environment variable 'NEWUSER_UNSET_KEY_FOR_TEST' is not set" in log, log
    assert "[REDACTED]" not in log


@pytest.mark.parametrize("text,expected", [
    ("access_key: environment variable 'K' is not set", "access_key: environment variable 'K' is not set"),
    ("password: hunter2 and more", "password: [REDACTED] and more"),
    ("password: letmein", "password: [REDACTED]"),
    ("password=letmein now", "password=[REDACTED] now"),
    ("x-api-key: abcdefgh", "x-api-key: [REDACTED]"),
    ('{"api_key": "plain words"}', '{"api_key": [REDACTED]}'),
    ("authorization: Bearer abcdef123 sent", "authorization: [REDACTED] sent"),
])
def test_scrubber_keeps_prose_and_still_scrubs_values(text, expected):
    from gateway.telemetry.redact import redact_secrets

    assert redact_secrets(text) == expected


# --------------------------------------------------------------------------- agent SSE headers


def test_agent_listener_sse_sends_cache_control_once(tmp_path, llm):
    import httpx

    from tests.support.gateway import Gateway
    from tests.support.mock_llm import Reply
    from tests.support.telemetry_checks import gateway_env

    port = free_port()
    config = {
        "version": "v0.4.0",
        "agents": [{"id": "agent", "url": llm.url}],
        "model_providers": [{"model": "openai/gpt-4o", "base_url": llm.url, "default": True}],
        "listeners": [{"type": "agent", "name": "travel", "port": port, "address": "127.0.0.1",
                       "agents": [{"id": "agent", "description": "answers"}]},
                      # explicit, so the implicit model listener does not take 0.0.0.0:12000
                      {"type": "model", "name": "llm", "port": free_port(), "address": "127.0.0.1"}],
    }
    llm.enqueue(Reply("sse", tokens=["a", "b"], headers={"Cache-Control": "no-cache"}))
    with Gateway(config, tmp_path, env=gateway_env()):
        with httpx.Client(timeout=10) as client:
            with client.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions",
                               json={"messages": [{"role": "user", "content": "hi"}], "stream": True}) as resp:
                body = resp.read()
    assert resp.status_code == 200 and b"data: [DONE]" in body
    assert resp.headers.get_list("cache-control") == ["no-cache"]


# --------------------------------------------------------------------------- headers to model providers


def test_provider_headers_is_an_allow_list():
    from gateway.upstream.headers import provider_headers

    raw = [
        (b"host", b"127.0.0.1:12000"),
        (b"content-length", b"42"),
        (b"content-type", b"application/json"),
        (b"accept", b"application/json"),
        (b"accept-language", b"en"),
        (b"user-agent", b"OpenAI/Python 1.40.0"),
        (b"cookie", b"session=abc; theme=dark"),
        (b"authorization", b"Bearer client-key"),
        (b"x-api-key", b"client-key"),
        (b"openai-api-key", b"client-key"),
        (b"x-custom-thing", b"x" * 100_000),
        (b"x-forwarded-for", b"10.0.0.1"),
        (b"x-stainless-lang", b"python"),
        (b"x-stainless-retry-count", b"0"),
        (b"openai-organization", b"org-1"),
        (b"openai-project", b"proj-1"),
        (b"anthropic-version", b"2023-06-01"),
        (b"anthropic-beta", b"tools-2024-04-04"),
        (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        (b"tracestate", b"vendor=1"),
        (b"x-request-id", b"req-1"),
        (b"idempotency-key", b"idem-1"),
        (b"te", b"trailers"),
        (b"connection", b"keep-alive"),
    ]
    assert provider_headers(raw) == {
        "accept": "application/json",
        "accept-language": "en",
        "x-stainless-lang": "python",
        "x-stainless-retry-count": "0",
        "openai-organization": "org-1",
        "openai-project": "proj-1",
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "tools-2024-04-04",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "tracestate": "vendor=1",
        "x-request-id": "req-1",
        "idempotency-key": "idem-1",
    }


def test_provider_headers_drops_oversized_values_and_connection_listed_names():
    from gateway.upstream.headers import MAX_PROVIDER_HEADER_VALUE, provider_headers

    assert provider_headers([(b"openai-beta", b"v" * MAX_PROVIDER_HEADER_VALUE)]) == {
        "openai-beta": "v" * MAX_PROVIDER_HEADER_VALUE}
    assert provider_headers([(b"openai-beta", b"v" * (MAX_PROVIDER_HEADER_VALUE + 1))]) == {}
    assert provider_headers([(b"connection", b"close, OpenAI-Beta"), (b"openai-beta", b"x"),
                             (b"openai-project", b"p")]) == {"openai-project": "p"}


def test_model_provider_never_gets_cookies_or_oversized_headers(tmp_path, llm):
    import openai

    from tests.support.gateway import Gateway
    from tests.support.telemetry_checks import gateway_env

    port = free_port()
    with Gateway(model_config(port, f"{llm.url}/v1"), tmp_path, env=gateway_env()):
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="client-key", max_retries=0,
                               default_headers={"Cookie": "session=abc", "X-Huge": "h" * 100_000,
                                                "OpenAI-Project": "proj-1"})
        reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "echo: hi"
    seen = {k.lower(): v for k, v in llm.last.headers.items()}
    assert "cookie" not in seen and "x-huge" not in seen
    assert seen["openai-project"] == "proj-1" and seen["authorization"] == "Bearer sk-x"


# --------------------------------------------------------------------------- the access log's outcome


@pytest.fixture(scope="module")
def access_gw(tmp_path_factory, mock_llm):
    """A gateway with an access log: an agent listener (agent = the mock) and a model listener (model = the mock),
    plus a second gateway whose model listener has an input filter that fails closed (500 -> 502)."""
    from tests.support.gateway import Gateway
    from tests.support.http_filter_mock import HttpFilterMock
    from tests.support.telemetry_checks import gateway_env

    workdir = tmp_path_factory.mktemp("access")
    log = workdir / "access.log"
    filt = HttpFilterMock().start()
    ports = {name: free_port() for name in ("model", "agent", "filtered")}
    base = {
        "version": "v0.4.0",
        "agents": [{"id": "agent", "url": mock_llm.url}],
        "filters": [{"id": "boom", "type": "http", "url": f"{filt.url}/error500"}],
        "model_providers": [{"model": "openai/gpt-4o", "access_key": "sk-x", "base_url": f"{mock_llm.url}/v1",
                             "default": True}],
    }
    plain = {**base, "listeners": [
        {"type": "model", "name": "llm", "port": ports["model"], "address": "127.0.0.1"},
        {"type": "agent", "name": "travel", "port": ports["agent"], "address": "127.0.0.1",
         "agents": [{"id": "agent", "description": "answers"}]},
    ]}
    filtered = {**base, "listeners": [
        {"type": "model", "name": "guarded", "port": ports["filtered"], "address": "127.0.0.1",
         "input_filters": ["boom"]},
    ]}
    (workdir / "a").mkdir()
    (workdir / "b").mkdir()
    env = gateway_env(PLANO_ACCESS_LOG=str(log))
    gws = [Gateway(plain, workdir / "a", env=env).start(), Gateway(filtered, workdir / "b", env=env).start()]
    yield ports, log
    for gw in gws:
        gw.stop()
    filt.stop()


def _access_line(log: Path, rid: str) -> dict:
    from tests.support.telemetry_checks import access_lines, wait_until

    found = wait_until(lambda: [x for x in access_lines(log) if x.get("request_id") == rid])
    assert found, f"no access-log line for {rid}"
    return found[0]


@pytest.mark.parametrize("listener", ["model", "agent"])
def test_access_log_records_a_stream_that_broke_midway(access_gw, llm, listener):
    import httpx

    from tests.support.mock_llm import Reply

    ports, log = access_gw
    llm.enqueue(Reply("reset_mid_stream", tokens=["one", " two", " three"]))
    rid = f"broken-{listener}"
    resp = httpx.post(f"http://127.0.0.1:{ports[listener]}/v1/chat/completions", timeout=10,
                      headers={"x-request-id": rid},
                      json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    assert resp.status_code == 200 and b'"code":"upstream_broken"' in resp.content  # what the client saw
    line = _access_line(log, rid)
    assert line["status"] == 200 and line["bytes_out"] > 0
    assert line.get("error") and "broke" in line["error"], line


def test_access_log_keeps_a_clean_stream_clean(access_gw, llm):
    import httpx

    from tests.support.mock_llm import Reply

    ports, log = access_gw
    llm.enqueue(Reply("sse", tokens=["one", " two"]))
    resp = httpx.post(f"http://127.0.0.1:{ports['agent']}/v1/chat/completions", timeout=10,
                      headers={"x-request-id": "clean-agent"},
                      json={"messages": [{"role": "user", "content": "hi"}], "stream": True})
    assert resp.status_code == 200 and b"[DONE]" in resp.content
    line = _access_line(log, "clean-agent")
    assert line["status"] == 200 and "error" not in line


@pytest.mark.parametrize("case", ["filter", "unknown_model"])
def test_access_log_counts_the_bytes_of_an_error_the_gateway_sent(access_gw, case):
    import httpx

    ports, log = access_gw
    port, model = (ports["filtered"], "gpt-4o") if case == "filter" else (ports["model"], "no-such-model")
    rid = f"error-{case}"
    resp = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=10, headers={"x-request-id": rid},
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == (502 if case == "filter" else 404)
    line = _access_line(log, rid)
    assert line["status"] == resp.status_code and line.get("error")
    assert line["bytes_out"] == len(resp.content)


# --------------------------------------------------------------------------- the demo's curl examples


def test_demo_curl_examples_survive_a_real_shell():
    """Every printed command, pasted into bash, posts the JSON body it means (the demo question has an apostrophe)."""
    import json

    from examples import run_demo

    text = run_demo.banner()
    commands = [c for _, c in run_demo.examples()]
    assert len(commands) == 5 and all(c.replace("\n", "\n  ") in text for c in commands)
    shim = 'curl() { while [ $# -gt 0 ]; do if [ "$1" = -d ]; then printf "%s" "$2"; fi; shift; done; }\n'
    bodies = []
    for command in commands:
        out = subprocess.run(["bash", "-c", shim + command], capture_output=True, text=True, timeout=10)
        assert out.returncode == 0, out.stderr
        bodies.append(json.loads(out.stdout))
    assert bodies[0] == {"messages": [{"role": "user", "content": run_demo.QUESTION}]}
    assert "'" in run_demo.QUESTION
    assert bodies[3]["messages"][0]["content"] == run_demo.INJECTION
    assert bodies[4] == {"model": "demo", "messages": [{"role": "user", "content": f"my key is {run_demo.SECRET}"}]}


# --------------------------------------------------------------------------- the schema generator's command line


def _schema_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "gateway.config.jsonschema", *args], cwd=cwd or REPO,
                          capture_output=True, text=True, timeout=60)


def test_schema_generator_help_writes_nothing():
    from gateway.config.jsonschema import SCHEMA_PATH

    before = (SCHEMA_PATH.read_bytes(), SCHEMA_PATH.stat().st_mtime_ns) if SCHEMA_PATH.exists() else None
    r = _schema_cli("--help")
    assert r.returncode == 0 and "usage:" in r.stdout and "--check" in r.stdout
    assert "wrote" not in r.stdout
    bad = _schema_cli("--no-such-option")
    assert bad.returncode == 2 and "unrecognized arguments" in bad.stderr
    after = (SCHEMA_PATH.read_bytes(), SCHEMA_PATH.stat().st_mtime_ns) if SCHEMA_PATH.exists() else None
    assert after == before


def test_schema_generator_output_check_and_stdout(tmp_path):
    import json

    from gateway.config.jsonschema import render_schema

    out = tmp_path / "schema.json"
    assert _schema_cli("--check", "--output", str(out)).returncode == 1 and not out.exists()
    r = _schema_cli("--output", str(out))
    assert r.returncode == 0 and out.read_text() == render_schema()
    assert _schema_cli("--check", "--output", str(out)).returncode == 0
    printed = _schema_cli("--stdout")
    assert printed.returncode == 0 and json.loads(printed.stdout)["title"] == "plano configuration"


# --------------------------------------------------------------------------- packaging metadata


def test_license_is_an_spdx_string_with_a_setuptools_that_reads_it():
    """A ``license = {text = ...}`` table makes setuptools print a deprecation warning on every install."""
    import re
    import tomllib

    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert data["project"]["license"] == "Apache-2.0"
    setuptools_req = next(r for r in data["build-system"]["requires"] if r.startswith("setuptools"))
    minimum = re.search(r">=\s*(\d+)", setuptools_req)
    assert minimum and int(minimum.group(1)) >= 77, setuptools_req  # SPDX strings need setuptools 77+
    assert not any(c.startswith("License ::") for c in data["project"].get("classifiers", []))


# --------------------------------------------------------------------------- the README's Python example


def test_readme_python_example_uses_a_model_the_shipped_config_serves():
    import re

    from gateway.config import load_config
    from gateway.llm.resolver import ModelResolver

    readme = (REPO / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "base_url=" in b)
    port = int(re.search(r"base_url=\"http://127\.0\.0\.1:(\d+)/v1\"", block).group(1))
    models = re.findall(r"\bmodel=\"([^\"]+)\"", block)
    assert models, block
    config = load_config(REPO / "plano.yaml", env={})
    assert any(l.type == "model" and l.port == port for l in config.listeners), "example points at no model listener"
    resolver = ModelResolver(config.model_providers or [], config.model_aliases or {}, default_timeout=None)
    for model in models:
        target = resolver.resolve(model)  # raises (404 model_not_found) for a model plano.yaml does not serve
        assert target.missing_key_env is None, f"{model} needs an API key the offline demo does not have"
