"""Static word vectors for the embedded router's semantic layer (optional, numpy).

`data/static_vectors.bin` holds one int8 vector per English word, distilled offline
(`bench/build_static_vectors.py`) from the sentence model all-MiniLM-L6-v2
(sentence-transformers, Apache-2.0): every word of the model's vocabulary was run
through the full transformer inside a few neutral carrier phrases ("the {w}", "Can you
help me with {w}?", ...), its own output tokens averaged, then reduced by PCA. Words are
stored in the vocabulary's order, which approximates corpus frequency, so a word's row
number gives its SIF weight (frequent words weigh little).

The table lets the router relate words an agent description never uses to the ones it
does ("hurricane" ~ "storm", "courier" ~ "parcel", "PTO" ~ "vacation"). When numpy or
the data file is missing, `load_vectors()` returns None and the router stays lexical.
"""

from __future__ import annotations

import json
import os
import struct
import threading

try:  # numpy is only needed by the semantic layer
    import numpy as np
except ImportError:  # pragma: no cover - exercised when numpy is absent
    np = None

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "static_vectors.bin")
SIF_A = 1e-3        # SIF smoothing: weight = A / (A + p(word)), p ~ Zipf on the row number
_ZIPF_OFFSET = 10

# Inflection / derivation fallbacks for words the table lacks: (suffix, replacement).
_VARIANTS = (
    ("ies", "y"), ("ied", "y"), ("ing", ""), ("ing", "e"), ("ed", ""), ("ed", "e"), ("es", ""),
    ("s", ""), ("ers", ""), ("er", ""), ("er", "e"), ("est", ""), ("ly", ""), ("ness", ""),
    ("ment", ""), ("able", ""), ("d", ""),
)


class StaticVectors:
    """Word -> unit vector (float32) and SIF weight, with morphological fallback."""

    def __init__(self, path: str = DATA) -> None:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:6] != b"PLSV1\n":
            raise ValueError(f"{path}: not a static-vector table")
        (hlen,) = struct.unpack_from("<I", raw, 6)
        pos = 10
        header = json.loads(raw[pos:pos + hlen])
        pos += hlen
        rows, dims, nbytes = header["rows"], header["dims"], header["words_bytes"]
        words = raw[pos:pos + nbytes].decode("utf-8").split("\n")
        pos += nbytes
        scales = np.frombuffer(raw, dtype="<f4", count=rows, offset=pos)
        pos += 4 * rows
        q = np.frombuffer(raw, dtype=np.int8, count=rows * dims, offset=pos).reshape(rows, dims)
        mat = q.astype(np.float32) * scales[:, None]
        mat /= np.linalg.norm(mat, axis=1, keepdims=True) + 1e-9
        self.matrix = mat
        self.dims = dims
        self.index = {w: i for i, w in enumerate(words)}
        self.header = header
        self._cache: dict[str, tuple | None] = {}

    def _row(self, word: str) -> int | None:
        i = self.index.get(word)
        if i is not None:
            return i
        for suf, rep in _VARIANTS:
            if word.endswith(suf) and len(word) - len(suf) + len(rep) >= 3:
                base = word[: len(word) - len(suf)] + rep
                i = self.index.get(base)
                if i is None and len(base) > 3 and base[-1] == base[-2]:
                    i = self.index.get(base[:-1])  # "shipped" -> "shipp" -> "ship"
                if i is not None:
                    return i
        return None

    def lookup(self, word: str):
        """(unit vector, SIF weight) for a lower-case word, or None if unknown."""
        hit = self._cache.get(word, False)
        if hit is not False:
            return hit
        i = self._row(word)
        if i is not None:
            out = (self.matrix[i], SIF_A / (SIF_A + 1.0 / (i + _ZIPF_OFFSET)))
        else:
            out = self._compound(word)
        if len(self._cache) < 200_000:
            self._cache[word] = out
        return out

    def _compound(self, word: str):
        """A closed compound of two known words ("waterproof", "headphones"): their mean."""
        if len(word) < 7:
            return None
        for k in range(3, len(word) - 2):
            a, b = self._row_exact(word[:k]), self._row(word[k:])
            if a is not None and b is not None:
                v = self.matrix[a] + self.matrix[b]
                v = v / (np.linalg.norm(v) + 1e-9)
                w = SIF_A / (SIF_A + 1.0 / (max(a, b) + _ZIPF_OFFSET))
                return v, w
        return None

    def _row_exact(self, word: str) -> int | None:
        return self.index.get(word)


_LOCK = threading.Lock()
_LOADED: dict[str, StaticVectors | None] = {}


def load_vectors(path: str = DATA) -> StaticVectors | None:
    """The shared table (loaded once per process), or None when unavailable."""
    if np is None:
        return None
    with _LOCK:
        if path not in _LOADED:
            try:
                _LOADED[path] = StaticVectors(path)
            except (OSError, ValueError, KeyError):
                _LOADED[path] = None
        return _LOADED[path]
