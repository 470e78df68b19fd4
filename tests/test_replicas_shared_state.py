"""Two plano replicas on one machine, one PostgreSQL: a Responses conversation started on one
replica continues on the other (``previous_response_id``), and a response deleted through one is
gone for both. (Keys, limits and breakers across replicas: tests/test_auth_replicas.py,
tests/test_reliability_e2e.py; tasks: tests/test_tasks_recovery.py.)"""

from __future__ import annotations

import json
import os

import openai
import pytest

from tests.support.gateway import Gateway, free_port
from tests.support.mock_anthropic import MockAnthropic
from tests.support.mock_openai_wire import MockOpenAI

DSN = os.environ.get("PLANO_TEST_POSTGRES_DSN")
pytestmark = pytest.mark.skipif(not DSN, reason="PLANO_TEST_POSTGRES_DSN is not set "
                                                "(e.g. postgresql://postgres@127.0.0.1:5432/test)")


def _config(oa: MockOpenAI, an: MockAnthropic) -> dict:
    return {
        "version": "v0.4.0",
        "listeners": [{"type": "model", "name": "llm", "port": free_port(), "address": "127.0.0.1", "timeout": "20s"}],
        "model_providers": [
            {"model": "groq/llama-3", "access_key": "sk-groq", "base_url": f"{oa.url}/groq/v1", "default": True},
            {"model": "anthropic/claude-sonnet-4-6", "access_key": "sk-ant", "base_url": an.url},
        ],
        "state_storage": {"type": "postgres", "connection_string": DSN},
    }


def test_a_responses_conversation_moves_between_replicas(tmp_path):
    oa, an = MockOpenAI().start(), MockAnthropic().start()
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    a = Gateway(_config(oa, an), tmp_path / "a", env={"PLANO_HOME": str(tmp_path / "home-a")})
    b = Gateway(_config(oa, an), tmp_path / "b", env={"PLANO_HOME": str(tmp_path / "home-b")})
    try:
        a.start()
        b.start()
        ca = openai.OpenAI(base_url=f"{a.url()}/v1", api_key="x", max_retries=0)
        cb = openai.OpenAI(base_url=f"{b.url()}/v1", api_key="x", max_retries=0)
        first = ca.responses.create(model="groq/llama-3", input="remember the code 4417")
        # Turn two on the OTHER replica, translated to another provider: the history comes from Postgres.
        second = cb.responses.create(model="claude-sonnet-4-6", input="what was the code?",
                                     previous_response_id=first.id)
        sent = json.dumps(an.last.body)
        assert "4417" in sent and "what was the code?" in sent
        assert second.id != first.id
        assert cb.responses.retrieve(first.id).id == first.id  # stored by A, read by B
        third = ca.responses.create(model="groq/llama-3", input="and again?", previous_response_id=second.id)
        assert "4417" in json.dumps(oa.last.body) and third.output_text
        cb.responses.delete(first.id)
        with pytest.raises(openai.NotFoundError):
            ca.responses.retrieve(first.id)  # deleted through B, gone for A
    finally:
        a.stop()
        b.stop()
        oa.stop()
        an.stop()
