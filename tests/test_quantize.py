"""int8 inference: both modes run, guard rails hold. (Accuracy on a real model: plugin tests and
bench/finetune.py.)"""

import numpy as np
import pytest

import fmhub

X = [[0.3, -1.0, 2.0, 0.5], [1.0, 1.0, -1.0, 0.0]]


@pytest.mark.parametrize("mode", ["int8", "int8-fast"])
def test_quantized_model_predicts_close_to_float(mode):
    ref = fmhub.load("toy:embed").predict(X)
    model = fmhub.load("toy:embed", quantize=mode)
    assert model.quantized == mode
    got = model.predict(X)
    for a, b in zip(got, ref):
        assert a.shape == b.shape and a.dtype == np.float32
        cos = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
        assert cos > 0.95  # a 16-wide toy layer; real-model figures are in docs/quantization.md
    assert not np.array_equal(got[0], ref[0]), "quantization must actually change the arithmetic"


def test_quantized_model_refuses_moves_saves_and_unknown_modes(tmp_path):
    model = fmhub.load("toy:embed")
    with pytest.raises(fmhub.InvalidOptionError, match="int8-fast"):
        model.quantize("int4")
    with pytest.raises(fmhub.InvalidOptionError, match="quantize"):
        fmhub.load("toy:embed", quantize="int4")
    model.quantize("int8")
    with pytest.raises(fmhub.DeviceError, match="quantized"):
        model.to(dtype="bfloat16")
    with pytest.raises(fmhub.InputError, match="quantize='int8'"):
        model.save(tmp_path / "q")
    with pytest.raises(fmhub.InvalidOptionError, match="already quantized"):
        model.quantize("int8")


def test_quantize_folds_a_fine_tuned_adapter_in_first():
    model = fmhub.load("toy:embed")
    data = [([i / 10, -i / 10, 0, 1], "a" if i % 2 else "b") for i in range(20)]
    fmhub.finetune(model, data, method="lora", max_steps=3, progress=False)
    before = model.predict(X)
    model.quantize("int8")
    assert model.adapter is None
    after = model.predict(X)
    assert max(abs(a.score - b.score) for a, b in zip(after, before)) < 0.05
