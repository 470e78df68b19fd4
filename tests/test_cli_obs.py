"""``plano obs``: a frame rendered from the running gateway's /metrics and access log (two workers)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request

import httpx
import pytest
import yaml

from gateway.ops.obs import Histogram, parse_metrics
from gateway.telemetry.pricing import Price, load_pricing, shipped
from tests.support.agent_mocks import MockTeam
from tests.support.gateway import REPO, free_port

WIDTH = 220


def plano(*args, env, timeout=60):
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=timeout)


def cells(frame: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is exactly ``first``."""
    for line in frame.splitlines():
        parts = [p.strip() for p in re.split(r"[│┃|]", line)]
        parts = [p for p in parts if p != ""] if parts else []
        if parts and parts[0] == first:
            return parts
    raise AssertionError(f"no row {first!r} in:\n{frame}")


def rows(frame: str, first: str) -> list[list[str]]:
    out = []
    for line in frame.splitlines():
        parts = [p.strip() for p in re.split(r"[│┃|]", line)]
        parts = [p for p in parts if p != ""]
        if parts and parts[0] == first:
            out.append(parts)
    return out


def metrics_text(admin: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as resp:
        return resp.read().decode()


def wait_for_metrics(admin: int, predicate, timeout: float = 20.0):
    """Metrics reach /metrics once per worker loop batch: wait until they show what was sent."""
    deadline = time.monotonic() + timeout
    while True:
        snap = parse_metrics(metrics_text(admin))
        if predicate(snap) or time.monotonic() > deadline:
            return snap
        time.sleep(0.05)


@pytest.fixture
def started(tmp_path):
    """Start a background gateway from ``config`` (dict) with a free admin port; yields (env, admin port)."""
    envs = []

    def start(config: dict, workers: int = 2):
        admin = free_port()
        cfg = tmp_path / "plano.yaml"
        cfg.write_text(yaml.safe_dump(config))
        env = {"PLANO_HOME": str(tmp_path / "home"), "PLANO_ADMIN_PORT": str(admin),
               "PLANO_ADMIN_ADDRESS": "127.0.0.1"}
        os_env = {k: v for k, v in os.environ.items() if k != "PLANO_ACCESS_LOG"}
        r = subprocess.run([sys.executable, "-m", "gateway", "up", str(cfg), "--workers", str(workers)],
                           capture_output=True, text=True, env={**os_env, **env}, timeout=90)
        assert r.returncode == 0, r.stdout + r.stderr
        envs.append(env)
        return env, admin

    yield start
    for env in envs:
        plano("down", env=env)


def test_obs_frame_shows_models_tokens_cost_route_share_and_last_error(tmp_path, llm, started):
    port = free_port()
    env, admin = started({
        "version": "v0.4.0",
        "listeners": [{"type": "model", "name": "llm", "port": port, "address": "127.0.0.1"}],
        "model_providers": [
            {"model": "openai/gpt-4o", "access_key": "sk-a", "base_url": f"{llm.url}/v1", "default": True},
            {"model": "openai/gpt-4o-mini", "access_key": "sk-b", "base_url": f"{llm.url}/v1"},
        ],
    })
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    with httpx.Client(timeout=30) as client:
        for i in range(3):  # the mock reports 5 prompt + 3 completion tokens per call
            assert client.post(url, json={"model": "gpt-4o", "messages": [{"role": "user", "content": f"q{i}"}]},
                               headers={"x-request-id": f"obs-4o-{i}"}).status_code == 200
        streamed = client.post(url, json={"model": "gpt-4o-mini", "stream": True,
                                          "messages": [{"role": "user", "content": "hi"}]},
                               headers={"x-request-id": "obs-mini-stream"})
        assert streamed.status_code == 200 and "[DONE]" in streamed.text  # 5 prompt + 2 completion tokens
        missing = client.post(url, json={"model": "nope", "messages": [{"role": "user", "content": "x"}]},
                              headers={"x-request-id": "obs-missing"})
        assert missing.status_code == 404
    wait_for_metrics(admin, lambda s: sum(m.prompt for m in s.models.values()) >= 20
                     and sum(l.requests for l in s.listeners.values()) >= 5)

    pricing = tmp_path / "prices.yaml"
    pricing.write_text("models:\n  openai/gpt-4o: {input: 1000, output: 2000}\n"
                       "  gpt-4o-mini: {input: 100, output: 400}\n")
    r = plano("obs", "--once", "--width", str(WIDTH), "--pricing", str(pricing), env=env)
    assert r.returncode == 0, r.stderr
    frame = r.stdout

    # LLM traffic by model: calls, tokens, cost (15×1000 + 9×2000 = 33,000 per 1M → $0.033; 5×100 + 2×400)
    row = cells(frame, "openai/gpt-4o")
    assert row[1:6] == ["3", "0", "15", "9", "0"], row
    assert row[-1] == "$0.033000"
    mini = cells(frame, "openai/gpt-4o-mini")
    assert mini[1:6] == ["1", "0", "5", "2", "0"], mini
    assert mini[6].endswith("ms")  # TTFT p50 of the streamed call
    assert mini[-1] == "$0.001300"
    # route share of the model calls
    share = {r[1]: (r[2], r[3]) for r in rows(frame, "model calls")}
    assert share == {"openai/gpt-4o": ("3", "75%"), "openai/gpt-4o-mini": ("1", "25%")}
    # requests and errors per listener (both workers' counts summed by the admin port)
    listener = cells(frame, "llm")
    assert listener[1] == "5" and listener[3] == "1" and listener[4] == "0", listener
    # recent calls and the last error, from the access log
    assert "obs-mini-stream" in frame and "obs-4o-0" in frame
    last_error = frame[frame.index("Last error"):]
    assert "obs-missing" in last_error and "404" in last_error
    assert "LLM calls 4" in frame and "cost $0.034300" in frame


def test_obs_route_share_of_the_agent_router(tmp_path, started):
    team = MockTeam("weather", "flights", "orch").start()
    try:
        port, model_port = free_port(), free_port()
        env, admin = started({
            "version": "v0.4.0",
            "agents": [{"id": "weather_agent", "url": team["weather"].url},
                       {"id": "flight_agent", "url": team["flights"].url}],
            "model_providers": [{"model": "openai/orch", "access_key": "sk-o", "base_url": f"{team['orch'].url}/v1",
                                 "default": True}],
            "listeners": [
                {"type": "agent", "name": "travel", "port": port, "address": "127.0.0.1", "router": "embedded",
                 "agents": [
                     {"id": "weather_agent", "description": "Weather forecasts: temperature, rain and wind in a "
                                                            "city. Handles: 'What is the weather in Paris?'"},
                     {"id": "flight_agent", "description": "Flight search: flights between airports, airlines and "
                                                           "departure times. Handles: 'Find flights to Rome'"}]},
                {"type": "model", "name": "models", "port": model_port, "address": "127.0.0.1"},
            ],
        })
        asks = ["What is the weather in Paris?", "Will it rain in London tomorrow?", "Weather in Tokyo today?",
                "Find me flights from NYC to Rome"]
        with httpx.Client(timeout=30) as client:
            for text in asks:
                r = client.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                                json={"messages": [{"role": "user", "content": text}]})
                assert r.status_code == 200, r.text
        assert len(team["weather"].requests) == 3 and len(team["flights"].requests) == 1
        wait_for_metrics(admin, lambda s: sum(s.agent_calls.get("travel", {}).values()) >= 4
                         and sum(n for n, _ in s.router.values()) >= 4)
        r = plano("obs", "--once", "--width", str(WIDTH), env=env)
        assert r.returncode == 0, r.stderr
        share = {r[1]: (r[2], r[3]) for r in rows(r.stdout, "travel") if r[1].startswith("agent ")}
        assert share == {"agent weather_agent": ("3", "75%"), "agent flight_agent": ("1", "25%")}, r.stdout
        assert re.search(r"router decisions: travel \(\w+\) 4", r.stdout), r.stdout
    finally:
        team.stop()


def test_obs_without_a_gateway_says_it_cannot_read_metrics(tmp_path):
    env = {"PLANO_HOME": str(tmp_path / "home")}
    r = plano("obs", "--once", "--width", "120", "--admin", f"http://127.0.0.1:{free_port()}", env=env)
    assert r.returncode == 1
    assert "cannot read metrics" in r.stdout


def test_histogram_quantiles_and_pricing_sources(tmp_path):
    h = Histogram(buckets={0.1: 50, 0.5: 90, 1.0: 100, float("inf"): 100})
    assert h.quantile(0.5) == pytest.approx(0.1)
    assert h.quantile(0.7) == pytest.approx(0.1 + 0.4 * (70 - 50) / 40)
    assert h.quantile(0.95) == pytest.approx(0.5 + 0.5 * 0.5)
    assert Histogram().quantile(0.5) is None

    table = shipped()
    assert table.lookup("openai", "gpt-4o") == Price(2.5, 10.0, 1.25)
    assert table.lookup("openai", "gpt-4o-2024-08-06") == Price(2.5, 10.0, 1.25)  # dated ids: longest key
    assert table.lookup("openai", "gpt-4o-mini-2024-07-18").input == 0.15
    assert table.lookup("acme", "unknown-model") is None
    assert Price(2.0, 8.0, 0.5).cost(prompt=1_000_000, completion=500_000, cached=200_000) == pytest.approx(
        1.6 + 0.1 + 4.0)

    # Plano's cost source in plano.yaml (models.dev format, served on loopback) overrides the table
    import http.server
    import threading

    from gateway.config import load_config_text

    body = b'{"openai": {"models": {"gpt-4o": {"cost": {"input": 7, "output": 9, "cache_read": 1}}}}}'

    class Prices(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Prices)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        def config(url):
            return load_config_text(yaml.safe_dump({
                "version": "v0.4.0", "listeners": [{"type": "model", "name": "llm", "port": 12000}],
                "model_providers": [{"model": "openai/gpt-4o", "access_key": "k", "default": True}],
                "model_metrics_sources": [{"type": "cost", "provider": "models.dev", "url": url}],
            }))

        url = f"http://127.0.0.1:{server.server_address[1]}/api.json"
        from_config = load_pricing(None, config(url))
        assert from_config.lookup("openai", "gpt-4o") == Price(7.0, 9.0, 1.0) and from_config.source == url
        dead = f"http://127.0.0.1:{free_port()}/api.json"
        fallback = load_pricing(None, config(dead))  # unreachable: the shipped table, and it says so
        assert fallback.lookup("openai", "gpt-4o") == Price(2.5, 10.0, 1.25) and dead in fallback.source
    finally:
        server.shutdown()
    assert load_pricing(None, None).lookup("openai", "gpt-4o") == Price(2.5, 10.0, 1.25)

    # the config's auth.prices (what cost budgets charge) win for the models they name
    priced = load_config_text(yaml.safe_dump({
        "version": "v0.4.0", "listeners": [{"type": "model", "name": "llm", "port": 12000}],
        "model_providers": [{"model": "openai/gpt-4o", "access_key": "k", "default": True}],
        "auth": {"prices": {"openai/gpt-4o": {"input": 3, "output": 4}, "acme/*": {"input": 1, "output": 2}}},
    }))
    table = load_pricing(None, priced)
    assert table.lookup("openai", "gpt-4o") == Price(3.0, 4.0)
    assert table.lookup("acme", "anything") == Price(1.0, 2.0)
    assert table.lookup("openai", "gpt-4o-mini") == Price(0.15, 0.6, 0.075)  # the rest of the shipped table


def test_obs_live_view_updates_on_a_terminal(tmp_path, llm, started):
    import pty
    import select
    import signal

    port = free_port()
    env, admin = started({
        "version": "v0.4.0",
        "listeners": [{"type": "model", "name": "llm", "port": port, "address": "127.0.0.1"}],
        "model_providers": [{"model": "openai/gpt-4o", "access_key": "sk-a", "base_url": f"{llm.url}/v1",
                             "default": True}],
    }, workers=1)
    master, slave = pty.openpty()
    def as_on_a_terminal() -> None:
        # Ctrl-C as a terminal delivers it: SIGINT neither ignored nor blocked in the child, whatever the
        # test process inherited (in a full CI run the view did not react to SIGINT at all).
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    proc = subprocess.Popen([sys.executable, "-m", "gateway", "obs", "--refresh", "0.2", "--width", "160"], cwd=REPO,
                            env={**os.environ, **env, "TERM": "xterm"}, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True, preexec_fn=as_on_a_terminal)
    os.close(slave)
    seen = b""

    def expect(text: bytes, timeout: float = 30.0) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while text not in seen:
            assert time.monotonic() < deadline, f"{text!r} never shown:\n{seen.decode(errors='replace')[-3000:]}"
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                seen += os.read(master, 65536)
        seen = seen[seen.index(text) + len(text):]

    try:
        expect(b"requests 0  errors 0  LLM calls 0")
        r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=30,
                       json={"model": "gpt-4o", "messages": [{"role": "user", "content": "live"}]})
        assert r.status_code == 200
        expect(b"requests 1  errors 0  LLM calls 1")  # a later frame shows the request
        expect(b"openai/gpt-4o")
        os.killpg(proc.pid, signal.SIGINT)
        # Keep draining the terminal as a real one does: a full pty would block the view's refresh
        # thread in write() while it holds the display lock that the exiting main thread needs.
        deadline = time.monotonic() + 30
        while proc.poll() is None:
            assert time.monotonic() < deadline, f"plano obs did not exit after SIGINT: {_signal_state(proc.pid)}"
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
        assert proc.wait(5) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        os.close(master)


def _signal_state(pid: int) -> str:
    """The child's signal masks (blocked, ignored, caught), for a failure message."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return " ".join(line.strip() for line in f if line.startswith(("SigBlk", "SigIgn", "SigCgt")))
    except OSError:
        return "?"
