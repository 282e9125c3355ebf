"""Image-text models (CLIP, SigLIP, SigLIP 2): zero-shot image classification, embeddings of
images and texts in one space, and image classifiers fine-tuned on the image tower.

Zero-shot classification computes what transformers' ``pipeline("zero-shot-image-classification")``
computes, on the same checkpoint: each label goes through the template (``"This is a photo of
{}."``), through the tokenizer with the pipeline's settings (SigLIP: padded to 64 tokens) and the
text tower; the logits are ``logit_scale.exp() * cos(image, text)`` (``+ logit_bias`` for SigLIP),
turned into probabilities by a softmax over the labels (CLIP) or a sigmoid per label (SigLIP). The
label embeddings are computed once per label set and kept (:class:`ImageTextProcessor`), and the
images of a batch go through the image tower together. Images follow :mod:`fmhub.inputs`.
"""

from __future__ import annotations

import inspect
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field

import fmhub
from fmhub.inputs import image_item
from fmhub.results import top_k_classification

from ._config import IMAGE_TEXT_TASKS, Labels, Template

__all__ = [
    "DEFAULT_TEMPLATE",
    "ImageTextClassifier",
    "ImageTextProcessor",
    "ZeroShotOptions",
    "attach_head",
    "batch_order",
    "forward",
    "load_clip",
    "postprocess",
    "preprocess",
    "save",
]

#: The prompt a label goes into: the zero-shot-image-classification pipeline's default.
DEFAULT_TEMPLATE = "This is a photo of {}."
#: Label sets whose text embeddings a model keeps (least recently used ones are dropped).
_CACHE_SIZE = 32


class ZeroShotOptions(fmhub.CallOptions):
    """Per-call options of zero-shot image classification."""

    labels: Labels | None = Field(
        None, description="Candidate labels (class names); None: those given to fmhub.load."
    )
    template: Template | None = Field(
        None,
        description=f"Prompt a label goes into, '{{}}' marking the label; None: the load "
        f"option, else {DEFAULT_TEMPLATE!r} (the transformers pipeline's).",
    )
    top_k: int | None = Field(
        None, ge=1, description="Labels kept in Classification.top_k; None: every label."
    )


@dataclass
class ImageTextProcessor:
    """Tokenizer, image processor and policies of an image-text checkpoint, and the cache of label
    embeddings. Every use of the tokenizer and of the cache holds ``lock`` (thread-safe predict)."""

    kind = "image-text"  #: how the plugin tells these models' stages apart

    tokenizer: Any
    image_processor: Any
    model_type: str
    max_length: int
    text_inputs: tuple[str, ...]
    image_inputs: tuple[str, ...]
    sigmoid: bool
    normalize: bool = True
    truncation: str = "warn"
    top_k: int = 5
    lock: Any = field(default_factory=threading.Lock, repr=False, compare=False)
    cache: OrderedDict = field(default_factory=OrderedDict, repr=False, compare=False)

    @property
    def siglip(self) -> bool:
        return "siglip" in self.model_type

    def tokenize(self, texts: list[str], *, zero_shot: bool) -> dict[str, torch.Tensor]:
        """Token ids of ``texts``: for labels the pipeline's settings (SigLIP: padded to 64
        tokens; others: to the longest), for embedded texts the same padding; both cut at the
        model's limit (the ``truncation`` load option says whether that warns or refuses)."""
        limit = 64 if self.siglip and zero_shot else self.max_length
        padding = "max_length" if self.siglip else True
        with self.lock:
            lengths = [len(ids) for ids in self.tokenizer(texts)["input_ids"]]
            long = [i for i, n in enumerate(lengths) if n > limit]
            if long:
                _truncation(self.truncation, texts, long, limit, zero_shot)
            enc = self.tokenizer(
                texts, padding=padding, truncation=True, max_length=limit, return_tensors="pt"
            )
        return {k: enc[k] for k in self.text_inputs if k in enc}

    def pixels(self, images: list[Any]) -> dict[str, torch.Tensor]:
        out = self.image_processor(images=images, return_tensors="pt")
        return {k: out[k] for k in self.image_inputs if k in out}


def _truncation(policy: str, texts: list[str], long: list[int], limit: int, zero_shot: bool):
    what = "label prompt" if zero_shot else "text"
    if policy == "error":
        raise fmhub.InputError(
            f"{what} {texts[long[0]]!r:.60} is longer than {limit} tokens; shorten it, or load "
            "with truncation='warn' to truncate.",
            index=None if zero_shot else long[0],
        )
    if policy == "warn":
        warnings.warn(
            f"{len(long)} {what}(s) longer than {limit} tokens were truncated; load with "
            "truncation='silent' to hide this or 'error' to refuse.",
            UserWarning,
            stacklevel=3,
        )


# -- load --------------------------------------------------------------------------------------


def load_clip(spec: fmhub.ModelSpec, options: Any, src: Any, cfg: Any) -> fmhub.Loaded:
    """``fmhub_load`` of an image-text checkpoint (``AutoModel`` with both towers)."""
    import transformers

    from ._load import _quiet, load_module, loaded
    from ._stages import _model_limit

    task = options.task or spec.task or "zero-shot-classification"
    if task not in IMAGE_TEXT_TASKS:
        raise fmhub.InvalidOptionError(
            f"{src.where} is an image-text model (model_type {cfg.model_type!r}); it does "
            f"{' or '.join(IMAGE_TEXT_TASKS)}, not task={task!r}. To train an image classifier "
            "on its image tower, load it and call fmhub.finetune(model, data)."
        )
    if options.pooling is not None or options.aggregation != "simple":
        raise fmhub.InvalidOptionError(
            f"{src.where} is an image-text model: its vectors are the towers' projections, "
            "so pooling= and aggregation= do not apply; leave them out."
        )
    if options.labels is not None and task != "zero-shot-classification":
        raise fmhub.InvalidOptionError(
            f"labels= is for zero-shot-classification; {src.where} was loaded for {task}."
        )
    src.fetch("preprocessor_config.json", required=True)
    module, _ = load_module(src, options, cfg, task, "AutoModel")
    local = {"local_files_only": True} if src.cache_only else {}
    for method in ("get_text_features", "get_image_features"):
        if not hasattr(module, method):
            raise fmhub.PluginError(
                f"{src.where} loads as {type(module).__name__}, which has no {method}; "
                "fmhub serves image-text models with both towers."
            )
    common = dict(revision=src.revision, trust_remote_code=options.trust_remote_code, **local)
    try:
        tokenizer = _quiet(
            lambda: transformers.AutoTokenizer.from_pretrained(src.location, **common)
        )
    except ImportError as exc:  # SigLIP's sentencepiece tokenizer
        raise fmhub.PluginError(
            f"{src.where} needs a library its tokenizer uses: {exc} (SigLIP: pip install "
            "'fmhub-transformers[siglip]')."
        ) from None
    image_processor = _quiet(
        lambda: transformers.AutoImageProcessor.from_pretrained(src.location, **common)
    )
    text_config = getattr(module.config, "text_config", module.config)
    params = inspect.signature(module.get_text_features).parameters
    text_inputs = tuple(
        n for n in ("input_ids", "attention_mask", "token_type_ids", "position_ids") if n in params
    )
    params = inspect.signature(module.get_image_features).parameters
    image_inputs = tuple(
        n for n in ("pixel_values", "pixel_attention_mask", "spatial_shapes") if n in params
    )
    normalize = True if options.normalize is None else options.normalize
    processor = ImageTextProcessor(
        tokenizer=tokenizer,
        image_processor=image_processor,
        model_type=cfg.model_type,
        max_length=_model_limit(text_config, tokenizer),
        text_inputs=text_inputs,
        image_inputs=image_inputs,
        sigmoid="siglip" in cfg.model_type,
        normalize=normalize,
        truncation=options.truncation,
        top_k=options.top_k,
    )
    if options.max_length is not None:
        if options.max_length > processor.max_length:
            raise fmhub.InvalidOptionError(
                f"max_length={options.max_length} exceeds what {src.where}'s text tower takes "
                f"({processor.max_length} tokens); use max_length<={processor.max_length}."
            )
        processor.max_length = options.max_length
    defaults = {
        k: v
        for k, v in (("labels", options.labels), ("template", options.template))
        if v is not None
    }
    return loaded(
        module,
        task=task,
        processor=processor,
        modality="image-text",
        options=options,
        src=src,
        cfg=cfg,
        info={
            "max_length": processor.max_length,
            "normalize": normalize,
            "probabilities": "sigmoid" if processor.sigmoid else "softmax",
        },
        call_options=ZeroShotOptions if task == "zero-shot-classification" else None,
        call_defaults=defaults,
    )


def save(model: Any, path: str) -> None:
    """``fmhub_save``: the module, tokenizer and image processor, as transformers saves them."""
    if isinstance(_base(model.module), ImageTextClassifier):
        raise fmhub.PluginError(
            f"{model.spec.id} is an image classifier fine-tuned on an image-text model's image "
            "tower; save its adapter (result.adapter_path, fmhub.save_adapter), which loads back "
            "onto the base model."
        )
    proc: ImageTextProcessor = model.processor
    model.module.save_pretrained(path)
    with proc.lock:
        proc.tokenizer.save_pretrained(path)
    proc.image_processor.save_pretrained(path)


# -- stages ------------------------------------------------------------------------------------


def batch_order(model: Any, inputs: list[Any]) -> list[int] | None:
    """Embeddings: texts first, then images (each batch then runs one tower); else as given."""
    if model.task != "embedding":
        return None
    return sorted(range(len(inputs)), key=lambda i: not isinstance(inputs[i], str))


def _images(inputs: list[Any], zero_shot: bool = False) -> list[Any]:
    import os

    hint = " (candidate labels go in labels=[...])" if zero_shot else ""
    for i, x in enumerate(inputs):
        if isinstance(x, str) and not os.path.exists(x):
            raise fmhub.InputError(
                f"got the text {x!r:.60}, which is no image file; this model classifies "
                f"images{hint}. To embed texts, load it with task='embedding'.",
                index=i,
            )
    return [image_item(x, i) for i, x in enumerate(inputs)]


def preprocess(model: Any, inputs: list[Any], options: Any = None) -> dict[str, Any]:
    """Images to pixel values (the checkpoint's image processor); for embeddings, texts (``str``)
    to token ids. Zero-shot classification checks its labels and template here."""
    proc: ImageTextProcessor = model.processor
    if model.task == "zero-shot-classification":
        labels, template = _labels(model, options)
        return {
            **proc.pixels(_images(inputs, zero_shot=True)),
            "labels": labels,
            "template": template,
        }
    if model.task == "classification":
        return proc.pixels(_images(inputs))
    text_at = [i for i, x in enumerate(inputs) if isinstance(x, str)]
    image_at = [i for i, x in enumerate(inputs) if not isinstance(x, str)]
    batch: dict[str, Any] = {"text_at": text_at, "image_at": image_at}
    if image_at:
        images = [image_item(inputs[i], i) for i in image_at]
        batch["image"] = proc.pixels(images)
    if text_at:
        batch["text"] = proc.tokenize([inputs[i] for i in text_at], zero_shot=False)
    return batch


def _labels(model: Any, options: Any) -> tuple[tuple[str, ...], str]:
    labels = getattr(options, "labels", None)
    if labels is None:
        raise fmhub.InputError(
            f"{model.spec.id} does zero-shot classification and needs candidate labels: "
            "model(image, labels=['a cat', 'a dog']), or fmhub.load(..., labels=[...])."
        )
    template = getattr(options, "template", None) or DEFAULT_TEMPLATE
    return labels, template


def _features(out: Any) -> torch.Tensor:
    """The projected vectors ``get_*_features`` returns (a tensor, or an output's pooler)."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(p=2, dim=-1, keepdim=True)


def _weights_version(module: Any) -> tuple[int, ...]:
    """Changes whenever a parameter of the model is modified in place or moved (a cache key)."""
    first = next(module.parameters())
    return (
        id(module),
        sum(p._version for p in module.parameters()),
        first.data_ptr(),
    )


def label_embeddings(model: Any, labels: tuple[str, ...], template: str) -> torch.Tensor:
    """Unit text embeddings of the label prompts, computed once per (labels, template) and
    kept while the model's weights, device and dtype stay as they are."""
    proc: ImageTextProcessor = model.processor
    module = model.module
    first = next(module.parameters())
    key = (labels, template, first.device, first.dtype, _weights_version(module))
    cacheable = torch.is_inference_mode_enabled()
    if cacheable:
        with proc.lock:
            hit = proc.cache.get(key)
            if hit is not None:
                proc.cache.move_to_end(key)
                return hit
    prompts = [template.format(label) for label in labels]
    enc = proc.tokenize(prompts, zero_shot=True)
    enc = {k: v.to(first.device) for k, v in enc.items()}
    vectors = _unit(_features(module.get_text_features(**enc)))
    if cacheable:
        with proc.lock:
            proc.cache[key] = vectors
            while len(proc.cache) > _CACHE_SIZE:
                proc.cache.popitem(last=False)
    return vectors


def _pixel_args(proc: ImageTextProcessor, batch: dict[str, Any]) -> dict[str, Any]:
    return {k: batch[k] for k in proc.image_inputs if k in batch}


def forward(model: Any, batch: dict[str, Any], options: Any = None) -> torch.Tensor:
    """Zero-shot: logits over the labels; classification: the head's logits; embedding: the
    vectors of the batch's texts and images, in input order."""
    proc: ImageTextProcessor = model.processor
    module = model.module
    if model.task == "classification":
        return module(**_pixel_args(proc, batch))
    if model.task == "zero-shot-classification":
        text = label_embeddings(model, batch["labels"], batch["template"])
        image = _unit(_features(module.get_image_features(**_pixel_args(proc, batch))))
        logits = (image @ text.t().to(image.dtype)) * module.logit_scale.exp()
        bias = getattr(module, "logit_bias", None)
        return logits + bias if bias is not None else logits
    parts = []
    if batch.get("image") is not None:
        parts.append((batch["image_at"], _features(module.get_image_features(**batch["image"]))))
    if batch.get("text") is not None:
        parts.append((batch["text_at"], _features(module.get_text_features(**batch["text"]))))
    n = len(batch["text_at"]) + len(batch["image_at"])
    out = parts[0][1].new_empty((n, parts[0][1].shape[-1]))
    for at, vectors in parts:
        out[torch.tensor(at, device=out.device)] = vectors
    return F.normalize(out, p=2, dim=-1) if proc.normalize else out


def postprocess(model: Any, outputs: torch.Tensor, batch: dict[str, Any], options: Any = None):
    if model.task == "embedding":
        return list(outputs.float().cpu().numpy())
    logits = outputs.float()
    if model.task == "classification":
        return top_k_classification(logits.softmax(-1), model.labels, k=model.processor.top_k)
    labels = batch["labels"]
    probs = logits.sigmoid() if model.processor.sigmoid else logits.softmax(-1)
    k = getattr(options, "top_k", None) or len(labels)
    return top_k_classification(probs, labels, k=k)


# -- fine-tuning -------------------------------------------------------------------------------


class ImageTextClassifier(torch.nn.Module):
    """The image tower of an image-text model (and its projection) with a linear head on the
    image features ``get_image_features`` gives: ``forward(pixel_values, ...)`` returns logits.
    The text tower is left out (fine-tuning adapts the image tower only)."""

    base_model_prefix = ""  # PEFT reads it off modules with a transformers config

    def __init__(self, base: Any, num_labels: int):
        super().__init__()
        self.config = base.config
        self.vision_model = base.vision_model
        self.visual_projection = getattr(base, "visual_projection", None)
        if self.visual_projection is not None:
            dim = self.visual_projection.out_features
        else:
            dim = base.config.vision_config.hidden_size
        self.classifier = torch.nn.Linear(dim, num_labels)

    def forward(self, pixel_values: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        pooled = self.vision_model(pixel_values=pixel_values, **kwargs).pooler_output
        if self.visual_projection is not None:
            pooled = self.visual_projection(pooled)
        return self.classifier(pooled)


def _base(module: Any) -> Any:
    get = getattr(module, "get_base_model", None)  # a PEFT wrapper
    return get() if callable(get) else module


def attach_head(model: Any, labels: list[str]) -> list[str]:
    """``fmhub_attach_head``: replace the image-text model by an :class:`ImageTextClassifier`
    sharing its image tower; the head is ``classifier``."""
    if len(labels) < 1:
        raise fmhub.FineTuneError("A classification head needs at least one label.")
    old = _base(model.module)
    if isinstance(old, ImageTextClassifier):
        new = ImageTextClassifier.__new__(ImageTextClassifier)
        torch.nn.Module.__init__(new)
        new.config, new.vision_model = old.config, old.vision_model
        new.visual_projection = old.visual_projection
        new.classifier = torch.nn.Linear(old.classifier.in_features, len(labels))
    else:
        new = ImageTextClassifier(old, len(labels))
    param = next(new.vision_model.parameters())
    new.classifier.to(device=param.device, dtype=param.dtype)
    new.train(old.training)
    model.module = new
    with model.processor.lock:
        model.processor.cache.clear()
    return ["classifier"]
