"""Hugging Face audio encoders through fmhub: CTC transcription, audio classification and
embeddings on tiny random-weight wav2vec 2.0 / HuBERT / WavLM / AST checkpoints (local folders and
the offline hub cache): the same text and probabilities as transformers' own pipelines, the shared
audio input rules, chunking, task detection, the conformance kit and fine-tuning."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

import fmhub
from fmhub.results import Classification, Transcription, check_result
from fmhub.testing import ConformanceCase, ConformanceSuite

ROOT = Path(tempfile.gettempdir()) / f"fmhub-tf-tests-{os.getpid()}"  # as in conftest.py
DATA = Path(__file__).resolve().parents[2] / "fmhub-torchaudio" / "tests" / "data"
HEAVY = ("torch", "transformers", "tokenizers", "huggingface_hub")
RNG = np.random.default_rng(0)


def noise(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * rate)) * 0.1).astype(np.float32)


CLIPS = [(noise(1.3, seed=1), 16000), (noise(0.7, seed=2), 16000), (noise(2.1, 8000, 3), 8000)]


@pytest.fixture(scope="module", autouse=True)
def _hub(offline_hub):
    yield


@pytest.fixture(scope="module")
def models():
    cache: dict[str, fmhub.Model] = {}

    def get(name: str, **options) -> fmhub.Model:
        key = name + repr(sorted(options.items()))
        if key not in cache:
            cache[key] = fmhub.load(name, **options)
        return cache[key]

    return get


def asr_pipeline(model):
    import transformers

    proc = model.processor
    return transformers.pipeline(
        "automatic-speech-recognition",
        model=model.module,
        tokenizer=proc.tokenizer,
        feature_extractor=proc.feature_extractor,
    )


def classification_pipeline(model):
    import transformers

    return transformers.pipeline(
        "audio-classification",
        model=model.module,
        feature_extractor=model.processor.feature_extractor,
    )


# -- detection and loading ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,task",
    [
        ("hf:tiny-org/w2v-ctc", "transcription"),
        (str(ROOT / "hubert-ctc"), "transcription"),
        ("hf:tiny-org/wavlm-ks", "classification"),
        ("hf:tiny-org/ast-cls", "classification"),
        (str(ROOT / "w2v-emb"), "embedding"),
        ("hf:tiny-org/hubert-emb", "embedding"),
        (str(ROOT / "ast-emb"), "embedding"),
    ],
)
def test_task_and_modality_detected_from_the_config(models, name, task):
    model = models(name)
    assert model.task == task and model.info["modality"] == "audio"
    assert model.processor.modality == "audio"
    if not name.startswith("hf:"):  # a local folder is claimed as an audio checkpoint
        spec = fmhub.model_info(name)
        assert spec.modality == "audio" and spec.task == task and spec.plugin == "transformers"
        assert set(spec.tasks) == {"transcription", "classification", "embedding"}


def test_audio_sequence_classifier_is_not_taken_for_text(tmp_path):
    """``HubertForSequenceClassification`` / ``Wav2Vec2ForSequenceClassification``: the model_type
    says audio, so it is served by the audio classes (a text one would look for a tokenizer)."""
    from fmhub_transformers._config import CheckpointConfig, detect_task, is_audio_config

    cfg = CheckpointConfig(model_type="hubert", architectures=("HubertForSequenceClassification",))
    assert is_audio_config(cfg) and detect_task(cfg, False) == "classification"
    text = CheckpointConfig(model_type="bert", architectures=("BertForSequenceClassification",))
    assert not is_audio_config(text)
    pretraining = CheckpointConfig(model_type="wav2vec2", architectures=("Wav2Vec2ForPreTraining",))
    assert detect_task(pretraining, False) == "embedding"  # not the text rule's fill-mask
    assert detect_task(CheckpointConfig(model_type="whisper"), False) == "transcription"


def test_task_override_and_missing_heads(models):
    emb = models(str(ROOT / "w2v-ctc"), task="embedding")  # the CTC checkpoint's encoder
    assert emb.task == "embedding" and emb((noise(0.5), 16000)).shape == (32,)
    with pytest.raises(fmhub.PluginError, match="no trained weights for the classification"):
        fmhub.load(str(ROOT / "w2v-ctc"), task="classification")
    with pytest.raises(fmhub.PluginError, match="no trained weights for the transcription"):
        fmhub.load(str(ROOT / "w2v-emb"), task="transcription")
    with pytest.raises(fmhub.InvalidOptionError, match="not one of its tasks"):
        fmhub.load(str(ROOT / "w2v-ctc"), task="fill-mask")
    with pytest.raises(fmhub.InvalidOptionError, match="apply to text models"):
        fmhub.load(str(ROOT / "w2v-ctc"), max_length=16)


def test_a_folder_without_feature_extractor_is_a_clear_error(tmp_path):
    import shutil

    folder = tmp_path / "no-fe"
    shutil.copytree(ROOT / "w2v-emb", folder)
    (folder / "preprocessor_config.json").unlink()
    (folder / "vocab.json").write_text("{}")  # claimed through its tokenizer file
    with pytest.raises(fmhub.ManifestError, match="preprocessor_config.json"):
        fmhub.load(str(folder))


def test_aliases_list_without_torch():
    from fmhub.testing import imported_after

    code = "import fmhub; [fmhub.model_info(a) for a in ('wav2vec2-base-960h', 'ast-audioset')]"
    assert imported_after(code, HEAVY) == []
    spec = fmhub.model_info("wav2vec2-base-960h")
    assert spec.id == "hf:facebook/wav2vec2-base-960h" and spec.modality == "audio"
    assert spec.task == "transcription" and spec.preprocessing.sample_rate == 16000
    assert fmhub.model_info("ast-audioset").task == "classification"
    assert fmhub.model_info("wav2vec2-ks").id == "hf:superb/wav2vec2-base-superb-ks"
    # torchaudio's own bundles keep their names
    assert fmhub.model_info("wavlm-base-plus").namespace == "torchaudio"


# -- fidelity against transformers' pipelines ---------------------------------------------------


def _short(name: str) -> str:
    """A test id without the per-process folder (pytest-xdist workers must collect equal ids)."""
    return os.path.basename(name) if os.path.isabs(name) else name


@pytest.mark.parametrize("name", ["hf:tiny-org/w2v-ctc", str(ROOT / "hubert-ctc")], ids=_short)
def test_ctc_text_equals_the_asr_pipeline(models, name):
    model = models(name)
    pipe = asr_pipeline(model)
    got = model.predict(CLIPS, batch_size=3)
    for (wave, rate), result in zip(CLIPS, got):
        check_result("transcription", result)
        want = pipe({"raw": wave.copy(), "sampling_rate": rate})["text"]
        assert result.text == want and result.text
        assert model((wave, rate)).text == want  # one by one, the same


@pytest.mark.parametrize("name", ["hf:tiny-org/wavlm-ks", "hf:tiny-org/ast-cls"])
def test_probabilities_equal_the_audio_classification_pipeline(models, name):
    model = models(name, top_k=6)
    pipe = classification_pipeline(model)
    inputs = [(noise(0.9, seed=5), 16000), (noise(0.6, seed=6), 16000)]
    got = model.predict(inputs, batch_size=2)
    for (wave, rate), result in zip(inputs, got):
        check_result("classification", result)
        want = pipe(wave.copy(), top_k=6)
        assert [t.label for t in result.top_k] == [w["label"] for w in want]
        np.testing.assert_allclose(
            [t.score for t in result.top_k], [w["score"] for w in want], atol=1e-5, rtol=0
        )


def test_a_layer_weighted_classifier_equals_the_pipeline(tmp_path):
    """SUPERB-style heads (``use_weighted_layer_sum``: a softmax-weighted sum of every layer's
    hidden states), on a group-norm wav2vec 2.0 with unequal lengths in one call."""
    from fmhub_transformers.testing import build_tiny_audio

    folder = build_tiny_audio(
        tmp_path / "ks", "wav2vec2", "classification", sizes={"use_weighted_layer_sum": True}
    )
    model = fmhub.load(str(folder), top_k=6)
    import torch

    with torch.no_grad():  # weights far from uniform, so the layer sum matters
        model.module.layer_weights.copy_(torch.tensor([2.0, -1.0, 0.5]))
    pipe = classification_pipeline(model)
    got = model.predict(CLIPS, batch_size=3)
    for (wave, rate), result in zip(CLIPS, got):
        want = pipe({"raw": wave.copy(), "sampling_rate": rate}, top_k=6)
        assert [t.label for t in result.top_k] == [w["label"] for w in want]
        np.testing.assert_allclose(
            [t.score for t in result.top_k], [w["score"] for w in want], atol=1e-5, rtol=0
        )


def test_embedding_is_the_masked_mean_of_the_last_hidden_state(models):
    import torch

    model = models("hf:tiny-org/hubert-emb")  # layer-norm front end: padded batches are exact
    fe = model.processor.feature_extractor
    got = model.predict(CLIPS[:2], batch_size=2)
    for (wave, rate), vec in zip(CLIPS[:2], got):
        feats = fe(wave, sampling_rate=rate, return_tensors="pt")
        with torch.inference_mode():
            hidden = model.module(**feats).last_hidden_state[0]
        np.testing.assert_allclose(vec, hidden.mean(0).numpy(), atol=1e-5, rtol=0)
    alone = model((CLIPS[1][0], 16000))
    np.testing.assert_allclose(got[1], alone, atol=1e-5, rtol=0)


def test_ast_embedding_is_the_pooled_output(models):
    import torch

    model = models(str(ROOT / "ast-emb"))
    wave = noise(0.8, seed=9)
    feats = model.processor.feature_extractor(wave, sampling_rate=16000, return_tensors="pt")
    with torch.inference_mode():
        want = model.module(**feats).pooler_output[0].numpy()
    np.testing.assert_allclose(model((wave, 16000)), want, atol=1e-6, rtol=0)


def test_group_norm_and_ast_exports_are_refused_clearly(models):
    from fmhub.export import export_spec

    with pytest.raises(fmhub.ExportError, match="group-norm front end"):
        export_spec(models("hf:tiny-org/w2v-ctc"))
    with pytest.raises(fmhub.ExportError, match="spectrogram windows"):
        export_spec(models("hf:tiny-org/ast-cls"))


#: The export test's checkpoints: the zoo's, with one encoder layer and a one-layer convolutional
#: front end of the zoo's geometry (an 85-sample receptive field, 80 samples a frame). The
#: exporter reasons symbolically about every conv layer's output length over the dynamic time
#: axis, which made the zoo's three-layer front ends the slowest exports of the suite; the export
#: code (layer-norm front end, lengths and masks, encoder, CTC or classification head) is the same.
EXPORT_SIZES = {
    "num_hidden_layers": 1,
    "conv_dim": (16,),
    "conv_kernel": (85,),
    "conv_stride": (80,),
}


@pytest.fixture(scope="module")
def one_torchlib_registry():
    """The export cases share torch's table of ONNX translations, which torch otherwise rebuilds
    for each export (~0.5 s of CPU); each export still runs everything else."""
    from fmhub.testing.exporting import shared_torchlib_registry

    with shared_torchlib_registry():
        yield


@pytest.mark.parametrize(
    "arch,task,repo",
    [  # transcription from a local folder; classification from the (offline) hub
        ("hubert", "transcription", None),
        ("wavlm", "classification", "tiny-org/wavlm-ks-export"),
    ],
    ids=["hubert-ctc-local", "hf:tiny-org/wavlm-ks-export"],
)
def test_layer_norm_models_export_to_onnx(arch, task, repo, tmp_path, one_torchlib_registry):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from fmhub_transformers.testing import build_tiny_audio, install_in_hub_cache

    name = str(build_tiny_audio(tmp_path / arch, arch, task, sizes=EXPORT_SIZES))
    if repo:
        install_in_hub_cache(ROOT / "hub", repo, name)
        name = f"hf:{repo}"
    model = fmhub.load(name, device="cpu")
    assert model.task == task and model.processor.padding_safe
    assert (model.processor.stride, model.processor.field) == (80, 85)
    onnx_model = fmhub.load(model.export(tmp_path / "onnx"))
    waves = [(noise(s, seed=40 + k), 16000) for k, s in enumerate((0.4, 0.9, 0.65))]
    got, want = onnx_model.predict(waves), model.predict(waves)
    if model.task == "transcription":
        assert [r.text for r in got] == [r.text for r in want]
    else:
        assert [r.label for r in got] == [r.label for r in want]
        np.testing.assert_allclose(
            [r.score for r in got], [r.score for r in want], atol=1e-4, rtol=0
        )


# -- input rules -------------------------------------------------------------------------------


def test_the_shared_audio_input_rules(models):
    model = models("hf:tiny-org/w2v-ctc")
    wave = noise(1.0, seed=4)
    with pytest.raises(fmhub.InputError, match="without a sample rate") as err:
        model(wave)
    assert "input_sample_rate" in str(err.value)
    with pytest.raises(fmhub.InputError, match="no such audio file"):
        model("a sentence is not a recording")
    with pytest.raises(fmhub.InputError, match="receptive field"):
        model((wave[:40], 16000))
    with pytest.raises(fmhub.InputError, match="NaN"):
        model((np.full(1600, np.nan, dtype=np.float32), 16000))
    stereo = np.stack([wave, wave * 0.5])
    assert model((stereo, 16000)) == model((stereo.mean(0), 16000))  # mixed down
    bare = fmhub.load("hf:tiny-org/w2v-ctc", input_sample_rate=16000)
    assert bare(wave) == model((wave, 16000))
    assert model(str(DATA / "seven_8k.wav")).text  # a file at 8 kHz, resampled


def test_batches_of_unequal_lengths_equal_one_by_one(models):
    """A group-norm front end (wav2vec2 base) runs equal lengths together; layer-norm ones
    take padded batches; either way a batch gives what each recording gives alone."""
    for name in ("hf:tiny-org/w2v-ctc", str(ROOT / "hubert-ctc")):
        model = models(name)
        batch = model.forward(model.preprocess(CLIPS))
        for j, clip in enumerate(CLIPS):
            alone = model.forward(model.preprocess([clip]))
            n = int(alone["frames"][0])
            assert int(batch["frames"][j]) == n
            np.testing.assert_allclose(
                batch["logits"][j, :n].numpy(), alone["logits"][0].numpy(), atol=1e-4, rtol=0
            )


# -- long recordings ---------------------------------------------------------------------------


def test_long_recordings_are_chunked_with_the_shared_plan(models):
    import torch

    from fmhub.chunking import frames_for, plan_segments

    model = models(str(ROOT / "hubert-ctc"), chunk_seconds=1.0, chunk_context_seconds=0.25)
    proc = model.processor
    wave = noise(3.7, seed=11)
    batch = model.preprocess([(wave, 16000)])
    segments = plan_segments([wave.shape[0]], proc.chunk, proc.context, proc.stride, proc.field)
    assert len(segments) > 2
    out = model.forward(batch)
    assert int(out["frames"][0]) == frames_for(wave.shape[0], proc.stride, proc.field)
    # each kept frame is the frame the model gives on its own chunk
    s = segments[1]
    with torch.inference_mode():
        x = batch["input_values"][:, s.start : s.end]
        own = model.module(input_values=x, attention_mask=torch.ones_like(x, dtype=torch.long))
    k0 = s.start // proc.stride + s.keep_from
    np.testing.assert_allclose(
        out["logits"][0, k0 : k0 + (s.keep_to - s.keep_from)].numpy(),
        own.logits[0, s.keep_from : s.keep_to].numpy(),
        atol=1e-5,
        rtol=0,
    )
    assert isinstance(model((wave, 16000)), Transcription)


def test_ast_long_recordings_average_their_windows(models):
    import torch

    model = models(str(ROOT / "ast-emb"))
    proc = model.processor
    wave = noise(2.5, seed=12)
    got = model((wave, 16000))
    pieces = [wave[s : s + proc.chunk] for s in range(0, wave.shape[0], proc.chunk)]
    assert len(pieces) == 3
    with torch.inference_mode():
        pooled = [
            model.module(
                **proc.feature_extractor(p, sampling_rate=16000, return_tensors="pt")
            ).pooler_output[0]
            for p in pieces
        ]
    weights = np.array([p.shape[0] for p in pieces], dtype=np.float64)
    want = sum(w * v.numpy() for w, v in zip(weights / weights.sum(), pooled))
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


# -- the same results as the torchaudio plugin ---------------------------------------------------


def test_an_hf_ctc_model_and_a_torchaudio_one_give_the_same_result_type(models):
    from fmhub_torchaudio.testing import tiny_options

    recording = str(DATA / "hello_22k.flac")
    hf = models("hf:tiny-org/w2v-ctc")
    ta = fmhub.load(
        "torchaudio:models.wav2vec2_model", task="transcription", **tiny_options(asr=True)
    )
    a, b = hf(recording), ta(recording)
    assert type(a) is type(b) is Transcription
    check_result("transcription", a)
    check_result("transcription", b)
    # both refuse the same bad inputs with the same error type
    for bad in (noise(0.5), None, "missing.wav"):
        for model in (hf, ta):
            with pytest.raises(fmhub.InputError):
                model(bad)


# -- fine-tuning -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["hf:tiny-org/ast-cls", str(ROOT / "w2v-emb")], ids=_short)
def test_head_finetuning_and_adapter_round_trip(models, name, tmp_path):
    model = fmhub.load(name)
    train = [((noise(0.6, seed=20 + i) * (1 + i % 2)), 16000) for i in range(6)]
    data = [(x, "loud" if i % 2 else "soft") for i, x in enumerate(train)]
    result = fmhub.finetune(
        model,
        data,
        method="head",
        max_steps=3,
        learning_rate=1e-2,
        batch_size=3,
        seed=0,
        progress=False,
        output_dir=str(tmp_path / "run"),
    )
    assert model.task == "classification" and set(model.labels) == {"loud", "soft"}
    plan = fmhub.finetune_plan(fmhub.load(name), "lora", labels=["a", "b"])
    assert plan.modules and not any(m.startswith(("classifier", "projector")) for m in plan.modules)
    again = fmhub.load(str(result.adapter_path))
    before = model.predict(train[:2])
    after = again.predict(train[:2])
    assert all(isinstance(r, Classification) for r in after)
    for x, y in zip(before, after):
        assert x.label == y.label and abs(x.score - y.score) < 1e-5


# -- the conformance kit -----------------------------------------------------------------------

AUDIO_INPUTS = [
    (noise(0.6, seed=30), 16000),
    (noise(1.1, seed=31), 16000),
    (noise(0.9, 8000, 32), 8000),
]
BAD_AUDIO = [noise(0.5), None, 3, "missing.wav", (np.zeros(10, np.float32), 16000)]


class TestAudioConformance(ConformanceSuite):
    cases = [
        ConformanceCase(
            model="hf:tiny-org/w2v-ctc",
            inputs=AUDIO_INPUTS,
            task="transcription",
            heavy_modules=HEAVY,
            bad_inputs=BAD_AUDIO,
            id="wav2vec2-ctc-hub",
        ),
        ConformanceCase(
            model="hf:tiny-org/wavlm-ks",
            inputs=AUDIO_INPUTS,
            task="classification",
            heavy_modules=HEAVY,
            bad_inputs=BAD_AUDIO,
            id="wavlm-classification-hub",
        ),
        ConformanceCase(
            model="hf:tiny-org/ast-cls",
            inputs=AUDIO_INPUTS,
            task="classification",
            heavy_modules=HEAVY,
            bad_inputs=BAD_AUDIO,
            id="ast-classification-hub",
        ),
        ConformanceCase(
            model=str(ROOT / "hubert-emb"),
            inputs=AUDIO_INPUTS,
            task="embedding",
            heavy_modules=HEAVY,
            bad_inputs=BAD_AUDIO,
            id="hubert-embedding-local",
        ),
    ]
