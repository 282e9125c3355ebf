"""How a folder written by ``model.save`` loads back (docs/hooks.md, "Loading a saved folder"):
the spec points at the folder (``spec.path``), the load options the model was loaded with are
replayed from the manifest (not device, dtype or quantize), options given to ``fmhub.load`` win
over replayed ones, and no option makes the loader read other weights than the saved ones."""

from __future__ import annotations

import json

import numpy as np
import torch

import fmhub

X = [[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 2.0]]


def perturbed_model(**options):
    model = fmhub.load("toy:embed", **options)
    with torch.no_grad():
        model.module.fc1.weight.add_(0.5)
    return model


def test_the_manifest_replays_load_options_and_the_folder_is_the_spec_path(toy_hub, tmp_path):
    model = perturbed_model(seed=3, device="cpu", dtype="float32")
    folder = model.save(tmp_path / "saved")
    manifest = json.loads((folder / "fmhub.json").read_text())
    assert manifest["options"] == {"seed": 3}, "device, dtype and quantize are not replayed"
    spec = fmhub.model_info(str(folder))
    assert spec.path == str(folder) and spec.id == "toy:embed" and spec.plugin == "toy"
    assert spec.options == {"seed": 3} and spec.task == "embedding"
    again = fmhub.load(str(folder))
    assert again.options.seed == 3 and again.spec.path == str(folder)
    assert torch.equal(again.module.fc1.weight, model.module.fc1.weight)
    np.testing.assert_allclose(again.predict(X), model.predict(X), rtol=1e-6)


def test_options_given_at_load_win_but_never_replace_the_saved_weights(toy_hub, tmp_path):
    model = perturbed_model(seed=3)
    folder = model.save(tmp_path / "saved")
    other = fmhub.load(str(folder), seed=5, dtype="bfloat16")
    assert other.options.seed == 5 and other.dtype == torch.bfloat16
    assert torch.equal(other.module.fc1.weight, model.module.fc1.weight.to(torch.bfloat16))
    fresh = fmhub.load("toy:embed", seed=3)
    assert not torch.equal(fresh.module.fc1.weight, model.module.fc1.weight)
