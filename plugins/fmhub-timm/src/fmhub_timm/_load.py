"""Building timm models (names, weights, checkpoints, saved folders) and saving them."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch

import fmhub
from fmhub.manifest import read_config

from ._catalog import TASKS, split_name
from ._config import FeaturesConfig, TimmConfig
from ._stages import ImageProcessor

__all__ = ["load", "save"]

#: Written beside timm's config.json by ``save`` for feature-map models.
FEATURES_FILE = "fmhub_timm.json"
_CHECKPOINT_EXT = (".safetensors", ".pth", ".pt", ".bin", ".pth.tar", ".ckpt")
_SYNSET = re.compile(r"n\d{8}")


# -- names -------------------------------------------------------------------------------------


def check_name(name: str, pretrained: bool) -> None:
    """Refuse a name timm does not know, with close matches (``timm.list_models``)."""
    import timm
    from timm.models import get_pretrained_cfg, is_model

    from fmhub.errors import did_you_mean

    if name.startswith(("hf-hub:", "local-dir:")):
        return
    arch, tag = split_name(name)
    if not is_model(arch):
        raise fmhub.UnknownModelError(
            f"timm has no architecture {arch!r} (timm {timm.__version__}).{did_you_mean(arch, timm.list_models())}"
            f" List them with timm.list_models('{arch[:4]}*')."
        )
    if tag is not None:
        try:
            get_pretrained_cfg(name)
        except RuntimeError:
            tags = timm.list_pretrained(f"{arch}.*")
            raise fmhub.UnknownModelError(
                f"timm architecture {arch!r} has no pretrained weights tagged {tag!r}."
                f"{did_you_mean(name, tags)} Tags: {', '.join(tags) or 'none'}."
            ) from None
    elif pretrained and not timm.list_pretrained(f"{arch}.*"):
        raise fmhub.UnknownModelError(
            f"timm has no pretrained weights for {arch!r}; load it with pretrained=False for random "
            "weights, or pass checkpoint=PATH."
        )


# -- load --------------------------------------------------------------------------------------


def load(
    spec: fmhub.ModelSpec, options: Any, device: Any = None, dtype: Any = None
) -> fmhub.Loaded:
    """``fmhub_load``: build the module through ``timm.create_model`` and its preprocessing."""
    import timm

    task = options.task or spec.task
    if task is not None and task not in TASKS:
        raise fmhub.InvalidOptionError(
            f"timm models do tasks {', '.join(TASKS)}; got task={task!r}."
        )
    features = task == "feature-maps"
    if spec.path:
        module = _load_saved(spec.path, features, options)
    else:
        check_name(spec.name, options.pretrained or bool(options.checkpoint))
        kwargs = _create_kwargs(spec.name, options, features)
        module = _create(spec.name, kwargs, spec.id)
    module.eval()
    num_classes = 0 if features else int(getattr(module, "num_classes", 0) or 0)
    if task is None:
        task = "classification" if num_classes else "embedding"
    if task == "classification" and not num_classes:
        raise fmhub.InvalidOptionError(
            f"{spec.id!r} has no classifier (num_classes=0); load it with task='embedding', or "
            "num_classes=N for a fresh head to fine-tune."
        )
    channels_last = options.channels_last
    if channels_last is None:
        channels_last = is_convolutional(module)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    from timm.data import resolve_model_data_config

    data_config = resolve_model_data_config(module)
    processor = ImageProcessor(data_config, channels_last=channels_last)
    labels = resolve_labels(module) if task == "classification" else None
    fast = resolve_fast(module, options, task, device, dtype)
    info = {
        "timm_version": timm.__version__,
        "architecture": module.pretrained_cfg.get("architecture"),
        "pretrained_tag": module.pretrained_cfg.get("tag"),
        "channels_last": channels_last,
        "fast": fast,
        "data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in data_config.items()},
    }
    return fmhub.Loaded(module=module, task=task, labels=labels, processor=processor, info=info)


def _create_kwargs(name: str, options: Any, features: bool) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"pretrained": options.pretrained}
    if options.num_classes is not None:
        kwargs["num_classes"] = options.num_classes
    if features:
        kwargs["features_only"] = True
        if options.out_indices is not None:
            kwargs["out_indices"] = tuple(options.out_indices)
    if options.checkpoint:
        state_dict = read_checkpoint(options.checkpoint)
        head = _checkpoint_head_size(name, state_dict)
        if head is not None and "num_classes" not in kwargs and not features:
            kwargs["num_classes"] = head
        # timm's own pretrained path, fed with the checkpoint: it drops a head of the wrong size
        # and adapts the stem, exactly as for hub weights.
        kwargs["pretrained"] = True
        kwargs["pretrained_cfg_overlay"] = {
            "state_dict": state_dict,
            "source": None,
            "file": None,
            "num_classes": head if head is not None else kwargs.get("num_classes", 1000),
        }
    return kwargs


def _create(name: str, kwargs: dict[str, Any], model_id: str):
    import timm

    try:
        module = timm.create_model(name, **kwargs)
        # A checkpoint passed through pretrained_cfg_overlay must not stay referenced (memory).
        for m in module.modules():
            cfg = getattr(m, "pretrained_cfg", None)
            if isinstance(cfg, dict):
                cfg.pop("state_dict", None)
        return module
    except (OSError, RuntimeError) as exc:
        if _is_missing_weights(exc):
            if name.startswith("hf-hub:"):
                repo, what = name.removeprefix("hf-hub:"), "config.json and weights"
            else:
                repo, what = f"timm/{_default_tagged(name)}", "pretrained weights"
            raise fmhub.PluginError(
                f"The {what} of {model_id!r} (Hub repo {repo!r}) are not in the Hugging Face "
                f"cache ({_hf_cache()}) and could not be downloaded ({type(exc).__name__}). "
                f"Connect to the Hub once, point HF_HUB_CACHE at a cache holding {repo}, pass "
                "checkpoint=PATH, or load with pretrained=False for random weights."
            ) from None
        if kwargs.get("features_only"):
            raise fmhub.InvalidOptionError(
                f"timm cannot build feature maps for {model_id!r} ({type(exc).__name__}: {exc}); "
                "load it with task='embedding' or task='classification' instead."
            ) from None
        raise


def _default_tagged(name: str) -> str:
    """``arch`` -> ``arch.<default tag>`` (the repo timm reads), ``arch.tag`` unchanged."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    return (cfg.hf_hub_id or name).removeprefix("timm/") if cfg is not None else name


def _is_missing_weights(exc: BaseException) -> bool:
    names = {type(e).__name__ for e in _chain(exc)}
    return bool(
        names
        & {
            "LocalEntryNotFoundError",
            "EntryNotFoundError",
            "OfflineModeIsEnabled",
            "RepositoryNotFoundError",
            "HfHubHTTPError",
            "ConnectionError",
            "URLError",
            "HTTPError",
            "gaierror",
        }
    )


def _chain(exc: BaseException | None):
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


def _hf_cache() -> str:
    try:
        from huggingface_hub import constants

        return constants.HF_HUB_CACHE
    except ImportError:  # pragma: no cover - timm depends on huggingface_hub
        return os.environ.get("HF_HUB_CACHE", "~/.cache/huggingface/hub")


def read_checkpoint(path: str) -> dict[str, torch.Tensor]:
    """A state dict from a local ``.safetensors`` / ``.pth`` file (``weights_only=True``)."""
    from timm.models import load_state_dict

    p = Path(path).expanduser()
    if not p.is_file():
        raise fmhub.InvalidOptionError(
            f"checkpoint={path!r} is not a file; pass the path of a "
            ".safetensors or .pth state dict."
        )
    if not p.name.lower().endswith(_CHECKPOINT_EXT):
        raise fmhub.InvalidOptionError(
            f"checkpoint={path!r}: expected one of {', '.join(_CHECKPOINT_EXT)}."
        )
    try:
        state_dict = load_state_dict(str(p), weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
        raise fmhub.InvalidOptionError(
            f"checkpoint={path!r} cannot be read as a state dict with weights_only=True "
            f"({type(exc).__name__}: {exc})."
        ) from None
    if not isinstance(state_dict, dict) or not all(
        isinstance(v, torch.Tensor) for v in state_dict.values()
    ):
        raise fmhub.InvalidOptionError(
            f"checkpoint={path!r} does not hold a state dict of tensors."
        )
    return state_dict


def _checkpoint_head_size(name: str, state_dict: dict[str, torch.Tensor]) -> int | None:
    if name.startswith("hf-hub:"):
        return None
    from timm.models import get_pretrained_cfg_value

    arch, _ = split_name(name)
    classifier = get_pretrained_cfg_value(name if "." in name else arch, "classifier")
    for clf in (classifier,) if isinstance(classifier, str) else tuple(classifier or ()):
        w = state_dict.get(f"{clf}.weight")
        if w is not None:
            return int(w.shape[0])
    return None


def _load_saved(path: str, features: bool, options: Any):
    """A folder in timm's own format (config.json + weights), e.g. written by :func:`save`.

    Loading is strict: weights that do not fit the architecture config.json describes (missing,
    unexpected or mis-shaped tensors) are a ManifestError, never a half-loaded model.
    """
    try:
        return _load_saved_strict(path, features, options)
    except (RuntimeError, KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
        if isinstance(exc, fmhub.FmhubError):
            raise
        first = " ".join(str(exc).split())[:300]
        raise fmhub.ManifestError(
            f"The timm folder {path!r} does not load: its weights do not fit the architecture "
            f"its config.json describes, or the config is invalid ({type(exc).__name__}: {first}). "
            "Restore the files the folder was saved with."
        ) from None


def _load_saved_strict(path: str, features: bool, options: Any):
    import timm

    read_config(Path(path) / "config.json", TimmConfig)  # before timm reads it
    marker = Path(path) / FEATURES_FILE
    if marker.is_file():
        meta = read_config(marker, FeaturesConfig)
        module = timm.create_model(
            f"local-dir:{path}", pretrained=False, features_only=True, out_indices=meta.out_indices
        )
        from safetensors.torch import load_file

        module.load_state_dict(load_file(str(Path(path) / "model.safetensors")))
        return module
    kwargs: dict[str, Any] = {"pretrained": True}
    if features:
        kwargs["features_only"] = True
        if options.out_indices is not None:
            kwargs["out_indices"] = tuple(options.out_indices)
    if options.num_classes is not None:
        kwargs["num_classes"] = options.num_classes
    return timm.create_model(f"local-dir:{path}", **kwargs)


# -- policies ----------------------------------------------------------------------------------


def is_convolutional(module: torch.nn.Module) -> bool:
    """True for networks with convolutions beyond a patch-embedding stem.

    ResNet, EfficientNet, MobileNet, RegNet and ConvNeXt run faster in the channels_last memory
    format on CPU with outputs equal up to float noise (see docs/plugins/timm.md for the measured
    figures); plain transformers (ViT, DeiT, Swin, EVA: a single patch-embedding convolution) gain
    nothing, so they keep timm's default layout.
    """
    convs = sum(1 for m in module.modules() if isinstance(m, torch.nn.Conv2d))
    return convs >= 2


def resolve_fast(module: torch.nn.Module, options: Any, task: str, device: Any, dtype: Any) -> bool:
    """The ``fast`` option: None turns the frozen-graph path on for convnets on CPU in float32;
    True where it cannot apply is an :class:`fmhub.InvalidOptionError` naming why."""
    from ._fast import fast_supported

    dev = torch.device(device) if device is not None else torch.device("cpu")
    dt = dtype if dtype is not None else torch.float32
    problem = None
    if dev.type != "cpu":
        problem = f"it runs on CPU only, not on {dev.type}"
    elif dt != torch.float32:
        problem = f"it runs in float32 only, not {str(dt).removeprefix('torch.')}"
    elif options.quantize:
        problem = f"a quantized model (quantize={options.quantize!r}) runs its own kernels"
    elif getattr(options, "runtime", "torch") != "torch":
        problem = f"runtime={options.runtime!r} runs the forward stage itself"
    elif task not in ("classification", "embedding"):
        problem = f"it covers tasks classification and embedding, not {task!r}"
    if options.fast is None:
        return problem is None and fast_supported(module)
    if options.fast and problem is not None:
        raise fmhub.InvalidOptionError(
            f"fast=True cannot apply to {task!r} with these options: {problem}. Drop fast=True "
            "(fast=None picks it where it applies)."
        )
    return bool(options.fast)


def resolve_labels(module: torch.nn.Module) -> tuple[str, ...] | None:
    """Class names for the head: saved label names, else timm's ImageNet info for ImageNet heads."""
    from timm.data import ImageNetInfo, infer_imagenet_subset

    n = int(getattr(module, "num_classes", 0) or 0)
    cfg = getattr(module, "pretrained_cfg", {}) or {}
    names = cfg.get("label_names")
    if isinstance(names, dict):
        names = [names.get(i, names.get(str(i), str(i))) for i in range(n)]
    subset = infer_imagenet_subset(cfg) if cfg.get("num_classes") == n else None
    if names and len(names) == n:
        if subset and all(_SYNSET.fullmatch(str(s)) for s in names):
            info = ImageNetInfo(subset)
            return tuple(info.label_name_to_description(s) for s in names)
        return tuple(str(s) for s in names)
    if subset:
        return tuple(ImageNetInfo(subset).label_descriptions())
    return None


# -- save --------------------------------------------------------------------------------------


def save(model: Any, path: str) -> None:
    """``fmhub_save``: timm's own folder format (``config.json`` + ``model.safetensors``).

    Whole models are written with timm's ``save_config_for_hf``, so ``timm.create_model(
    'local-dir:<folder>', pretrained=True)`` loads them too; caller labels go in ``label_names``.
    Feature-map models keep their wrapper's weights and a small ``fmhub_timm.json``.
    """
    from safetensors.torch import save_file

    module = model.module
    folder = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(tensors, str(folder / "model.safetensors"))
    if model.task == "feature-maps":
        _save_feature_config(module, folder)
        return
    from timm.models._hub import save_config_for_hf

    model_config: dict[str, Any] = {}
    if model.task == "classification" and model.labels is not None:
        if tuple(model.labels) != (resolve_labels(module) or ()):
            model_config["label_names"] = list(model.labels)
    save_config_for_hf(module, str(folder / "config.json"), model_config=model_config)


def _save_feature_config(module: Any, folder: Path) -> None:
    cfg = {
        k: v
        for k, v in dict(module.pretrained_cfg).items()
        if k not in ("state_dict", "file", "url", "hf_hub_id", "source") and v is not None
    }
    arch = cfg.pop("architecture")
    config = {"architecture": arch, "num_classes": 0, "pretrained_cfg": cfg}
    model_args = {
        k: v
        for k, v in (getattr(module, "_model_args", None) or {}).items()
        if k not in ("features_only", "out_indices", "pretrained_cfg_overlay")
    }
    if model_args:
        config["model_args"] = model_args
    (folder / "config.json").write_text(json.dumps(config, indent=2, default=list))
    out_indices = list(module.feature_info.out_indices)
    (folder / FEATURES_FILE).write_text(
        json.dumps({"features_only": True, "out_indices": out_indices})
    )
