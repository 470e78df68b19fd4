"""Shared fixtures: a mock provider on loopback and the real gateway process."""

from __future__ import annotations

import pytest

from tests.support.gateway import Gateway, free_port
from tests.support.mock_llm import MockLLM


@pytest.fixture(scope="session")
def mock_llm():
    mock = MockLLM().start()
    yield mock
    mock.stop()


@pytest.fixture
def llm(mock_llm):
    """The session mock, emptied of recorded requests and scripted replies."""
    mock_llm.reset()
    yield mock_llm
    mock_llm.reset()


@pytest.fixture
def gateway_factory(tmp_path_factory):
    started: list[Gateway] = []

    def make(config, **kw) -> Gateway:
        gw = Gateway(config, tmp_path_factory.mktemp("gw"), **kw)
        gw.start()
        started.append(gw)
        return gw

    yield make
    for gw in started:
        gw.stop()


__all__ = ["free_port"]
