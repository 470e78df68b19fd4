"""Hot reload through real sockets: ``plano reload`` (SIGHUP) swaps the config under load.

- same listeners, a provider's URL changed: every request succeeds across the swap, requests
  after it reach the new upstream, and a stream started before it finishes on the old one;
- an invalid file: ``plano reload`` exits 1 naming the problem, the old config keeps serving;
- with two workers, a moved listener port: a new worker generation serves the new port and
  the old port stops answering, with no failed request on the port that stayed.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import aiohttp
import pytest
import yaml

from tests.support.gateway import REPO, Gateway, free_port, healthy
from tests.support.mock_llm import MockLLM, Reply

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def _config(upstream: MockLLM, port: int, extra_listener: dict | None = None) -> dict:
    listeners = [{"type": "model", "name": "llm", "port": port, "address": "127.0.0.1"}]
    if extra_listener:
        listeners.append(extra_listener)
    return {
        "version": "v0.4.0",
        "model_providers": [{"model": "openai/m", "access_key": "sk-test", "base_url": f"{upstream.url}/v1",
                             "default": True}],
        "listeners": listeners,
    }


def _reload(gw: Gateway) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", "reload", "--pid", str(gw.proc.pid), "--timeout", "60"],
                          cwd=REPO, env=gw.env, capture_output=True, text=True, timeout=90)


async def _load(url: str, stop: asyncio.Event, results: list, concurrency: int = 10) -> None:
    """``concurrency`` clients sending chat requests back to back until ``stop``; each result is
    (status or exception text, time)."""
    # Like a well-behaved client, drop pooled connections idle for longer than the server's drain grace
    # (DRAIN_IDLE_GRACE, 1 s): a connection a retiring worker closes while idle is then never reused,
    # and what the test counts are requests the gateway failed, not the keep-alive close race.
    connector = aiohttp.TCPConnector(keepalive_timeout=0.5)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def client() -> None:
            while not stop.is_set():
                try:
                    async with session.post(f"{url}/v1/chat/completions", json=BODY) as resp:
                        await resp.read()
                        results.append((resp.status, time.monotonic()))
                except Exception as exc:  # every failure is counted, none is retried
                    results.append((f"{type(exc).__name__}: {exc}", time.monotonic()))

        await asyncio.gather(*(client() for _ in range(concurrency)))


@pytest.fixture
def upstreams():
    a, b = MockLLM().start(), MockLLM().start()
    yield a, b
    a.stop()
    b.stop()


def test_reload_swaps_the_upstream_under_load_without_a_failed_request(tmp_path, upstreams):
    a, b = upstreams
    port = free_port()
    env = {"PLANO_HOME": str(tmp_path / "home"), "PLANO_ACCESS_LOG": "off"}
    with Gateway(_config(a, port), tmp_path, env=env) as gw:
        url = gw.url()

        async def scenario():
            results: list = []
            stop = asyncio.Event()
            load = asyncio.create_task(_load(url, stop, results))
            await asyncio.sleep(1.0)
            a_before = len(a.requests)
            (tmp_path / "plano.yaml").write_text(yaml.safe_dump(_config(b, port)))
            done = await asyncio.to_thread(_reload, gw)
            swapped_at = time.monotonic()
            await asyncio.sleep(1.5)
            stop.set()
            await load
            return results, done, swapped_at, a_before

        results, done, swapped_at, a_before = asyncio.run(scenario())
        assert done.returncode == 0, done.stdout + done.stderr
        assert "generation 1" in done.stdout
        failures = [r for r in results if r[0] != 200]
        assert not failures, failures[:5]
        assert a_before > 0
        after = [r for r in results if r[1] > swapped_at + 0.2]
        assert len(after) > 20
        # Requests after the swap reached the new upstream; the old one got nothing new after it.
        assert len(b.requests) >= len(after)
        a_total = len(a.requests)
        with aiohttp_session_post(url) as status:
            assert status == 200
        assert len(a.requests) == a_total


def test_a_stream_in_flight_finishes_on_the_config_it_started_with(tmp_path, upstreams):
    a, b = upstreams
    port = free_port()
    env = {"PLANO_HOME": str(tmp_path / "home"), "PLANO_ACCESS_LOG": "off"}
    with Gateway(_config(a, port), tmp_path, env=env) as gw:
        a.enqueue(Reply(kind="sse", tokens=["one", " two", " three", " four"], delay=0.5))

        async def scenario():
            async with aiohttp.ClientSession() as session:
                async with session.post(f"{gw.url()}/v1/chat/completions", json={**BODY, "stream": True}) as resp:
                    first = await resp.content.readline()
                    (tmp_path / "plano.yaml").write_text(yaml.safe_dump(_config(b, port)))
                    done = await asyncio.to_thread(_reload, gw)
                    rest = await resp.read()
                    return resp.status, first + rest, done

        status, body, done = asyncio.run(scenario())
        assert done.returncode == 0, done.stderr
        assert status == 200
        text = body.decode()
        assert "four" in text and "[DONE]" in text  # the whole stream, from the old upstream
        assert len(b.requests) == 0
        with aiohttp_session_post(gw.url()) as code:
            assert code == 200
        assert len(b.requests) == 1  # the next request is the new config's


def test_an_invalid_config_is_refused_with_its_reason_and_the_old_one_keeps_serving(tmp_path, upstreams):
    a, _ = upstreams
    port = free_port()
    env = {"PLANO_HOME": str(tmp_path / "home"), "PLANO_ACCESS_LOG": "off"}
    with Gateway(_config(a, port), tmp_path, env=env) as gw:
        broken = _config(a, port)
        broken["model_providers"][0]["base_url"] = "not a url"
        (tmp_path / "plano.yaml").write_text(yaml.safe_dump(broken))
        done = _reload(gw)
        assert done.returncode == 1
        assert "still serving the previous config" in done.stderr
        assert "base_url" in done.stderr  # the reason, with its path in the file
        before = len(a.requests)
        with aiohttp_session_post(gw.url()) as status:
            assert status == 200
        assert len(a.requests) == before + 1
        assert gw.proc.poll() is None
        # YAML that does not parse at all is refused the same way.
        (tmp_path / "plano.yaml").write_text("listeners: [unclosed\n")
        done = _reload(gw)
        assert done.returncode == 1 and "still serving" in done.stderr
        with aiohttp_session_post(gw.url()) as status:
            assert status == 200


def test_a_moved_listener_gets_a_new_worker_generation(tmp_path, upstreams):
    a, b = upstreams
    agent_port, old_port, new_port = free_port(), free_port(), free_port()
    env = {"PLANO_HOME": str(tmp_path / "home"), "PLANO_ACCESS_LOG": "off"}

    def config(model_port: int, upstream: MockLLM) -> dict:
        cfg = _config(upstream, model_port)
        cfg["agents"] = [{"id": "echo", "url": a.url}]
        cfg["listeners"].append({"type": "agent", "name": "team", "port": agent_port, "address": "127.0.0.1",
                                 "agents": [{"id": "echo", "description": "answers everything", "default": True}]})
        return cfg

    with Gateway(config(old_port, a), tmp_path, env=env, workers=2) as gw:

        async def scenario():
            results: list = []
            stop = asyncio.Event()
            load = asyncio.create_task(_load(gw.url(agent_port), stop, results, concurrency=4))
            await asyncio.sleep(0.5)
            (tmp_path / "plano.yaml").write_text(yaml.safe_dump(config(new_port, b)))
            done = await asyncio.to_thread(_reload, gw)
            await asyncio.sleep(1.0)
            stop.set()
            await load
            return results, done

        results, done = asyncio.run(scenario())
        assert done.returncode == 0, done.stdout + done.stderr
        assert "worker generation 1" in done.stdout
        assert len(results) > 10
        # The agent listener's port stayed. No request may get an error answer; a connection reset while
        # the old generation drains is a known rare race (closing connections of a retiring worker, see
        # the README's hot reload section), bounded here to well under 1 % of the requests.
        failed = [r for r in results if r[0] != 200]
        assert not [r for r in failed if isinstance(r[0], int)], failed[:5]
        assert len(failed) * 100 <= len(results), failed[:5]
        assert healthy(new_port)
        deadline = time.monotonic() + 30
        while healthy(old_port) and time.monotonic() < deadline:  # the old generation drains, then exits
            time.sleep(0.1)
        assert not healthy(old_port)
        before = len(b.requests)
        with aiohttp_session_post(gw.url(new_port)) as status:
            assert status == 200
        assert len(b.requests) == before + 1


class aiohttp_session_post:
    """``with aiohttp_session_post(url) as status``: one chat request, synchronously."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> int:
        async def one() -> int:
            async with aiohttp.ClientSession() as session:
                async with session.post(f"{self.url}/v1/chat/completions", json=BODY) as resp:
                    await resp.read()
                    return resp.status

        return asyncio.run(one())

    def __exit__(self, *exc) -> None:
        return None


def test_the_admin_endpoint_reloads_and_reports_the_outcome(tmp_path, upstreams):
    import httpx

    a, b = upstreams
    port, admin_port = free_port(), free_port()
    key = "adm-reload-key-93b1"
    env = {"PLANO_HOME": str(tmp_path / "home"), "PLANO_ACCESS_LOG": "off", "PLANO_ADMIN_KEY": key,
           "PLANO_ADMIN_PORT": str(admin_port)}
    with Gateway(_config(a, port), tmp_path, env=env) as gw:
        url = f"http://127.0.0.1:{admin_port}/admin/reload"
        assert httpx.post(url).status_code in (401, 403)  # the admin key is required
        (tmp_path / "plano.yaml").write_text(yaml.safe_dump(_config(b, port)))
        r = httpx.post(url, headers={"authorization": f"Bearer {key}"}, timeout=60)
        assert r.status_code == 202, r.text
        assert "generation 1" in r.json()["status"]
        with aiohttp_session_post(gw.url()) as status:
            assert status == 200
        assert len(b.requests) == 1
        broken = _config(b, port)
        broken["listeners"][0]["port"] = "not-a-port"
        (tmp_path / "plano.yaml").write_text(yaml.safe_dump(broken))
        r = httpx.post(url, headers={"authorization": f"Bearer {key}"}, timeout=60)
        assert r.status_code == 400, r.text
        assert "still serving the previous config" in r.json()["error"]["message"]
        assert "port" in r.json()["error"]["message"]
        with aiohttp_session_post(gw.url()) as status:
            assert status == 200
        assert len(b.requests) == 2
