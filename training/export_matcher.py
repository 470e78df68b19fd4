"""Export the matcher's upper layers (gateway/routing/matcher.py) to an int8 ONNX graph.

In numpy a re-rank cost ~24 ms on this 2-core CPU (the request through the four lower layers,
then three candidates through the two upper ones), which put the routing decision's p99 over
its 25 ms budget. The graph runs the upper layers with int8 weights in one call; the lower
layers are the sentence encoder's own, and its graph hands their output over (`hs`,
training/export_encoder.py), so a request the encoder has already run costs only this graph
(3 candidates: ~9 -> ~5 ms on the 2-core VM; one: ~8 -> ~3 ms):

- inputs: ``hs`` (1, tokens, 384) the request's states after the lower layers (the encoder
  graph's second output); ``dk{j}`` / ``dv{j}`` (candidates, description tokens, 384), each
  candidate description's keys and values in upper layer j (computed once per listener);
  ``bias{j}`` (candidates, heads, 1, tokens + description tokens): padding mask plus layer j's
  learned gates;
- the request is broadcast to the candidates, and each copy attends to itself and its
  description in the upper layers;
- output ``h`` (candidates, tokens, 384); pooling and the head stay in numpy.

The graph is built with ``onnx.helper`` from the matcher's ``.npz``, then its weight MatMuls
are quantised per output channel with ``quantize_dynamic``. Its ``matcher`` and ``layers``
metadata name the weights it was built for (the lower layers' too, whose output it reads): the
runtime uses the graph only with those same weights.

    .venv/bin/python -m training.export_matcher   # writes gateway/routing/data/matcher_int8.onnx
"""

from __future__ import annotations

import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from training.export_encoder import cli, finish  # noqa: E402

OUT = os.path.join(ROOT, "gateway", "routing", "data", "matcher_int8.onnx")


class _Graph:
    """Nodes and initialisers of one graph, named by the value they produce."""

    def __init__(self) -> None:
        self.nodes, self.inits = [], []

    def const(self, name: str, arr) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(self, op: str, ins: list[str], out: str, **kw) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, ins, [out], name=out, **kw))
        return out

    def tail(self, p: str, x: str, ctx: str, lay, eps: float) -> str:
        """Attention output projection, residual + LayerNorm, GELU feed-forward, residual + LayerNorm."""
        n, c = self.node, self.const
        o = n("Add", [n("MatMul", [ctx, c(p + "o_w", lay.o_w)], p + "o0"), c(p + "o_b", lay.o_b)], p + "o1")
        x1 = n("LayerNormalization", [n("Add", [o, x], p + "res1"), c(p + "ln1_w", lay.ln1_w),
                                      c(p + "ln1_b", lay.ln1_b)], p + "x1", axis=-1, epsilon=eps)
        f = n("Add", [n("MatMul", [x1, c(p + "i_w", lay.i_w)], p + "f0"), c(p + "i_b", lay.i_b)], p + "f1")
        g = n("Mul", [n("Mul", [f, "half"], p + "g0"),
                      n("Add", [n("Erf", [n("Mul", [f, "rsqrt2"], p + "g1")], p + "g2"), "one"], p + "g3")], p + "g")
        f2 = n("Add", [n("MatMul", [g, c(p + "f_w", lay.f_w)], p + "f2"), c(p + "f_b", lay.f_b)], p + "f3")
        return n("LayerNormalization", [n("Add", [f2, x1], p + "res2"), c(p + "ln2_w", lay.ln2_w),
                                        c(p + "ln2_b", lay.ln2_b)], p + "x2", axis=-1, epsilon=eps)

    def heads(self, p: str, t: str, perm: list[int]) -> str:
        """(b, tokens, dim) -> per-head layout given by ``perm`` over (b, tokens, heads, head_dim)."""
        return self.node("Transpose", [self.node("Reshape", [t, "shape_h"], p + "r")], p + "t", perm=perm)


def build(matcher, opset: int = 17):
    from onnx import TensorProto, helper

    d, h = matcher.dim, matcher.heads
    hd = d // h
    g = _Graph()
    n, c = g.node, g.const
    c("scale", np.array(1.0 / np.sqrt(hd), np.float32))
    c("half", np.array(0.5, np.float32))
    c("one", np.array(1.0, np.float32))
    c("rsqrt2", np.array(1.0 / np.sqrt(2.0), np.float32))
    c("shape_h", np.array([0, 0, h, hd], np.int64))
    c("shape_d", np.array([0, 0, d], np.int64))
    x = "hs"  # the request after the lower layers (the sentence encoder's graph computes them)
    # one copy of the request per candidate description
    x = n("Add", [x, c("seg0", matcher.seg[0])], "xs")
    cands = n("Slice", [n("Shape", ["dk0"], "dk_shape"), c("z", np.array([0], np.int64)),
                        c("o1", np.array([1], np.int64))], "cands")
    rest = n("Slice", [n("Shape", [x], "xs_shape"), "o1", c("o3", np.array([3], np.int64))], "rest")
    x = n("Expand", [x, n("Concat", [cands, rest], "bshape", axis=0)], "xb")
    for j, lay in enumerate(matcher.layers):
        p = f"u{j}_"
        q = n("Add", [n("MatMul", [x, c(p + "q_w", lay.q_w)], p + "q0"), c(p + "q_b", lay.q_b)], p + "q")
        kv = n("Add", [n("MatMul", [x, c(p + "kv_w", lay.kv_w)], p + "kv0"), c(p + "kv_b", lay.kv_b)], p + "kv")
        kr, vr = p + "k_req", p + "v_req"
        g.nodes.append(helper.make_node("Split", [kv, c(p + "split", np.array([d, d], np.int64))], [kr, vr],
                                        name=p + "split_n", axis=-1))
        keys = n("Concat", [kr, f"dk{j}"], p + "keys", axis=1)
        vals = n("Concat", [vr, f"dv{j}"], p + "vals", axis=1)
        s = n("Add", [n("Mul", [n("MatMul", [g.heads(p + "q", q, [0, 2, 1, 3]), g.heads(p + "k", keys, [0, 2, 3, 1])],
                                  p + "s0"), "scale"], p + "s1"), f"bias{j}"], p + "s2")
        ctx = n("MatMul", [n("Softmax", [s], p + "a", axis=-1), g.heads(p + "v", vals, [0, 2, 1, 3])], p + "ctx")
        ctx = n("Reshape", [n("Transpose", [ctx], p + "ctxT", perm=[0, 2, 1, 3]), "shape_d"], p + "ctx3")
        x = g.tail(p, x, ctx, lay, matcher.eps)
    g.nodes.append(helper.make_node("Identity", [x], ["h"]))
    f = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("hs", f, [1, "t", d])]
    for j in range(len(matcher.layers)):
        inputs += [helper.make_tensor_value_info(f"dk{j}", f, ["c", "l", d]),
                   helper.make_tensor_value_info(f"dv{j}", f, ["c", "l", d]),
                   helper.make_tensor_value_info(f"bias{j}", f, ["c", h, 1, "tl"])]
    graph = helper.make_graph(g.nodes, "matcher", inputs, [helper.make_tensor_value_info("h", f, ["c", "t", d])],
                              g.inits)
    return finish(graph, "plano training/export_matcher.py", opset)


def main(argv=None) -> int:
    def export():
        from gateway.routing.encoder import SentenceEncoder
        from gateway.routing.matcher import Matcher

        m = Matcher(SentenceEncoder())
        return build(m), {"layers": m.encoder.weights, "matcher": m.weights}, \
            f"layers {m.encoder.weights}, matcher {m.weights}"

    return cli(argv, __doc__, OUT, export)


if __name__ == "__main__":
    raise SystemExit(main())
