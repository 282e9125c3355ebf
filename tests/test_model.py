"""The Model object: one type for every family, its stages, batching, options and persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fmhub
from fmhub import hookimpl
from fmhub.results import Classification

POINTS = [
    [0.1, 0.2, 0.3, 0.4],
    [1.0, -1.0, 0.5, 2.0],
    [0.0, 0.0, 0.0, 0.0],
    [3.0, 1.0, -2.0, 0.5],
    [-0.5, 0.5, -0.5, 0.5],
]


def native(model, points):
    """What the torch module computes by itself on the same inputs."""
    with torch.no_grad():
        return model.module(torch.tensor(points, dtype=torch.float32)).numpy()


class BatchSpy:
    """A cross-cutting wrapper recording the size of every batch preprocess gets."""

    def __init__(self):
        self.sizes: list[int] = []

    @hookimpl(wrapper=True)
    def fmhub_preprocess(self, model, inputs):
        self.sizes.append(len(inputs))
        return (yield)


def test_one_model_type_for_every_family(toy_hub, family):
    toy_hub.register(family(ns="fam"), name="fam")
    toy, fam = fmhub.load("toy:embed"), fmhub.load("fam:lin")
    assert type(toy) is type(fam) is fmhub.Model
    assert isinstance(toy.module, torch.nn.Module) and isinstance(fam.module, torch.nn.Module)
    assert repr(toy) == "<fmhub.Model toy:embed task=embedding device=cpu dtype=float32>"
    assert toy.spec == fmhub.model_info("toy-embed") and fam.spec == fmhub.model_info("fam:lin")
    assert (toy.task, fam.task, toy.labels) == ("embedding", "embedding", None)
    assert fam.info == {"family": "fam"}  # what the plugin's Loaded carried


def test_call_and_predict_equal_the_native_module(toy_hub):
    model = fmhub.load("toy:embed")
    expected = native(model, POINTS)
    one = model(POINTS[1])
    assert isinstance(one, np.ndarray) and one.dtype == np.float32 and one.shape == (8,)
    np.testing.assert_allclose(one, expected[1], rtol=1e-6, atol=1e-7)
    many = model.predict(POINTS, batch_size=2)
    np.testing.assert_allclose(np.stack(many), expected, rtol=1e-6, atol=1e-7)
    assert model.predict(iter(POINTS[:2]), batch_size=2)[1].shape == (8,)  # any iterable
    assert model.predict([]) == []


def test_classification_result_shape(toy_hub):
    model = fmhub.load("toy-classifier")
    result = model(POINTS[3])
    probs = torch.softmax(torch.tensor(native(model, [POINTS[3]])[0]), -1)
    assert isinstance(result, Classification) and model.labels == ("low", "mid", "high")
    assert result.label == model.labels[int(probs.argmax())]
    assert result.score == pytest.approx(float(probs.max()), abs=1e-6)
    assert [t.label for t in result.top_k] == [
        model.labels[i] for i in probs.argsort(descending=True)
    ]


def test_predict_batches_by_batch_size(toy_hub):
    spy = BatchSpy()
    toy_hub.register(spy, name="spy")
    model = fmhub.load("toy:embed")
    model.predict(POINTS, batch_size=2)
    assert spy.sizes == [2, 2, 1]
    spy.sizes.clear()
    model.predict(POINTS)
    assert spy.sizes == [5]  # default batch size 32
    spy.sizes.clear()
    model(POINTS[0])
    assert spy.sizes == [1]


def test_predict_uses_the_plugin_batch_order_and_returns_input_order(bare_hub, family):
    fam = family(ns="fam", order="by-sum")
    bare_hub.register(fam, name="fam")
    model = bare_hub.load("fam:lin")
    results = model.predict(POINTS, batch_size=2)
    batches = [detail for hook, _, detail in fam.calls if hook == "preprocess"]
    by_sum = sorted(POINTS, key=sum)
    assert batches == [by_sum[0:2], by_sum[2:4], by_sum[4:]]  # formed in the plugin's order
    np.testing.assert_allclose(np.stack(results), native(model, POINTS), rtol=1e-6)  # input order
    # one by one equals batched up to BLAS rounding (a batch of 1 may take another kernel)
    one_by_one = np.stack([model(p) for p in POINTS])
    np.testing.assert_allclose(one_by_one, np.stack(results), rtol=1e-5, atol=1e-6)


def test_batch_order_that_is_not_a_permutation_is_a_plugin_error(bare_hub, family):
    class Bad(family):
        @hookimpl
        def fmhub_batch_order(self, model, inputs):
            return [0, 0]

    bare_hub.register(Bad(ns="bad"), name="bad")
    with pytest.raises(fmhub.PluginError, match="'bad' returned a batch order"):
        bare_hub.load("bad:lin").predict(POINTS[:2])


def test_wrong_number_of_results_is_a_plugin_error(bare_hub, family):
    class Short(family):
        @hookimpl
        def fmhub_postprocess(self, model, outputs, batch):
            return [outputs[0].numpy()]

    bare_hub.register(Short(ns="short"), name="short")
    with pytest.raises(fmhub.PluginError, match="returned 1 results for 2 inputs"):
        bare_hub.load("short:lin").predict(POINTS[:2])


def test_progress_bar(toy_hub, capsys):
    model = fmhub.load("toy:embed")
    model.predict(POINTS, batch_size=1, progress=True)
    err = capsys.readouterr().err
    assert "0/5 [" in err and "input/s" in err  # a bar over the 5 inputs (cleared when done)
    model.predict(POINTS, batch_size=1, progress=False)
    model.predict(POINTS, batch_size=1)  # auto: only on a terminal, after a delay
    assert capsys.readouterr().err == ""


def test_stages_by_hand_give_what_predict_gives(toy_hub):
    model = fmhub.load("toy-classifier")
    batch = model.preprocess(POINTS[:3])
    assert set(batch) == {"x"} and batch["x"].shape == (3, 4)
    outputs = model.forward(batch)
    assert outputs.shape == (3, 3) and torch.is_inference(outputs) and not outputs.requires_grad
    results = model.postprocess(outputs, batch)
    assert results == model.predict(POINTS[:3])
    trained = model.forward(batch, grad=True)
    assert trained.requires_grad and not torch.is_inference(trained)


@pytest.mark.parametrize("bad", ["0.1,0.2", "text", [1.0, 2.0], None])
def test_bad_input_is_an_input_error_naming_plugin_and_stage(toy_hub, bad):
    model = fmhub.load("toy:embed")
    with pytest.raises(fmhub.InputError) as err:
        model(bad)
    assert err.value.plugin == "toy" and err.value.stage == "preprocess"
    assert str(err.value).startswith("Input 0: ") and err.value.index == 0
    assert "(raised in plugin 'toy', stage 'preprocess', model 'toy:embed')" in err.value.__notes__


def test_text_inputs_are_parsed_by_the_toy(toy_hub):
    model = fmhub.load("toy:embed")
    np.testing.assert_array_equal(model("0.1,0.2,0.3,0.4"), model(POINTS[0]))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m: m.predict("abcd"), "predict takes a list"),
        (lambda m: m.predict(POINTS, batch_size=0), "batch_size must be a positive integer"),
        (lambda m: m.preprocess(POINTS[0][0]), "sequence of inputs"),
        (lambda m: m.preprocess([]), "empty sequence"),
    ],
)
def test_misuse_of_the_model_api_is_an_input_error(toy_hub, call, match):
    with pytest.raises(fmhub.InputError, match=match):
        call(fmhub.load("toy:embed"))


def test_errors_inside_a_plugin_name_plugin_and_stage(bare_hub, family):
    for stage in ("load", "forward", "postprocess"):
        plugin = family(ns=f"f{stage}", fail=stage)
        bare_hub.register(plugin, name=f"plugin-{stage}")
        with pytest.raises(fmhub.PluginError) as err:
            bare_hub.load(f"f{stage}:lin")(POINTS[0])
        assert str(err.value) == (
            f"plugin 'plugin-{stage}', stage '{stage}', model 'f{stage}:lin' failed: "
            "RuntimeError: boom"
        )
        assert (err.value.plugin, err.value.stage) == (f"plugin-{stage}", stage)
        assert isinstance(err.value.__cause__, RuntimeError)  # the original stays attached


def test_error_in_a_broadcast_hook_names_the_plugin(toy_hub, family, tmp_path):
    toy_hub.register(family(ns="fam", fail="claim_path"), name="claimer")
    with pytest.raises(fmhub.PluginError, match="plugin 'claimer', stage 'claim_path'"):
        fmhub.model_info(str(tmp_path))


def test_load_options_are_validated_naming_the_bad_option_and_choices(toy_hub):
    with pytest.raises(fmhub.InvalidOptionError) as err:
        fmhub.load("toy:embed", sede=1)
    msg = str(err.value)
    assert "unknown option 'sede'" in msg and "Did you mean 'seed'" in msg
    assert "Valid options: device, dtype, quantize, runtime, seed, task" in msg
    with pytest.raises(fmhub.InvalidOptionError, match=r"'dtype'.*'auto', 'float32', 'bfloat16'"):
        fmhub.load("toy:embed", dtype="float64")
    with pytest.raises(ValueError, match=r"'seed'.*got 'abc'"):  # still a ValueError
        fmhub.load("toy:embed", seed="abc")
    with pytest.raises(fmhub.InvalidOptionError, match="'quantize'"):
        fmhub.load("toy:embed", quantize="int4")


def test_plugin_options_reach_the_plugin(toy_hub):
    a, b = fmhub.load("toy:embed", seed=0), fmhub.load("toy:embed", seed=1)
    assert b.options.seed == 1 and type(b.options).__name__ == "ToyOptions"
    assert not np.allclose(a(POINTS[1]), b(POINTS[1]))


def test_options_are_validated_before_the_plugin_runs(bare_hub, family):
    fam = family(ns="fam")
    bare_hub.register(fam, name="fam")
    with pytest.raises(fmhub.InvalidOptionError, match="unknown option 'seed'"):
        bare_hub.load("fam:lin", seed=1)
    with pytest.raises(fmhub.DeviceError):
        bare_hub.load("fam:lin", dtype="float16", device="cpu")
    assert fam.calls == []


def test_task_option_overrides_the_detected_task(toy_hub):
    assert fmhub.load("toy:embed", task="features").task == "features"


def test_to_moves_dtype_and_returns_the_model(toy_hub):
    model = fmhub.load("toy:embed")
    reference = model(POINTS[1])
    assert model.to(dtype="bfloat16") is model
    assert model.dtype == torch.bfloat16 and next(model.module.parameters()).dtype == torch.bfloat16
    out = model.forward(model.preprocess([POINTS[1]]))  # float32 inputs follow the model's dtype
    assert out.dtype == torch.bfloat16
    np.testing.assert_allclose(model(POINTS[1]), reference, atol=0.1)
    model.to(device="cpu", dtype=torch.float32)
    assert (model.device, model.dtype) == (torch.device("cpu"), torch.float32)
    assert model(POINTS[1]).dtype == np.float32
    np.testing.assert_allclose(model(POINTS[1]), reference, atol=0.1)  # bf16-rounded weights
    with pytest.raises(fmhub.DeviceError, match="float16"):
        model.to(dtype="float16")
    assert model.dtype == torch.float32


def test_save_writes_manifest_and_family_files_atomically(toy_hub, tmp_path):
    model = fmhub.load("toy-classifier", seed=2)
    folder = model.save(tmp_path / "out")
    assert sorted(p.name for p in folder.iterdir()) == ["fmhub.json", "toy.json", "toy.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left
    from fmhub.manifest import read_manifest

    manifest = read_manifest(folder)
    assert (manifest.spec["id"], manifest.task, manifest.plugin) == (
        "toy:classify",
        "classification",
        "toy",
    )
    with pytest.raises(fmhub.DestinationError, match="overwrite=True"):
        model.save(tmp_path / "out")
    model.save(tmp_path / "out", overwrite=True)  # replacing a save works and leaves no debris
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert fmhub.load(folder).predict(POINTS) == model.predict(POINTS)


def test_save_that_the_plugin_cannot_do_is_an_error_and_leaves_nothing(bare_hub, family, tmp_path):
    bare_hub.register(family(ns="fam"), name="fam")
    with pytest.raises(fmhub.ManifestError, match="cannot save"):
        bare_hub.load("fam:lin").save(tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


def test_device_option_is_validated_and_takes_torch_objects(toy_hub):
    with pytest.raises(
        fmhub.InvalidOptionError,
        match=r"'device'.*'auto', 'cpu', 'cuda', 'cuda:N' and 'mps' \(got 'gpu'\)",
    ):
        fmhub.load("toy:embed", device="gpu")
    model = fmhub.load("toy:embed", device=torch.device("cpu"), dtype=torch.bfloat16)
    assert (model.device.type, model.dtype) == ("cpu", torch.bfloat16)
    assert model.options.device == "cpu" and model.options.dtype == "bfloat16"
