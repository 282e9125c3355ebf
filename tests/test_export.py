"""ONNX export through the contract: the three families, an HF encoder with LoRA merged, the toy
plugin; the exported folder loads back on ONNX Runtime and predicts what the torch model does;
parity is checked at export time and a bad graph is refused."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import fmhub
from fmhub.cli import main

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FMHUB_CACHE", str(tmp_path / "fmhub-cache"))


@pytest.fixture(scope="module", autouse=True)
def _one_torchlib_registry():
    """The module's ~14 exports share torch's table of ONNX translations, which torch otherwise
    rebuilds for each (~0.5 s of CPU apiece); each export still runs everything else."""
    from fmhub.testing.exporting import shared_torchlib_registry

    with shared_torchlib_registry():
        yield


def _close(a, b, tol=1e-4):
    np.testing.assert_allclose(
        np.asarray(a, np.float32), np.asarray(b, np.float32), rtol=tol, atol=tol
    )


def _same_classes(got, expected):
    assert [r.label for r in got] == [r.label for r in expected]
    _close([r.score for r in got], [r.score for r in expected])


def _manifest(folder):
    return json.loads((folder / "fmhub.json").read_text())


# -- toy -----------------------------------------------------------------------------------------


def test_toy_export_cli_loads_back_on_onnxruntime(toy_hub, tmp_path, capsys):
    out = tmp_path / "toy-onnx"
    assert main(["export", "toy:classify", "--format", "onnx", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (
        "parity on inputs {'x': [3, 4]}: max abs diff" in printed and "same top-1 True" in printed
    )
    assert (out / "model.onnx").is_file()
    m = _manifest(out)
    assert m["options"]["runtime"] == "onnxruntime"
    parity = m["info"]["export"]["parity"]
    assert parity["ok"] and parity["same_top1"] and parity["max_abs_diff"] <= 1e-3
    assert m["info"]["export"]["dynamic_axes"] == {"x": {"0": "batch"}}
    torch_model = fmhub.load("toy:classify")
    onnx_model = fmhub.load(out)
    assert onnx_model.runtime is not None and torch_model.runtime is None
    xs = [[0.5, -0.5, 1, 2], [3, 3, 3, 3], [0, 0, 0, 0], [1, 2, 3, 4], [-1, -2, 0.1, 9]]
    _same_classes(onnx_model.predict(xs), torch_model.predict(xs))
    # the same folder on torch, when asked
    assert fmhub.load(out, runtime="torch").runtime is None


def test_runtime_option_exports_to_the_cache_once(toy_hub, tmp_path):
    torch_model = fmhub.load("toy:embed")
    ort_model = fmhub.load("toy:embed", runtime="onnxruntime")
    xs = [[0.1, 0.2, 0.3, 0.4], [5, -1, 2, 0]]
    _close(np.stack(ort_model.predict(xs)), np.stack(torch_model.predict(xs)))
    files = list((tmp_path / "fmhub-cache" / "onnx").glob("*/model.onnx"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    again = fmhub.load("toy:embed", runtime="onnxruntime")
    assert again.runtime.file == str(files[0]) and files[0].stat().st_mtime_ns == stamp
    other_seed = fmhub.load("toy:embed", runtime="onnxruntime", seed=3)  # another model
    assert other_seed.runtime.file != str(files[0])
    with pytest.raises(fmhub.InvalidOptionError, match="runtime"):
        fmhub.load("toy:embed", runtime="tensorrt")


def test_parity_outside_tolerance_fails_and_writes_nothing(toy_hub, tmp_path):
    import torch

    class Skew:
        """A cross-cutting plugin that makes the exported graph differ from the forward stage."""

        @fmhub.hookimpl(wrapper=True)
        def fmhub_export_spec(self, model):
            spec = yield

            class Off(torch.nn.Module):
                def __init__(self, inner):
                    super().__init__()
                    self.inner = inner

                def forward(self, x):
                    return self.inner(x) + 0.01

            spec.module = Off(spec.module)
            return spec

    toy_hub.register(Skew(), name="skew")
    with pytest.raises(fmhub.ExportError, match=r"outside the tolerance .*logit diff.* <= 0.001"):
        fmhub.load("toy:classify").export(tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bad")]


def test_embedding_tolerance_is_cosine(toy_hub, tmp_path):
    import torch

    class Rotate:
        @fmhub.hookimpl(wrapper=True)
        def fmhub_export_spec(self, model):
            spec = yield

            class Off(torch.nn.Module):
                def __init__(self, inner):
                    super().__init__()
                    self.inner = inner

                def forward(self, x):
                    y = self.inner(x)
                    return y + 0.3 * y.flip(-1)

            spec.module = Off(spec.module)
            return spec

    toy_hub.register(Rotate(), name="rotate")
    with pytest.raises(
        fmhub.ExportError, match=r"min cosine 0\.\d+: outside the tolerance \(cosine >= 0.9999\)"
    ):
        fmhub.load("toy:embed").export(tmp_path / "bad")


def test_a_plugin_without_the_hook_or_a_bad_format_is_a_clear_error(
    family, use_hub, tmp_path, toy_hub
):
    with pytest.raises(fmhub.InputError, match="Unknown export format 'tflite'"):
        fmhub.load("toy:embed").export(tmp_path / "x", format="tflite")
    hub = use_hub(fmhub.Hub(entry_points=False))
    hub.register(family(), name="fam")
    with pytest.raises(fmhub.ExportError, match="implements no fmhub_export_spec"):
        fmhub.load("fam:lin").export(tmp_path / "y")


def test_toy_lora_adapter_is_merged_before_export(toy_hub, tmp_path):
    import random

    rng = random.Random(0)
    train = [([rng.uniform(-1, 1) for _ in range(4)], "pos" if i % 2 else "neg") for i in range(64)]
    model = fmhub.load("toy:embed")
    fmhub.finetune(
        model, train, method="lora", max_steps=4, learning_rate=5e-2, batch_size=16, progress=False
    )
    assert model.adapter is not None
    out = model.export(tmp_path / "merged")
    assert model.adapter is not None  # the caller's model keeps its adapter
    onnx_model = fmhub.load(out)
    xs = [x for x, _ in train[:10]]
    _same_classes(onnx_model.predict(xs), model.predict(xs))
    model.save(tmp_path / "adapter")
    from_adapter = fmhub.load(tmp_path / "adapter", runtime="onnxruntime")
    assert from_adapter.runtime is not None and from_adapter.adapter is None
    _same_classes(from_adapter.predict(xs), model.predict(xs))
    # int8 on ONNX Runtime from the adapter folder: merged, exported, then quantized by ORT
    q = fmhub.load(tmp_path / "adapter", runtime="onnxruntime", quantize="int8")
    assert q.quantized == "int8" and q.adapter is None and "int8" in q.runtime.file
    assert [r.label for r in q.predict(xs)] == [r.label for r in model.predict(xs)]


# -- the three families --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def family_hub():
    previous = fmhub.set_hub(fmhub.Hub())
    yield
    fmhub.set_hub(previous)


@pytest.fixture(scope="module")
def bert(family_hub, tmp_path_factory):
    """A tiny BERT embedder and its fused ONNX export, shared by the BERT tests below (the export
    is their slow part; each test checks another side of the same folder). Exported the way
    ``runtime="onnxruntime"`` does it on a model id: into fmhub's cache (``cached_export``, which
    calls ``export``), a cache of this module's own. One encoder layer: the exporter's cost grows
    with the depth, and one layer has every node these tests look at (attention fused or not, its
    projections quantized, the first-half down-projection kept in float)."""
    tt = pytest.importorskip("fmhub_transformers.testing")
    root = tmp_path_factory.mktemp("bert")
    folder = tt.build_tiny_model(
        root / "bert", arch="bert", task="embedding", sizes={"num_hidden_layers": 1}
    )
    model = fmhub.load(folder, device="cpu")
    cache = root / "fmhub-cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FMHUB_CACHE", str(cache))
        ort_model = fmhub.load(folder, device="cpu", runtime="onnxruntime")
    out = Path(ort_model.runtime.file).parent
    assert out.parent == cache / "onnx"
    return SimpleNamespace(
        tt=tt, folder=folder, model=model, ort_model=ort_model, out=out, cache=cache
    )


def test_transformers_embedding_exports_with_pooling(bert):
    model, out = bert.model, bert.out
    parity = _manifest(out)["info"]["export"]["parity"]
    assert parity["min_cosine"] >= 0.9999 and parity["inputs"]["input_ids"][0] == 3
    onnx_model = fmhub.load(out)
    texts = list(bert.tt.CORPUS[:7])  # other batch sizes and lengths than export or parity
    got, expected = np.stack(onnx_model.predict(texts)), np.stack(model.predict(texts))
    cos = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    assert cos.min() >= 0.9999
    _close(got, expected)
    assert onnx_model(texts[0]).shape == model(texts[0]).shape
    # the model loaded with runtime="onnxruntime" runs that same cached file
    assert bert.ort_model.runtime.file == str(out / "model.onnx")
    _close(np.stack(bert.ort_model.predict(texts)), expected)


@pytest.fixture(scope="module")
def lora_classifier(bert, tmp_path_factory):
    """The tiny BERT LoRA-fine-tuned into a classifier, and its export with ``fuse=False``: one
    export checked by two tests, the LoRA test (merged before export, same classes) and the fusion
    test (the exporter's unfused graph; the ``bert`` fixture's export is the fused one). Exporting
    the classifier fused as well, and the embedder unfused as well, ran the same code twice."""
    pytest.importorskip("peft")
    model = fmhub.load(bert.folder, device="cpu")  # a model of its own: fine-tuning changes it
    train = [(t, "long" if len(t) > 40 else "short") for t in bert.tt.CORPUS]
    fmhub.finetune(model, train, method="lora", max_steps=3, batch_size=8, progress=False)
    out = model.export(tmp_path_factory.mktemp("lora") / "onnx", fuse=False)
    return SimpleNamespace(model=model, out=out)


def test_transformers_classifier_with_lora_merged(bert, lora_classifier):
    model, out = lora_classifier.model, lora_classifier.out
    assert model.adapter is not None and model.task == "classification"  # kept by the export
    assert _manifest(out)["info"]["export"]["parity"]["same_top1"]
    onnx_model = fmhub.load(out)
    assert onnx_model.adapter is None and onnx_model.labels == model.labels
    texts = list(bert.tt.CORPUS[3:12])
    _same_classes(onnx_model.predict(texts), model.predict(texts))


@pytest.fixture(scope="module")
def timm_classifier(family_hub, tmp_path_factory):
    """A random-weight timm classifier and its export, shared by the float and int8 tests."""
    pytest.importorskip("fmhub_timm")
    model = fmhub.load("timm:test_resnet.r160_in1k", pretrained=False, device="cpu")
    return model, model.export(tmp_path_factory.mktemp("timm") / "onnx")


def test_timm_classifier_and_embedding(timm_classifier, tmp_path):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (64 + 10 * i, 80, 3), dtype=np.uint8) for i in range(5)]
    model, out = timm_classifier
    assert model.task == "classification"
    _same_classes(fmhub.load(out).predict(images), model.predict(images))
    emb = fmhub.load("timm:test_resnet.r160_in1k", pretrained=False, device="cpu", task="embedding")
    got = fmhub.load(emb.export(tmp_path / "embedding")).predict(images)
    _close(np.stack(got), np.stack(emb.predict(images)))


def _short_front_end(ta, **options):
    """``tiny_options`` with a one-layer convolutional front end of wav2vec2's geometry (a
    400-sample frame every 320 samples, which its seven layers give) and one encoder layer. The
    exporter reasons symbolically about every conv layer's output length over a dynamic time
    axis, which made the seven-layer export the slowest of all; the export code (layer-norm
    front end, lengths, encoder, heads) is the same for one conv layer and one block."""
    opts = ta.tiny_options(**options)
    opts["config"]["extractor_conv_layer_config"] = [[16, 400, 320]]
    opts["config"]["encoder_num_layers"] = 1
    return opts


def test_torchaudio_transcription_and_embedding(family_hub, tmp_path):
    ta = pytest.importorskip("fmhub_torchaudio.testing")
    waves = [
        (np.sin(np.arange(n) / (5 + n % 7)).astype(np.float32) * 0.3, 16000)
        for n in (4000, 9000, 6500, 12000)
    ]
    asr = fmhub.load(
        "torchaudio:models.wav2vec2_model", device="cpu", **_short_front_end(ta, asr=True)
    )
    assert (asr.processor.stride, asr.processor.field) == (320, 400)
    onnx_asr = fmhub.load(asr.export(tmp_path / "asr"))
    assert [r.text for r in onnx_asr.predict(waves)] == [r.text for r in asr.predict(waves)]
    emb = fmhub.load("torchaudio:models.wav2vec2_model", device="cpu", **_short_front_end(ta))
    out = emb.export(tmp_path / "emb")
    assert _manifest(out)["info"]["export"]["dynamic_axes"]["waveforms"] == {
        "0": "batch",
        "1": "time",
    }
    _close(np.stack(fmhub.load(out).predict(waves)), np.stack(emb.predict(waves)))


def test_torchaudio_group_norm_front_end_is_refused(family_hub, tmp_path):
    ta = pytest.importorskip("fmhub_torchaudio.testing")
    model = fmhub.load(
        "torchaudio:models.wav2vec2_model",
        device="cpu",
        **ta.tiny_options(extractor_mode="group_norm"),
    )
    with pytest.raises(fmhub.ExportError, match="group_norm front end"):
        model.export(tmp_path / "x")


def test_a_generative_model_is_refused(family_hub, tmp_path):
    tt = pytest.importorskip("fmhub_transformers.testing")
    lm = fmhub.load(tt.build_tiny_generative(tmp_path / "gpt2", "gpt2"), device="cpu")
    with pytest.raises(fmhub.ExportError, match="not generation loops"):
        lm.export(tmp_path / "x")


# -- fusion and ONNX Runtime int8 ----------------------------------------------------------------


def _cos(a, b):
    a, b = np.stack(a).reshape(len(a), -1), np.stack(b).reshape(len(b), -1)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_bert_export_fuses_attention_for_onnxruntime(bert, lora_classifier):
    import collections

    import onnx

    tt, model, fused = bert.tt, bert.model, bert.out
    plain = lora_classifier.out  # the same tiny BERT, LoRA-tuned to a classifier, fuse=False
    ops = {
        name: collections.Counter(n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node)
        for name, out in (("f", fused), ("p", plain))
    }
    report = _manifest(fused)["info"]["export"]["parity"]
    assert report["fusions"].get("attention", 0) >= 1 and ops["f"]["Attention"] >= 1
    assert ops["p"]["Attention"] == 0 and ops["p"]["Softmax"] >= 1
    assert _manifest(plain)["info"]["export"]["parity"]["fusions"] == {}
    texts = list(tt.CORPUS[:9])
    # the fused graph computes what the torch model does (the unfused one: the LoRA test)
    assert _cos(fmhub.load(fused).predict(texts), model.predict(texts)).min() >= 0.9999


def test_onnxruntime_int8_keeps_embeddings_and_leaves_sources_alone(bert, tmp_path, monkeypatch):
    tt, folder, model, out = bert.tt, bert.folder, bert.model, bert.out
    before = (out / "model.onnx").read_bytes()
    q = fmhub.load(out, quantize="int8")
    assert q.quantized == "int8" and q.info["quantized"] == "int8 (onnxruntime)"
    assert q.runtime.file.startswith(str(tmp_path / "fmhub-cache" / "onnx" / "int8"))
    assert (out / "model.onnx").read_bytes() == before  # the sealed export is not modified
    fmhub.load(out)  # and still verifies
    texts = list(tt.CORPUS[:12])
    cos = _cos(q.predict(texts), model.predict(texts))
    assert cos.min() >= 0.99
    assert cos.min() < 1.0 - 1e-7  # really quantized: not the float graph
    # the same through runtime= on a model id: the export in the cache (made by the `bert`
    # fixture through that same runtime= path), then quantized once
    monkeypatch.setenv("FMHUB_CACHE", str(bert.cache))
    q2 = fmhub.load(folder, device="cpu", runtime="onnxruntime", quantize="int8")
    assert q2.runtime.file.startswith(str(bert.cache / "onnx" / "int8"))
    # quantize is not part of the export's cache key: the float export is reused, not redone
    assert sorted(p.name for p in (bert.cache / "onnx").iterdir()) == sorted(["int8", out.name])
    assert _cos(q2.predict(texts), model.predict(texts)).min() >= 0.99
    with pytest.raises(fmhub.FmhubError, match="cannot be saved|not saved"):
        q2.save(tmp_path / "saved")


def test_int8_keeps_the_first_half_of_the_down_projections_and_the_head_in_float():
    from onnx import TensorProto, helper

    from fmhub.export import _keep_float

    nodes = []
    x = "x"
    for i in range(3):  # three blocks: up -> GELU -> down
        nodes += [
            helper.make_node("MatMul", [x, f"w{i}u"], [f"h{i}"], name=f"up{i}"),
            helper.make_node("Gelu", [f"h{i}"], [f"g{i}"], name=f"act{i}", domain="com.microsoft"),
            helper.make_node("MatMul", [f"g{i}", f"w{i}d"], [f"y{i}"], name=f"down{i}"),
        ]
        x = f"y{i}"
    nodes += [
        helper.make_node("MatMul", [x, "w3"], ["z"], name="inner"),
        helper.make_node("Relu", ["z"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w4"], ["hh"], name="head"),
        helper.make_node("Add", ["hh", "b"], ["logits"], name="bias"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])],
    )
    # blocks 0 and 1 of 3 (the first half, rounded up): down-projections stay float; the head too
    assert _keep_float(graph) == ["down0", "down1", "head"]


def _attention_graph(seq_bias: bool = True):
    """One fused ``Attention`` node as onnxscript's ``optimize_for_ort`` writes it: the packed
    query/key/value weight a ``Concat`` of three initializers, the padding mask an additive
    attention bias."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    d, heads = 8, 2
    inits = [
        numpy_helper.from_array(rng.standard_normal((d, d)).astype(np.float32), n)
        for n in ("wq", "wk", "wv")
    ] + [numpy_helper.from_array(rng.standard_normal(3 * d).astype(np.float32), "b")]
    nodes = [
        helper.make_node("Concat", ["wq", "wk", "wv"], ["w"], name="pack", axis=1),
        helper.make_node(
            "Attention",
            ["x", "w", "b", "", "", "mask_bias" if seq_bias else ""],
            ["y"],
            name="attn",
            domain="com.microsoft",
            num_heads=heads,
            qkv_hidden_sizes=[d, d, d],
        ),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "S", d])]
    if seq_bias:
        inputs.append(
            helper.make_tensor_value_info("mask_bias", TensorProto.FLOAT, ["B", 1, "S", "S"])
        )
    graph = helper.make_graph(
        nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("com.microsoft", 1)]
    )


def _run(model, feed):
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)[0]


def test_constant_concat_fold_and_attention_unfusing_compute_the_same():
    pytest.importorskip("onnxruntime")
    import copy

    from fmhub.export import _fold_constant_concats, _unfuse_attention

    model = _attention_graph()
    rng = np.random.default_rng(1)
    mask = np.zeros((2, 1, 5, 5), np.float32)
    mask[1, :, :, 3:] = -1e4  # the second sequence is padded after 3 tokens
    feed = {"x": rng.standard_normal((2, 5, 8)).astype(np.float32), "mask_bias": mask}
    expected = _run(model, feed)

    folded = copy.deepcopy(model)
    assert _fold_constant_concats(folded.graph) == 1
    ops = [n.op_type for n in folded.graph.node]
    assert ops == ["Attention"]  # the packed weight is an initializer now, the parts are gone
    assert sorted(i.name for i in folded.graph.initializer) == ["b", "w"]
    np.testing.assert_allclose(_run(folded, feed), expected, rtol=1e-5, atol=1e-5)

    assert _unfuse_attention(folded.graph) == 1
    assert [n.op_type for n in folded.graph.node] == ["MatMul", "Split", "MultiHeadAttention"]
    np.testing.assert_allclose(_run(folded, feed), expected, rtol=1e-5, atol=1e-5)

    untouched = _attention_graph()  # weight not an initializer (Concat unfolded): left as is
    assert _unfuse_attention(untouched.graph) == 0
    assert [n.op_type for n in untouched.graph.node] == ["Concat", "Attention"]


def test_int8_weights_use_the_reduced_range_without_vnni(tmp_path, monkeypatch):
    import onnx
    from onnx import TensorProto, helper, numpy_helper, save

    import fmhub.export as ex

    assert ex._cpu_has_vnni("flags : fpu avx2 avx512f avx512_vnni amx_tile")
    assert ex._cpu_has_vnni("flags : fpu avx2 avx_vnni")
    assert not ex._cpu_has_vnni("flags : fpu sse4_2 avx2 fma")
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 16])],
        [numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32), "w")],
    )
    src = tmp_path / "m.onnx"
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    ranges = {}
    for vnni in (True, False):
        monkeypatch.setattr(ex, "_cpu_has_vnni", lambda vnni=vnni: vnni)
        out = ex.quantized_onnx(src)
        weights = [
            numpy_helper.to_array(i)
            for i in onnx.load(str(out)).graph.initializer
            if i.data_type == TensorProto.INT8 and i.dims == [16, 16]
        ]
        assert len(weights) == 1
        ranges[vnni] = int(np.abs(weights[0].astype(np.int32)).max())
    assert ranges[True] == 127 and ranges[False] <= 64  # 8-bit range with VNNI, 7-bit without


def test_int8_quantizes_the_attention_projection(bert):
    import collections

    import onnx

    tt, model, out = bert.tt, bert.model, bert.out
    graph = onnx.load(str(out / "model.onnx")).graph
    fused = collections.Counter(n.op_type for n in graph.node)
    weights = {i.name for i in graph.initializer}
    attention = [n for n in graph.node if n.op_type == "Attention"]
    assert attention and all(n.input[1] in weights for n in attention)  # folded at export
    q = fmhub.load(out, quantize="int8")
    ops = collections.Counter(n.op_type for n in onnx.load(q.runtime.file).graph.node)
    assert ops["Attention"] == 0 and ops["MultiHeadAttention"] == fused["Attention"]
    # every projection but the kept down-projections (and no head here) runs on int8 kernels
    assert ops["MatMulInteger"] + ops["DynamicQuantizeMatMul"] >= 3 * fused["Attention"]
    texts = list(tt.CORPUS[:12])
    assert _cos(q.predict(texts), model.predict(texts)).min() >= 0.99


def test_bad_onnxruntime_quantize_combinations_are_clear_errors(toy_hub):
    with pytest.raises(fmhub.InvalidOptionError, match="int8-fast"):
        fmhub.load("toy:embed", runtime="onnxruntime", quantize="int8-fast")


def test_onnxruntime_int8_classifier_keeps_its_top1(timm_classifier):
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (64 + 6 * i, 72, 3), dtype=np.uint8) for i in range(6)]
    model, out = timm_classifier
    q = fmhub.load(out, quantize="int8")  # random weights: one model
    assert q.quantized == "int8"
    assert [r.label for r in q.predict(images)] == [r.label for r in model.predict(images)]
