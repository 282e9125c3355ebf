"""Whisper through fmhub: the same text and segment timestamps as transformers'
``pipeline("automatic-speech-recognition")`` on the same weights and audio (short and > 30 s
long-form), language and task options, the shared audio input rules, batching, the CLI."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

import fmhub
from fmhub.cli import main
from fmhub.inputs import audio_item
from fmhub.results import Transcription, check_result

ROOT = Path(tempfile.gettempdir()) / f"fmhub-tf-tests-{os.getpid()}"  # as in conftest.py
DATA = Path(__file__).resolve().parents[2] / "fmhub-torchaudio" / "tests" / "data"
RNG = np.random.default_rng(0)
SHORT = (RNG.standard_normal(16000 * 4) * 0.1).astype(np.float32)
LONG = (RNG.standard_normal(16000 * 41) * 0.1).astype(np.float32)  # > 30 s: long-form


@pytest.fixture(scope="module")
def whisper(offline_hub):
    return fmhub.load("hf:tiny-org/whisper-asr")


@pytest.fixture(scope="module")
def pipe(whisper):
    import transformers

    return transformers.pipeline(
        "automatic-speech-recognition",
        model=whisper.module,
        tokenizer=whisper.processor.tokenizer,
        feature_extractor=whisper.processor.feature_extractor,
    )


def reference(pipe, wave, **generate_kwargs):
    out = pipe(
        wave.copy(), return_timestamps=True, generate_kwargs={"num_beams": 1, **generate_kwargs}
    )  # the pipeline's default is 5
    return out["text"], [tuple(c["timestamp"]) for c in out["chunks"]]


@pytest.mark.parametrize(
    "wave,opts",
    [
        (SHORT, {"language": "en", "task": "transcribe"}),
        (SHORT, {"language": "fr", "task": "translate"}),
        (LONG, {"language": "en", "task": "transcribe"}),
    ],
)
def test_transcripts_equal_the_transformers_pipeline(whisper, pipe, wave, opts):
    got = whisper((wave, 16000), max_new_tokens=24, **opts)
    check_result("transcription", got)
    text, stamps = reference(pipe, wave, max_new_tokens=24, **opts)
    assert got.text == text
    assert [(c.start, c.end) for c in got.chunks] == [
        (s, e if e is not None else s) for s, e in stamps
    ]
    assert got.language == opts["language"]
    assert "".join(c.text for c in got.chunks) == got.text


def test_long_recordings_are_transcribed_whole(whisper):
    """Over 30 s the whole recording reaches Whisper's sequential long-form decoding (features
    of every frame, with the attention mask it needs); its output equals the pipeline's above."""
    batch = whisper.preprocess([(LONG, 16000), (SHORT, 16000)])
    assert batch["long"] and batch["input_features"].shape[-1] == 4100  # 41 s, 100 frames a second
    assert batch["attention_mask"][1].sum() == 400  # the short one is padded, not cut
    short = whisper.preprocess([(SHORT, 16000)])
    assert not short["long"] and short["input_features"].shape[-1] == 3000
    got = whisper((LONG, 16000), language="en", max_new_tokens=24)
    assert got.chunks and got.text


def test_language_is_detected_when_not_given(whisper):
    got = whisper((SHORT, 16000), max_new_tokens=8)
    assert got.language in ("en", "fr", "de", "es")
    assert whisper((SHORT, 16000), max_new_tokens=8, language=got.language).text == got.text


def test_audio_follows_the_shared_input_rules(whisper):
    path = DATA / "yes_stereo_22k.ogg"
    from_file = whisper(str(path), language="en", max_new_tokens=8)
    mono, rate = audio_item(str(path), target_rate=16000)
    assert rate == 16000 and from_file == whisper((mono, 16000), language="en", max_new_tokens=8)
    stereo = np.stack([SHORT, SHORT])
    assert whisper((stereo, 16000), language="en", max_new_tokens=8) == whisper(
        (SHORT, 16000), language="en", max_new_tokens=8
    )
    with pytest.raises(fmhub.InputError, match="sample rate"):
        whisper(SHORT)
    with pytest.raises(fmhub.InputError):
        whisper("no such file.wav")
    with pytest.raises(fmhub.InputError, match="language"):
        whisper((SHORT, 16000), language="klingon")
    with pytest.raises(fmhub.InputError, match="task"):
        whisper((SHORT, 16000), task="summarise")


def test_batches_equal_one_by_one_and_stream_gives_the_text(whisper):
    items = [(SHORT, 16000), (SHORT[:16000], 16000), str(DATA / "hello_22k.flac")]
    batched = whisper.predict(items, language="en", max_new_tokens=8)
    assert batched == [whisper(x, language="en", max_new_tokens=8) for x in items]
    stream = whisper.stream(items[0], language="en", max_new_tokens=8)
    assert "".join(stream) == stream.result.text == batched[0].text
    cut = whisper(items[0], language="en", max_new_tokens=8, stop=batched[0].text[3:5])
    assert cut.text == batched[0].text[: batched[0].text.find(batched[0].text[3:5])]


def test_save_load_round_trip(whisper, tmp_path):
    before = whisper((SHORT, 16000), language="en", max_new_tokens=8)
    again = fmhub.load(str(whisper.save(tmp_path / "w")))
    assert again.task == "transcription" and again.call_options is whisper.call_options
    assert again((SHORT, 16000), language="en", max_new_tokens=8) == before


def test_predict_on_the_command_line_prints_the_transcript(capsys, tmp_path):
    """A Whisper with a 24-position decoder: ``fmhub predict`` (no generation options) decodes
    the default 20 tokens instead of the zoo model's 444, which a random model uses in full."""
    from fmhub_transformers.testing import build_tiny_whisper

    folder = str(build_tiny_whisper(tmp_path / "w24", sizes={"max_target_positions": 24}))
    path = str(DATA / "hello_22k.flac")
    assert main(["predict", folder, path]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert row["input"] == path and isinstance(row["result"]["text"], str)
    expected = fmhub.load(folder)(path)
    assert isinstance(expected, Transcription) and row["result"]["text"] == expected.text
