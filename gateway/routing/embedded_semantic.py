"""Semantic layer of the embedded router: soft word matching with static word vectors.

Each agent is represented by the vectors of the content words of its scope and example
requests (exclusions left out). A request word is credited with its best similarity to
any of an agent's words, so "hurricane" still lands near a weather agent that only says
"storm" and "rain"; an agent's semantic score is the SIF-weighted mean of those credits
over the request's words (frequent words weigh little). Exact matches score 1.0, so the
layer agrees with the lexical index whenever the request uses the description's words.

The router only uses the *lead* of the best agent over the runner-up (see
`EmbeddedRouter`), which cancels words that resemble every agent equally.
"""

from __future__ import annotations

from gateway.routing.embedded_profile import AgentProfile
from gateway.routing.embedded_vectors import StaticVectors, np

EXAMPLE_W = 0.85   # similarity credit through an example-request word (incidental names)


class SemanticIndex:
    """Per-agent word-vector matrices and a vectorised max-similarity scorer."""

    def __init__(self, profiles: list[AgentProfile], vectors: StaticVectors) -> None:
        self.vectors = vectors
        self.n = len(profiles)
        rows, weights, starts = [], [], []
        self.empty: list[int] = []
        for i, p in enumerate(profiles):
            starts.append(len(rows))
            seen: set[str] = set()
            for ws, w in ((p.scope_words, 1.0), (p.example_words, EXAMPLE_W)):
                for word in ws:
                    if word in seen:
                        continue
                    hit = vectors.lookup(word)
                    if hit is None:
                        continue
                    seen.add(word)
                    rows.append(hit[0])
                    weights.append(w)
            if len(rows) == starts[-1]:  # no known word: one zero row keeps segments aligned
                rows.append(np.zeros(vectors.dims, dtype=np.float32))
                weights.append(0.0)
                self.empty.append(i)
        self.matrix = np.vstack(rows).astype(np.float32)
        self.row_w = np.asarray(weights, dtype=np.float32)
        self.starts = np.asarray(starts, dtype=np.intp)

    def scores(self, words: list[str]) -> list[float]:
        """Per-agent semantic score in [-1, 1] for a request's content words."""
        vecs, ws = [], []
        seen: set[str] = set()
        for w in words:
            if w in seen:
                continue
            seen.add(w)
            hit = self.vectors.lookup(w)
            if hit is not None:
                vecs.append(hit[0])
                ws.append(hit[1])
        if not vecs:
            return [0.0] * self.n
        sims = np.vstack(vecs) @ self.matrix.T          # words x profile rows
        sims *= self.row_w
        best = np.maximum.reduceat(sims, self.starts, axis=1)  # words x agents
        wv = np.asarray(ws, dtype=np.float32)
        out = (wv @ best) / float(wv.sum())
        return [float(x) for x in out]
