"""The torchaudio pipeline bundles fmhub serves, as a static table.

Registration (``fmhub list``, ``fmhub info``) must not import torch or torchaudio, so what fmhub
needs to know before loading lives here as plain data. ``tests/test_torchaudio_bundles.py`` checks
every row against the installed torchaudio, so a torchaudio upgrade that changes a bundle fails
the tests instead of silently drifting.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BUNDLES", "FACTORIES", "ROWS", "Row", "bundle_by_file", "receptive_field"]

#: The convolutional feature extractor of every wav2vec 2.0 / HuBERT / WavLM bundle:
#: (channels, kernel, stride) per layer. One output frame sees 400 samples; frames are 320 apart.
CONV_LAYERS: tuple[tuple[int, int, int], ...] = (
    (512, 10, 5),
    (512, 3, 2),
    (512, 3, 2),
    (512, 3, 2),
    (512, 3, 2),
    (512, 2, 2),
    (512, 2, 2),
)

_FAIRSEQ = "https://github.com/facebookresearch/fairseq/tree/main/examples/"
_MIT = "MIT"


@dataclass(frozen=True, kw_only=True)
class Row:
    """What fmhub knows about one ``torchaudio.pipelines`` bundle without importing torchaudio.

    Keyword-only: a row reads as ``field=value`` and cannot shift.

    :param id: The fmhub name (the bundle constant in lower case).
    :param aliases: Short names (the id with ``-`` for ``_``).
    :param architecture: ``"wav2vec2"``, ``"hubert"`` or ``"wavlm"`` (decides fine-tune targets).
    :param task: The default task: ``"transcription"`` for CTC bundles, else ``"embedding"``.
    :param file: The checkpoint file name in ``torch.hub.get_dir()/checkpoints``.
    :param extractor_mode: ``"group_norm"`` or ``"layer_norm"`` (padding-safe only for the latter).
    :param normalize_waveform: The bundle layer-normalises each waveform before the model.
    :param num_layers: Transformer layers.
    :param embed_dim: Width of the transformer features.
    :param num_labels: CTC outputs, blank included (None: not fine-tuned for ASR).
    """

    id: str
    aliases: tuple[str, ...]
    architecture: str
    task: str
    file: str
    extractor_mode: str
    normalize_waveform: bool
    num_layers: int
    embed_dim: int
    num_labels: int | None
    license: str
    source: str
    description: str
    sample_rate: int = 16000

    @property
    def attr(self) -> str:
        """The constant in :mod:`torchaudio.pipelines`."""
        return self.id.upper()

    @property
    def model_type(self) -> str:
        """``"Wav2Vec2"`` or ``"WavLM"``: the factory torchaudio builds the bundle with."""
        return "WavLM" if self.architecture == "wavlm" else "Wav2Vec2"

    @property
    def asr(self) -> bool:
        return self.num_labels is not None


_G, _L = "group_norm", "layer_norm"
_LS = "LibriSpeech 960 h"
_VP = "https://github.com/facebookresearch/voxpopuli"
_WAVLM = "https://github.com/microsoft/unilm/tree/master/wavlm"

#: Every bundle served, one keyword row each.
ROWS: tuple[Row, ...] = (
    Row(
        id="wav2vec2_base",
        aliases=("wav2vec2-base",),
        architecture="wav2vec2",
        task="embedding",
        file="wav2vec2_fairseq_base_ls960.pth",
        extractor_mode=_G,
        normalize_waveform=False,
        num_layers=12,
        embed_dim=768,
        num_labels=None,
        license=_MIT,
        source=_FAIRSEQ + "wav2vec",
        description=f"wav2vec 2.0 base, self-supervised on {_LS}, not fine-tuned.",
    ),
    Row(
        id="wav2vec2_large",
        aliases=("wav2vec2-large",),
        architecture="wav2vec2",
        task="embedding",
        file="wav2vec2_fairseq_large_ls960.pth",
        extractor_mode=_G,
        normalize_waveform=False,
        num_layers=24,
        embed_dim=1024,
        num_labels=None,
        license=_MIT,
        source=_FAIRSEQ + "wav2vec",
        description=f"wav2vec 2.0 large, self-supervised on {_LS}, not fine-tuned.",
    ),
    Row(
        id="wav2vec2_large_lv60k",
        aliases=("wav2vec2-large-lv60k",),
        architecture="wav2vec2",
        task="embedding",
        file="wav2vec2_fairseq_large_lv60k.pth",
        extractor_mode=_L,
        normalize_waveform=True,
        num_layers=24,
        embed_dim=1024,
        num_labels=None,
        license=_MIT,
        source=_FAIRSEQ + "wav2vec",
        description="wav2vec 2.0 large, self-supervised on Libri-Light 60k h, not fine-tuned.",
    ),
    Row(
        id="wav2vec2_asr_base_10m",
        aliases=("wav2vec2-asr-base-10m",),
        architecture="wav2vec2",
        task="transcription",
        file="wav2vec2_fairseq_base_ls960_asr_ll10m.pth",
        extractor_mode=_G,
        normalize_waveform=False,
        num_layers=12,
        embed_dim=768,
        num_labels=29,
        license=_MIT,
        source=_FAIRSEQ + "wav2vec",
        description=f"wav2vec 2.0 base ({_LS}), CTC fine-tuned on 10 min of Libri-Light; English.",
    ),
    Row(
        id="wav2vec2_asr_base_100h",
        aliases=("wav2vec2-asr-base-100h",),
        architecture="wav2vec2",
        task="transcription",
        file="wav2vec2_fairseq_base_ls960_asr_ls100.pth",
        extractor_mode=_G,
        normalize_waveform=False,
        num_layers=12,
        embed_dim=768,
        num_labels=29,
        license=_MIT,
        source=_FAIRSEQ + "wav2vec",
        description=f"wav2vec 2.0 base ({_LS}), CTC fine-tuned on LibriSpeech 100 h; English.",
    ),
    Row(
        id="wav2vec2_asr_base_960h",
        aliases=("wav2vec2-asr-base-960h",),
        architecture="wav2vec2",
        task="transcription",
        file="wav2vec2_fairseq_base_ls960_asr_ls960.pth",
        extractor_mode=_G,
        normalize_waveform=False,
        num_layers=12,
        embed_dim=768,
        num_labels=29,
        license=_MIT,
        source=_FAIRSEQ + "wav2vec",
        description=f"wav2vec 2.0 base, CTC fine-tuned on {_LS}; English.",
    ),
    Row(
        id="wav2vec2_asr_large_10m",
        aliases=("wav2vec2-asr-large-10m",),
        architecture="wav2vec2",
        task="transcription",
        file="wav2vec2_fairseq_large_ls960_asr_ll10m.pth",
        extractor_mode=_G,
        normalize_waveform=False,
        num_layers=24,
        embed_dim=1024,
        num_labels=29,
        license=_MIT,
        source=_FAIRSEQ + "wav2vec",
        description=f"wav2vec 2.0 large ({_LS}), CTC fine-tuned on 10 min; English.",
    ),
    Row(
        id="wav2vec2_asr_large_100h",
        aliases=("wav2vec2-asr-large-100h",),
        architecture="wav2vec2",
        task="transcription",
        file="wav2vec2_fairseq_large_ls960_asr_ls100.pth",
        extractor_mode=_G,
        normalize_waveform=False,
        num_layers=24,
        embed_dim=1024,
        num_labels=29,
        license=_MIT,
        source=_FAIRSEQ + "wav2vec",
        description=f"wav2vec 2.0 large ({_LS}), CTC fine-tuned on 100 h; English.",
    ),
    Row(
        id="wav2vec2_asr_large_960h",
        aliases=("wav2vec2-asr-large-960h",),
        architecture="wav2vec2",
        task="transcription",
        file="wav2vec2_fairseq_large_ls960_asr_ls960.pth",
        extractor_mode=_G,
        normalize_waveform=False,
        num_layers=24,
        embed_dim=1024,
        num_labels=29,
        license=_MIT,
        source=_FAIRSEQ + "wav2vec",
        description=f"wav2vec 2.0 large, CTC fine-tuned on {_LS}; English.",
    ),
    Row(
        id="wav2vec2_asr_large_lv60k_10m",
        aliases=("wav2vec2-asr-large-lv60k-10m",),
        architecture="wav2vec2",
        task="transcription",
        file="wav2vec2_fairseq_large_lv60k_asr_ll10m.pth",
        extractor_mode=_L,
        normalize_waveform=True,
        num_layers=24,
        embed_dim=1024,
        num_labels=29,
        license=_MIT,
        source=_FAIRSEQ + "wav2vec",
        description="wav2vec 2.0 large (Libri-Light 60k h), CTC fine-tuned on 10 min.",
    ),
    Row(
        id="wav2vec2_asr_large_lv60k_100h",
        aliases=("wav2vec2-asr-large-lv60k-100h",),
        architecture="wav2vec2",
        task="transcription",
        file="wav2vec2_fairseq_large_lv60k_asr_ls100.pth",
        extractor_mode=_L,
        normalize_waveform=True,
        num_layers=24,
        embed_dim=1024,
        num_labels=29,
        license=_MIT,
        source=_FAIRSEQ + "wav2vec",
        description="wav2vec 2.0 large (Libri-Light 60k h), CTC fine-tuned on 100 h.",
    ),
    Row(
        id="wav2vec2_asr_large_lv60k_960h",
        aliases=("wav2vec2-asr-large-lv60k-960h",),
        architecture="wav2vec2",
        task="transcription",
        file="wav2vec2_fairseq_large_lv60k_asr_ls960.pth",
        extractor_mode=_L,
        normalize_waveform=True,
        num_layers=24,
        embed_dim=1024,
        num_labels=29,
        license=_MIT,
        source=_FAIRSEQ + "wav2vec",
        description=f"wav2vec 2.0 large (Libri-Light 60k h), CTC fine-tuned on {_LS}.",
    ),
    Row(
        id="wav2vec2_xlsr53",
        aliases=("wav2vec2-xlsr53",),
        architecture="wav2vec2",
        task="embedding",
        file="wav2vec2_fairseq_large_xlsr53.pth",
        extractor_mode=_L,
        normalize_waveform=True,
        num_layers=24,
        embed_dim=1024,
        num_labels=None,
        license=_MIT,
        source=_FAIRSEQ + "wav2vec",
        description="XLSR-53: wav2vec 2.0 large, self-supervised on 56k h in 53 languages.",
    ),
    Row(
        id="wav2vec2_xlsr_300m",
        aliases=("wav2vec2-xlsr-300m",),
        architecture="wav2vec2",
        task="embedding",
        file="wav2vec2_xlsr_300m.pth",
        extractor_mode=_L,
        normalize_waveform=True,
        num_layers=24,
        embed_dim=1024,
        num_labels=None,
        license=_MIT,
        source=_FAIRSEQ + "wav2vec",
        description="XLS-R 300M: wav2vec 2.0, self-supervised on 436k h in 128 languages.",
    ),
    Row(
        id="wav2vec2_xlsr_1b",
        aliases=("wav2vec2-xlsr-1b",),
        architecture="wav2vec2",
        task="embedding",
        file="wav2vec2_xlsr_1b.pth",
        extractor_mode=_L,
        normalize_waveform=True,
        num_layers=48,
        embed_dim=1280,
        num_labels=None,
        license=_MIT,
        source=_FAIRSEQ + "wav2vec",
        description="XLS-R 1B: wav2vec 2.0, self-supervised on 436k h in 128 languages.",
    ),
    Row(
        id="wav2vec2_xlsr_2b",
        aliases=("wav2vec2-xlsr-2b",),
        architecture="wav2vec2",
        task="embedding",
        file="wav2vec2_xlsr_2b.pth",
        extractor_mode=_L,
        normalize_waveform=True,
        num_layers=48,
        embed_dim=1920,
        num_labels=None,
        license=_MIT,
        source=_FAIRSEQ + "wav2vec",
        description="XLS-R 2B: wav2vec 2.0, self-supervised on 436k h in 128 languages.",
    ),
    Row(
        id="voxpopuli_asr_base_10k_en",
        aliases=("voxpopuli-asr-base-10k-en",),
        architecture="wav2vec2",
        task="transcription",
        file="wav2vec2_voxpopuli_base_10k_asr_en.pt",
        extractor_mode=_G,
        normalize_waveform=False,
        num_layers=12,
        embed_dim=768,
        num_labels=28,
        license="CC-BY-NC-4.0",
        source=_VP,
        description="wav2vec 2.0 base (VoxPopuli 10k h), CTC fine-tuned; English.",
    ),
    Row(
        id="voxpopuli_asr_base_10k_es",
        aliases=("voxpopuli-asr-base-10k-es",),
        architecture="wav2vec2",
        task="transcription",
        file="wav2vec2_voxpopuli_base_10k_asr_es.pt",
        extractor_mode=_G,
        normalize_waveform=False,
        num_layers=12,
        embed_dim=768,
        num_labels=35,
        license="CC-BY-NC-4.0",
        source=_VP,
        description="wav2vec 2.0 base (VoxPopuli 10k h), CTC fine-tuned; Spanish.",
    ),
    Row(
        id="voxpopuli_asr_base_10k_de",
        aliases=("voxpopuli-asr-base-10k-de",),
        architecture="wav2vec2",
        task="transcription",
        file="wav2vec2_voxpopuli_base_10k_asr_de.pt",
        extractor_mode=_G,
        normalize_waveform=False,
        num_layers=12,
        embed_dim=768,
        num_labels=32,
        license="CC-BY-NC-4.0",
        source=_VP,
        description="wav2vec 2.0 base (VoxPopuli 10k h), CTC fine-tuned; German.",
    ),
    Row(
        id="voxpopuli_asr_base_10k_fr",
        aliases=("voxpopuli-asr-base-10k-fr",),
        architecture="wav2vec2",
        task="transcription",
        file="wav2vec2_voxpopuli_base_10k_asr_fr.pt",
        extractor_mode=_G,
        normalize_waveform=False,
        num_layers=12,
        embed_dim=768,
        num_labels=43,
        license="CC-BY-NC-4.0",
        source=_VP,
        description="wav2vec 2.0 base (VoxPopuli 10k h), CTC fine-tuned; French.",
    ),
    Row(
        id="voxpopuli_asr_base_10k_it",
        aliases=("voxpopuli-asr-base-10k-it",),
        architecture="wav2vec2",
        task="transcription",
        file="wav2vec2_voxpopuli_base_10k_asr_it.pt",
        extractor_mode=_G,
        normalize_waveform=False,
        num_layers=12,
        embed_dim=768,
        num_labels=37,
        license="CC-BY-NC-4.0",
        source=_VP,
        description="wav2vec 2.0 base (VoxPopuli 10k h), CTC fine-tuned; Italian.",
    ),
    Row(
        id="hubert_base",
        aliases=("hubert-base",),
        architecture="hubert",
        task="embedding",
        file="hubert_fairseq_base_ls960.pth",
        extractor_mode=_G,
        normalize_waveform=False,
        num_layers=12,
        embed_dim=768,
        num_labels=None,
        license=_MIT,
        source=_FAIRSEQ + "hubert",
        description=f"HuBERT base, self-supervised on {_LS}, not fine-tuned.",
    ),
    Row(
        id="hubert_large",
        aliases=("hubert-large",),
        architecture="hubert",
        task="embedding",
        file="hubert_fairseq_large_ll60k.pth",
        extractor_mode=_L,
        normalize_waveform=True,
        num_layers=24,
        embed_dim=1024,
        num_labels=None,
        license=_MIT,
        source=_FAIRSEQ + "hubert",
        description="HuBERT large, self-supervised on Libri-Light 60k h, not fine-tuned.",
    ),
    Row(
        id="hubert_xlarge",
        aliases=("hubert-xlarge",),
        architecture="hubert",
        task="embedding",
        file="hubert_fairseq_xlarge_ll60k.pth",
        extractor_mode=_L,
        normalize_waveform=True,
        num_layers=48,
        embed_dim=1280,
        num_labels=None,
        license=_MIT,
        source=_FAIRSEQ + "hubert",
        description="HuBERT extra large, self-supervised on Libri-Light 60k h, not fine-tuned.",
    ),
    Row(
        id="hubert_asr_large",
        aliases=("hubert-asr-large",),
        architecture="hubert",
        task="transcription",
        file="hubert_fairseq_large_ll60k_asr_ls960.pth",
        extractor_mode=_L,
        normalize_waveform=True,
        num_layers=24,
        embed_dim=1024,
        num_labels=29,
        license=_MIT,
        source=_FAIRSEQ + "hubert",
        description=f"HuBERT large (Libri-Light 60k h), CTC fine-tuned on {_LS}; English.",
    ),
    Row(
        id="hubert_asr_xlarge",
        aliases=("hubert-asr-xlarge",),
        architecture="hubert",
        task="transcription",
        file="hubert_fairseq_xlarge_ll60k_asr_ls960.pth",
        extractor_mode=_L,
        normalize_waveform=True,
        num_layers=48,
        embed_dim=1280,
        num_labels=29,
        license=_MIT,
        source=_FAIRSEQ + "hubert",
        description=f"HuBERT extra large (Libri-Light 60k h), CTC fine-tuned on {_LS}; English.",
    ),
    Row(
        id="wavlm_base",
        aliases=("wavlm-base",),
        architecture="wavlm",
        task="embedding",
        file="wavlm_base.pth",
        extractor_mode=_G,
        normalize_waveform=False,
        num_layers=12,
        embed_dim=768,
        num_labels=None,
        license=_MIT,
        source=_WAVLM,
        description=f"WavLM base, self-supervised on {_LS}, not fine-tuned.",
    ),
    Row(
        id="wavlm_base_plus",
        aliases=("wavlm-base-plus",),
        architecture="wavlm",
        task="embedding",
        file="wavlm_base_plus.pth",
        extractor_mode=_G,
        normalize_waveform=False,
        num_layers=12,
        embed_dim=768,
        num_labels=None,
        license=_MIT,
        source=_WAVLM,
        description="WavLM base+, self-supervised on 94k h (Libri-Light, GigaSpeech, VoxPopuli).",
    ),
    Row(
        id="wavlm_large",
        aliases=("wavlm-large",),
        architecture="wavlm",
        task="embedding",
        file="wavlm_large.pth",
        extractor_mode=_L,
        normalize_waveform=True,
        num_layers=24,
        embed_dim=1024,
        num_labels=None,
        license=_MIT,
        source=_WAVLM,
        description="WavLM large, self-supervised on 94k h (Libri-Light, GigaSpeech, VoxPopuli).",
    ),
)

#: The rows keyed by fmhub name.
BUNDLES: dict[str, Row] = {row.id: row for row in ROWS}


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


def bundle_by_file(file_name: str) -> Row | None:
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
