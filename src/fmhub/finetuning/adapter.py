"""Adapter folders: manifest + adapter and head weights, written atomically, loaded onto a base.

Layout::

    fmhub.json                  kind "adapter": base model, method and options, labels, head,
                                fingerprint of the adapted modules, versions
    adapter_config.json         } PEFT methods (lora, ia3): PEFT's own layout, head included
    adapter_model.safetensors   }   as modules_to_save
    adapter.safetensors         other methods: the trainable tensors (head included)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ManifestError
from ..manifest import Manifest, atomic_folder, model_manifest, read_manifest, write_manifest
from .builtin import in_head

if TYPE_CHECKING:
    from .._hub import Hub
    from ..model import Model

__all__ = ["fingerprint", "load_adapter", "merge", "save_adapter"]


def fingerprint(model: Model, modules: list[str], head: list[str]) -> dict[str, Any]:
    """Names and shapes of the adapted modules' and head's parameters, and their hash."""
    shapes: dict[str, list[int]] = {}
    wanted = set(modules)
    for name, p in model.module.named_parameters():
        owner = name.rpartition(".")[0]
        if owner in wanted or in_head(name, head):
            shapes[name] = list(p.shape)
    digest = hashlib.sha256(json.dumps(sorted(shapes.items())).encode()).hexdigest()[:16]
    return {"sha256": digest, "shapes": shapes}


def trainable_state(module) -> dict[str, Any]:
    """The trainable parameters, plus the buffers (e.g. BatchNorm running statistics) of every
    module that has a trainable parameter: all that training changed."""
    state = {n: p.detach().contiguous().cpu() for n, p in module.named_parameters() if p.requires_grad}
    for prefix, mod in module.named_modules():
        if any(p.requires_grad for p in mod.parameters(recurse=False)):
            for name, buf in mod.named_buffers(recurse=False):
                state[f"{prefix}.{name}" if prefix else name] = buf.detach().contiguous().cpu()
    return state


def train_mode(module) -> None:
    """``module.train()``, except that normalisation layers whose parameters are all frozen keep
    their running statistics (eval mode): a frozen backbone must stay the base model's."""
    module.train()
    for mod in module.modules():
        if hasattr(mod, "running_mean") and not any(p.requires_grad for p in mod.parameters(False)):
            mod.eval()


def save_adapter(model: Model, dest: Path) -> Path:
    """Write ``model``'s adapter and head to ``dest`` atomically."""
    adapter = model.adapter or {}
    info = {k: v for k, v in adapter.items() if k not in ("peft",)}

    def write(tmp: Path) -> None:
        if "peft" in adapter:  # fmhub never resizes the vocabulary: no embedding copy, and no
            # question to the hub about the base model's config (slow offline, and a warning)
            adapter["peft"].save_pretrained(str(tmp), save_embedding_layers=False)
        else:
            from safetensors.torch import save_file

            save_file(trainable_state(model.module), str(tmp / "adapter.safetensors"))
        write_manifest(tmp, model_manifest(model, kind="adapter", adapter=info))

    return atomic_folder(Path(dest), write)


def adapter_manifest(path: Path) -> Manifest:
    manifest = read_manifest(path)
    if manifest.kind != "adapter" or not manifest.adapter:
        raise ManifestError(f"{str(path)!r} is not an fmhub adapter folder.")
    return manifest


def load_adapter(hub: Hub, path: Path, options: dict[str, Any]) -> Model:
    """Load the base model named in the manifest, attach the head, apply and fill the adapter."""
    from .plan import attach_head, get_method

    manifest = adapter_manifest(path)
    a = manifest.adapter
    base = manifest.spec.get("path") or manifest.spec["id"]
    model = hub.load(base, **{**manifest.options, **options})
    head = attach_head(model, manifest.labels or [])
    method, opts = get_method(model, a["method"], a.get("options", {}))
    modules = method.targets(model, head, opts)
    check_fingerprint(model, modules, head, a.get("fingerprint"), path)
    method.apply(model, head, opts)
    _load_weights(model, Path(path))
    model.module.to(device=model.device)
    model.module.eval()
    model.adapter.update({k: v for k, v in a.items() if k != "peft"})
    return model


def check_fingerprint(model, modules, head, expected, path) -> None:
    if not expected:
        return
    got = fingerprint(model, modules, head)
    if got["sha256"] == expected.get("sha256"):
        return
    want, have = expected.get("shapes", {}), got["shapes"]
    missing = sorted(set(want) - set(have))[:5]
    differ = [f"{n}: saved {want[n]} vs base {have[n]}" for n in sorted(set(want) & set(have))
              if want[n] != have[n]][:5]
    extra = sorted(set(have) - set(want))[:5]
    detail = "; ".join(filter(None, [
        f"missing in base: {missing}" if missing else "",
        f"shapes differ: {differ}" if differ else "",
        f"not in adapter: {extra}" if extra else "",
    ]))
    raise ManifestError(
        f"The adapter {str(path)!r} does not fit base model {model.spec.id!r} ({detail}). "
        "Load it onto the base model it was trained on (see its fmhub.json)."
    )


def _load_weights(model: Model, path: Path) -> None:
    from safetensors.torch import load_file

    adapter = model.adapter
    if "peft" in adapter:
        from peft import set_peft_model_state_dict

        file = path / "adapter_model.safetensors"
        if not file.is_file():
            raise ManifestError(f"{str(path)!r} lacks adapter_model.safetensors.")
        result = set_peft_model_state_dict(adapter["peft"], load_file(str(file)))
        bad = [k for k in getattr(result, "unexpected_keys", []) if k]
        if bad:
            raise ManifestError(f"{str(path)!r} holds weights the model has no place for: {bad[:5]}")
        return
    file = path / "adapter.safetensors"
    if not file.is_file():
        raise ManifestError(f"{str(path)!r} lacks adapter.safetensors.")
    state = load_file(str(file))
    own = dict(model.module.named_parameters())
    own.update(model.module.named_buffers())
    unknown = [k for k in state if k not in own]
    wrong = [k for k in state if k in own and tuple(own[k].shape) != tuple(state[k].shape)]
    if unknown or wrong:
        raise ManifestError(
            f"{str(path)!r} does not fit {model.spec.id!r}: unknown {unknown[:5]}, shape {wrong[:5]}."
        )
    model.module.load_state_dict(state, strict=False)


def merge(model: Model) -> Model:
    """Fold a PEFT adapter into the base weights; other methods are already in place."""
    adapter = model.adapter
    if adapter is None:
        return model
    if "peft" in adapter:
        merged = adapter["peft"].merge_and_unload()
        model.module = merged
    model.module.requires_grad_(False)
    model.module.eval()
    model.adapter = None
    model._refresh_placement()
    return model
