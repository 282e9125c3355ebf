"""The static bundle table against the installed torchaudio, and every bundle's loading path."""

from __future__ import annotations

import numpy as np
import pytest

import fmhub
from fmhub_torchaudio._catalog import BUNDLES, FACTORIES, bundle_by_file, receptive_field


def _pipelines():
    import torchaudio.pipelines as P

    return P


def test_every_wav2vec2_bundle_is_served_except_forced_alignment():
    P = _pipelines()
    names = {n for n in P.__all__ if isinstance(getattr(P, n), P.Wav2Vec2Bundle)}
    assert names - {b.attr for b in BUNDLES.values()} == {"MMS_FA"}
    assert {b.attr for b in BUNDLES.values()} <= names


@pytest.mark.parametrize("name", sorted(BUNDLES))
def test_table_row_matches_torchaudio(name):
    P = _pipelines()
    info = BUNDLES[name]
    bundle = getattr(P, info.attr)
    params = bundle._params
    assert info.id == info.attr.lower() and info.aliases == (name.replace("_", "-"),)
    assert info.task == ("transcription" if info.asr else "embedding")
    assert bundle._path.rsplit("/", 1)[-1] == info.file
    assert bundle.sample_rate == info.sample_rate
    assert bundle._normalize_waveform == info.normalize_waveform
    assert bundle._model_type == info.model_type
    assert params["extractor_mode"] == info.extractor_mode
    assert params["encoder_num_layers"] == info.num_layers
    assert params["encoder_embed_dim"] == info.embed_dim
    assert params["aux_num_out"] == info.num_labels
    assert isinstance(bundle, P.Wav2Vec2ASRBundle) == info.asr
    if info.asr:
        assert len(bundle.get_labels()) == info.num_labels
    conv = [tuple(c) for c in params["extractor_conv_layer_config"]]
    assert receptive_field(conv) == receptive_field() == 400
    assert bundle_by_file(info.file) is info


def test_factories_exist():
    import torchaudio.models

    for name in FACTORIES:
        assert callable(getattr(torchaudio.models, name))


def test_specs_carry_preprocessing_contract_and_aliases():
    spec = fmhub.model_info("wav2vec2-base")
    assert spec.id == "torchaudio:wav2vec2_base" and spec.task == "embedding"
    assert spec.preprocessing.sample_rate == 16000
    assert spec.preprocessing.normalize_waveform is False
    asr = fmhub.model_info("torchaudio:hubert_asr_large")
    assert asr.task == "transcription" and asr.preprocessing.normalize_waveform is True
    assert fmhub.model_info("hubert-base").id == "torchaudio:hubert_base"
    assert fmhub.model_info("torchaudio:voxpopuli_asr_base_10k_fr").license == "CC-BY-NC-4.0"
    assert len(fmhub.list_models("torchaudio:*")) == len(BUNDLES) + len(FACTORIES)


@pytest.mark.usefixtures("tiny_bundle_home")
class TestEveryBundleLoads:
    """Each bundle, shrunk, loads through ``bundle.get_model()`` from its own checkpoint file name
    (ASR files with fairseq's extra output rows), with the bundle's labels and normalisation."""

    bundles = tuple(sorted(BUNDLES))

    @pytest.mark.parametrize("name", sorted(BUNDLES))
    def test_load_and_run(self, name):
        import torch
        import torchaudio.pipelines as P

        info = BUNDLES[name]
        model = fmhub.load(f"torchaudio:{name}")
        bundle = getattr(P, info.attr)
        assert model.task == ("transcription" if info.asr else "embedding")
        assert model.processor.normalize_waveform == info.normalize_waveform
        assert model.processor.padding_safe == (
            info.extractor_mode == "layer_norm" and info.architecture != "wavlm"
        )
        assert model.processor.encoder_padding_safe == (info.architecture != "wavlm")
        wave = np.sin(np.arange(8000) / 7.0).astype(np.float32) * 0.3
        batch = model.preprocess([(wave, 16000)])
        out = model.forward(batch)
        ref_model = bundle.get_model()  # the bundle used directly: normalising wrapper and all
        x = torch.from_numpy(wave)[None]
        with torch.inference_mode():
            if info.asr:
                assert model.processor.labels == bundle.get_labels()
                ref, _ = ref_model(x)
                torch.testing.assert_close(out["emissions"], ref, atol=1e-5, rtol=0)
            else:
                feats, _ = ref_model.extract_features(x)
                torch.testing.assert_close(out["embeddings"], feats[-1].mean(1), atol=1e-5, rtol=0)


@pytest.mark.usefixtures("tiny_bundle_home")
class TestWeightSources:
    """Where bundle weights come from: the hub cache, a local checkpoint, a file recognised by
    its name; and what happens when they are missing or wrong."""

    bundles = ("wav2vec2_asr_base_960h", "hubert_base")
    CLIP = (np.sin(np.arange(6000) / 5.0).astype(np.float32) * 0.3, 16000)

    def embedding(self, model):
        return model.forward(model.preprocess([self.CLIP]))

    def test_checkpoint_files_in_published_and_plain_layouts(self, tmp_path):
        import shutil

        import torch

        from fmhub_torchaudio._load import hub_checkpoint_path

        cached = hub_checkpoint_path(BUNDLES["wav2vec2_asr_base_960h"])
        published = shutil.copy(cached, tmp_path / "copy.pth")  # with fairseq's extra CTC rows
        base = fmhub.load("torchaudio:wav2vec2_asr_base_960h")
        plain = tmp_path / "plain.pt"
        torch.save(base.module.model.state_dict(), plain)
        ref = self.embedding(base)["emissions"]
        for ckpt in (published, plain):
            other = fmhub.load("torchaudio:wav2vec2_asr_base_960h", checkpoint=str(ckpt))
            torch.testing.assert_close(self.embedding(other)["emissions"], ref, atol=0, rtol=0)
        with pytest.raises(fmhub.InvalidOptionError, match="does not fit"):
            fmhub.load("torchaudio:hubert_base", checkpoint=str(plain))
        with pytest.raises(fmhub.InvalidOptionError, match="does not exist"):
            fmhub.load("torchaudio:hubert_base", checkpoint=str(tmp_path / "nope.pt"))
        (tmp_path / "junk.pt").write_bytes(b"junk")
        with pytest.raises(fmhub.InvalidOptionError, match="not a readable state-dict"):
            fmhub.load("torchaudio:hubert_base", checkpoint=str(tmp_path / "junk.pt"))

    def test_a_bundle_file_is_recognised_by_its_name(self, tmp_path):
        import shutil

        import torch

        from fmhub_torchaudio._load import hub_checkpoint_path

        info = BUNDLES["hubert_base"]
        copy = shutil.copy(hub_checkpoint_path(info), tmp_path / info.file)
        spec = fmhub.model_info(str(copy))
        assert spec.id == "torchaudio:hubert_base" and spec.path == str(copy)
        model = fmhub.load(str(copy))
        ref = fmhub.load("hubert-base")
        torch.testing.assert_close(
            self.embedding(model)["embeddings"], self.embedding(ref)["embeddings"], atol=0, rtol=0
        )
        other = tmp_path / "weights.pth"
        other.write_bytes(b"x")
        with pytest.raises(fmhub.UnknownModelError):
            fmhub.model_info(str(other))

    def test_missing_weights_offline_is_a_clear_error(self, tmp_path, monkeypatch):
        import urllib.error

        import torch.hub

        def offline(url, dst, *args, **kwargs):
            raise urllib.error.URLError("network is unreachable")

        monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache
        monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
        with pytest.raises(fmhub.PluginError, match="not in the torch hub cache") as info:
            fmhub.load("torchaudio:hubert_base")
        message = str(info.value)
        assert "hubert_fairseq_base_ls960.pth" in message and "checkpoint=" in message
        broken = tmp_path / "hub" / "checkpoints" / "hubert_fairseq_base_ls960.pth"
        broken.parent.mkdir(parents=True, exist_ok=True)
        broken.write_bytes(b"truncated download")
        with pytest.raises(fmhub.PluginError, match="delete the file"):
            fmhub.load("torchaudio:hubert_base")
