"""The torchaudio pipeline bundles fmhub serves, as a static table.

Registration (``fmhub list``, ``fmhub info``) must not import torch or torchaudio, so what fmhub
needs to know before loading lives here as plain data. ``tests/test_torchaudio_bundles.py`` checks
every row against the installed torchaudio, so a torchaudio upgrade that changes a bundle fails
the tests instead of silently drifting.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BUNDLES", "BundleInfo", "FACTORIES", "bundle_by_file", "receptive_field"]

#: The convolutional feature extractor of every wav2vec 2.0 / HuBERT / WavLM bundle:
#: (channels, kernel, stride) per layer. One output frame sees 400 samples; frames are 320 apart.
CONV_LAYERS: tuple[tuple[int, int, int], ...] = (
    (512, 10, 5), (512, 3, 2), (512, 3, 2), (512, 3, 2), (512, 3, 2), (512, 2, 2), (512, 2, 2),
)

_FAIRSEQ = "https://github.com/facebookresearch/fairseq/tree/main/examples/"
_MIT = "MIT"


@dataclass(frozen=True)
class BundleInfo:
    """What fmhub knows about one ``torchaudio.pipelines`` bundle without importing torchaudio.

    :param name: The fmhub name (the bundle constant in lower case).
    :param attr: The constant in :mod:`torchaudio.pipelines`.
    :param file: The checkpoint file name in ``torch.hub.get_dir()/checkpoints``.
    :param model_type: ``"Wav2Vec2"`` or ``"WavLM"`` (the factory torchaudio builds it with).
    :param family: ``"wav2vec2"``, ``"hubert"`` or ``"wavlm"`` (decides fine-tune targets).
    :param extractor_mode: ``"group_norm"`` or ``"layer_norm"`` (padding-safe only for the latter).
    :param normalize_waveform: The bundle layer-normalises each waveform before the model.
    :param num_layers: Transformer layers.
    :param embed_dim: Width of the transformer features.
    :param num_labels: CTC outputs, blank included (None: not fine-tuned for ASR).
    """

    name: str
    attr: str
    file: str
    model_type: str
    family: str
    extractor_mode: str
    normalize_waveform: bool
    num_layers: int
    embed_dim: int
    num_labels: int | None
    license: str
    description: str
    source: str
    sample_rate: int = 16000

    @property
    def asr(self) -> bool:
        return self.num_labels is not None

    @property
    def alias(self) -> str:
        return self.name.replace("_", "-")


def _b(name, file, family, mode, norm, layers, dim, labels, desc, lic=_MIT, src=None, mtype=None):
    return BundleInfo(
        name=name, attr=name.upper(), file=file,
        model_type=mtype or ("WavLM" if family == "wavlm" else "Wav2Vec2"), family=family,
        extractor_mode=mode, normalize_waveform=norm, num_layers=layers, embed_dim=dim,
        num_labels=labels, license=lic, description=desc,
        source=src or _FAIRSEQ + ("hubert" if family == "hubert" else "wav2vec"),
    )


_G, _L = "group_norm", "layer_norm"
_LS = "LibriSpeech 960 h"
_VP = "https://github.com/facebookresearch/voxpopuli"
_WAVLM = "https://github.com/microsoft/unilm/tree/master/wavlm"

#: Every bundle served, keyed by fmhub name.
BUNDLES: dict[str, BundleInfo] = {b.name: b for b in (
    _b("wav2vec2_base", "wav2vec2_fairseq_base_ls960.pth", "wav2vec2", _G, False, 12, 768, None,
       f"wav2vec 2.0 base, self-supervised on {_LS}, not fine-tuned."),
    _b("wav2vec2_large", "wav2vec2_fairseq_large_ls960.pth", "wav2vec2", _G, False, 24, 1024, None,
       f"wav2vec 2.0 large, self-supervised on {_LS}, not fine-tuned."),
    _b("wav2vec2_large_lv60k", "wav2vec2_fairseq_large_lv60k.pth", "wav2vec2", _L, True, 24, 1024,
       None, "wav2vec 2.0 large, self-supervised on Libri-Light 60k h, not fine-tuned."),
    _b("wav2vec2_asr_base_10m", "wav2vec2_fairseq_base_ls960_asr_ll10m.pth", "wav2vec2", _G, False,
       12, 768, 29, f"wav2vec 2.0 base ({_LS}), CTC fine-tuned on 10 min of Libri-Light; English."),
    _b("wav2vec2_asr_base_100h", "wav2vec2_fairseq_base_ls960_asr_ls100.pth", "wav2vec2", _G, False,
       12, 768, 29, f"wav2vec 2.0 base ({_LS}), CTC fine-tuned on LibriSpeech 100 h; English."),
    _b("wav2vec2_asr_base_960h", "wav2vec2_fairseq_base_ls960_asr_ls960.pth", "wav2vec2", _G, False,
       12, 768, 29, f"wav2vec 2.0 base, CTC fine-tuned on {_LS}; English."),
    _b("wav2vec2_asr_large_10m", "wav2vec2_fairseq_large_ls960_asr_ll10m.pth", "wav2vec2", _G,
       False, 24, 1024, 29, f"wav2vec 2.0 large ({_LS}), CTC fine-tuned on 10 min; English."),
    _b("wav2vec2_asr_large_100h", "wav2vec2_fairseq_large_ls960_asr_ls100.pth", "wav2vec2", _G,
       False, 24, 1024, 29, f"wav2vec 2.0 large ({_LS}), CTC fine-tuned on 100 h; English."),
    _b("wav2vec2_asr_large_960h", "wav2vec2_fairseq_large_ls960_asr_ls960.pth", "wav2vec2", _G,
       False, 24, 1024, 29, f"wav2vec 2.0 large, CTC fine-tuned on {_LS}; English."),
    _b("wav2vec2_asr_large_lv60k_10m", "wav2vec2_fairseq_large_lv60k_asr_ll10m.pth", "wav2vec2", _L,
       True, 24, 1024, 29, "wav2vec 2.0 large (Libri-Light 60k h), CTC fine-tuned on 10 min."),
    _b("wav2vec2_asr_large_lv60k_100h", "wav2vec2_fairseq_large_lv60k_asr_ls100.pth", "wav2vec2",
       _L, True, 24, 1024, 29, "wav2vec 2.0 large (Libri-Light 60k h), CTC fine-tuned on 100 h."),
    _b("wav2vec2_asr_large_lv60k_960h", "wav2vec2_fairseq_large_lv60k_asr_ls960.pth", "wav2vec2",
       _L, True, 24, 1024, 29, f"wav2vec 2.0 large (Libri-Light 60k h), CTC fine-tuned on {_LS}."),
    _b("wav2vec2_xlsr53", "wav2vec2_fairseq_large_xlsr53.pth", "wav2vec2", _L, True, 24, 1024, None,
       "XLSR-53: wav2vec 2.0 large, self-supervised on 56k h in 53 languages."),
    _b("wav2vec2_xlsr_300m", "wav2vec2_xlsr_300m.pth", "wav2vec2", _L, True, 24, 1024, None,
       "XLS-R 300M: wav2vec 2.0, self-supervised on 436k h in 128 languages."),
    _b("wav2vec2_xlsr_1b", "wav2vec2_xlsr_1b.pth", "wav2vec2", _L, True, 48, 1280, None,
       "XLS-R 1B: wav2vec 2.0, self-supervised on 436k h in 128 languages."),
    _b("wav2vec2_xlsr_2b", "wav2vec2_xlsr_2b.pth", "wav2vec2", _L, True, 48, 1920, None,
       "XLS-R 2B: wav2vec 2.0, self-supervised on 436k h in 128 languages."),
    _b("voxpopuli_asr_base_10k_en", "wav2vec2_voxpopuli_base_10k_asr_en.pt", "wav2vec2", _G, False,
       12, 768, 28, "wav2vec 2.0 base (VoxPopuli 10k h), CTC fine-tuned; English.", "CC-BY-NC-4.0",
       _VP),
    _b("voxpopuli_asr_base_10k_es", "wav2vec2_voxpopuli_base_10k_asr_es.pt", "wav2vec2", _G, False,
       12, 768, 35, "wav2vec 2.0 base (VoxPopuli 10k h), CTC fine-tuned; Spanish.", "CC-BY-NC-4.0",
       _VP),
    _b("voxpopuli_asr_base_10k_de", "wav2vec2_voxpopuli_base_10k_asr_de.pt", "wav2vec2", _G, False,
       12, 768, 32, "wav2vec 2.0 base (VoxPopuli 10k h), CTC fine-tuned; German.", "CC-BY-NC-4.0",
       _VP),
    _b("voxpopuli_asr_base_10k_fr", "wav2vec2_voxpopuli_base_10k_asr_fr.pt", "wav2vec2", _G, False,
       12, 768, 43, "wav2vec 2.0 base (VoxPopuli 10k h), CTC fine-tuned; French.", "CC-BY-NC-4.0",
       _VP),
    _b("voxpopuli_asr_base_10k_it", "wav2vec2_voxpopuli_base_10k_asr_it.pt", "wav2vec2", _G, False,
       12, 768, 37, "wav2vec 2.0 base (VoxPopuli 10k h), CTC fine-tuned; Italian.", "CC-BY-NC-4.0",
       _VP),
    _b("hubert_base", "hubert_fairseq_base_ls960.pth", "hubert", _G, False, 12, 768, None,
       f"HuBERT base, self-supervised on {_LS}, not fine-tuned."),
    _b("hubert_large", "hubert_fairseq_large_ll60k.pth", "hubert", _L, True, 24, 1024, None,
       "HuBERT large, self-supervised on Libri-Light 60k h, not fine-tuned."),
    _b("hubert_xlarge", "hubert_fairseq_xlarge_ll60k.pth", "hubert", _L, True, 48, 1280, None,
       "HuBERT extra large, self-supervised on Libri-Light 60k h, not fine-tuned."),
    _b("hubert_asr_large", "hubert_fairseq_large_ll60k_asr_ls960.pth", "hubert", _L, True, 24, 1024,
       29, f"HuBERT large (Libri-Light 60k h), CTC fine-tuned on {_LS}; English."),
    _b("hubert_asr_xlarge", "hubert_fairseq_xlarge_ll60k_asr_ls960.pth", "hubert", _L, True, 48,
       1280, 29, f"HuBERT extra large (Libri-Light 60k h), CTC fine-tuned on {_LS}; English."),
    _b("wavlm_base", "wavlm_base.pth", "wavlm", _G, False, 12, 768, None,
       f"WavLM base, self-supervised on {_LS}, not fine-tuned.", src=_WAVLM),
    _b("wavlm_base_plus", "wavlm_base_plus.pth", "wavlm", _G, False, 12, 768, None,
       "WavLM base+, self-supervised on 94k h (Libri-Light, GigaSpeech, VoxPopuli).", src=_WAVLM),
    _b("wavlm_large", "wavlm_large.pth", "wavlm", _L, True, 24, 1024, None,
       "WavLM large, self-supervised on 94k h (Libri-Light, GigaSpeech, VoxPopuli).", src=_WAVLM),
)}

#: Model factories of :mod:`torchaudio.models` served as ``torchaudio:models.<factory>`` for
#: training from scratch (random weights, or a local ``checkpoint`` file): factory -> family.
FACTORIES: dict[str, str] = {
    "wav2vec2_model": "wav2vec2",
    "wav2vec2_base": "wav2vec2",
    "wav2vec2_large": "wav2vec2",
    "wav2vec2_large_lv60k": "wav2vec2",
    "wav2vec2_xlsr_300m": "wav2vec2",
    "wav2vec2_xlsr_1b": "wav2vec2",
    "wav2vec2_xlsr_2b": "wav2vec2",
    "hubert_base": "hubert",
    "hubert_large": "hubert",
    "hubert_xlarge": "hubert",
    "wavlm_model": "wavlm",
    "wavlm_base": "wavlm",
    "wavlm_large": "wavlm",
}


def bundle_by_file(file_name: str) -> BundleInfo | None:
    """The bundle whose checkpoint file has this name, if any."""
    for info in BUNDLES.values():
        if info.file == file_name:
            return info
    return None


def receptive_field(conv_layers=CONV_LAYERS) -> int:
    """Samples one output frame of the convolutional feature extractor sees (400 for bundles)."""
    field, jump = 1, 1
    for _, kernel, stride in conv_layers:
        field += (kernel - 1) * jump
        jump *= stride
    return field
