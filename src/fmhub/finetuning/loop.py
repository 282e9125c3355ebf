"""The training loop behind ``fmhub.finetune``: AdamW with warm-up and decay, evaluation, early
stopping, a guard against non-finite losses, atomic checkpoints and exact resume."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import FineTuneError, NonFiniteLossError
from ..manifest import atomic_folder
from ..spec import validate_model
from .adapter import fingerprint, save_adapter, train_mode, trainable_state
from .config import FineTuneConfig
from .data import Examples, as_examples
from .distributed import Dist, current, require_same, shares
from .plan import attach_head, get_method

if TYPE_CHECKING:
    from ..model import Model

__all__ = ["FineTuneResult", "finetune", "evaluate"]

CHECKPOINT = "checkpoint"
ADAPTER = "adapter"


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
    cfg: FineTuneConfig = validate_model(FineTuneConfig, config, "fine-tuning config")
    if model.adapter is not None:
        raise FineTuneError(
            f"{model.spec.id!r} is already fine-tuned; call model.merge() first or load the base again."
        )
    if model.placed:
        raise FineTuneError("fmhub does not fine-tune a model spread over several devices yet.")
    method, mopts = get_method(model, cfg.method, cfg.method_options)
    data_opts = {"text_column": cfg.text_column, "label_column": cfg.label_column,
                 "encoding": cfg.encoding}
    train_ex = as_examples(train, cfg.labels, **data_opts)
    eval_ex = as_examples(eval, train_ex.labels, **data_opts) if eval is not None else None
    if cfg.early_stopping_patience and eval_ex is None:
        raise FineTuneError("early_stopping_patience needs eval data: pass eval=...")
    started = time.perf_counter()
    dist = current(model.device)  # None unless started by torchrun with WORLD_SIZE > 1
    if dist:
        dist.place(model)
    torch.manual_seed(cfg.seed)
    head = attach_head(model, train_ex.labels)
    modules = method.targets(model, head, mopts)
    fp = fingerprint(model, modules, head)
    method.apply(model, head, mopts)
    model.adapter.update(method=method.name, options=mopts.model_dump(), head=head,
                         modules=modules, fingerprint=fp)
    model.module.to(device=model.device)
    if dist:  # identical starting weights; each rank its own dropout masks
        dist.broadcast_module(model.module)
        torch.manual_seed(cfg.seed + 7919 * dist.rank)
    trainer = _Trainer(model, cfg, train_ex, eval_ex, dist)
    try:
        trainer.run()
    finally:
        model.module.eval()
        trainer.close()
    if dist:
        dist.check_identical(trainable_state(model.module))
    adapter_path = None
    if cfg.output_dir:
        adapter_path = Path(cfg.output_dir) / ADAPTER
        if dist is None or dist.is_main:  # only rank 0 writes; the others wait for it
            adapter_path = save_adapter(model, adapter_path)
        if dist:
            dist.barrier("waiting for rank 0 to write the adapter")
    s = trainer.state
    return FineTuneResult(model=model, steps=s.step, history=s.history, best=s.best,
                          stopped_early=trainer.stopped_early, adapter_path=adapter_path,
                          seconds=time.perf_counter() - started, train_loss=trainer.train_loss())


def _param_groups(module, weight_decay: float):
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    if not decay and not no_decay:
        raise FineTuneError("nothing to train: the method left no trainable parameter.")
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


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
    def __init__(self, model: Model, cfg: FineTuneConfig, train: Examples, eval: Examples | None,
                 dist: Dist | None = None):
        self.model, self.cfg, self.train, self.eval = model, cfg, train, eval
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
            self.optimizer, _schedule(self.total, warmup, cfg.scheduler))
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
        return [order[i : i + bs] for i in range(0, len(order), bs)]

    def _loss(self, idx: list[int]):
        pairs = [self.train[i] for i in idx]
        inputs = [x for x, _ in pairs]
        targets = torch.tensor([y for _, y in pairs], dtype=torch.long, device=self.model.device)
        batch = self.model.preprocess(inputs)
        if self.autocast:
            with torch.autocast(device_type=self.autocast[0], dtype=self.autocast[1]):
                outputs = self.model.forward(batch, grad=True)
        else:
            outputs = self.model.forward(batch, grad=True)
        loss = self.model.hub.call("fmhub_training_loss", self.model.spec.plugin,
                                   self.model.spec.id, model=self.model, outputs=outputs,
                                   targets=targets)
        if loss is None:
            raise FineTuneError(f"plugin {self.model.spec.plugin!r} computed no training loss.")
        return loss.float()

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
        bad = self.dist.any_flag(self.bad_loss is not None, self.model.device,
                                 "the non-finite loss check")
        if bad:
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLossError(self.bad_loss or (
                f"The training loss became non-finite on rank(s) {bad} at step "
                f"{self.state.step + 1}; every rank stopped before any weight was updated with it."))
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
        if self.dist:  # each rank evaluates its share; metrics on everything gathered
            part = _eval_pass(self.model, self.eval, shares(range(len(self.eval)), self.dist),
                              cfg.batch_size)
            parts = self.dist.all_gather_object(part, "gathering evaluation results")
            gold, preds, losses = ([x for p in parts for x in p[k]] for k in range(3))
            metrics = _metrics(gold, preds, losses, self.eval)
        else:
            metrics = evaluate(self.model, self.eval, batch_size=cfg.batch_size)
        metrics["step"] = st.step
        st.history.append(metrics)
        train_mode(self.model.module)
        if not cfg.early_stopping_patience:
            return
        key = cfg.early_stopping_metric
        better = st.best is None or (
            metrics[key] < st.best[key] if key == "loss" else metrics[key] > st.best[key])
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

    def _save_checkpoint(self) -> None:
        from safetensors.torch import save_file

        st = self.state
        trainable = trainable_state(self.model.module)
        rngs = None  # every rank's random state (dropout), for an exact resume
        if self.dist:
            rngs = self.dist.all_gather_object(torch.get_rng_state(), "saving a checkpoint")

        def write(tmp: Path) -> None:
            save_file(trainable, str(tmp / "trainable.safetensors"))
            torch.save({"optimizer": self.optimizer.state_dict(),
                        "scheduler": self.scheduler.state_dict(),
                        "rng": torch.get_rng_state(), "rank_rngs": rngs}, tmp / "optimizer.pt")
            (tmp / "state.json").write_text(json.dumps({
                "step": st.step, "epoch": st.epoch, "batch_in_epoch": st.batch_in_epoch,
                "history": st.history, "best": st.best, "bad_evals": st.bad_evals,
                "config": self.cfg.model_dump(exclude={"resume", "progress"}),
                "labels": self.train.labels,
                "world_size": self.dist.world if self.dist else 1}, indent=1))

        if self.dist is None or self.dist.is_main:  # only rank 0 writes; the others wait for it
            atomic_folder(self._ckpt_dir, write)
        if self.dist:
            self.dist.barrier("waiting for rank 0 to write a checkpoint")

    def _load_checkpoint(self) -> None:
        from safetensors.torch import load_file

        folder = self._ckpt_dir
        found = (folder / "state.json").is_file()
        require_same(self.dist, found, f"whether {str(folder)!r} holds a checkpoint")
        if not found:
            return  # nothing to resume: start from scratch
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
        st.step, st.epoch, st.batch_in_epoch = saved["step"], saved["epoch"], saved["batch_in_epoch"]
        st.history, st.best, st.bad_evals = saved["history"], saved["best"], saved["bad_evals"]
        if st.batch_in_epoch >= self.batches_per_epoch:
            st.epoch, st.batch_in_epoch = st.epoch + 1, 0
        require_same(self.dist, st.step, "the checkpoint step to resume from")


def evaluate(model: Model, data: Examples, batch_size: int = 32) -> dict[str, float]:
    """Loss, accuracy and macro-F1 of a classifier on labelled examples."""
    return _metrics(*_eval_pass(model, data, range(len(data)), batch_size), data)


def _eval_pass(model: Model, data: Examples, indices, batch_size: int):
    """Gold labels, predictions and the summed loss over ``data[indices]``."""
    indices = list(indices)
    was_training = model.module.training
    model.module.eval()
    preds, gold, losses = [], [], []
    for start in range(0, len(indices), batch_size):
        pairs = [data[i] for i in indices[start : start + batch_size]]
        targets = torch.tensor([y for _, y in pairs], dtype=torch.long, device=model.device)
        batch = model.preprocess([x for x, _ in pairs])
        with torch.no_grad():
            outputs = model.forward(batch, grad=True)
            loss = model.hub.call("fmhub_training_loss", model.spec.plugin, model.spec.id,
                                  model=model, outputs=outputs, targets=targets)
            results = model.postprocess(outputs, batch)
        preds += [r.top_k[0].index for r in results]
        gold += targets.tolist()
        losses.append(float(loss) * len(pairs))
    if was_training:
        train_mode(model.module)
    return gold, preds, [sum(losses)]


def _metrics(gold: list[int], preds: list[int], losses: list[float], data: Examples):
    return {"loss": sum(losses) / len(data), **classification_metrics(gold, preds, len(data.labels))}


def classification_metrics(gold: list[int], pred: list[int], n: int) -> dict[str, float]:
    acc = sum(g == p for g, p in zip(gold, pred)) / max(1, len(gold))
    f1s = []
    for c in range(n):
        tp = sum(g == c and p == c for g, p in zip(gold, pred))
        fp = sum(g != c and p == c for g, p in zip(gold, pred))
        fn = sum(g == c and p != c for g, p in zip(gold, pred))
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return {"accuracy": acc, "macro_f1": sum(f1s) / len(f1s) if f1s else 0.0}


def _bar(total: int, initial: int, progress: bool | None):
    """A bar on a terminal; away from one, with ``progress=True``, a line every 30 s."""
    from .._progress import progress_bar

    return progress_bar(total, desc="fine-tune", unit="step", enabled=progress, initial=initial)
