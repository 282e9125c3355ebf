"""fmhub-torchaudio under the reliability guarantees (docs/reliability.md): flipped bytes in a saved
folder are refused, and a torchaudio.json that no longer fits the weights is refused whole."""

from __future__ import annotations

import json

import pytest

import fmhub
from fmhub_torchaudio.testing import tiny_options


def _flip(file, n: int = 4096) -> None:
    data = bytearray(file.read_bytes())
    start = len(data) // 2
    for i in range(start, min(start + n, len(data))):
        data[i] ^= 0xFF
    file.write_bytes(bytes(data))


def test_flipped_bytes_and_a_config_that_no_longer_fits_are_refused(tmp_path):
    model = fmhub.load("torchaudio:models.wav2vec2_model", **tiny_options(asr=True))
    folder = model.save(tmp_path / "saved")
    other = model.save(tmp_path / "other")
    _flip(folder / "model.safetensors")
    with pytest.raises(
        fmhub.ManifestError, match=r"model\.safetensors' does not match the SHA-256"
    ):
        fmhub.load(folder)
    cfg = json.loads((other / "torchaudio.json").read_text())
    cfg["config"]["kwargs"]["encoder_num_layers"] = 1  # the weights hold 2 layers
    (other / "torchaudio.json").write_text(json.dumps(cfg))
    with pytest.raises(fmhub.ManifestError, match=r"torchaudio\.json' has \d+ bytes"):
        fmhub.load(other)
    with pytest.raises(fmhub.ManifestError, match=r"do not fit the architecture.*Unexpected"):
        fmhub.load(other, verify=False)
    cfg["config"]["kwargs"]["bogus"] = 1
    (other / "torchaudio.json").write_text(json.dumps(cfg))
    with pytest.raises(fmhub.ManifestError, match="TypeError"):
        fmhub.load(other, verify=False)


@pytest.mark.parametrize(
    "edit,field",
    [
        (lambda c: c.update(sample_rate="fast"), "sample_rate"),  # wrong type
        (lambda c: c.pop("family"), "family"),  # missing field
        (lambda c: c["config"].pop("factory"), "config.factory"),  # missing nested field
    ],
)
def test_bad_torchaudio_json_is_a_manifest_error_naming_file_and_field(tmp_path, edit, field):
    model = fmhub.load("torchaudio:models.wav2vec2_model", **tiny_options(asr=True))
    folder = model.save(tmp_path / "saved")
    cfg = json.loads((folder / "torchaudio.json").read_text())
    edit(cfg)
    (folder / "torchaudio.json").write_text(json.dumps(cfg))
    with pytest.raises(fmhub.ManifestError, match=rf"torchaudio\.json'.*field '{field}'"):
        fmhub.load(folder, verify=False)
