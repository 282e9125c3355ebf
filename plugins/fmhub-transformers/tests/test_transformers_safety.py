"""fmhub-transformers under the reliability guarantees (docs/reliability.md): a saved folder whose
manifest asks for remote code never runs it without the caller's consent (nor does an adapter naming
it), flipped bytes are refused, and a config.json that no longer fits the weights is refused whole."""

from __future__ import annotations

import json
import shutil

import pytest

import fmhub
from fmhub.manifest import MANIFEST, Manifest, read_manifest, seal
from fmhub_transformers.testing import CORPUS

pytestmark = pytest.mark.usefixtures("offline_hub")


def _flip(file, n: int = 4096) -> None:
    data = bytearray(file.read_bytes())
    start = len(data) // 2
    for i in range(start, min(start + n, len(data))):
        data[i] ^= 0xFF
    file.write_bytes(bytes(data))


def _remote_code_folder(tiny_zoo, tmp_path):
    """A checkpoint whose config needs Python shipped beside it (the code writes a marker file),
    with an fmhub.json, sealed as fmhub seals, that records trust_remote_code=True."""
    folder = tmp_path / "evil"
    shutil.copytree(tiny_zoo["mpnet-emb"], folder)
    marker = tmp_path / "REMOTE-CODE-RAN"
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(
        model_type="evil-net",
        auto_map={"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"},
    )
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    seal(
        folder,
        Manifest(
            kind="model",
            spec={"id": "hf:evil"},
            task="embedding",
            options={"trust_remote_code": True},
            plugin="transformers",
        ),
    )
    return folder, marker


def test_a_saved_folder_asking_for_remote_code_does_not_get_it(tiny_zoo, tmp_path):
    folder, marker = _remote_code_folder(tiny_zoo, tmp_path)
    assert read_manifest(folder).options == {"trust_remote_code": True}
    with pytest.raises(fmhub.InvalidOptionError, match="trust_remote_code=True only if you trust"):
        fmhub.load(folder)
    with pytest.raises(fmhub.InvalidOptionError, match="trust_remote_code"):
        fmhub.load(str(folder), verify=False)
    assert fmhub.model_info(str(folder)).options == {}
    assert not marker.exists(), "the shipped Python file ran without the caller's consent"


def test_an_adapter_naming_a_remote_code_base_runs_nothing(tiny_zoo, tmp_path):
    base, marker = _remote_code_folder(tiny_zoo, tmp_path)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter.safetensors").write_bytes(b"not even tensors")
    manifest = Manifest(
        kind="adapter",
        spec={"id": "hf:evil", "path": str(base)},
        task="classification",
        labels=["a", "b"],
        options={"trust_remote_code": True},
        plugin="transformers",
        adapter={
            "method": "head",
            "options": {},
            "head": ["classifier"],
            "fingerprint": {"sha256": "0" * 16, "shapes": {}},
        },
    )
    seal(adapter, manifest)
    with pytest.raises(fmhub.InvalidOptionError, match="trust_remote_code"):
        fmhub.load(adapter)
    (adapter / "adapter.safetensors").write_bytes(b"tampered")  # hashes first, base never built
    with pytest.raises(fmhub.ManifestError, match=r"adapter\.safetensors' has 8 bytes"):
        fmhub.load(adapter)
    manifest.spec["path"] = "../evil"  # a relative path resolves inside the adapter folder only
    (adapter / "adapter.safetensors").write_bytes(b"not even tensors")
    seal(adapter, manifest)
    with pytest.raises(fmhub.ManifestError, match="leaves the adapter folder"):
        fmhub.load(adapter)
    assert not marker.exists(), "the base's shipped Python file ran without consent"


def test_flipped_bytes_in_saved_weights_are_refused(tiny_zoo, tmp_path):
    folder = fmhub.load(str(tiny_zoo["bert-st"])).save(tmp_path / "saved")
    _flip(folder / "model.safetensors")
    with pytest.raises(
        fmhub.ManifestError, match=r"model\.safetensors' does not match the SHA-256"
    ):
        fmhub.load(folder)


def test_config_that_no_longer_fits_the_weights_is_refused_whole(tiny_zoo, tmp_path):
    model = fmhub.load(str(tiny_zoo["bert-st"]))
    folder = model.save(tmp_path / "saved")
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 2
    cfg["num_hidden_layers"] = 1  # would load half the network
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(fmhub.ManifestError, match=r"config\.json' has \d+ bytes"):
        fmhub.load(folder)
    with pytest.raises(
        fmhub.ManifestError, match=r"do not fit the architecture.*encoder\.layer\.1"
    ):
        fmhub.load(folder, verify=False)
    cfg["num_hidden_layers"] = 3  # more layers than weights: random ones, refused as well
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(fmhub.FmhubError, match=r"encoder\.layer\.2"):
        fmhub.load(folder, verify=False)
    (folder / MANIFEST).unlink()  # a plain Transformers folder gets the same strictness
    with pytest.raises(fmhub.FmhubError, match=r"encoder\.layer\.2"):
        fmhub.load(str(folder))


def test_pretraining_heads_of_a_checkpoint_are_still_fine(tiny_zoo, tmp_path):
    # an encoder loaded from a fill-mask checkpoint: the unused head is not an architecture error
    model = fmhub.load(str(tiny_zoo["distilbert-mlm"]), task="embedding")
    assert len(model(CORPUS[0])) > 0
