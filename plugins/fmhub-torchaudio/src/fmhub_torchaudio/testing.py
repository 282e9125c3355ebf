"""Tiny torchaudio models for tests, demos and benchmarks (no network needed).

* :func:`tiny_config` / :func:`tiny_options`: a few-layer ``torchaudio.models.wav2vec2_model``
  (or ``wavlm_model``) config, loaded as ``fmhub.load("torchaudio:models.wav2vec2_model",
  **tiny_options())``; with the real front-end geometry (400-sample frames, 320 apart).
* :func:`write_checkpoint`: such a model's random weights in a local ``.pt`` file.
* :func:`place_bundle_checkpoint`: random weights for a real pipeline bundle, written where
  ``bundle.get_model()`` looks (``torch.hub.get_dir()/checkpoints/<file>``, under ``TORCH_HOME``),
  in the bundle's own file layout, so ``fmhub.load("torchaudio:<bundle>")`` runs offline. Full
  size: about 380 MB for a base model, 1.2 GB for a large one.
* :func:`tiny_bundles`: the same for shrunk copies of the bundles (two small layers), patched into
  ``torchaudio.pipelines`` for the duration of a ``with`` block: the bundles' real loading path at
  the cost of a tiny model.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._catalog import BUNDLES, CONV_LAYERS

__all__ = [
    "EN_LABELS",
    "place_bundle_checkpoint",
    "tiny_bundle_params",
    "tiny_bundles",
    "tiny_config",
    "tiny_options",
    "write_checkpoint",
]

#: The English CTC labels of torchaudio's ASR bundles, blank first.
EN_LABELS: tuple[str, ...] = ("-", "|", *"ETAONIHSRDLUMWCFGYPBVK'XJQZ")


def tiny_config(
    *,
    family: str = "wav2vec2",
    extractor_mode: str = "layer_norm",
    num_layers: int = 2,
    embed_dim: int = 32,
    num_heads: int = 2,
    ff_features: int = 64,
    conv_channels: int = 16,
    pos_conv_kernel: int = 8,
    aux_num_out: int | None = None,
) -> dict[str, Any]:
    """Keyword arguments of ``wav2vec2_model`` (``family="wavlm"``: ``wavlm_model``)."""
    cfg: dict[str, Any] = {
        "extractor_mode": extractor_mode,
        "extractor_conv_layer_config": [[conv_channels, k, s] for _, k, s in CONV_LAYERS],
        "extractor_conv_bias": extractor_mode == "layer_norm",
        "encoder_embed_dim": embed_dim,
        "encoder_projection_dropout": 0.1,
        "encoder_pos_conv_kernel": pos_conv_kernel,
        "encoder_pos_conv_groups": 2,
        "encoder_num_layers": num_layers,
        "encoder_num_heads": num_heads,
        "encoder_attention_dropout": 0.1,
        "encoder_ff_interm_features": ff_features,
        "encoder_ff_interm_dropout": 0.0,
        "encoder_dropout": 0.1,
        "encoder_layer_norm_first": extractor_mode == "layer_norm",
        "encoder_layer_drop": 0.0,
        "aux_num_out": aux_num_out,
    }
    if family == "wavlm":
        cfg["encoder_num_buckets"] = 16
        cfg["encoder_max_distance"] = 64
    return cfg


def tiny_options(
    *, asr: bool = False, seed: int = 0, checkpoint: str | os.PathLike | None = None, **config: Any
) -> dict[str, Any]:
    """Load options for ``torchaudio:models.wav2vec2_model`` (``wavlm_model`` with
    ``family="wavlm"``): a tiny config, English CTC labels when ``asr``."""
    cfg = tiny_config(aux_num_out=len(EN_LABELS) if asr else None, **config)
    opts: dict[str, Any] = {"config": cfg, "seed": seed}
    if asr:
        opts["labels"] = list(EN_LABELS)
    if checkpoint is not None:
        opts["checkpoint"] = os.fspath(checkpoint)
    return opts


def _build(factory: str, config: dict[str, Any], seed: int):
    import torch
    import torchaudio.models

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return getattr(torchaudio.models, factory)(**config)


def write_checkpoint(
    path: str | os.PathLike,
    config: dict[str, Any] | None = None,
    *,
    factory: str = "wav2vec2_model",
    seed: int = 0,
) -> Path:
    """Save the random-init state dict of ``torchaudio.models.<factory>(**config)`` to ``path``."""
    import torch

    model = _build(factory, tiny_config() if config is None else config, seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def place_bundle_checkpoint(
    name: str, *, seed: int = 0, overwrite: bool = False, params: dict[str, Any] | None = None
) -> Path:
    """Write random weights for bundle ``name`` (``"wav2vec2_asr_base_960h"``) into the torch hub
    checkpoint folder, laid out like the published file (ASR files carry fairseq's unused output
    rows, which ``get_model()`` removes). Set ``TORCH_HOME`` first to keep it out of your cache.

    ``params`` replaces the bundle's architecture (see :func:`tiny_bundles`)."""
    import torch
    import torchaudio.pipelines

    info = BUNDLES[name]
    bundle = getattr(torchaudio.pipelines, info.attr)
    dest = Path(torch.hub.get_dir()) / "checkpoints" / info.file
    if dest.is_file() and not overwrite:
        return dest
    factory = "wavlm_model" if info.model_type == "WavLM" else "wav2vec2_model"
    state = _build(factory, params or bundle._params, seed).state_dict()
    if info.asr:
        axes = sorted(bundle._remove_aux_axis)
        for key in ("aux.weight", "aux.bias"):
            rows = list(state[key])
            for axis in axes:  # re-insert the rows get_model() drops
                rows.insert(axis, torch.zeros_like(rows[0]))
            state[key] = torch.stack(rows)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".partial")
    torch.save(state, tmp)
    os.replace(tmp, dest)
    return dest


def tiny_bundle_params(name: str) -> dict[str, Any]:
    """The architecture of bundle ``name`` shrunk to two small layers, keeping what matters to
    fmhub: front-end mode and geometry, layer-norm order, the CTC output size, WavLM's keys."""
    import torchaudio.pipelines

    info = BUNDLES[name]
    full = getattr(torchaudio.pipelines, info.attr)._params
    tiny = tiny_config(
        family=info.architecture,
        extractor_mode=full["extractor_mode"],
        aux_num_out=full["aux_num_out"],
    )
    tiny["encoder_layer_norm_first"] = full["encoder_layer_norm_first"]
    tiny["extractor_conv_bias"] = full["extractor_conv_bias"]
    return tiny


@contextlib.contextmanager
def tiny_bundles(*names: str, seed: int = 0) -> Iterator[None]:
    """Within the block, the named ``torchaudio.pipelines`` bundles have tiny architectures
    (:func:`tiny_bundle_params`) and random weights under their real file names in the torch hub
    checkpoint folder, so ``fmhub.load("torchaudio:<name>")`` runs the bundles' own loading code
    (``get_model()``, the cache lookup, ASR output-row removal, labels) in a fraction of a second.
    Set ``TORCH_HOME`` to a scratch folder first: the files written are not the real weights."""
    import dataclasses

    import torchaudio.pipelines

    saved = {}
    try:
        for name in names:
            attr = BUNDLES[name].attr
            bundle = getattr(torchaudio.pipelines, attr)
            saved[attr] = bundle
            params = tiny_bundle_params(name)
            place_bundle_checkpoint(name, seed=seed, overwrite=True, params=params)
            setattr(torchaudio.pipelines, attr, dataclasses.replace(bundle, _params=params))
        yield
    finally:
        for attr, bundle in saved.items():
            setattr(torchaudio.pipelines, attr, bundle)
