"""Loading the audio encoders of :data:`AUDIO_TASKS` (imports torch and transformers): the model
class of the task, the checkpoint's feature extractor (and CTC tokenizer), the chunk plan."""

from __future__ import annotations

from typing import Any

import fmhub

from ._config import AUDIO_TASKS, CheckpointConfig, detect_audio_task
from ._load import _quiet, load_module, loaded
from ._stages_audio import CHUNK_SECONDS, AudioProcessor

__all__ = ["load_audio"]

#: Options of text models that mean nothing to a recording.
_TEXT_ONLY = ("max_length", "pooling", "normalize")


def load_audio(spec: fmhub.ModelSpec, options, src, cfg: CheckpointConfig) -> fmhub.Loaded:
    """``fmhub_load`` for an audio encoder checkpoint (``src`` is the resolved source)."""

    task = options.task or spec.task or detect_audio_task(cfg)
    if task not in AUDIO_TASKS:
        raise fmhub.InvalidOptionError(
            f"{src.where} is an audio model (model_type {cfg.model_type!r}); task={task!r} is not "
            f"one of its tasks: use one of {', '.join(AUDIO_TASKS)}."
        )
    given = [k for k in _TEXT_ONLY if getattr(options, k) is not None]
    if given:
        raise fmhub.InvalidOptionError(
            f"{', '.join(given)} apply to text models; {src.where} is an audio model (see "
            "chunk_seconds, input_sample_rate and top_k)."
        )
    module, _ = load_module(src, options, cfg, task, AUDIO_TASKS[task])
    processor = _processor(module, src, options, task, cfg)
    return loaded(
        module,
        task=task,
        processor=processor,
        modality="audio",
        options=options,
        src=src,
        cfg=cfg,
        info={
            "modality": "audio",
            "sample_rate": processor.rate,
            "chunk_seconds": processor.chunk / processor.rate,
        },
    )


def _pretrained(loader, src, options, what: str) -> Any:
    extra = {"local_files_only": True} if src.cache_only else {}
    try:
        return _quiet(
            lambda: loader.from_pretrained(
                src.location,
                revision=src.revision,
                trust_remote_code=options.trust_remote_code,
                **extra,
            )
        )
    except (OSError, ValueError, KeyError) as exc:
        raise fmhub.ManifestError(
            f"{src.where} has no usable {what} ({type(exc).__name__}: {str(exc)[:200]}); an audio "
            "checkpoint needs preprocessor_config.json"
            + (
                " and a CTC tokenizer (vocab.json, tokenizer_config.json)"
                if "token" in what
                else ""
            )
            + "."
        ) from None


def _conv_layout(config) -> tuple[int, int]:
    """Samples per output frame and the receptive field of the convolutional front end."""
    field, jump = 1, 1
    for kernel, stride in zip(config.conv_kernel, config.conv_stride):
        field += (kernel - 1) * jump
        jump *= stride
    return jump, field


def _processor(module, src, options, task: str, cfg: CheckpointConfig) -> AudioProcessor:
    import torch
    from transformers import AutoFeatureExtractor, AutoTokenizer

    fe = _pretrained(AutoFeatureExtractor, src, options, "feature extractor")
    rate = int(getattr(fe, "sampling_rate", 0) or 16000)
    tokenizer = None
    if task == "transcription":
        tokenizer = _pretrained(AutoTokenizer, src, options, "CTC tokenizer")
    config = module.config
    if cfg.model_type == "audio-spectrogram-transformer":
        # kaldi filter banks: 25 ms frames every 10 ms; one window holds max_length frames
        frame, shift = rate * 25 // 1000, rate // 100
        window = (int(fe.max_length) - 1) * shift + frame
        chunk = window
        if options.chunk_seconds is not None:
            chunk = round(options.chunk_seconds * rate)
            if chunk > window:
                raise fmhub.InvalidOptionError(
                    f"chunk_seconds={options.chunk_seconds} is longer than the "
                    f"{window / rate:.2f} s window {src.where} sees at once; use at most that."
                )
        return AudioProcessor(
            feature_extractor=fe,
            tokenizer=None,
            kind="spectrogram",
            rate=rate,
            stride=shift,
            field=frame,
            padding_safe=False,
            chunk=max(chunk, frame),
            context=0,
            chunk_batch=options.chunk_batch,
            top_k=options.top_k,
            input_sample_rate=options.input_sample_rate,
        )
    if not hasattr(config, "conv_kernel") or not hasattr(config, "conv_stride"):
        raise fmhub.PluginError(
            f"{src.where} (model_type {cfg.model_type!r}) has no convolutional front end fmhub "
            "knows how to chunk; fmhub serves wav2vec 2.0-style encoders and AST."
        )
    stride, field = _conv_layout(config)
    get_lengths = getattr(module, "_get_feat_extract_output_lengths", None)
    if get_lengths is not None:  # adapters after the front end would change the frame count
        probe = [field, field + 7 * stride + 3, 16000 + 11]
        want = [int(v) for v in get_lengths(torch.tensor(probe))]
        if want != [(n - field) // stride + 1 for n in probe]:
            raise fmhub.PluginError(
                f"{src.where}: its frame count is not that of its convolutional front end "
                "(an adapter stack, say); fmhub cannot chunk it."
            )
    return AudioProcessor(
        feature_extractor=fe,
        tokenizer=tokenizer,
        kind="waveform",
        rate=rate,
        stride=stride,
        field=field,
        padding_safe=getattr(config, "feat_extract_norm", "group") == "layer",
        chunk=round((options.chunk_seconds or CHUNK_SECONDS) * rate),
        context=round(options.chunk_context_seconds * rate),
        chunk_batch=options.chunk_batch,
        top_k=options.top_k,
        input_sample_rate=options.input_sample_rate,
    )
