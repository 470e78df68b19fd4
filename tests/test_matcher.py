"""The matcher's numpy runtime (gateway/routing/matcher.py) and its switch in the embedded router.

No trained weights are needed: a matcher whose upper layers are the sentence encoder's own,
with the cross-attention gates closed and the head zeroed, must score every (request,
description) pair as scale x cosine of the two sentence embeddings - which checks the whole
runtime path (split lower / upper layers, the description cache, batching of candidates,
padding) against the encoder itself.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from gateway.routing import encoder as enc

pytestmark = pytest.mark.skipif(not enc.available(), reason="sentence-encoder weights not installed")

SPLIT = 4
SCALE = 20.0


def _identity_matcher(path, e) -> None:
    arrs = {"seg": np.zeros((2, e.dim), np.float32)}
    for j, lay in enumerate(e.layers[SPLIT:]):
        p = f"l{j}."
        for name in ("qkv_w", "qkv_b", "o_w", "o_b", "ln1_w", "ln1_b", "i_w", "i_b", "f_w", "f_b",
                     "ln2_w", "ln2_b"):
            arrs[p + name] = np.asarray(getattr(lay, name), np.float16)
    arrs["gate"] = np.full((len(e.layers) - SPLIT, e.heads), -1e4, np.float32)
    arrs["pool_w"] = np.zeros((e.dim, e.dim), np.float16)
    arrs["pool_b"] = np.zeros(e.dim, np.float16)
    arrs["out_w"] = np.zeros(e.dim, np.float16)
    arrs["out_b"] = np.array([-5.0], np.float32)
    arrs["scale"] = np.array([SCALE], np.float32)
    arrs["config"] = np.frombuffer(json.dumps({"split": SPLIT, "layers": len(e.layers) - SPLIT}).encode(), np.uint8)
    np.savez(path, **arrs)


DESCRIPTIONS = [
    "Weather forecasts and current conditions for any city. Handles: 'Will it rain in Oslo tomorrow?'.",
    "Books, changes and cancels flights.",
    "General chit-chat and anything not covered by the other agents.",
]


@pytest.fixture(scope="module")
def identity(tmp_path_factory):
    # The matcher's layers run in numpy: compare it with the fp32 numpy encoder, not the int8 one.
    mp = pytest.MonkeyPatch()
    mp.setenv("PLANO_ENCODER_BACKEND", "numpy")
    e = enc.SentenceEncoder()
    mp.undo()
    path = tmp_path_factory.mktemp("m") / "matcher.npz"
    _identity_matcher(path, e)
    return e, path


def test_closed_gates_reduce_the_matcher_to_the_sentence_encoder(identity):
    from gateway.routing.matcher import Matcher

    e, path = identity
    m = Matcher(e, path)
    descs = m.describe(DESCRIPTIONS)
    dvec = e.encode(DESCRIPTIONS)
    for text in ["is it going to snow in Tromso this weekend", "move my flight to friday", "hi"]:
        got = m.scores(m.request([text])[0], descs)
        want = SCALE * (dvec @ e.encode(text)[0]) - 5.0
        # float16 storage of the upper layers: agreement to a few hundredths of a logit
        assert np.allclose(got, want, atol=0.15), (text, got, want)
        assert int(np.argmax(got)) == int(np.argmax(want))


def test_router_uses_the_matcher_only_when_shipped_and_enabled(identity, monkeypatch):
    from gateway.routing.embedded import EmbeddedRouter
    from gateway.routing.types import AgentSpec

    _, path = identity
    agents = [AgentSpec("weather", DESCRIPTIONS[0]), AgentSpec("flights", DESCRIPTIONS[1]),
              AgentSpec("chat", DESCRIPTIONS[2], default=True)]
    monkeypatch.delenv("PLANO_ROUTER_ENCODER", raising=False)
    monkeypatch.setenv("PLANO_MATCHER_FILE", str(path))
    monkeypatch.delenv("PLANO_ROUTER_MATCHER", raising=False)
    r = EmbeddedRouter(agents, encoder=True)
    assert r.matcher is not None
    d = r.route([{"role": "user", "content": "will it rain in Bergen tomorrow?"}])
    assert d.agents == ["weather"] and d.confidence is not None
    monkeypatch.setenv("PLANO_ROUTER_MATCHER", "0")
    assert EmbeddedRouter(agents, encoder=True).matcher is None
    monkeypatch.setenv("PLANO_ROUTER_MATCHER", "1")
    monkeypatch.setenv("PLANO_MATCHER_FILE", str(path) + ".missing")
    assert EmbeddedRouter(agents, encoder=True).matcher is None
