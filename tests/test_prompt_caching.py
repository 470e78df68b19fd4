"""Prompt caching (Plano §4.12): ``cache_control`` breakpoints reach an Anthropic upstream, through the
official anthropic and openai SDKs; client markers are respected; other upstreams get none; hits and
misses are counted from the usage the provider reports."""

from __future__ import annotations

import time
import urllib.request

import anthropic
import openai
import pytest

from tests.support.gateway import Gateway, free_port
from tests.support.mock_anthropic import MockAnthropic, Turn
from tests.support.mock_openai_wire import MockOpenAI

LONG_SYSTEM = "You are the reviewer of a large codebase. " + " ".join(
    f"Rule {i}: keep functions short, name things clearly and test every branch." for i in range(90))
TOOL = {"name": "read_file", "description": "Read a file of the repository",
        "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}
EPHEMERAL = {"type": "ephemeral"}


@pytest.fixture(scope="module")
def mocks():
    oa, an = MockOpenAI().start(), MockAnthropic().start()
    yield oa, an
    oa.stop()
    an.stop()


@pytest.fixture(scope="module")
def gw(mocks, tmp_path_factory):
    oa, an = mocks
    admin = free_port()
    config = {
        "version": "v0.4.0",
        "listeners": [{"type": "model", "name": "llm", "port": free_port(), "address": "127.0.0.1", "timeout": "20s"}],
        "model_providers": [
            {"model": "openai/gpt-4o", "access_key": "sk-openai", "base_url": f"{oa.url}/v1", "default": True},
            {"model": "anthropic/claude-sonnet-4-6", "access_key": "sk-ant", "base_url": an.url},
            {"model": "openrouter/anthropic/claude-sonnet-4.5", "access_key": "sk-or", "base_url": f"{oa.url}/or/v1"},
        ],
        "prompt_caching": {"enabled": True, "min_prefix_tokens": 1024},
        "admin": {"address": "127.0.0.1", "port": admin},
    }
    g = Gateway(config, tmp_path_factory.mktemp("cache-gw"), env={"PLANO_HOME": str(tmp_path_factory.mktemp("home"))})
    g.admin = f"http://127.0.0.1:{admin}"
    g.start()
    yield g
    g.stop()


@pytest.fixture
def up(mocks):
    oa, an = mocks
    oa.reset()
    an.reset()
    return oa, an


@pytest.fixture
def ant(gw):
    return anthropic.Anthropic(base_url=gw.url(), api_key="sk-client", max_retries=0)


def history(last="Now read src/app.py and review it."):
    return [{"role": "user", "content": "Please review the repository."},
            {"role": "assistant", "content": "Sure - which file first?"},
            {"role": "user", "content": last}]


def markers(body) -> list[str]:
    """Where the upstream request carried cache_control, as readable paths."""
    found = []
    for i, tool in enumerate(body.get("tools") or ()):
        if "cache_control" in tool:
            found.append(f"tools[{i}]")
    system = body.get("system")
    if isinstance(system, list):
        found += [f"system[{i}]" for i, b in enumerate(system) if "cache_control" in b]
    for i, m in enumerate(body.get("messages") or ()):
        if isinstance(m.get("content"), list):
            found += [f"messages[{i}].content[{j}]" for j, b in enumerate(m["content"])
                      if isinstance(b, dict) and "cache_control" in b]
    return found


@pytest.mark.parametrize("stream", [False, True])
def test_messages_client_gets_breakpoints_on_a_long_stable_prefix(ant, up, stream):
    _, an = up
    kw = dict(model="anthropic/claude-sonnet-4-6", max_tokens=100, system=LONG_SYSTEM, tools=[TOOL],
              messages=history())
    if stream:
        with ant.messages.stream(**kw) as s:
            text = s.get_final_text()
    else:
        text = ant.messages.create(**kw).content[0].text
    assert text == "echo: Now read src/app.py and review it."
    body = an.last.body
    assert markers(body) == ["tools[0]", "system[0]", "messages[1].content[0]", "messages[2].content[0]"]
    assert body["system"][0]["cache_control"] == EPHEMERAL and body["system"][0]["text"] == LONG_SYSTEM
    assert body["messages"][2]["content"][0]["text"] == "Now read src/app.py and review it."


def test_short_prefix_gets_no_breakpoints(ant, up):
    _, an = up
    ant.messages.create(model="anthropic/claude-sonnet-4-6", max_tokens=50, system="Be brief.", messages=history())
    assert markers(an.last.body) == []
    assert an.last.body["system"] == "Be brief."  # left exactly as sent


def test_client_markers_are_respected(ant, up):
    _, an = up
    system = [{"type": "text", "text": LONG_SYSTEM, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    ant.messages.create(model="anthropic/claude-sonnet-4-6", max_tokens=50, system=system, tools=[TOOL],
                        messages=history())
    assert markers(an.last.body) == ["system[0]"]
    assert an.last.body["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}


def test_cache_off_header_disables_injection(ant, up):
    _, an = up
    ant.messages.create(model="anthropic/claude-sonnet-4-6", max_tokens=50, system=LONG_SYSTEM, messages=history(),
                        extra_headers={"X-Plano-Cache": "off"})
    assert markers(an.last.body) == []


def test_chat_client_to_anthropic_gets_breakpoints_through_translation(gw, up):
    _, an = up
    client = openai.OpenAI(base_url=f"{gw.url()}/v1", api_key="k", max_retries=0)
    out = client.chat.completions.create(
        model="anthropic/claude-sonnet-4-6", messages=[{"role": "system", "content": LONG_SYSTEM}, *history()],
        tools=[{"type": "function", "function": {"name": "read_file", "description": "Read a file",
                                                 "parameters": TOOL["input_schema"]}}])
    assert out.choices[0].message.content == "echo: Now read src/app.py and review it."
    body = an.last.body
    assert markers(body) == ["tools[0]", "system[0]", "messages[1].content[0]", "messages[2].content[0]"]


def test_openai_upstream_gets_no_markers(gw, up):
    oa, _ = up
    client = openai.OpenAI(base_url=f"{gw.url()}/v1", api_key="k", max_retries=0)
    client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "system", "content": LONG_SYSTEM},
                                                                     *history()])
    assert "cache_control" not in str(oa.last.body)
    assert oa.last.body["messages"][0] == {"role": "system", "content": LONG_SYSTEM}


def test_claude_behind_an_openai_compatible_gateway_gets_content_part_markers(gw, up):
    oa, _ = up
    client = openai.OpenAI(base_url=f"{gw.url()}/v1", api_key="k", max_retries=0)
    client.chat.completions.create(model="openrouter/anthropic/claude-sonnet-4.5",
                                   messages=[{"role": "system", "content": LONG_SYSTEM}, *history()])
    sent = oa.last.body["messages"]
    assert sent[0]["content"] == [{"type": "text", "text": LONG_SYSTEM, "cache_control": EPHEMERAL}]
    assert sent[3]["content"][0]["cache_control"] == EPHEMERAL


def _metric(gw, outcome: str) -> float:
    with urllib.request.urlopen(gw.admin + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("plano_prompt_cache_requests_total{") and f'outcome="{outcome}"' in line \
                and 'model="anthropic/claude-sonnet-4-6"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_cache_hits_and_misses_are_counted_from_usage(gw, ant, up):
    _, an = up
    hits, misses = _metric(gw, "hit"), _metric(gw, "miss")
    an.enqueue(Turn(usage=(20, 5, 0)), Turn(usage=(20, 5, 1500)), Turn(usage=(20, 5, 1500)))
    kw = dict(model="anthropic/claude-sonnet-4-6", max_tokens=50, system=LONG_SYSTEM, messages=history())
    ant.messages.create(**kw)
    ant.messages.create(**kw)
    with ant.messages.stream(**kw) as s:
        s.get_final_text()
    deadline = time.monotonic() + 10  # metrics are flushed off the request path
    while time.monotonic() < deadline and (_metric(gw, "hit") < hits + 2 or _metric(gw, "miss") < misses + 1):
        time.sleep(0.1)
    assert _metric(gw, "hit") == hits + 2
    assert _metric(gw, "miss") == misses + 1
