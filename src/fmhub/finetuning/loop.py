"""The training loop behind ``fmhub.finetune``: AdamW with warm-up and decay, evaluation, early
stopping, a guard against non-finite losses, atomic checkpoints and exact resume."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import DestinationError, FineTuneError, NonFiniteLossError
from ..manifest import (
    atomic_folder,
    check_destination,
    is_fmhub_folder,
    model_manifest,
    read_manifest,
    recover,
    seal,
    verify_folder,
)
from ..spec import validate_model
from .adapter import apply_method, save_adapter, train_mode, trainable_state
from .config import FineTuneConfig
from .data import Examples, GenerationExamples, as_examples, as_generation_examples
from .distributed import Dist, current, require_same, shares
from .methods import FineTuneMethod
from .plan import get_method

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np

    from ..model import Model

__all__ = ["FineTuneResult", "finetune", "evaluate"]

CHECKPOINT = "checkpoint"
ADAPTER = "adapter"
#: Config fields that do not change the trained weights: a resumed run may differ in these only.
RESULT_NEUTRAL = frozenset({"resume", "progress", "overwrite", "output_dir", "checkpoint_every"})


@dataclass
class FineTuneResult:
    """What a fine-tuning run did. ``model`` is the fine-tuned model (the one passed in)."""

    model: Model
    steps: int
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] | None = None
    stopped_early: bool = False
    adapter_path: Path | None = None
    seconds: float = 0.0
    #: Mean training loss over the last epoch's batches (over the batches run, for a run that
    #: stopped inside its first epoch or resumed in its last).
    train_loss: float | None = None

    @property
    def metrics(self) -> dict[str, float] | None:
        """The last evaluation."""
        return self.history[-1] if self.history else None


@dataclass
class _State:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] | None = None
    bad_evals: int = 0


def finetune(model: Model, train: Any, eval: Any = None, **config: Any) -> FineTuneResult:
    """Fine-tune ``model`` in place on ``train`` and return what happened.

    See :class:`fmhub.FineTuneConfig` for the options and docs/finetuning.md for a guide.
    """
    instance = config.get("method")
    if isinstance(instance, FineTuneMethod):  # an unregistered (or registered) method object
        config = {**config, "method": instance.name}
    cfg: FineTuneConfig = validate_model(FineTuneConfig, config, "fine-tuning config")
    if model.adapter is not None:
        raise FineTuneError(
            f"{model.spec.id!r} is already fine-tuned; call model.merge() first or load the base again."
        )
    if model.placed:
        raise FineTuneError("fmhub does not fine-tune a model spread over several devices yet.")
    if cfg.output_dir:  # before reading any data: a long run must not end in a refused save
        check_outputs(cfg)
    method, mopts = get_method(
        model, instance if isinstance(instance, FineTuneMethod) else cfg.method, cfg.method_options
    )
    generative = is_generative(model)
    if generative:  # prompt/completion pairs or chats; no head, loss on the completions only
        train_ex = as_generation_examples(train)
        eval_ex = as_generation_examples(eval) if eval is not None else None
    else:
        data_opts = {
            "text_column": cfg.text_column,
            "label_column": cfg.label_column,
            "encoding": cfg.encoding,
        }
        train_ex = as_examples(train, cfg.labels, **data_opts)
        eval_ex = as_examples(eval, train_ex.labels, **data_opts) if eval is not None else None
    if cfg.early_stopping_patience and eval_ex is None:
        raise FineTuneError("early_stopping_patience needs eval data: pass eval=...")
    started = time.perf_counter()
    dist = current(model.device)  # None unless started by torchrun with WORLD_SIZE > 1
    if dist:
        dist.place(model)
    torch.manual_seed(cfg.seed)
    head = [] if generative else model.attach_head(train_ex.labels)
    model.adapter = apply_method(model, method, mopts, head)
    model.module.to(device=model.device)
    if dist:  # identical starting weights; each rank its own dropout masks
        dist.broadcast_module(model.module)
        torch.manual_seed(cfg.seed + 7919 * dist.rank)
    trainer = _Trainer(model, cfg, train_ex, eval_ex, model.adapter.fingerprint, dist)
    try:
        trainer.run()
    finally:
        model.module.eval()
        trainer.close()
    if dist:
        dist.check_identical(trainable_state(model.module))
    s = trainer.state
    seconds = time.perf_counter() - started
    model.adapter.training = training_facts(cfg, train, train_ex, eval, eval_ex, trainer, seconds)
    adapter_path = None
    if cfg.output_dir:
        adapter_path = Path(cfg.output_dir) / ADAPTER
        if dist is None or dist.is_main:  # only rank 0 writes; the others wait for it
            adapter_path = save_adapter(model, adapter_path, overwrite=cfg.overwrite or cfg.resume)
        if dist:
            dist.barrier("waiting for rank 0 to write the adapter")
    return FineTuneResult(
        model=model,
        steps=s.step,
        history=s.history,
        best=s.best,
        stopped_early=trainer.stopped_early,
        adapter_path=adapter_path,
        seconds=seconds,
        train_loss=trainer.train_loss(),
    )


def check_outputs(cfg: FineTuneConfig) -> None:
    """Before any training: refuse an output_dir whose adapter or checkpoint folder fmhub may not
    replace, so a long run never ends in a refused save. ``overwrite=True`` (without ``resume``)
    removes an earlier run's checkpoint, which fmhub wrote."""
    out = Path(cfg.output_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise DestinationError(
            f"output_dir {cfg.output_dir!r} is an existing file; fine-tuning writes a folder there."
        )
    check_destination(out / ADAPTER, overwrite=cfg.overwrite or cfg.resume, what="adapter folder")
    ckpt = out / CHECKPOINT
    recover(ckpt)
    if not ckpt.exists() or (ckpt.is_dir() and not any(ckpt.iterdir())):
        return
    if ckpt.is_symlink() or not ckpt.is_dir() or not is_fmhub_folder(ckpt):
        raise DestinationError(
            f"{str(ckpt)!r} exists and was not written by fmhub; fmhub never replaces it. Choose "
            "another output_dir."
        )
    if cfg.resume:
        return
    if not cfg.overwrite:
        raise DestinationError(
            f"{str(ckpt)!r} holds the checkpoint of an earlier run; pass resume=True to continue "
            "it, overwrite=True to start over, or choose another output_dir."
        )
    shutil.rmtree(ckpt)


def data_description(data: Any, examples: Examples) -> dict[str, Any]:
    """Size and source of a data set, for the manifest and the model card."""
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        source = f"{'folder' if path.is_dir() else 'file'} {path.name}"
    elif isinstance(data, (list, tuple)):
        source = f"a Python {type(data).__name__}"
    else:
        source = f"a {type(data).__module__}.{type(data).__qualname__}"
    out: dict[str, Any] = {"examples": len(examples), "source": source}
    if isinstance(getattr(examples, "source", None), (list, tuple)):
        counts = dict.fromkeys(examples.labels, 0)
        for i in range(len(examples)):
            counts[examples.labels[examples[i][1]]] += 1
        out["label_counts"] = counts
    return out


def training_facts(
    cfg: FineTuneConfig,
    train: Any,
    train_ex: Examples,
    eval: Any,
    eval_ex: Examples | None,
    trainer: _Trainer,
    seconds: float,
) -> dict[str, Any]:
    """What the adapter's manifest and model card record about its training."""
    s = trainer.state
    data = {"train": data_description(train, train_ex)}
    if eval_ex is not None:
        data["eval"] = data_description(eval, eval_ex)
    return {
        "data": data,
        "config": cfg.model_dump(mode="json", exclude={"progress", "resume", "overwrite"}),
        "steps": s.step,
        "stopped_early": trainer.stopped_early,
        "train_loss": trainer.last_loss if math.isfinite(trainer.last_loss) else None,
        "metrics": s.history[-1] if s.history else None,
        "best": s.best,
        "seconds": round(seconds, 2),
    }


def data_digest(examples: Examples | None) -> str | None:
    """SHA-256 of every (input, label) of an in-memory data set (lists, files read by fmhub);
    None for a torch Dataset, which fmhub cannot read without the cost of a pass over it."""
    if examples is None:
        return None
    if isinstance(getattr(examples, "items", None), list):  # generation examples, read by fmhub
        h = hashlib.sha256()
        for item in examples.items:
            _digest(h, item)
        return h.hexdigest()
    if not isinstance(getattr(examples, "source", None), (list, tuple)):
        return None
    h = hashlib.sha256()
    for i in range(len(examples)):
        _digest(h, examples[i])
    return h.hexdigest()


def _digest(h: hashlib._Hash, x: Any) -> None:
    if isinstance(x, str):
        h.update(b"s%d:" % len(x) + x.encode("utf-8", "surrogatepass"))
    elif isinstance(x, (bytes, bytearray)):
        h.update(b"b%d:" % len(x) + bytes(x))
    elif x is None or isinstance(x, (bool, int, float)):
        h.update(b"v" + repr(x).encode() + b";")
    elif isinstance(x, (list, tuple)):
        h.update(b"[")
        for v in x:
            _digest(h, v)
        h.update(b"]")
    elif isinstance(x, dict):
        h.update(b"{")
        for k in sorted(x, key=repr):
            _digest(h, k)
            _digest(h, x[k])
        h.update(b"}")
    elif isinstance(x, os.PathLike):
        _digest(h, os.fspath(x))
    else:
        import numpy as np

        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        elif type(x).__module__.startswith("PIL."):
            x = np.asarray(x)
        if isinstance(x, np.ndarray):
            h.update(f"a{x.dtype}{x.shape}".encode() + np.ascontiguousarray(x).tobytes())
        else:
            h.update(b"r" + repr(x).encode())


def is_generative(model: Model) -> bool:
    """Models of a generation task train on texts to produce (``fmhub_training_batch``)."""
    from ..generation import GENERATION_TASKS

    return model.task in GENERATION_TASKS


def generative_loss(
    model: Model, examples: list[Any], autocast: tuple[str, torch.dtype] | None = None
) -> tuple[torch.Tensor, int]:
    """The loss of a generative batch, and how many target tokens it covers."""
    batch = model.training_batch(examples)
    targets = batch["labels"].to(model.device)
    if autocast:
        with torch.autocast(device_type=autocast[0], dtype=autocast[1]):
            outputs = model.forward(batch, grad=True)
    else:
        outputs = model.forward(batch, grad=True)
    loss = model.training_loss(outputs, targets)
    return loss.float(), int((targets != -100).sum())


#: Batches per bucket when grouping by length: a bucket of shuffled examples is sorted by length and
#: cut into batches, and the batches of every bucket are shuffled together (as Transformers'
#: group_by_length does), so batches pad little yet the order stays random.
GROUP_BUCKET = 50

#: ``group_by_length=None`` groups only data sets of at least this many batches: with a few
#: batches, length-sorted batches can each hold one class (when length goes with the label) and
#: training suffers, while there is little padding to save.
AUTO_GROUP_BATCHES = 8


def length_ranks(model: Model, train: Examples, cfg: FineTuneConfig) -> list[int] | None:
    """The place of each training example in the order the model's plugin gives through the
    ``fmhub_batch_order`` hook (longest first for text and audio), or None when batches are not
    grouped: ``group_by_length=False``, generative data, a single batch, or (auto) a plugin
    that does not order inputs."""
    want = cfg.group_by_length
    if want is False or isinstance(train, GenerationExamples):
        return None
    n = len(train)
    implemented = bool(model.hub.caller("fmhub_batch_order", model._owner).get_hookimpls())
    if want is None and (not implemented or n < AUTO_GROUP_BATCHES * cfg.batch_size):
        return None
    order = (
        model._call("fmhub_batch_order", inputs=[train[i][0] for i in range(n)])
        if implemented and n > 1
        else None
    )
    if order is None:
        if want and n > 1:
            raise FineTuneError(
                f"group_by_length=True, but the plugin of {model.spec.id!r} does not order inputs "
                "by length (it implements no fmhub_batch_order, or returned None); pass "
                "group_by_length=False or leave it unset."
            )
        return None
    try:
        order = [int(i) for i in order]
    except (TypeError, ValueError):
        order = []
    if sorted(order) != list(range(n)):
        raise model._stage_error(
            "fmhub_batch_order", f"returned a batch order that is not a permutation of range({n})"
        )
    ranks = [0] * n
    for place, i in enumerate(order):
        ranks[i] = place
    return ranks


def grouped_batches(
    order: list[int], ranks: list[int], bs: int, gen: torch.Generator
) -> list[list[int]]:
    """Cut the shuffled ``order`` into buckets of ``GROUP_BUCKET`` batches, sort each bucket by
    length rank, cut it into batches of ``bs`` and shuffle all the batches with ``gen``. Every
    example appears once; only the last bucket's last batch may be short, so the number of
    batches is that of plain batching.

    The sort key is the rank plus a random offset of up to about one batch's worth of neighbours
    (drawn from ``gen``), so examples of near-equal length meet in other batches each epoch (a
    data set smaller than a bucket would otherwise see the same batches every epoch) while each
    batch still spans a narrow range of lengths."""
    size = bs * GROUP_BUCKET
    batches: list[list[int]] = []
    for start in range(0, len(order), size):
        members = order[start : start + size]
        spread = bs * len(ranks) / len(members)  # ranks covered by one batch of this bucket
        noise = torch.rand(len(members), generator=gen).tolist()
        keyed = sorted(zip((ranks[i] + spread * u for i, u in zip(members, noise)), members))
        bucket = [i for _, i in keyed]
        batches += [bucket[i : i + bs] for i in range(0, len(bucket), bs)]
    return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]


def _param_groups(module: torch.nn.Module, weight_decay: float):
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    if not decay and not no_decay:
        raise FineTuneError("nothing to train: the method left no trainable parameter.")
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _schedule(total: int, warmup: int, kind: str):
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / (warmup + 1)
        if kind == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        progress = min(max(progress, 0.0), 1.0)
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress

    return factor


class _Trainer:
    def __init__(
        self,
        model: Model,
        cfg: FineTuneConfig,
        train: Examples,
        eval: Examples | None,
        fingerprint: dict[str, Any] | None = None,
        dist: Dist | None = None,
    ):
        self.model, self.cfg, self.train, self.eval = model, cfg, train, eval
        self.fingerprint = (fingerprint or {}).get("sha256")
        self._identity: dict[str, Any] | None = None
        self.dist = dist
        self.bad_loss: str | None = None  # a non-finite loss on this rank, raised at the step
        self.state = _State()
        self.stopped_early = False
        opt = torch.optim.SGD if cfg.optimizer == "sgd" else torch.optim.AdamW
        self.optimizer = opt(_param_groups(model.module, cfg.weight_decay), lr=cfg.learning_rate)
        self.batches_per_epoch = math.ceil(len(train) / cfg.batch_size)
        steps_per_epoch = math.ceil(self.batches_per_epoch / cfg.gradient_accumulation)
        self.total = cfg.max_steps or steps_per_epoch * cfg.epochs
        warmup = int(cfg.warmup_ratio * self.total)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _schedule(self.total, warmup, cfg.scheduler)
        )
        self.autocast, self.scaler = self._precision()
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bar = None
        self.seen = 0
        self.last_loss = float("nan")
        self.epoch_loss, self.epoch_batches = 0.0, 0  # for FineTuneResult.train_loss
        self.t0 = time.perf_counter()
        if cfg.resume:
            self._load_checkpoint()

    # -- set-up ---------------------------------------------------------------------------------

    def _precision(self):
        mp, dev = self.cfg.mixed_precision, self.model.device
        if mp == "auto":
            mp = "bf16" if dev.type == "cuda" and torch.cuda.is_bf16_supported() else "no"
        if mp == "no":
            return None, None
        if mp == "fp16" and dev.type != "cuda":
            raise FineTuneError("mixed_precision='fp16' needs a CUDA device; use 'bf16' or 'no'.")
        dtype = torch.float16 if mp == "fp16" else torch.bfloat16
        scaler = torch.amp.GradScaler("cuda") if mp == "fp16" else None
        return (dev.type, dtype), scaler

    def train_loss(self) -> float | None:
        if self.dist:  # the mean over every rank's batches, the same on each rank
            sums = self.dist.all_gather_object((self.epoch_loss, self.epoch_batches), "train loss")
            total, count = sum(s for s, _ in sums), sum(n for _, n in sums)
            return total / count if count else None
        if self.epoch_batches:
            return self.epoch_loss / self.epoch_batches
        return None if math.isnan(self.last_loss) else self.last_loss

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> None:
        cfg, st = self.cfg, self.state
        main = self.dist is None or self.dist.is_main
        self.bar = _bar(self.total, st.step, cfg.progress if main else False)
        train_mode(self.model.module)
        accum = cfg.gradient_accumulation
        while st.step < self.total and not self.stopped_early:
            batches = self._epoch_batches(st.epoch)
            self.epoch_loss, self.epoch_batches = 0.0, 0
            for bi in range(st.batch_in_epoch, len(batches)):
                self._micro_step(batches[bi], bi)
                st.batch_in_epoch = bi + 1
                if (bi + 1) % accum == 0 or bi == len(batches) - 1:
                    self._optimizer_step()
                    if self._after_step(epoch_end=bi == len(batches) - 1):
                        return
            else:
                st.epoch += 1
                st.batch_in_epoch = 0

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        gen = torch.Generator().manual_seed(self.cfg.seed * 100003 + epoch)
        order = torch.randperm(len(self.train), generator=gen).tolist()
        bs = self.cfg.batch_size
        ranks = self.length_ranks
        if ranks is None:
            return [order[i : i + bs] for i in range(0, len(order), bs)]
        return grouped_batches(order, ranks, bs, gen)

    @property
    def length_ranks(self) -> list[int] | None:
        """Each training example's place in the plugin's length order (0: longest), or None when
        batches are not grouped by length; computed once per run."""
        if not hasattr(self, "_length_ranks"):
            self._length_ranks = length_ranks(self.model, self.train, self.cfg)
        return self._length_ranks

    def _loss(self, idx: list[int]):
        if isinstance(self.train, GenerationExamples):
            return generative_loss(self.model, [self.train[i] for i in idx], self.autocast)[0]
        pairs = [self.train[i] for i in idx]
        inputs = [x for x, _ in pairs]
        targets = torch.tensor([y for _, y in pairs], dtype=torch.long, device=self.model.device)
        batch = self.model.preprocess(inputs)
        if self.autocast:
            with torch.autocast(device_type=self.autocast[0], dtype=self.autocast[1]):
                outputs = self.model.forward(batch, grad=True)
        else:
            outputs = self.model.forward(batch, grad=True)
        return self.model.training_loss(outputs, targets).float()

    def _micro_step(self, batch: list[int], bi: int) -> None:
        idx = shares(batch, self.dist)  # this rank's share of the global batch
        self.seen += len(batch)
        if not idx:
            return  # a batch smaller than the world: this rank adds zero gradients at the step
        loss = self._loss(idx)
        if not torch.isfinite(loss):
            msg = (
                f"The training loss became {loss.item()} at step {self.state.step + 1} (epoch "
                f"{self.state.epoch + 1}, batch {bi + 1}"
                f"{f', rank {self.dist.rank}' if self.dist else ''}); training stopped before any "
                "weight was updated with it. Lower learning_rate, keep max_grad_norm set, or check "
                "that batch's inputs and labels."
            )
            if self.dist:  # every rank must stop together: raised at the step, after a vote
                self.bad_loss = self.bad_loss or msg
                return
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLossError(msg)
        self.last_loss = loss.item()
        self.epoch_loss += self.last_loss
        self.epoch_batches += 1
        # Each rank's mean loss weighs its share of the global batch, so the average over ranks
        # of the gradients is the gradient of the global batch's mean loss (1 rank: factor 1).
        share = len(idx) * self.dist.world / len(batch) if self.dist else 1.0
        scaled = loss * share / self.cfg.gradient_accumulation
        (self.scaler.scale(scaled) if self.scaler else scaled).backward()

    def _optimizer_step(self) -> None:
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if self.dist:
            self._sync(params)
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm or float("inf"))
        if not torch.isfinite(norm) and not self.scaler:
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLossError(
                f"The gradients became non-finite at step {self.state.step + 1}; training stopped "
                "before any weight was updated with them. Lower learning_rate or check the data."
            )
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1

    def _sync(self, params: list[torch.Tensor]) -> None:
        """Stop every rank if one saw a non-finite loss, else average the gradients the optimizer
        is about to use: whatever module the plugin's hooks ran, no rank steps on its own."""
        bad = self.dist.any_flag(
            self.bad_loss is not None, self.model.device, "the non-finite loss check"
        )
        if bad:
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLossError(
                self.bad_loss
                or (
                    f"The training loss became non-finite on rank(s) {bad} at step "
                    f"{self.state.step + 1}; every rank stopped before any weight was updated with it."
                )
            )
        self.dist.sync_gradients(params)

    def _after_step(self, epoch_end: bool) -> bool:
        """Progress, evaluation, early stopping, checkpoints; True when training must stop."""
        cfg, st = self.cfg, self.state
        if self.bar is not None:
            rate = self.seen / max(1e-9, time.perf_counter() - self.t0)
            self.bar.set_postfix(loss=f"{self.last_loss:.4f}", ex_s=f"{rate:.1f}")
            self.bar.update(1)
        due = (st.step % cfg.eval_every == 0) if cfg.eval_every else epoch_end
        done = st.step >= self.total
        if self.eval is not None and (due or done):
            self._evaluate()
        if cfg.checkpoint_every and (st.step % cfg.checkpoint_every == 0 or done):
            self._save_checkpoint()
        if self.stopped_early and self.best_state is not None:
            self.model.module.load_state_dict(self.best_state, strict=False)
        return done or self.stopped_early

    def _evaluate(self) -> None:
        cfg, st = self.cfg, self.state
        if self.dist and not isinstance(self.eval, GenerationExamples):
            # each rank predicts its share; the metrics are computed on everything gathered, by
            # the same streaming metric code as fmhub.evaluate
            part = _eval_share(
                self.model, self.eval, shares(range(len(self.eval)), self.dist), cfg.batch_size
            )
            parts = self.dist.all_gather_object(part, "gathering evaluation results")
            metrics = _gathered_metrics(self.model, parts)
        else:  # one process, or a generative model (its loss: every rank, the same weights)
            metrics = evaluate(self.model, self.eval, batch_size=cfg.batch_size)
        metrics["step"] = st.step
        st.history.append(metrics)
        train_mode(self.model.module)
        if not cfg.early_stopping_patience:
            return
        key = "loss" if isinstance(self.eval, GenerationExamples) else cfg.early_stopping_metric
        better = st.best is None or (
            metrics[key] < st.best[key] if key == "loss" else metrics[key] > st.best[key]
        )
        if better:
            st.best, st.bad_evals = dict(metrics), 0
            self.best_state = trainable_state(self.model.module)
        else:
            st.bad_evals += 1
            self.stopped_early = st.bad_evals >= cfg.early_stopping_patience

    # -- checkpoints ----------------------------------------------------------------------------

    @property
    def _ckpt_dir(self) -> Path:
        return Path(self.cfg.output_dir) / CHECKPOINT

    def identity(self) -> dict[str, Any]:
        """Everything that changes the trained weights: config, labels, data, base model."""
        if self._identity is None:
            m = self.model
            self._identity = {
                "config": self.cfg.model_dump(mode="json", exclude=set(RESULT_NEUTRAL)),
                "labels": list(self.train.labels),
                "data": {
                    "train": {"examples": len(self.train), "sha256": data_digest(self.train)},
                    "eval": None
                    if self.eval is None
                    else {"examples": len(self.eval), "sha256": data_digest(self.eval)},
                },
                "model": {
                    "id": m.spec.id,
                    "path": m.spec.path,
                    "fingerprint": self.fingerprint,
                    "options": m.options.model_dump(mode="json", exclude={"device"}),
                },
            }
        return self._identity

    def _save_checkpoint(self) -> None:
        from safetensors.torch import save_file

        st = self.state
        trainable = trainable_state(self.model.module)
        rngs = None  # every rank's random state (dropout), for an exact resume
        if self.dist:
            rngs = self.dist.all_gather_object(torch.get_rng_state(), "saving a checkpoint")

        def write(tmp: Path) -> None:
            save_file(trainable, str(tmp / "trainable.safetensors"))
            torch.save(
                {
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "rng": torch.get_rng_state(),
                    "rank_rngs": rngs,
                },
                tmp / "optimizer.pt",
            )
            (tmp / "state.json").write_text(
                json.dumps(
                    {
                        "step": st.step,
                        "epoch": st.epoch,
                        "batch_in_epoch": st.batch_in_epoch,
                        "history": st.history,
                        "best": st.best,
                        "bad_evals": st.bad_evals,
                        "config": self.cfg.model_dump(mode="json", exclude={"resume", "progress"}),
                        "labels": self.train.labels,
                        "identity": self.identity(),
                        "world_size": self.dist.world if self.dist else 1,
                    },
                    indent=1,
                )
            )
            seal(tmp, model_manifest(self.model, kind="checkpoint"))

        if self.dist is None or self.dist.is_main:  # only rank 0 writes; the others wait for it
            atomic_folder(self._ckpt_dir, write, overwrite=True, what="checkpoint folder")
        if self.dist:
            self.dist.barrier("waiting for rank 0 to write a checkpoint")

    def _load_checkpoint(self) -> None:
        from safetensors.torch import load_file

        folder = self._ckpt_dir
        recover(folder)
        found = (folder / "state.json").is_file()
        require_same(self.dist, found, f"whether {str(folder)!r} holds a checkpoint")
        if not found:
            return  # nothing to resume: start from scratch
        verify_folder(folder, read_manifest(folder))  # a corrupt checkpoint never resumes
        saved = json.loads((folder / "state.json").read_text())
        world = self.dist.world if self.dist else 1
        if saved.get("world_size", 1) != world:
            raise FineTuneError(
                f"cannot resume from {str(folder)!r}: it was trained on {saved.get('world_size', 1)} "
                f"process(es), this run has {world}; resume with the same number of processes "
                "(the batch shares and random streams depend on it)."
            )
        if saved["labels"] != self.train.labels:
            raise FineTuneError(
                f"cannot resume from {str(folder)!r}: it was trained on labels {saved['labels']}, "
                f"this data has {self.train.labels}."
            )
        self._check_identity(saved.get("identity"), folder)
        own = set(trainable_state(self.model.module))
        weights = load_file(str(folder / "trainable.safetensors"))
        if set(weights) != own:
            raise FineTuneError(
                f"cannot resume from {str(folder)!r}: it holds other trainable parameters "
                "(a different method or targets); use the same config, or a new output_dir."
            )
        self.model.module.load_state_dict(weights, strict=False)
        extra = torch.load(folder / "optimizer.pt", weights_only=True, map_location="cpu")
        self.optimizer.load_state_dict(extra["optimizer"])
        self.scheduler.load_state_dict(extra["scheduler"])
        rngs = extra.get("rank_rngs")
        torch.set_rng_state(rngs[self.dist.rank] if self.dist and rngs else extra["rng"])
        st = self.state
        st.step, st.epoch, st.batch_in_epoch = (
            saved["step"],
            saved["epoch"],
            saved["batch_in_epoch"],
        )
        st.history, st.best, st.bad_evals = saved["history"], saved["best"], saved["bad_evals"]
        if st.batch_in_epoch >= self.batches_per_epoch:
            st.epoch, st.batch_in_epoch = st.epoch + 1, 0
        require_same(self.dist, st.step, "the checkpoint step to resume from")

    def _check_identity(self, saved: dict[str, Any] | None, folder: Path) -> None:
        """Refuse a checkpoint made with anything that changes the result; a data set given as a
        torch Dataset (no digest) is compared by size only."""
        now = self.identity()
        how = (
            "use the same settings and data to resume, or start over with overwrite=True or a "
            "new output_dir."
        )
        if not isinstance(saved, dict):
            raise FineTuneError(
                f"cannot resume from {str(folder)!r}: it does not record the "
                f"settings it was made with; {how}"
            )
        diffs = []
        old_cfg, new_cfg = saved.get("config") or {}, now["config"]
        for key in sorted(set(old_cfg) | set(new_cfg)):
            if old_cfg.get(key) != new_cfg.get(key):
                diffs.append(f"{key} was {old_cfg.get(key)!r}, now {new_cfg.get(key)!r}")
        for split in ("train", "eval"):
            a, b = (saved.get("data") or {}).get(split), now["data"][split]
            if (a is None) != (b is None):
                diffs.append(
                    f"{split} data was {'given' if a else 'not given'}, now "
                    f"{'given' if b else 'not given'}"
                )
            elif (
                a
                and b
                and (
                    a.get("examples") != b["examples"]
                    or (a.get("sha256") and b["sha256"] and a["sha256"] != b["sha256"])
                )
            ):
                diffs.append(
                    f"{split} data differs ({a.get('examples')} examples then, "
                    f"{b['examples']} now{', other content' if a.get('examples') == b['examples'] else ''})"
                )
        old_model, new_model = saved.get("model") or {}, now["model"]
        for key in ("id", "path", "fingerprint", "options"):
            if old_model.get(key) != new_model.get(key):
                diffs.append(
                    f"base model {key} was {old_model.get(key)!r}, now {new_model.get(key)!r}"
                )
        if diffs:
            raise FineTuneError(
                f"cannot resume from {str(folder)!r}: " + "; ".join(diffs) + f". {how}"
            )


def evaluate(model: Model, data: Examples, batch_size: int = 32) -> dict[str, float]:
    """For a generative model, the loss per target token and its perplexity; for a classifier the
    loss (the log loss), accuracy and macro-F1, computed by the same streaming metrics as
    :func:`fmhub.evaluate`."""
    was_training = model.module.training
    model.module.eval()
    if isinstance(data, GenerationExamples):
        total, tokens = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(data), batch_size):
                loss, n = generative_loss(
                    model, [data[i] for i in range(start, min(start + batch_size, len(data)))]
                )
                total, tokens = total + float(loss) * n, tokens + n
        if was_training:
            train_mode(model.module)
        mean = total / max(1, tokens)
        return {"loss": mean, "perplexity": math.exp(min(mean, 50.0))}
    from ..evaluation.data import LabelNames
    from ..evaluation.run import evaluate as run_evaluation

    try:
        report = run_evaluation(
            model,
            LabelNames(data, data.labels),
            batch_size=batch_size,
            metrics=_EVAL_METRICS,
            progress=False,
        )
    finally:
        if was_training:
            train_mode(model.module)
    return _classification_summary(report.metrics)


_EVAL_METRICS = ["accuracy", "f1", "log_loss"]


def _classification_summary(m: dict[str, float]) -> dict[str, float]:
    return {"loss": m["log_loss"], "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}


def _eval_share(model: Model, data: Examples, indices: Sequence[int], batch_size: int):
    """This rank's class probabilities and gold labels for ``data[indices]``."""
    import numpy as np

    from ..results import full_distribution

    pairs = [data[i] for i in indices]
    probs = np.full((len(pairs), len(data.labels)), np.nan)
    if pairs:
        was_training = model.module.training
        try:
            with full_distribution():
                results = model.predict(
                    [x for x, _ in pairs], batch_size=batch_size, progress=False
                )
        finally:
            if was_training:
                train_mode(model.module)
        for i, r in enumerate(results):
            for ls in r.top_k:
                if 0 <= ls.index < len(data.labels):
                    probs[i, ls.index] = ls.score
    return probs, np.asarray([y for _, y in pairs], dtype=np.int64)


def _gathered_metrics(model: Model, parts: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Loss, accuracy and macro-F1 of every rank's share together."""
    import numpy as np

    from ..evaluation.run import score_batches

    probs = np.concatenate([p for p, _ in parts])
    targets = np.concatenate([t for _, t in parts])
    batch = {
        "n": len(targets),
        "probs": probs,
        "targets": targets,
        "inputs": [None] * len(targets),
        "results": [],
    }
    return _classification_summary(score_batches(model, "classification", [batch], _EVAL_METRICS))


def _bar(total: int, initial: int, progress: bool | None):
    """A bar on a terminal; away from one, with ``progress=True``, a line every 30 s."""
    from .._progress import progress_bar

    return progress_bar(total, desc="fine-tune", unit="step", enabled=progress, initial=initial)
