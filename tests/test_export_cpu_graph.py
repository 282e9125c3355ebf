"""ONNX Runtime on CPU runs ``SkipLayerNormalization`` as ``Add`` + ``LayerNormalization`` (its
fused CPU kernel is the slower one): the in-memory rewrite keeps the numbers, leaves the file
alone, keeps nodes whose extra outputs are read, and ONNX Runtime's own optimizers (every level, as
fmhub's CPU sessions run) do not fuse it back."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from fmhub.export import (  # noqa: E402
    OrtRunner,
    _split_skip_layer_norms,
    cpu_graph,
    session_options,
)

H = 16


def _graph_file(tmp_path, *, bias=True, read_mean=False, read_sum=True, opset=17):
    """x, s -> SkipLayerNormalization (+ bias) -> y; the skip sum (output 3) feeds a second output
    ``total`` through a Relu, as a residual stream would; ``read_mean`` reads output 1 too."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.random(H, dtype=np.float32) + 0.5, "gamma"),
        numpy_helper.from_array(rng.standard_normal(H).astype(np.float32), "beta"),
    ]
    ins = ["x", "s", "gamma", "beta"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(H).astype(np.float32), "bias"))
        ins.append("bias")
    outs = ["y", "mean" if read_mean else "", "", "sum" if read_sum else ""]
    nodes = [
        helper.make_node(
            "SkipLayerNormalization", ins, outs, name="sln", domain="com.microsoft", epsilon=1e-5
        )
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if read_sum:
        nodes.append(helper.make_node("Relu", ["sum"], ["total"]))
        outputs.append(helper.make_tensor_value_info("total", TensorProto.FLOAT, None))
    if read_mean:
        nodes.append(helper.make_node("Identity", ["mean"], ["m"]))
        outputs.append(helper.make_tensor_value_info("m", TensorProto.FLOAT, None))
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["b", "t", H]) for n in "xs"]
    model = helper.make_model(
        helper.make_graph(nodes, "g", inputs, outputs, inits),
        opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)],
    )
    file = tmp_path / "model.onnx"
    onnx.save(model, str(file))
    return file


def _feed():
    rng = np.random.default_rng(1)
    return {n: rng.standard_normal((3, 5, H)).astype(np.float32) for n in "xs"}


def _run(model, disabled=()):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(
        model, options, providers=["CPUExecutionProvider"], disabled_optimizers=list(disabled)
    )
    return sess.run(None, _feed())


@pytest.mark.parametrize("bias", [True, False])
def test_rewrite_gives_the_fused_nodes_numbers_and_keeps_the_skip_sum(tmp_path, bias):
    file = _graph_file(tmp_path, bias=bias)
    before = file.read_bytes()
    fused = _run(str(file))
    graph = cpu_graph(file)
    assert isinstance(graph, bytes) and file.read_bytes() == before  # rewritten in memory only
    ops = [n.op_type for n in onnx.load_from_string(graph).graph.node]
    assert "SkipLayerNormalization" not in ops and ops.count("LayerNormalization") == 1
    assert ops.count("Add") == (2 if bias else 1)
    got = _run(graph)
    for a, b in zip(got, fused, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # the reference, by hand: the skip sum and its layer norm
    feed, proto = _feed(), onnx.load(str(file))
    w = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    total = feed["x"] + feed["s"] + (w["bias"] if bias else 0)
    mu, var = total.mean(-1, keepdims=True), total.var(-1, keepdims=True)
    np.testing.assert_allclose(
        got[0], (total - mu) / np.sqrt(var + 1e-5) * w["gamma"] + w["beta"], atol=1e-5
    )
    np.testing.assert_allclose(got[1], np.maximum(total, 0), atol=1e-6)


def test_a_node_whose_mean_is_read_stays_fused_and_old_opsets_are_left_alone(tmp_path):
    proto = onnx.load(str(_graph_file(tmp_path, read_mean=True)))
    assert _split_skip_layer_norms(proto.graph) == 0
    assert [n.op_type for n in proto.graph.node][0] == "SkipLayerNormalization"
    (tmp_path / "old").mkdir()
    old = _graph_file(tmp_path / "old", opset=16)  # LayerNormalization is opset 17
    assert cpu_graph(old) == str(old)


def test_cpu_runner_runs_the_rewrite_and_onnxruntime_keeps_it_apart(tmp_path):
    file = _graph_file(tmp_path)
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    runner = OrtRunner(file, ["x", "s"], device=torch.device("cpu"))
    feed = {k: torch.from_numpy(v) for k, v in _feed().items()}
    y, total = runner(feed)
    expected = _run(str(file))
    np.testing.assert_allclose(y.numpy(), expected[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(total.numpy(), expected[1], rtol=1e-5, atol=1e-5)
    assert hashlib.sha256(file.read_bytes()).hexdigest() == digest
    # what the session really runs after every ORT optimization, with fmhub's session options,
    # on a post-LN residual block (the sum feeds only the norm) and on the block with its sum read
    for name, read_sum in (("block", False), ("stream", True)):
        (tmp_path / name).mkdir()
        options = session_options()
        options.optimized_model_filepath = str(tmp_path / name / "optimized.onnx")
        graph = cpu_graph(_graph_file(tmp_path / name, read_sum=read_sum))
        ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        ops = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
        assert "SkipLayerNormalization" not in ops and "LayerNormalization" in ops
