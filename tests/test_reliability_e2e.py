"""Outbound reliability end to end, by fault injection over real sockets.

The real gateway process sits between real clients (the openai SDK with
``max_retries=0``, httpx, raw asyncio sockets) and upstreams that misbehave on
cue: scripted :class:`MockLLM` agents and providers (error statuses, resets
mid-stream, hangs), echo agents in processes of their own that a test SIGKILLs,
and a blackhole that accepts connections and never answers.

What is asserted is behaviour the client and the upstream can observe — statuses,
error codes, headers, and how many requests each upstream really saw — never how
long something took (waits are generous; outcomes are bounded by an overall
timeout only so that a hang fails the test instead of stalling the suite).

Issue 11, "Acceptance": retries (and none after the first byte), circuit breakers
(open, fail fast, half-open probe), breakers and rate limits shared through Redis
by two gateway processes, an instance killed under load, model failover with
``x-plano-model``, deadlines on hanging upstreams with bounded memory, and
``max_concurrency``.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import time
import uuid
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.shared_state import clear_redis_prefix, redis_url
from tests.support.faulty import Blackhole, EchoAgentProcess
from tests.support.gateway import Gateway, free_port
from tests.support.mock_llm import MockLLM, Reply

AGENTS = ("flaky", "eager", "plain", "breaker", "hanging", "narrow", "pair")


def user(text: str = "hi") -> list[dict]:
    return [{"role": "user", "content": text}]


def upstream_error(status: int, code: str = "upstream_says_no") -> Reply:
    """An upstream's own error answer (its code tells it apart from the gateway's)."""
    return Reply(kind="error", status=status, body={"error": {"message": f"upstream answered {status}",
                                                              "type": "upstream", "code": code}})


def chat_posts(mock: MockLLM) -> list:
    return [r for r in mock.requests if r.method == "POST" and r.path.endswith("/chat/completions")]


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert isinstance(body.get("error"), dict), response.text
    return str(body["error"].get("code"))


def relayed(response: httpx.Response) -> bool:
    """True when this error is the upstream's own answer passed on (not one the gateway made up)."""
    return "upstream answered" in response.json()["error"].get("message", "")


def model_listener() -> dict:
    """An explicit model listener on a free port (else an implicit one binds 12000, shared by all)."""
    return {"type": "model", "name": "egress", "port": free_port(), "address": "127.0.0.1"}


#: A model listener needs a provider; agent-only configs get this one (never called).
UNUSED_PROVIDER = {"model": "openai/unused", "access_key": "sk-unused", "base_url": "http://127.0.0.1:9/v1"}


def post(url: str, body: dict, *, timeout: float = 30) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=timeout)


def process_tree_rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` and all its descendants, in KiB (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, ()))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def raise_nofile(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 2500:
        pytest.fail(f"RLIMIT_NOFILE cannot be raised to {wanted} (hard limit {hard})")


# =========================================================================== agents on one gateway


@pytest.fixture(scope="module")
def agent_mocks():
    mocks = {name: MockLLM().start() for name in (*AGENTS, "pair_b")}  # "pair" is the pair's first instance
    yield mocks
    for mock in mocks.values():
        mock.stop()


@pytest.fixture(scope="module")
def agent_gw(agent_mocks, tmp_path_factory):
    ports = {name: free_port() for name in AGENTS}
    agents = [
        {"id": "flaky", "url": agent_mocks["flaky"].url,
         "retry": {"attempts": 3, "backoff": "10ms", "on": [503]}},
        # Retries everything retryable, even as idempotent: still nothing after the first byte.
        {"id": "eager", "url": agent_mocks["eager"].url,
         "retry": {"attempts": 3, "backoff": "10ms", "idempotent": True,
                   "on": ["connect_error", "timeout", "5xx", 429]}},
        {"id": "plain", "url": agent_mocks["plain"].url},
        {"id": "breaker", "url": agent_mocks["breaker"].url,
         "circuit_breaker": {"failure_threshold": 3, "reset_timeout": "1s"}},
        {"id": "hanging", "url": agent_mocks["hanging"].url, "timeout": "1s"},
        {"id": "narrow", "url": agent_mocks["narrow"].url, "max_concurrency": 2},
        {"id": "pair", "urls": [agent_mocks["pair"].url, agent_mocks["pair_b"].url],
         "circuit_breaker": {"failure_threshold": 1, "reset_timeout": "30s"}},
    ]
    config = {
        "version": "v0.4.0",
        "agents": agents,
        "model_providers": [UNUSED_PROVIDER],
        "listeners": [
            {"type": "agent", "name": f"{name}_desk", "port": ports[name], "address": "127.0.0.1",
             "agents": [{"id": name, "description": f"The {name} agent answers everything."}]}
            for name in AGENTS
        ] + [model_listener()],
    }
    gw = Gateway(config, tmp_path_factory.mktemp("reliability-agents")).start()
    gw.urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    yield gw
    gw.stop()


def _reset_around(mocks: dict):
    """Yield ``mocks`` with their scripts and records cleared before and after the test."""
    for mock in mocks.values():
        mock.reset()
    yield mocks
    for mock in mocks.values():
        mock.reset()


@pytest.fixture
def mocks(agent_mocks):
    yield from _reset_around(agent_mocks)


# -- 1. retries ----------------------------------------------------------------------------


def test_agent_failing_twice_then_succeeding_is_retried(agent_gw, mocks):
    mocks["flaky"].enqueue(upstream_error(503), upstream_error(503))
    client = openai.OpenAI(base_url=f"{agent_gw.urls['flaky']}/v1", api_key="sk-client", max_retries=0)
    answer = client.chat.completions.create(model="any", messages=user("third time lucky"))
    assert answer.choices[0].message.content == "echo: third time lucky"
    assert len(chat_posts(mocks["flaky"])) == 3


@pytest.mark.parametrize("status", [400, 500])
def test_status_not_in_retry_on_is_not_retried(agent_gw, mocks, status):
    mocks["flaky"].enqueue(upstream_error(status), upstream_error(status))
    r = post(agent_gw.urls["flaky"], {"messages": user()})
    assert r.status_code == status, r.text
    assert len(chat_posts(mocks["flaky"])) == 1


def test_agent_default_policy_sends_a_503_once(agent_gw, mocks):
    mocks["plain"].enqueue(upstream_error(503), upstream_error(503))
    r = post(agent_gw.urls["plain"], {"messages": user()})
    assert r.status_code == 503, r.text
    assert relayed(r), r.text  # the agent's own answer, passed on
    assert len(chat_posts(mocks["plain"])) == 1


def test_no_retry_after_the_client_received_a_byte(agent_gw, mocks):
    # One chunk goes out, then the agent's connection is reset: the client already has a
    # 200 and a chunk, so the gateway must end the stream with an error, not call again.
    mocks["eager"].enqueue(Reply(kind="reset_mid_stream", tokens=["Hello"]))
    events: list[dict] = []
    with httpx.stream("POST", f"{agent_gw.urls['eager']}/v1/chat/completions",
                      json={"messages": user(), "stream": True}, timeout=30) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[6:]))
    deltas = [e["choices"][0]["delta"].get("content") for e in events if e.get("choices")]
    assert "Hello" in deltas, events
    assert "error" in events[-1], events  # the in-stream error event ends the stream
    time.sleep(0.3)  # a (wrong) retry would have reached the mock by now
    assert len(chat_posts(mocks["eager"])) == 1


def test_no_retry_after_first_byte_with_the_sdk(agent_gw, mocks):
    mocks["eager"].enqueue(Reply(kind="reset_mid_stream", tokens=["Hello"]))
    client = openai.OpenAI(base_url=f"{agent_gw.urls['eager']}/v1", api_key="sk-client", max_retries=0)
    seen = []
    with pytest.raises(openai.APIError):
        for chunk in client.chat.completions.create(model="any", messages=user(), stream=True):
            if chunk.choices:
                seen.append(chunk.choices[0].delta.content)
    assert seen == ["Hello"]
    time.sleep(0.3)
    assert len(chat_posts(mocks["eager"])) == 1


def test_eager_policy_retries_before_the_first_byte(agent_gw, mocks):
    # Control for the two tests above: the same agent does retry a 502 that came before any byte.
    mocks["eager"].enqueue(upstream_error(502))
    r = post(agent_gw.urls["eager"], {"messages": user("again")})
    assert r.status_code == 200, r.text
    assert len(chat_posts(mocks["eager"])) == 2


# -- 2. circuit breaker ----------------------------------------------------------------------


def test_breaker_opens_fails_fast_and_half_open_probe_closes_it(agent_gw, mocks):
    mock, url = mocks["breaker"], agent_gw.urls["breaker"]
    mock.enqueue(*[upstream_error(503) for _ in range(3)])  # afterwards the mock answers 200 again
    for _ in range(3):
        r = post(url, {"messages": user()})
        assert r.status_code == 503 and relayed(r), r.text
    assert len(chat_posts(mock)) == 3

    for _ in range(5):  # open: the gateway answers itself, the agent sees nothing
        r = post(url, {"messages": user()})
        assert r.status_code == 503, r.text
        assert error_code(r).endswith("_open"), r.text
        assert "breaker" in r.text
        retry_after = r.headers.get("retry-after")
        assert retry_after is not None and 1 <= int(retry_after) <= 2, r.headers
    assert len(chat_posts(mock)) == 3

    time.sleep(1.6)  # past reset_timeout: the next request is a half-open probe
    r = post(url, {"messages": user("probe")})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "echo: probe"
    assert len(chat_posts(mock)) == 4
    for i in range(3):  # closed again: requests flow
        r = post(url, {"messages": user(f"after {i}")})
        assert r.status_code == 200, r.text
    assert len(chat_posts(mock)) == 7


def test_breaker_failed_probe_opens_it_again(agent_gw, mocks):
    mock, url = mocks["breaker"], agent_gw.urls["breaker"]
    # A previous test may have left the breaker in any state: wait out a possible open period.
    time.sleep(1.2)
    mock.enqueue(*[upstream_error(503) for _ in range(4)])
    statuses = []
    for _ in range(3):
        statuses.append(post(url, {"messages": user()}).status_code)
    assert statuses == [503, 503, 503]
    assert len(chat_posts(mock)) == 3
    time.sleep(1.6)
    r = post(url, {"messages": user()})  # the probe: the agent still answers 503
    assert r.status_code == 503 and relayed(r), r.text
    assert len(chat_posts(mock)) == 4
    r = post(url, {"messages": user()})  # a failed probe re-opens at once
    assert r.status_code == 503 and error_code(r).endswith("_open"), r.text
    assert len(chat_posts(mock)) == 4
    time.sleep(1.6)
    r = post(url, {"messages": user("recovered")})
    assert r.status_code == 200, r.text


def test_open_breaker_of_one_instance_sends_traffic_to_the_other(agent_gw, mocks):
    first, second, url = mocks["pair"], mocks["pair_b"], agent_gw.urls["pair"]
    first.enqueue(upstream_error(500), upstream_error(500))
    statuses = [post(url, {"messages": user(str(i))}).status_code for i in range(6)]
    # Round robin sends one of the first two requests to the first instance: its 500 is final
    # (agents retry connect errors only) and opens that instance's breaker (threshold 1); every
    # later request skips it for the healthy instance.
    assert sorted(statuses) == [200] * 5 + [500], statuses
    assert (len(chat_posts(first)), len(chat_posts(second))) == (1, 5)


# -- 6a. deadline ----------------------------------------------------------------------------


def test_hanging_agent_gets_504_at_its_timeout(agent_gw, mocks):
    mocks["hanging"].enqueue(Reply(kind="hang"))
    r = post(agent_gw.urls["hanging"], {"messages": user()}, timeout=60)
    assert r.status_code == 504, r.text
    assert isinstance(r.json().get("error"), dict), r.text
    assert len(chat_posts(mocks["hanging"])) == 1


# -- 7. max_concurrency ----------------------------------------------------------------------


def test_max_concurrency_sheds_load_fast_with_503_overloaded(agent_gw, mocks):
    mock = mocks["narrow"]
    mock.enqueue(*[Reply(kind="json", content="slow answer", delay=2.0) for _ in range(5)])

    async def burst():
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(*(
                client.post(f"{agent_gw.urls['narrow']}/v1/chat/completions", json={"messages": user(str(i))})
                for i in range(5)))

    responses = asyncio.run(burst())
    ok = [r for r in responses if r.status_code == 200]
    shed = [r for r in responses if r.status_code == 503]
    assert len(ok) + len(shed) == 5, [(r.status_code, r.text) for r in responses]
    assert shed, "max_concurrency 2 let 5 concurrent requests through"
    assert 1 <= len(ok) <= 2, [(r.status_code, r.text) for r in responses]
    for r in shed:
        assert error_code(r).endswith("overloaded"), r.text
    assert all(r.json()["choices"][0]["message"]["content"] == "slow answer" for r in ok)
    assert len(chat_posts(mock)) == len(ok)  # a shed request never reached the agent


# =========================================================================== two gateways, one Redis




@pytest.fixture(scope="module")
def redis_pair(tmp_path_factory):
    url = redis_url()
    prefix = f"plano-e2e:{uuid.uuid4().hex[:10]}:"
    shared_agent = MockLLM().start()
    echo_agent = MockLLM().start()
    gateways = []

    def config(port_b: int, port_l: int) -> dict:
        return {
            "version": "v0.4.0",
            "state": {"redis_url": url, "key_prefix": prefix},
            "model_providers": [UNUSED_PROVIDER],
            "agents": [
                {"id": "shared", "url": shared_agent.url,
                 "circuit_breaker": {"failure_threshold": 3, "reset_timeout": "30s"}},
                {"id": "echo", "url": echo_agent.url},
            ],
            "listeners": [
                {"type": "agent", "name": "shared_desk", "port": port_b, "address": "127.0.0.1",
                 "agents": [{"id": "shared", "description": "Shared agent."}]},
                {"type": "agent", "name": "limited_desk", "port": port_l, "address": "127.0.0.1",
                 "requests_per_minute": 5, "agents": [{"id": "echo", "description": "Echo agent."}]},
                model_listener(),
            ],
        }

    try:
        for name in ("a", "b"):
            port_b, port_l = free_port(), free_port()
            gw = Gateway(config(port_b, port_l), tmp_path_factory.mktemp(f"redis-gw-{name}"))
            gateways.append(gw)
            gw.start()
            gw.urls = {"shared": f"http://127.0.0.1:{port_b}", "limited": f"http://127.0.0.1:{port_l}"}
        yield gateways[0], gateways[1], shared_agent, echo_agent
    finally:
        for gw in gateways:
            gw.stop()
        shared_agent.stop()
        echo_agent.stop()

        clear_redis_prefix(url, prefix)


def test_failures_through_one_gateway_open_the_breaker_in_the_other(redis_pair):
    gw_a, gw_b, agent, _ = redis_pair
    agent.enqueue(*[upstream_error(503) for _ in range(10)])
    for _ in range(3):
        r = post(gw_a.urls["shared"], {"messages": user()})
        assert r.status_code == 503 and relayed(r), r.text
    assert len(chat_posts(agent)) == 3
    time.sleep(1.0)  # generous time for the open state to travel through Redis

    for gw in (gw_b, gw_a, gw_b):
        r = post(gw.urls["shared"], {"messages": user()})
        assert r.status_code == 503, (gw.log()[-3000:], r.text)
        assert error_code(r).endswith("_open"), (gw.log()[-3000:], r.text)
        assert r.headers.get("retry-after") is not None, r.headers
    assert len(chat_posts(agent)) == 3  # gateway B never touched the agent


def test_requests_per_minute_admits_exactly_n_across_both(redis_pair):
    gw_a, gw_b, _, echo = redis_pair

    async def load():
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(*(
                client.post(f"{(gw_a, gw_b)[i % 2].urls['limited']}/v1/chat/completions",
                            json={"messages": user(str(i))})
                for i in range(12)))

    responses = asyncio.run(load())
    ok = [r for r in responses if r.status_code == 200]
    limited = [r for r in responses if r.status_code == 429]
    assert len(ok) == 5 and len(limited) == 7, [(r.status_code, r.text) for r in responses]
    for r in limited:
        assert r.headers.get("retry-after") is not None, r.headers
        assert r.headers.get("x-ratelimit-limit") == "5", r.headers
        assert isinstance(r.json().get("error"), dict), r.text
    assert len(chat_posts(echo)) == 5


# =========================================================================== an instance killed under load


@pytest.mark.slow
def test_killing_one_of_two_instances_mid_load(tmp_path):
    raise_nofile(4096)
    instances = [EchoAgentProcess(tmp_path).start(), EchoAgentProcess(tmp_path).start()]
    port = free_port()
    config = {
        "version": "v0.4.0",
        "model_providers": [UNUSED_PROVIDER],
        "agents": [{"id": "duo", "urls": [i.url for i in instances],
                    # The echo agent is safe to repeat: requests cut off by the kill ('reset') are retried too.
                    "retry": {"attempts": 3, "backoff": "10ms", "on": ["connect_error", "reset", 502, 503]}}],
        "listeners": [{"type": "agent", "name": "duo_desk", "port": port, "address": "127.0.0.1",
                       "agents": [{"id": "duo", "description": "Two instances of one agent."}]},
                      model_listener()],
    }
    total, concurrency = 500, 20
    try:
        with Gateway(config, tmp_path) as gw:
            async def load():
                done = 0
                killed = asyncio.Event()
                queue: asyncio.Queue[int] = asyncio.Queue()
                for i in range(total):
                    queue.put_nowait(i)
                results: list[tuple[int, str]] = []
                limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
                async with httpx.AsyncClient(timeout=60, limits=limits) as client:
                    async def worker():
                        nonlocal done
                        while True:
                            try:
                                i = queue.get_nowait()
                            except asyncio.QueueEmpty:
                                return
                            try:
                                r = await client.post(f"{gw.url()}/v1/chat/completions",
                                                      json={"messages": user(f"n{i}")})
                                results.append((r.status_code, r.text))
                            except httpx.HTTPError as exc:
                                results.append((0, repr(exc)))
                            done += 1
                            if done == total // 2 and not killed.is_set():
                                killed.set()
                                await asyncio.to_thread(instances[1].kill)

                    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), 120)
                return results, killed.is_set()

            results, killed = asyncio.run(load())
            log = gw.log()
    finally:
        for instance in instances:
            instance.stop()
    assert killed
    assert len(results) == total
    failures = [(s, t) for s, t in results if s != 200]
    assert len(failures) <= total // 100, (failures[:5], log[-3000:])
    for status, text in failures:
        assert 500 <= status <= 599, (status, text)
        assert isinstance(json.loads(text).get("error"), dict), text
    for status, text in results:
        if status == 200:
            assert json.loads(text)["choices"][0]["message"]["content"].startswith("echo: n")


# =========================================================================== model failover


@pytest.fixture(scope="module")
def providers():
    mocks = {"primary": MockLLM().start(), "backup": MockLLM().start()}
    yield mocks
    for mock in mocks.values():
        mock.stop()


@pytest.fixture(scope="module")
def model_gw(providers, tmp_path_factory):
    port = free_port()
    closed = free_port()  # nothing listens here
    primary, backup = f"{providers['primary'].url}/v1", f"{providers['backup'].url}/v1"
    config = {
        "version": "v0.4.0",
        "listeners": [{"type": "model", "name": "llm", "port": port, "address": "127.0.0.1", "timeout": "30s"}],
        "model_providers": [
            {"model": "openai/primary", "access_key": "sk-primary", "base_url": primary, "default": True,
             "fallback_models": ["openai/backup"]},
            {"model": "openai/backup", "access_key": "sk-backup", "base_url": backup},
            {"model": "openai/lonely", "access_key": "sk-primary", "base_url": primary},
            {"model": "openai/patient", "access_key": "sk-primary", "base_url": primary,
             "retry": {"attempts": 3, "backoff": "10ms"}},
            {"model": "openai/gone", "access_key": "sk-gone", "base_url": f"http://127.0.0.1:{closed}/v1",
             "fallback_models": ["openai/backup"]},
        ],
        "model_aliases": {"sturdy": {"target": "openai/lonely", "fallbacks": ["openai/backup"]}},
    }
    gw = Gateway(config, tmp_path_factory.mktemp("reliability-models")).start()
    yield gw
    gw.stop()


@pytest.fixture
def llms(providers):
    yield from _reset_around(providers)


def ask(gw: Gateway, model: str, text: str, stream: bool) -> tuple[str, httpx.Headers]:
    """Ask through the openai SDK; (the answer's text, the response headers)."""
    client = openai.OpenAI(base_url=f"{gw.url()}/v1", api_key="sk-client", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model=model, messages=user(text), stream=stream)
    parsed = raw.parse()
    if stream:
        content = "".join(c.choices[0].delta.content or "" for c in parsed if c.choices)
    else:
        content = parsed.choices[0].message.content
    return content, raw.headers


@pytest.mark.parametrize("stream, status", [(False, 429), (True, 503), (False, 503), (True, 429)])
def test_model_failover_to_fallback_model(model_gw, llms, stream, status):
    llms["primary"].enqueue(upstream_error(status))
    text, headers = ask(model_gw, "openai/primary", "fail over", stream)
    assert text == "echo: fail over"
    assert headers.get("x-plano-model") == "openai/backup", dict(headers)
    assert len(chat_posts(llms["primary"])) == 1
    [seen] = chat_posts(llms["backup"])
    assert seen.body["model"] == "backup"
    assert seen.headers["authorization"] == "Bearer sk-backup"  # the backup's own key


def test_model_without_failure_answers_itself_and_says_so(model_gw, llms):
    text, headers = ask(model_gw, "openai/primary", "no trouble", False)
    assert text == "echo: no trouble"
    assert headers.get("x-plano-model") == "openai/primary", dict(headers)
    assert chat_posts(llms["backup"]) == []


@pytest.mark.parametrize("stream", [False, True])
def test_alias_fallbacks(model_gw, llms, stream):
    llms["primary"].enqueue(upstream_error(429 if stream else 503))
    text, headers = ask(model_gw, "sturdy", "alias", stream)
    assert text == "echo: alias"
    assert headers.get("x-plano-model") == "openai/backup", dict(headers)
    [tried] = chat_posts(llms["primary"])
    assert tried.body["model"] == "lonely"
    assert chat_posts(llms["backup"])[0].body["model"] == "backup"


@pytest.mark.parametrize("stream", [False, True])
def test_unreachable_primary_fails_over(model_gw, llms, stream):
    text, headers = ask(model_gw, "openai/gone", "anyone?", stream)
    assert text == "echo: anyone?"
    assert headers.get("x-plano-model") == "openai/backup", dict(headers)
    assert len(chat_posts(llms["backup"])) == 1


@pytest.mark.parametrize("stream", [False, True])
def test_provider_retry_block_retries_the_same_model(model_gw, llms, stream):
    # A provider's `retry` block (default `on` for models: connect_error, timeout, 429, 502-504).
    llms["primary"].enqueue(upstream_error(503), upstream_error(429))
    text, headers = ask(model_gw, "openai/patient", "patience", stream)
    assert text == "echo: patience"
    assert [r.body["model"] for r in chat_posts(llms["primary"])] == ["patient"] * 3


def test_provider_retry_block_does_not_retry_a_400(model_gw, llms):
    llms["primary"].enqueue(upstream_error(400, "bad_request"), upstream_error(400, "bad_request"))
    r = post(model_gw.url(), {"model": "openai/patient", "messages": user()})
    assert r.status_code == 400, r.text
    assert len(chat_posts(llms["primary"])) == 1


def test_non_failover_status_is_not_failed_over(model_gw, llms):
    llms["primary"].enqueue(upstream_error(401, "invalid_api_key"))
    r = post(model_gw.url(), {"model": "openai/primary", "messages": user()})
    assert r.status_code == 401, r.text
    assert chat_posts(llms["backup"]) == []


def test_no_failover_after_the_first_byte(model_gw, llms):
    llms["primary"].enqueue(Reply(kind="reset_mid_stream", tokens=["Hel"]))
    client = openai.OpenAI(base_url=f"{model_gw.url()}/v1", api_key="sk-client", max_retries=0)
    seen = []
    with pytest.raises(openai.APIError):
        for chunk in client.chat.completions.create(model="openai/primary", messages=user(), stream=True):
            if chunk.choices:
                seen.append(chunk.choices[0].delta.content)
    assert seen == ["Hel"]
    time.sleep(0.3)
    assert len(chat_posts(llms["primary"])) == 1
    assert chat_posts(llms["backup"]) == []


# =========================================================================== 1,000 hanging requests


async def raw_post(port: int, body: bytes) -> int:
    """One HTTP/1.1 request on its own connection; the status code (0 when the connection failed)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return 0
    try:
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
                     b"content-type: application/json\r\nconnection: close\r\n"
                     b"content-length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        line = await reader.readline()
        await reader.read()  # to EOF: the whole answer
        parts = line.split()
        return int(parts[1]) if len(parts) >= 2 else 0
    except (OSError, ValueError):
        return 0
    finally:
        writer.close()


@pytest.mark.slow
def test_a_thousand_hanging_requests_get_504_with_bounded_memory(tmp_path):
    raise_nofile(8192)
    hole = Blackhole().start()
    port = free_port()
    config = {
        "version": "v0.4.0",
        "listeners": [{"type": "model", "name": "llm", "port": port, "address": "127.0.0.1", "timeout": "60s"}],
        "model_providers": [{"model": "openai/stuck", "access_key": "k", "base_url": f"{hole.url}/v1",
                             "timeout": "3s", "default": True}],
    }
    body = json.dumps({"model": "openai/stuck", "messages": user("are you there?")}).encode()
    count = 1000
    try:
        with Gateway(config, tmp_path) as gw:
            async def run():
                # Warm up (imports, first connection), then the baseline.
                assert await raw_post(port, body) == 504
                baseline = process_tree_rss_kib(gw.proc.pid)
                tasks = [asyncio.ensure_future(raw_post(port, body)) for _ in range(count)]
                peak, health = baseline, []
                async with httpx.AsyncClient(timeout=10) as client:
                    for _ in range(40):  # about 2 s of the 3 s the requests hang
                        await asyncio.sleep(0.05)
                        peak = max(peak, process_tree_rss_kib(gw.proc.pid))
                        if len(health) < 3 and hole.accepted > 1:
                            r = await client.get(f"http://127.0.0.1:{port}/healthz")
                            health.append(r.status_code)
                    in_flight = hole.accepted
                    statuses = await asyncio.wait_for(asyncio.gather(*tasks), 120)
                    peak = max(peak, process_tree_rss_kib(gw.proc.pid))
                    after = await client.get(f"http://127.0.0.1:{port}/healthz")
                return baseline, peak, health, in_flight, statuses, after.status_code

            baseline, peak, health, in_flight, statuses, after = asyncio.run(run())
    finally:
        hole.stop()
    assert health and all(s == 200 for s in health), health
    assert after == 200
    assert in_flight > count // 2, f"only {in_flight} requests reached the hanging upstream"
    tally = {s: statuses.count(s) for s in set(statuses)}
    assert tally == {504: count}, tally
    grown_mib = (peak - baseline) / 1024
    assert grown_mib < 100, f"gateway RSS grew by {grown_mib:.0f} MiB ({baseline} -> {peak} KiB)"
