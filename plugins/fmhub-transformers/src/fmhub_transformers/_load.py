"""Loading and saving Transformers checkpoints (imports torch and transformers)."""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

import fmhub

from ._config import (
    GENERATIVE,
    IMAGE_TEXT,
    TASKS,
    CheckpointConfig,
    Pooling,
    SentenceModules,
    detect_task,
    is_audio_config,
    is_image_model,
    is_image_processor,
    read_config,
    read_json,
    read_pooling,
    sentence_modules,
)
from ._stages import TextProcessor

__all__ = ["load", "save"]

_SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass
class _Source:
    """Where a checkpoint's files come from: a local folder, or a hub repo at a revision."""

    location: str  # folder path or repo id
    revision: str | None
    local: bool
    where: str  # how to name it in messages
    cache_only: bool = False  # the hub cannot be reached: read the cache, never retry the network

    def fetch(self, filename: str, required: bool = False) -> str | None:
        """Local path of ``filename`` (downloaded or from the cache); None when it does not exist."""
        if self.local:
            path = os.path.join(self.location, filename)
            if os.path.isfile(path):
                return path
            if required:
                raise fmhub.ManifestError(
                    f"{self.where} has no {filename}; it is not a Transformers checkpoint folder."
                )
            return None
        return _hub_file(self, filename, required)


def _hub_file(src: _Source, filename: str, required: bool) -> str | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return hf_hub_download(
            src.location, filename, revision=src.revision, local_files_only=src.cache_only
        )
    except GatedRepoError as exc:
        raise fmhub.PluginError(
            f"{src.where} is gated: accept its terms on the hub and log in "
            f"(huggingface-cli login). {exc}"
        ) from None
    except RepositoryNotFoundError:
        raise fmhub.UnknownModelError(
            f"No hub repo {src.location!r} (or it is private: log in with huggingface-cli login)."
        ) from None
    except RevisionNotFoundError:
        raise fmhub.InvalidOptionError(
            f"revision={src.revision!r} does not exist in {src.location!r}; use a branch, tag or "
            "commit of the repo."
        ) from None
    except LocalEntryNotFoundError:
        if not required:
            return None
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        raise fmhub.PluginError(
            f"{src.where} is not in the local Hugging Face cache"
            + (
                " and HF_HUB_OFFLINE is set"
                if offline
                else f" and the hub ({_endpoint_label()}) cannot be reached"
            )
            + f" (cache: {_cache_dir()}). Download it once online, set HF_HUB_CACHE to a cache "
            "that holds it, or load a local folder."
        ) from None
    except EntryNotFoundError:
        if required:
            raise fmhub.ManifestError(
                f"{src.where} has no {filename}; it is not a Transformers model repo."
            ) from None
        return None


#: Seconds the connection probe may take before the hub counts as unreachable (0: no probe).
PROBE_TIMEOUT_ENV = "FMHUB_HF_PROBE_TIMEOUT"
PROBE_TIMEOUT = 3.0
_PROBE_TTL = 60.0  # a probe's answer is reused this long
_probes: dict[tuple[str, int], tuple[float, bool]] = {}


def _probe_timeout() -> float:
    raw = os.environ.get(PROBE_TIMEOUT_ENV, "").strip()
    try:
        return max(0.0, float(raw)) if raw else PROBE_TIMEOUT
    except ValueError:
        return PROBE_TIMEOUT


def _endpoint_address() -> tuple[str, int] | None:
    """Host and port a request to the hub connects to first: the endpoint, or its proxy."""
    from urllib.parse import urlsplit
    from urllib.request import getproxies, proxy_bypass

    from huggingface_hub import constants

    url = urlsplit(constants.ENDPOINT)
    if not url.hostname:
        return None
    proxy = getproxies().get(url.scheme)
    if proxy and not proxy_bypass(url.hostname):
        p = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if p.hostname:
            return p.hostname, p.port or (443 if p.scheme == "https" else 80)
    return url.hostname, url.port or (443 if url.scheme == "https" else 80)


def _connects(address: tuple[str, int], timeout: float) -> bool:
    """A TCP connection to ``address`` opens within ``timeout`` seconds (name lookup included:
    it runs in a thread, so a resolver that hangs cannot stall the load)."""
    done = threading.Event()
    ok: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection(address, timeout=timeout):
                ok.append(True)
        except OSError:
            pass
        finally:
            done.set()

    threading.Thread(target=attempt, name="fmhub-hub-probe", daemon=True).start()
    return done.wait(timeout) and bool(ok)


def hub_unreachable() -> bool:
    """True when the hub cannot be reached right now, found in at most a few seconds: the load
    then reads only the local cache instead of spending minutes in the hub client's retries.
    ``HF_HUB_OFFLINE=1`` already means cache only (no probe); ``FMHUB_HF_PROBE_TIMEOUT=0`` turns
    the probe off."""
    from huggingface_hub import constants

    timeout = _probe_timeout()
    if constants.HF_HUB_OFFLINE or timeout == 0:
        return False
    address = _endpoint_address()
    if address is None:
        return False
    now = time.monotonic()
    seen = _probes.get(address)
    if seen is not None and now - seen[0] < _PROBE_TTL:
        return not seen[1]
    reachable = _connects(address, timeout)
    _probes[address] = (now, reachable)
    return not reachable


def _endpoint_label() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _source(spec: fmhub.ModelSpec, options) -> _Source:
    if spec.path:
        return _Source(spec.path, None, True, f"local folder {spec.path!r}")
    return _Source(
        spec.name,
        options.revision,
        False,
        f"hf:{spec.name}" + (f" (revision {options.revision!r})" if options.revision else ""),
        cache_only=hub_unreachable(),
    )


def _resolved_revision(config_path: str) -> str | None:
    """The commit a cached file belongs to (``.../snapshots/<sha>/config.json``)."""
    parts = Path(config_path).parts
    if len(parts) >= 3 and parts[-3] == "snapshots" and _SHA.match(parts[-2]):
        return parts[-2]
    return None


def _pooling(src: _Source, options) -> Pooling:
    modules = src.fetch("modules.json")
    files: dict[str, str | None] = {"modules.json": modules}
    if modules:
        for m in read_config(modules, SentenceModules).root:
            if m.type.endswith(".Pooling"):
                folder = m.path
                if ".." in Path(folder).parts or os.path.isabs(folder):
                    raise fmhub.ManifestError(
                        f"{src.where}: modules.json has a bad path {folder!r}."
                    )
                files["pooling"] = src.fetch(f"{folder}/config.json" if folder else "config.json")
        files["sentence_bert_config.json"] = src.fetch("sentence_bert_config.json")
    pooling = read_pooling(files, src.where)
    if options.pooling is not None:
        pooling = replace(pooling, modes=(options.pooling,))
    if options.normalize is not None:
        pooling = replace(pooling, normalize=options.normalize)
    return pooling


def _check_code(cfg: CheckpointConfig, options, where: str) -> None:
    from transformers import CONFIG_MAPPING

    if cfg.model_type in CONFIG_MAPPING or options.trust_remote_code:
        return
    if cfg.auto_map:
        raise fmhub.InvalidOptionError(
            f"{where} (model_type {cfg.model_type!r}) needs Python code shipped in its repo. "
            "Pass trust_remote_code=True only if you trust that repo: the code runs on this machine."
        )
    import transformers

    raise fmhub.PluginError(
        f"{where} has model_type {cfg.model_type!r}, unknown to transformers "
        f"{transformers.__version__}; upgrade transformers."
    )


def _load_dtype(options) -> torch.dtype:
    """Load straight into the dtype the core will place the model in."""
    if options.dtype != "auto":
        return getattr(torch, options.dtype)
    cuda = torch.cuda.is_available() and (
        options.device_map is not None
        or options.device in ("auto",)
        or options.device.startswith("cuda")
    )
    if cuda:
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _check_loading(info: dict[str, Any], task: str, where: str, module: Any = None) -> None:
    """Refuse a checkpoint that does not fit the architecture its config describes: a head it
    does not have (it would be random), weights of a wrong shape, or weights for parts of the
    model that the config leaves out (e.g. layers beyond ``num_hidden_layers``), which would
    otherwise load half the network silently. Weights of other heads (``cls.*`` of a pretraining
    checkpoint loaded as an encoder) are fine: the module has no such part."""
    mismatched = [k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys") or ()]
    stray = [k for k in info.get("unexpected_keys") or () if _beyond_a_list(module, k)]
    if mismatched or stray:
        bad = sorted(mismatched)[:3] + sorted(stray)[:3]
        raise fmhub.ManifestError(
            f"{where}: its weights do not fit the architecture its config.json describes "
            f"({len(stray)} weights the model has no place for, {len(mismatched)} of another "
            f"shape: {', '.join(bad)}{' ...' if len(stray) + len(mismatched) > 6 else ''}); "
            "nothing was loaded. Restore the config.json the weights were saved with."
        )
    missing = [
        k
        for k in info.get("missing_keys") or ()
        if "position_ids" not in k and not k.endswith("masked_spec_embed")  # audio: training only
    ]
    if task == "embedding":
        missing = [k for k in missing if not k.startswith("pooler.")]
    if missing:
        shown = ", ".join(sorted(missing)[:5]) + (" ..." if len(missing) > 5 else "")
        hint = (
            " Use task='embedding' for the encoder, or fmhub.finetune to train a head."
            if task != "embedding"
            else ""
        )
        raise fmhub.PluginError(
            f"{where} has no trained weights for the {task} model: missing {shown}.{hint}"
        )


def _beyond_a_list(module: Any, key: str) -> bool:
    """True when ``key`` indexes past a ModuleList/ModuleDict of ``module`` (``encoder.layer.5``
    of a 3-layer model): the config describes fewer blocks than the weights hold."""
    if module is None:
        return False
    node = module
    for part in key.split(".")[:-1]:
        child = getattr(node, "_modules", {}).get(part)
        if child is None:
            return isinstance(node, (torch.nn.ModuleList, torch.nn.ModuleDict))
        node = child
    return False


def _image_checkpoint(src: _Source, cfg: CheckpointConfig) -> bool:
    """An image-only checkpoint (see :func:`is_image_model`). The image processor and tokenizer
    files are looked up only when the config alone cannot tell: a model type transformers serves
    for images (``AutoModel``'s image backbones, image classifiers) or one it does not know."""
    from transformers import CONFIG_MAPPING
    from transformers.models.auto import modeling_auto as auto

    if is_image_model(cfg, None, True):
        return True
    known = cfg.model_type in CONFIG_MAPPING
    imagery = set(auto.MODEL_FOR_IMAGE_MAPPING_NAMES) | set(
        auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES
    )
    if known and cfg.model_type not in imagery:
        return False  # a text or speech model: no extra lookup on the hub
    pre = src.fetch("preprocessor_config.json")
    if pre is None or not is_image_processor(read_json(pre, "preprocessor_config.json")):
        return False
    return not any(src.fetch(f) for f in ("tokenizer_config.json", "tokenizer.json"))


def load_module(
    src: _Source, options, cfg: CheckpointConfig, task: str, auto_class: str
) -> tuple[Any, dict[str, Any]]:
    """``transformers.<auto_class>.from_pretrained`` for ``task`` (text, image and audio models
    alike): refused first when that auto class does not serve the checkpoint's ``model_type``,
    loaded quietly, and its loading report checked (missing or unexpected weights are refused).
    Returns the module and the report."""
    import transformers
    from transformers import CONFIG_MAPPING

    model_class = getattr(transformers, auto_class)
    if (
        cfg.model_type in CONFIG_MAPPING
        and CONFIG_MAPPING[cfg.model_type] not in model_class._model_mapping
    ):
        raise fmhub.InvalidOptionError(
            f"{src.where} (model_type {cfg.model_type!r}) has no {task} model in transformers "
            f"({auto_class} does not serve it); use another task=."
        )
    kwargs: dict[str, Any] = dict(
        revision=src.revision,
        trust_remote_code=options.trust_remote_code,
        dtype=_load_dtype(options),
        use_safetensors=options.use_safetensors,
    )
    if src.cache_only:  # the adapter lookup takes its own flag
        kwargs.update(local_files_only=True, adapter_kwargs={"local_files_only": True})
    if options.device_map is not None:
        kwargs["device_map"] = options.device_map
    module, info = _quiet(
        lambda: model_class.from_pretrained(src.location, output_loading_info=True, **kwargs)
    )
    _check_loading(info, task, src.where, module)
    return module, info


def loaded(
    module: Any,
    *,
    task: str,
    processor: Any,
    modality: str,
    options,
    src: _Source,
    cfg: CheckpointConfig,
    info: dict[str, Any],
    **fields: Any,
) -> fmhub.Loaded:
    """The ``fmhub.Loaded`` every ``hf:`` loader returns: the module in eval mode, the label names
    of a classifier from its config (``LABEL_i`` when unnamed), and the provenance every model
    reports in ``info`` (transformers version, model type and class, revision) before ``info``."""
    import transformers

    labels = None
    if task in ("classification", "token-classification"):
        labels = tuple(str(module.config.id2label[i]) for i in range(module.config.num_labels))
    return fmhub.Loaded(
        module=module.eval(),
        task=task,
        labels=labels,
        processor=processor,
        placed=options.device_map is not None,
        modality=modality,
        info={
            "transformers": transformers.__version__,
            "model_type": cfg.model_type,
            "model_class": type(module).__name__,
            "revision": src.revision,
            **info,
        },
        **fields,
    )


def load(spec: fmhub.ModelSpec, options) -> fmhub.Loaded:
    """``fmhub_load``: read the config as data, pick the task and model class, load weights."""
    import transformers

    src = _source(spec, options)
    config_path = src.fetch("config.json", required=True)
    cfg = read_config(config_path, CheckpointConfig)
    _check_code(cfg, options, src.where)
    if not src.local:  # pin every further file to the commit the config came from
        src.revision = _resolved_revision(config_path) or src.revision
    if cfg.model_type in IMAGE_TEXT:  # CLIP, SigLIP: both towers (_stages_clip)
        from ._stages_clip import load_clip

        return load_clip(spec, options, src, cfg)
    if options.labels is not None or options.template is not None:
        raise fmhub.InvalidOptionError(
            f"labels= and template= are for zero-shot image-text models (CLIP, SigLIP); "
            f"{src.where} is a {cfg.model_type!r} model."
        )
    if is_audio_config(cfg):  # wav2vec 2.0, HuBERT, WavLM, AST...: their own classes and stages
        from ._load_audio import load_audio

        return load_audio(spec, options, src, cfg)
    if _image_checkpoint(src, cfg):
        from ._load_vision import load_vision

        return load_vision(spec, options, src, cfg)
    pooling = _pooling(src, options)
    task = options.task or spec.task or detect_task(cfg, pooling.from_sentence_transformers)
    if task not in TASKS:
        raise fmhub.InvalidOptionError(
            f"task={task!r} is not served by fmhub-transformers; use one of {', '.join(TASKS)}."
        )
    module, _ = load_module(src, options, cfg, task, TASKS[task])
    tokenizer = _quiet(
        lambda: transformers.AutoTokenizer.from_pretrained(
            src.location,
            revision=src.revision,
            trust_remote_code=options.trust_remote_code,
            **({"local_files_only": True} if src.cache_only else {}),
        )
    )
    if task == "token-classification" and not getattr(tokenizer, "is_fast", False):
        raise fmhub.PluginError(
            f"{src.where} has no fast (tokenizers) tokenizer, which token classification needs for "
            "character offsets; add a tokenizer.json to the checkpoint."
        )
    call_defaults: dict[str, Any] = {}
    call_options = None
    if task == "transcription":
        from ._stages_speech import SpeechProcessor, WhisperOptions, speech_defaults

        processor = SpeechProcessor.build(module, src, options)
        call_options, call_defaults = WhisperOptions, speech_defaults(module)
    elif task in GENERATIVE:
        from ._stages_generate import GenProcessor
        from ._stages_generate import call_defaults as gen_defaults

        processor = GenProcessor.build(module, tokenizer)
        call_defaults = gen_defaults(module)
    else:
        processor = TextProcessor.build(module, tokenizer, pooling, options, src.where)
    return loaded(
        module,
        task=task,
        processor=processor,
        modality="audio" if task == "transcription" else "text",
        options=options,
        src=src,
        cfg=cfg,
        info=(
            {
                "max_length": processor.max_length,
                "pooling": list(pooling.modes),
                "normalize": pooling.normalize,
            }
            if task not in GENERATIVE
            else {}
        ),
        call_options=call_options,
        call_defaults=call_defaults,
    )


def _quiet(fn: Callable[[], Any]) -> Any:
    """Run a transformers loader without its progress bars and info logs."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        return fn()
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def save(model, path: str) -> None:
    """``fmhub_save``: ``save_pretrained`` of module and tokenizer, plus sentence-transformers
    files for embedding models, so the folder also loads in Transformers/sentence-transformers."""
    proc = model.processor
    if getattr(proc, "kind", None) == "image-text":
        from ._stages_clip import save as save_image_text

        save_image_text(model, path)
        return
    module = model.module
    module.save_pretrained(path)
    if hasattr(proc, "save"):  # speech: the feature extractor and tokenizer
        proc.save(path)
    else:
        proc.tokenizer.save_pretrained(path)
    if model.task != "embedding" or not isinstance(proc, TextProcessor):
        return  # sentence-transformers files describe text embedding models only
    dest = Path(path)
    modules = sentence_modules(proc.pooling.normalize)
    (dest / "1_Pooling").mkdir(exist_ok=True)
    dim = int(getattr(module.config, "hidden_size", 0) or getattr(module.config, "dim", 0))
    (dest / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {
                "embedding_dimension": dim,
                "pooling_mode": list(proc.pooling.modes),
                "include_prompt": True,
            },
            indent=2,
        )
    )
    (dest / "modules.json").write_text(json.dumps(modules, indent=2))
    (dest / "sentence_bert_config.json").write_text(
        json.dumps(
            {"max_seq_length": proc.max_length, "do_lower_case": proc.pooling.do_lower_case},
            indent=2,
        )
    )
