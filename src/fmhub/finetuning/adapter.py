"""Adapter folders: manifest + adapter and head weights, written atomically, loaded onto a base.

Layout::

    fmhub.json                  kind "adapter": base model, method and options, labels, head,
                                fingerprint of the adapted modules, training facts, versions,
                                size and SHA-256 of every other file
    README.md                   the model card: the same facts for people
    adapter_config.json         } PEFT methods (lora, ia3): PEFT's own layout, head included
    adapter_model.safetensors   }   as modules_to_save
    adapter.safetensors         other methods: the trainable tensors (head included)

Loading verifies the folder (hashes, manifest content) before the base model is built, never
replays options that need the caller's consent, resolves a relative base path inside the adapter
folder, and takes only tensors the method trains, each of the shape the base gives it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FineTuneError, InvalidOptionError, ManifestError
from ..manifest import (
    CONSENT_OPTIONS,
    Manifest,
    atomic_folder,
    consent_options,
    model_manifest,
    read_manifest,
    replayable_options,
    seal,
    verify_folder,
)
from .builtin import in_head
from .methods import Adapter, FineTuneMethod, MethodOptions
from .plan import get_method

if TYPE_CHECKING:
    from torch import nn

    from .._hub import Hub
    from ..model import Model

__all__ = ["apply_method", "fingerprint", "load_adapter", "merge", "save_adapter"]


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


def apply_method(
    model: Model, method: FineTuneMethod, options: MethodOptions, head: list[str]
) -> Adapter:
    """Run ``method`` on ``model`` (its head attached) and return the :class:`Adapter` recording
    what it adapted: the core's record, whatever the method. Fine-tuning and adapter loading
    both come through here."""
    modules = list(method.targets(model, head, options))
    fp = fingerprint(model, modules, head)
    model.adapter = None
    result = method.apply(model, head, options)
    if method.uses_peft and result is None:
        raise FineTuneError(
            f"method {method.name!r} says uses_peft but its apply() returned no PeftModel; "
            "return the model peft.get_peft_model made (see docs/finetuning.md)."
        )
    return Adapter(
        method=method.name,
        options=options.model_dump(mode="json"),
        head=list(head),
        modules=modules,
        fingerprint=fp,
        peft=result if method.uses_peft else None,
    )


def trainable_state(module: nn.Module) -> dict[str, Any]:
    """The trainable parameters, plus the buffers (e.g. BatchNorm running statistics) of every
    module that has a trainable parameter: all that training changed."""
    state = {
        n: p.detach().contiguous().cpu() for n, p in module.named_parameters() if p.requires_grad
    }
    for prefix, mod in module.named_modules():
        if any(p.requires_grad for p in mod.parameters(recurse=False)):
            for name, buf in mod.named_buffers(recurse=False):
                state[f"{prefix}.{name}" if prefix else name] = buf.detach().contiguous().cpu()
    return state


def train_mode(module: nn.Module) -> None:
    """``module.train()``, except that normalisation layers whose parameters are all frozen keep
    their running statistics (eval mode): a frozen backbone must stay the base model's."""
    module.train()
    for mod in module.modules():
        if hasattr(mod, "running_mean") and not any(p.requires_grad for p in mod.parameters(False)):
            mod.eval()


def save_adapter(model: Model, dest: Path, overwrite: bool = False) -> Path:
    """Write ``model``'s adapter and head to ``dest`` atomically, with a model card.

    ``dest`` must be new, empty, or (``overwrite=True``) a folder fmhub wrote.
    """
    adapter = model.adapter
    if adapter is None:
        raise FineTuneError(f"{model.spec.id!r} has no adapter to save; use model.save(path).")
    info = adapter.to_manifest()
    training = info.pop("training", None) or None

    def write(tmp: Path) -> None:
        if adapter.peft is not None:  # fmhub never resizes the vocabulary: no embedding copy,
            # and no question to the hub about the base model's config (slow offline, a warning)
            adapter.peft.save_pretrained(str(tmp), save_embedding_layers=False)
        else:
            from safetensors.torch import save_file

            save_file(trainable_state(model.module), str(tmp / "adapter.safetensors"))
        manifest = model_manifest(model, kind="adapter", adapter=info, training=training)
        (tmp / "README.md").write_text(model_card(manifest), encoding="utf-8")  # replaces PEFT's
        seal(tmp, manifest)

    return atomic_folder(dest, write, overwrite=overwrite)


def base_location(manifest: Manifest, path: Path) -> str:
    """The base model an adapter names: an id, an absolute folder, or a folder inside the adapter
    folder (a relative path resolves against it and may not leave it)."""
    where = str(Path(path) / "fmhub.json")
    base = manifest.spec.get("path")
    if base:
        p = Path(str(base))
        if p.is_absolute():
            return str(p)
        root = Path(path).resolve()
        inside = (root / p).resolve()
        if ".." in p.parts or str(base).startswith("~") or not inside.is_relative_to(root):
            raise ManifestError(
                f"{where} names the base model path {str(base)!r}, which leaves the adapter folder; "
                "a relative base path must stay inside it."
            )
        return str(inside)
    base_id = str(manifest.spec.get("id") or "")
    _ns, _sep, rest = base_id.partition(":")
    if rest.startswith((".", "~")):
        raise ManifestError(
            f"{where} names the base model {base_id!r}, a relative path; fmhub does not resolve it "
            "against the working folder. Load the base yourself and apply the adapter to it."
        )
    return base_id


def load_adapter(
    hub: Hub,
    path: Path,
    options: dict[str, Any],
    manifest: Manifest | None = None,
    verify: bool = True,
) -> Model:
    """Load the base model named in the manifest, attach the head, apply and fill the adapter.

    The adapter folder is verified first (``verify``), then the base is built with the caller's
    options and those recorded ones that need no consent, then the fingerprint is checked. The
    method is looked up by its name among the registered methods: an adapter trained with an
    unregistered method instance loads once a plugin registers that method.
    """
    path = Path(path)
    if manifest is None:
        manifest = read_manifest(path)
        if verify:
            verify_folder(path, manifest)
    if manifest.kind != "adapter" or not manifest.adapter:
        raise ManifestError(f"{str(path)!r} is not an fmhub adapter folder.")
    saved = Adapter.from_manifest(manifest.adapter)
    if saved.method not in hub.finetune_methods():
        raise ManifestError(
            f"The adapter {str(path)!r} was trained with fine-tuning method {saved.method!r}, which "
            "no installed plugin registers; register it with the fmhub_register_finetune_methods "
            f"hook (see docs/finetuning.md) and load again. Registered methods: "
            f"{', '.join(sorted(hub.finetune_methods()))}."
        )
    base = base_location(manifest, path)
    ns = hub.registry.namespaces.get(str(manifest.spec.get("id", "")).partition(":")[0])
    consent = consent_options(ns.options) if ns is not None else CONSENT_OPTIONS
    asked = {
        k: v
        for k, v in manifest.options.items()
        if k in consent and k not in options and k != "device_map"
    }
    if asked:  # the base was built with them: ask, rather than build another base silently
        given = ", ".join(f"{k}={v!r}" for k, v in asked.items())
        raise InvalidOptionError(
            f"The adapter {str(path)!r} was trained on a base loaded with {given}, which fmhub "
            f"never replays from a manifest (it runs code or reads files the caller did not "
            f"name). If you trust it, pass it yourself: fmhub.load({str(path)!r}, {given})."
        )
    model = hub.load(
        base, verify=verify, **{**replayable_options(manifest.options, consent), **options}
    )
    generative = not saved.head and not manifest.labels  # nothing was attached when trained
    head = [] if generative else model.attach_head(manifest.labels or [])
    method, opts = get_method(model, saved.method, saved.options)
    modules = method.targets(model, head, opts)
    check_fingerprint(model, modules, head, saved.fingerprint, path)
    adapter = apply_method(model, method, opts, head)
    model.adapter = adapter
    _load_weights(model, path)
    model.module.to(device=model.device)
    model.module.eval()
    adapter.training = manifest.training or saved.training
    adapter.extra = saved.extra
    return model


def check_fingerprint(
    model: Model,
    modules: list[str],
    head: list[str],
    expected: dict[str, Any] | None,
    path: str | Path,
) -> None:
    if not expected:
        return
    got = fingerprint(model, modules, head)
    if got["sha256"] == expected.get("sha256"):
        return
    want, have = expected.get("shapes", {}), got["shapes"]
    missing = sorted(set(want) - set(have))[:5]
    differ = [
        f"{n}: saved {want[n]} vs base {have[n]}"
        for n in sorted(set(want) & set(have))
        if want[n] != have[n]
    ][:5]
    extra = sorted(set(have) - set(want))[:5]
    detail = "; ".join(
        filter(
            None,
            [
                f"missing in base: {missing}" if missing else "",
                f"shapes differ: {differ}" if differ else "",
                f"not in adapter: {extra}" if extra else "",
            ],
        )
    )
    raise ManifestError(
        f"The adapter {str(path)!r} does not fit base model {model.spec.id!r} ({detail}). "
        "Load it onto the base model it was trained on (see its fmhub.json)."
    )


def _read_tensors(file: Path, path: Path) -> dict[str, Any]:
    """A safetensors file's tensors; an unreadable file is a ManifestError naming it."""
    from safetensors.torch import load_file

    if not file.is_file():
        raise ManifestError(f"{str(path)!r} lacks {file.name}.")
    try:
        return load_file(str(file))
    except Exception as exc:  # noqa: BLE001 - truncated, empty, not safetensors: one clear error
        raise ManifestError(
            f"{str(file)!r} is not a readable safetensors file ({type(exc).__name__}: "
            f"{str(exc)[:200]}); it is truncated or corrupt. Save the adapter again."
        ) from None


def _check_tensors(state: dict[str, Any], expected: dict[str, Any], file: Path) -> None:
    """The file must hold exactly the tensors the method trains, each of the expected shape."""
    unknown = sorted(set(state) - set(expected))
    missing = sorted(set(expected) - set(state))
    wrong = [
        f"{k}: {list(state[k].shape)} vs {list(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if unknown or missing or wrong:
        detail = "; ".join(
            filter(
                None,
                [
                    f"tensors the method does not train: {unknown[:5]}" if unknown else "",
                    f"missing: {missing[:5]}" if missing else "",
                    f"shapes differ: {wrong[:5]}" if wrong else "",
                ],
            )
        )
        raise ManifestError(
            f"{str(file)!r} does not fit the adapter its manifest describes ({detail}); nothing was "
            "loaded. Save the adapter again from the fine-tuned model."
        )


def _load_weights(model: Model, path: Path) -> None:
    adapter = model.adapter
    if adapter.peft is not None:
        from peft import get_peft_model_state_dict, set_peft_model_state_dict

        file = path / "adapter_model.safetensors"
        state = _read_tensors(file, path)
        _check_tensors(state, get_peft_model_state_dict(adapter.peft), file)
        result = set_peft_model_state_dict(adapter.peft, state)
        bad = [k for k in getattr(result, "unexpected_keys", []) if k]
        if bad:
            raise ManifestError(
                f"{str(path)!r} holds weights the model has no place for: {bad[:5]}"
            )
        return
    file = path / "adapter.safetensors"
    state = _read_tensors(file, path)
    _check_tensors(state, trainable_state(model.module), file)
    model.module.load_state_dict(state, strict=False)


def model_card(manifest: Manifest) -> str:
    """README.md of an adapter folder: base, method, labels, data, config, metrics, versions."""
    a = manifest.adapter or {}
    t = manifest.training or {}
    base = manifest.spec.get("path") or manifest.spec.get("id")
    data = t.get("data") or {}
    lines = [
        f"# Fine-tuned {manifest.spec.get('id')} ({a.get('method')}, {manifest.task})",
        "",
        (
            'An fmhub adapter: load it with `fmhub.load("<this folder>")`; fmhub builds the base '
            "model, checks that the adapter fits it, and applies the adapter."
        ),
        "",
        "## Base model",
        "",
        f"- model: `{manifest.spec.get('id')}`"
        + (f" (folder `{base}`)" if base != manifest.spec.get("id") else ""),
        f"- plugin: `{manifest.plugin}`",
        f"- base fingerprint: `{(a.get('fingerprint') or {}).get('sha256')}`",
        "",
        "## Method",
        "",
        f"- method: `{a.get('method')}`",
        f"- options: `{json.dumps(a.get('options', {}), sort_keys=True)}`",
        f"- head (trained in full): {', '.join(f'`{h}`' for h in a.get('head') or []) or '-'}",
        f"- adapted modules: {len(a.get('modules') or [])}",
        "",
        "## Labels",
        "",
    ]
    lines += [f"{i}. {name}" for i, name in enumerate(manifest.labels or [])] or ["-"]
    lines += ["", "## Training data", ""]
    for split in ("train", "eval"):
        d = data.get(split)
        if not d:
            continue
        counts = d.get("label_counts")
        lines.append(
            f"- {split}: {d.get('examples')} examples from {d.get('source')}"
            + (
                f"; per label: {', '.join(f'{k}: {v}' for k, v in counts.items())}"
                if counts
                else ""
            )
        )
    if not data:
        lines.append("- not recorded")
    lines += ["", "## Training configuration", ""]
    cfg = t.get("config") or {}
    lines += [f"- {k}: `{json.dumps(v)}`" for k, v in sorted(cfg.items())] or ["- not recorded"]
    if t:
        lines += ["", "## Results", ""]
        lines.append(
            f"- optimizer steps: {t.get('steps')}; stopped early: {t.get('stopped_early')}; "
            f"seconds: {t.get('seconds')}"
        )
        lines.append(f"- last training loss: {t.get('train_loss')}")
        final = t.get("metrics")
        if final:
            lines.append(
                "- final evaluation: "
                + ", ".join(
                    f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in final.items()
                )
            )
        else:
            lines.append("- final evaluation: none (no eval data)")
        if t.get("best"):
            lines.append(
                "- best evaluation: "
                + ", ".join(
                    f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in t["best"].items()
                )
            )
    lines += ["", "## Library versions", ""]
    lines += [f"- {k}: {v}" for k, v in sorted(manifest.versions.items())] or ["- not recorded"]
    lines += [
        "",
        (
            "Every file of this folder is listed with its size and SHA-256 in fmhub.json; "
            "fmhub.load refuses the folder if one changes."
        ),
        "",
    ]
    return "\n".join(lines)


def merge(model: Model) -> Model:
    """Fold a PEFT adapter into the base weights; other methods are already in place."""
    adapter = model.adapter
    if adapter is None:
        return model
    if adapter.peft is not None:
        merged = adapter.peft.merge_and_unload()
        model.module = merged
    model.module.requires_grad_(False)
    model.module.eval()
    model.adapter = None
    model._refresh_placement()
    return model
