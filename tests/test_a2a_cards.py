"""A2A agents' cards are read eagerly, over real sockets: at start-up the gateway answers its first
request only once the cards are read (the test agent serves its card 1.5 s late, so a lazy read
would still be under way when the health probe succeeds); ``plano reload`` reads the new
configuration's cards before it reports success; a missing card is a warning naming the agent at
start-up and on reload, never a failed start or reload; an agent without a configured description
is routed by its card's description and skills."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest
import yaml

pytest.importorskip("a2a")

from tests.support.gateway import REPO, Gateway, free_port  # noqa: E402
from tests.support.mock_llm import MockLLM  # noqa: E402
from tests.support.service import ServiceProcess  # noqa: E402

CARD_DELAY = "1.5"


def _agent(tmp, name, skill):
    return ServiceProcess("tests.support.a2a_agent", ["--name", name, "--mode", "message", "--skill", skill,
                                                      "--card-delay", CARD_DELAY], tmp, label=f"a2a-{name}")


def stats(agent) -> dict:
    with urllib.request.urlopen(f"{agent.url}/stats", timeout=5) as r:
        return json.loads(r.read())


def _config(agents: dict, port: int, model_port: int, model_url: str, routed: str, ghost: str) -> dict:
    return {
        "version": "v0.4.0",
        "agents": [{"id": routed, "type": "a2a", "url": agents[routed].url},
                   {"id": "history", "type": "a2a", "url": agents["history"].url},
                   {"id": ghost, "type": "a2a", "url": f"http://127.0.0.1:{free_port()}"}],
        "model_providers": [{"model": "openai/m", "access_key": "k", "base_url": f"{model_url}/v1",
                             "default": True}],
        "listeners": [
            {"type": "agent", "name": "team", "port": port, "address": "127.0.0.1", "router": "embedded",
             "timeout": "30s", "agents": [
                 {"id": routed},  # no description: routed by its card
                 {"id": "history", "description": "History of empires, wars, kings and ancient civilisations."},
                 {"id": ghost, "description": "Haunted houses and ghost stories."},
             ]},
            {"type": "model", "name": "llm", "port": model_port, "address": "127.0.0.1"},
        ],
    }


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("a2acards")
    agents = {
        "weather": _agent(tmp, "weather", "Weather forecasts: rain, temperature and wind for any city"),
        "tides": _agent(tmp, "tides", "Tide tables: high and low tide times for any harbour and coast"),
        "history": _agent(tmp, "history", "History of empires"),
    }
    for a in agents.values():
        a.launch()
    for a in agents.values():
        a.wait_healthy()
    model = MockLLM().start()
    port, model_port = free_port(), free_port()
    gw = Gateway(_config(agents, port, model_port, model.url, "weather", "ghost"), tmp,
                 env={"PLANO_HOME": str(tmp / "home"), "PLANO_ACCESS_LOG": "off"}).start()
    cards_at_start = {name: stats(a)["cards"] for name, a in agents.items()}
    yield {"gw": gw, "agents": agents, "tmp": tmp, "url": f"http://127.0.0.1:{port}", "cards_at_start": cards_at_start,
           "next": _config(agents, port, model_port, model.url, "tides", "ghost2")}
    gw.stop()
    model.stop()
    for a in agents.values():
        a.stop()


def _ask(env, text: str) -> str:
    from openai import OpenAI

    client = OpenAI(base_url=f"{env['url']}/v1", api_key="unused", timeout=30, max_retries=0)
    return client.chat.completions.create(model="team", messages=[{"role": "user", "content": text}]) \
        .choices[0].message.content


def test_cards_are_read_before_the_gateway_serves(env):
    # the health probe that ended Gateway.start() was answered after the (slow) cards were read
    assert env["cards_at_start"]["weather"] == 1 and env["cards_at_start"]["history"] == 1
    assert env["cards_at_start"]["tides"] == 0  # not in this configuration
    log = env["gw"].log()
    assert "a2a agent 'weather': card 'weather'" in log
    assert "a2a agent 'ghost': no agent card" in log  # a warning; the gateway started
    assert _ask(env, "Will it rain in Paris tomorrow? What temperature?") == \
        "weather: Will it rain in Paris tomorrow? What temperature?"


def test_reload_reads_the_new_cards_before_it_reports(env):
    gw = env["gw"]
    (env["tmp"] / "plano.yaml").write_text(yaml.safe_dump(env["next"]))
    done = subprocess.run([sys.executable, "-m", "gateway", "reload", "--pid", str(gw.proc.pid), "--timeout", "60"],
                          cwd=REPO, env=gw.env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr  # a missing card (ghost2) does not fail the reload
    assert stats(env["agents"]["tides"])["cards"] == 1  # read during the reload, before any request
    log = gw.log()
    assert "a2a agent 'ghost2': no agent card" in log
    # the tides agent has no configured description: its card's skill routes the question to it
    question = "When is high tide in the harbour of Saint-Malo?"
    assert _ask(env, question) == f"tides: {question}"
