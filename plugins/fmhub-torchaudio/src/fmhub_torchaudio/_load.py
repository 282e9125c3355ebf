"""Building torchaudio models: pipeline bundles, local checkpoints, factories, saved folders."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

import fmhub
from fmhub.manifest import read_config

from ._catalog import BUNDLES, FACTORIES, Row
from ._config import SavedConfig
from ._module import Speech, SpeechModule, conv_geometry, padding_safe

__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "hub_checkpoint_path", "load", "save"]

CONFIG_FILE = "torchaudio.json"
WEIGHTS_FILE = "model.safetensors"
_FORMAT = 1


def hub_checkpoint_path(info: Row) -> Path:
    """Where ``bundle.get_model()`` looks for (and downloads) the bundle's weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / info.file


def _bundle(info: Row):
    import torchaudio.pipelines

    return getattr(torchaudio.pipelines, info.attr)


def _read_state_dict(path: str, what: str) -> dict[str, torch.Tensor]:
    if not os.path.isfile(path):
        raise fmhub.InvalidOptionError(f"{what} {path!r} does not exist; pass a .pt/.pth file.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise fmhub.InvalidOptionError(
            f"{what} {path!r} is not a readable state-dict file ({type(exc).__name__}: {exc}); "
            "fmhub reads checkpoints with torch.load(weights_only=True)."
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise fmhub.InvalidOptionError(
            f"{what} {path!r} holds a {type(state).__name__}, not a state dict."
        )
    return state


def _load_weights(model: nn.Module, state: dict, what: str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise fmhub.InvalidOptionError(
            f"{what} does not fit the architecture: {str(exc).splitlines()[0]} ... "
            "Check that the checkpoint was saved from this model."
        ) from None


def _unwrap(model: nn.Module) -> nn.Module:
    """torchaudio wraps models that normalise the waveform; fmhub normalises per recording."""
    return model.model if type(model).__name__ == "_Wav2Vec2Model" else model


def _bundle_model(info: Row, checkpoint: str | None) -> nn.Module:
    from torchaudio.pipelines._wav2vec2 import utils

    bundle = _bundle(info)
    if checkpoint is None:
        cached = hub_checkpoint_path(info)
        try:
            return _unwrap(bundle.get_model(dl_kwargs={"weights_only": True, "progress": False}))
        except Exception as exc:  # noqa: BLE001 - both cases get a message naming the file
            if cached.is_file():
                first = (str(exc).splitlines() or [""])[0]
                raise fmhub.PluginError(
                    f"The cached weights {str(cached)!r} of torchaudio:{info.id} do not load "
                    f"({type(exc).__name__}: {first}); delete the file to download it again."
                ) from None
            raise fmhub.PluginError(
                f"The weights of torchaudio:{info.id} are not in the torch hub cache "
                f"({str(cached)!r}) and downloading them failed ({type(exc).__name__}: {exc}). "
                "Connect once to download, copy the file there (TORCH_HOME sets the folder), or "
                "load with checkpoint='<local file>'."
            ) from None
    model = utils._get_model(info.model_type, bundle._params)
    state = _read_state_dict(checkpoint, "checkpoint")
    aux = state.get("aux.weight")
    if info.asr and aux is not None and aux.shape[0] != info.num_labels:
        utils._remove_aux_axes(state, bundle._remove_aux_axis)  # a copy of the bundle's own file
    _load_weights(model, state, f"checkpoint {checkpoint!r}")
    return model


def _factory_model(name: str, options) -> nn.Module:
    import torchaudio.models

    factory = getattr(torchaudio.models, name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)
        try:
            model = factory(**options.config)
        except TypeError as exc:
            raise fmhub.InvalidOptionError(
                f"config does not fit torchaudio.models.{name}: {exc}. See its signature for the "
                "keyword arguments it takes."
            ) from None
    if options.checkpoint is not None:
        state = _read_state_dict(options.checkpoint, "checkpoint")
        _load_weights(model, state, f"checkpoint {options.checkpoint!r}")
    return model


def _resolve_layer(layer: int | None, num_layers: int) -> int:
    if layer is None:
        return num_layers
    resolved = layer if layer > 0 else num_layers + 1 + layer
    if not 1 <= resolved <= num_layers:
        raise fmhub.InvalidOptionError(
            f"layer={layer} is out of range: this model has {num_layers} transformer layers; "
            f"use 1..{num_layers} or -1..-{num_layers}."
        )
    return resolved


def _processor(
    model: nn.Module, *, sample_rate, normalize, family, labels, config, layer, class_labels=None
) -> Speech:
    layers = len(model.encoder.transformer.layers)
    stride, field = conv_geometry(model)
    safe, encoder_safe = padding_safe(model)
    return Speech(
        sample_rate=int(sample_rate),
        normalize_waveform=bool(normalize),
        family=family,
        layer=_resolve_layer(layer, layers),
        num_layers=layers,
        embed_dim=model.encoder.feature_projection.projection.out_features,
        stride=stride,
        field=field,
        padding_safe=safe,
        encoder_padding_safe=encoder_safe,
        labels=tuple(labels) if labels is not None else None,
        config=config,
        class_labels=tuple(class_labels) if class_labels is not None else None,
    )


def _check_factory_only(spec, options) -> None:
    fields = ("config", "labels", "sample_rate", "normalize_waveform", "seed")
    given = [f for f in fields if f in options.model_fields_set]
    if given:
        raise fmhub.InvalidOptionError(
            f"option(s) {', '.join(given)} apply to torchaudio:models.* factories only, not to "
            f"{spec.id!r} (a pretrained bundle with a fixed architecture)."
        )


def _task(spec, speech: Speech, head: bool, requested: str | None) -> str:
    task = "classification" if head else "transcription" if speech.labels else "embedding"
    if requested == "transcription" and not speech.labels:
        raise fmhub.InvalidOptionError(
            f"{spec.id!r} has no CTC layer, so it cannot transcribe; use task='embedding', or an "
            "ASR bundle such as torchaudio:wav2vec2_asr_base_960h."
        )
    if requested == "classification" and not head:
        raise fmhub.InvalidOptionError(
            f"{spec.id!r} has no classification head yet; fine-tune it with labels first "
            "(fmhub.finetune) or use task='embedding'."
        )
    if requested not in (None, "transcription", "classification", "embedding"):
        raise fmhub.InvalidOptionError(
            f"task={requested!r} is not a torchaudio task; use 'transcription' (ASR models), "
            "'embedding' or 'classification' (after fine-tuning)."
        )
    return task


def _loaded(spec, options, model, speech: Speech, head: nn.Module | None, info: dict) -> Any:
    task = _task(spec, speech, head is not None, options.task)
    module = SpeechModule(model, head).eval()
    import torchaudio

    info = {"torchaudio": torchaudio.__version__, **info}
    labels = speech.class_labels if task == "classification" else None
    return fmhub.Loaded(module=module, task=task, labels=labels, processor=speech, info=info)


def load(spec, options):
    """``fmhub_load``: a saved folder, a bundle (hub cache or ``checkpoint``), or a factory."""
    path = spec.path
    if path and os.path.isdir(path):
        return _load_saved(spec, options, Path(path))
    name = spec.name
    if name.startswith("models."):
        factory = name.removeprefix("models.")
        if factory not in FACTORIES:
            raise fmhub.UnknownModelError(f"torchaudio.models has no factory {factory!r} served.")
        model = _factory_model(factory, options)
        labels = options.labels
        aux = getattr(model, "aux", None)
        if aux is not None and (labels is None or len(labels) != aux.out_features):
            raise fmhub.InvalidOptionError(
                f"config gives a CTC layer with {aux.out_features} outputs, so pass labels=[...] "
                f"with {aux.out_features} entries (blank first); got {labels!r}."
            )
        if aux is None and labels is not None:
            raise fmhub.InvalidOptionError(
                "labels were given but config has no aux_num_out "
                "(CTC layer); set config['aux_num_out']."
            )
        speech = _processor(
            model,
            sample_rate=options.sample_rate,
            normalize=options.normalize_waveform,
            family=FACTORIES[factory],
            labels=labels,
            config={"factory": factory, "kwargs": options.config},
            layer=options.layer,
        )
        return _loaded(spec, options, model, speech, None, {"factory": factory})
    info = BUNDLES.get(name)
    if info is None:
        raise fmhub.UnknownModelError(f"torchaudio has no pipeline bundle {name!r} served.")
    _check_factory_only(spec, options)
    checkpoint = path if path else options.checkpoint
    model = _bundle_model(info, checkpoint)
    bundle = _bundle(info)
    labels = bundle.get_labels() if info.asr else None
    factory = "wavlm_model" if info.model_type == "WavLM" else "wav2vec2_model"
    speech = _processor(
        model,
        sample_rate=bundle.sample_rate,
        normalize=info.normalize_waveform,
        family=info.architecture,
        labels=labels,
        layer=options.layer,
        config={"factory": factory, "kwargs": bundle._params},
    )
    return _loaded(spec, options, model, speech, None, {"bundle": info.attr})


def _load_saved(spec, options, folder: Path):
    import torchaudio.models
    from safetensors.torch import load_file

    cfg = read_config(folder / CONFIG_FILE, SavedConfig)
    try:  # strict: weights that do not fit the described architecture are refused whole
        factory = getattr(torchaudio.models, cfg.config.factory)
        model = factory(**cfg.config.kwargs)
        head = None
        if cfg.head is not None:
            head = nn.Linear(cfg.head.in_features, cfg.head.out_features)
        module = SpeechModule(model, head)
        module.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    except (AttributeError, KeyError, TypeError, ValueError, RuntimeError, OSError) as exc:
        first = " ".join(str(exc).split())[:300]
        raise fmhub.ManifestError(
            f"The torchaudio folder {str(folder)!r} does not load: its weights do not fit the "
            f"architecture {CONFIG_FILE} describes, or that file is invalid "
            f"({type(exc).__name__}: {first}). Restore the files the folder was saved with."
        ) from None
    layer = options.layer if "layer" in options.model_fields_set else cfg.layer
    speech = _processor(
        model,
        sample_rate=cfg.sample_rate,
        normalize=cfg.normalize_waveform,
        family=cfg.family,
        labels=cfg.ctc_labels,
        config=cfg.config.model_dump(),
        layer=layer,
        class_labels=cfg.class_labels,
    )
    return _loaded(spec, options, model, speech, head, dict(cfg.info))


def save(model, path: str) -> None:
    """``fmhub_save``: ``torchaudio.json`` (architecture, labels, preprocessing) + safetensors."""
    from safetensors.torch import save_file

    from ._module import speech_module

    speech: Speech = model.processor
    module = speech_module(model.module)
    head = module.head
    cfg = {
        "format": _FORMAT,
        "config": speech.config,
        "family": speech.family,
        "sample_rate": speech.sample_rate,
        "normalize_waveform": speech.normalize_waveform,
        "ctc_labels": list(speech.labels) if speech.labels is not None else None,
        "layer": speech.layer,
        "head": {"in": head.in_features, "out": head.out_features} if head is not None else None,
        "class_labels": list(model.labels) if model.labels is not None else None,
        "info": {k: v for k, v in model.info.items() if k in ("bundle", "factory")},
    }
    SavedConfig.model_validate(cfg)  # what is written reads back
    Path(path, CONFIG_FILE).write_text(json.dumps(cfg, indent=2) + "\n")
    state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(Path(path, WEIGHTS_FILE)))
