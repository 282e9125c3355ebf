"""fmhub-timm under the reliability guarantees (docs/reliability.md): flipped bytes in a saved
folder are refused, and a config.json that no longer fits the weights is refused whole."""

from __future__ import annotations

import json

import pytest

import fmhub
from fmhub.manifest import MANIFEST


def _flip(file, n: int = 4096) -> None:
    data = bytearray(file.read_bytes())
    start = len(data) // 2
    for i in range(start, min(start + n, len(data))):
        data[i] ^= 0xFF
    file.write_bytes(bytes(data))


def test_flipped_bytes_in_saved_weights_are_refused(tmp_path):
    folder = fmhub.load("timm:test_resnet.r160_in1k", device="cpu").save(tmp_path / "saved")
    _flip(folder / "model.safetensors")
    with pytest.raises(
        fmhub.ManifestError, match=r"model\.safetensors' does not match the SHA-256"
    ):
        fmhub.load(folder)


def test_config_that_no_longer_fits_the_weights_is_refused_whole(tmp_path):
    folder = fmhub.load("timm:test_vit.r160_in1k", device="cpu").save(tmp_path / "saved")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model_args"]["depth"] = 1  # the saved model has more blocks
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(fmhub.ManifestError, match=r"config\.json' has \d+ bytes"):
        fmhub.load(folder)
    with pytest.raises(fmhub.ManifestError, match=r"do not fit the architecture.*blocks\.1"):
        fmhub.load(folder, verify=False)
    (folder / MANIFEST).unlink()  # a plain timm folder gets the same strictness
    with pytest.raises(fmhub.ManifestError, match="do not fit the architecture"):
        fmhub.load(str(folder))


@pytest.mark.parametrize(
    "edit,field",
    [
        (lambda c: c.update(num_classes="many"), "num_classes"),  # wrong type
        (lambda c: c.pop("architecture"), "architecture"),  # missing field
        (lambda c: c["pretrained_cfg"].update(input_size=[3, 160]), "pretrained_cfg.input_size"),
    ],
)
def test_bad_config_json_is_a_manifest_error_naming_file_and_field(tmp_path, edit, field):
    folder = fmhub.load("timm:test_resnet.r160_in1k", device="cpu").save(tmp_path / "saved")
    cfg = json.loads((folder / "config.json").read_text())
    edit(cfg)
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(fmhub.ManifestError, match=rf"config\.json'.*field '{field}"):
        fmhub.load(folder, verify=False)


def test_bad_features_file_is_a_manifest_error_naming_file_and_field(tmp_path):
    model = fmhub.load("timm:test_resnet.r160_in1k", task="feature-maps", device="cpu")
    folder = model.save(tmp_path / "saved")
    (folder / "fmhub_timm.json").write_text(json.dumps({"features_only": True}))
    with pytest.raises(fmhub.ManifestError, match=r"fmhub_timm\.json'.*field 'out_indices'"):
        fmhub.load(folder, verify=False)
