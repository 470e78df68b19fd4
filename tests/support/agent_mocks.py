"""Helpers for agent-listener tests: a team of mock agents on loopback and small assertions.

Agents speak OpenAI chat completions at ``{url}/v1/chat/completions``, so every
agent (and the orchestrator model) is a :class:`~tests.support.mock_llm.MockLLM`
of its own: each records what it received and answers from its own script.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from tests.support.mock_llm import MockLLM, Recorded, Reply, completion


def orchestrated_config(team: "MockTeam", agent_ids: Iterable[str], listeners: list[dict], model_port: int,
                        **extra) -> dict:
    """A config whose agents are the team's mocks and whose orchestrator model is ``team['orch']``,
    with an explicit model listener on ``model_port`` (so no implicit 0.0.0.0:12000 listener)."""
    return {
        "version": "v0.4.0",
        "agents": [{"id": name, "url": team[name].url} for name in agent_ids],
        "model_providers": [{"model": "openai/orch", "access_key": "sk-orch", "base_url": f"{team['orch'].url}/v1",
                             "default": True}],
        "overrides": {"agent_orchestration_model": "openai/orch"},
        "listeners": [*listeners, {"type": "model", "name": "models", "port": model_port, "address": "127.0.0.1"}],
        **extra,
    }


class MockTeam:
    """Named MockLLM servers started and stopped together."""

    def __init__(self, *names: str) -> None:
        self.mocks: dict[str, MockLLM] = {name: MockLLM() for name in names}

    def __getitem__(self, name: str) -> MockLLM:
        return self.mocks[name]

    def start(self) -> MockTeam:
        for mock in self.mocks.values():
            mock.start()
        return self

    def stop(self) -> None:
        for mock in self.mocks.values():
            mock.stop()

    def reset(self) -> None:
        for mock in self.mocks.values():
            mock.reset()

    def all_requests(self) -> list[Recorded]:
        return [r for mock in self.mocks.values() for r in mock.requests]


def chat_posts(mock: MockLLM) -> list[Recorded]:
    """The chat-completions calls a mock received (ignores anything else)."""
    return [r for r in mock.requests if r.method == "POST" and r.path.endswith("/chat/completions")]


def called_agents(mock: MockLLM) -> list[str]:
    """Agent ids, in call order, of the requests a shared agent mock received."""
    return [r.headers.get("x-plano-agent-id", "?") for r in chat_posts(mock)]


def route_reply(*names: str, raw: str | None = None) -> Reply:
    """What a mock orchestrator model answers: ``{"route": [...]}`` (or ``raw`` text) as message content."""
    content = raw if raw is not None else json.dumps({"route": list(names)})
    return Reply("json", body=completion("orch", content))


def assert_openai_error(response, status: int, code: str | None = None) -> dict:
    """An httpx response carrying ``status`` and an OpenAI error envelope; returns ``error``."""
    assert response.status_code == status, response.text
    err = response.json()["error"]
    assert set(err) >= {"message", "type", "code", "param"} and err["message"], err
    if code is not None:
        assert err["code"] == code, err
    return err


def leaked(requests: Iterable[Recorded], secrets: Iterable[str]) -> list[str]:
    """Which secrets occur anywhere in the headers or raw bodies of ``requests``."""
    secrets = list(secrets)
    found = []
    for r in requests:
        blob = json.dumps(r.headers) + r.raw.decode("utf-8", "replace") + r.query
        found += [f"{s} in {r.path} ({r.headers.get('x-plano-agent-id')})" for s in secrets if s in blob]
    return found
