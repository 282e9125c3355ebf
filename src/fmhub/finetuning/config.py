"""``FineTuneConfig``: every knob of ``fmhub.finetune``, validated (unknown fields are errors)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["FineTuneConfig"]


class FineTuneConfig(BaseModel):
    """How to fine-tune. Pass fields as keyword arguments to :func:`fmhub.finetune`.

    The defaults suit LoRA on a small labelled set; ``epochs`` or ``max_steps`` bound the run.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = Field(
        "lora", description="A registered method: lora, ia3, bitfit, head, full, ..."
    )
    method_options: dict[str, Any] = Field(
        default_factory=dict, description="The method's own options, e.g. {'r': 16, 'alpha': 32}."
    )
    labels: list[str] | None = Field(None, description="Class names in id order; default: sorted.")
    optimizer: Literal["adamw", "sgd"] = Field(
        "adamw", description="adamw (default), or sgd: plain SGD without momentum."
    )
    text_column: str | None = Field(
        None, description="CSV/JSONL column of the inputs; default: text, sentence or input."
    )
    label_column: str | None = Field(
        None, description="CSV/JSONL column of the labels; default: label, labels or class."
    )
    encoding: str | None = Field(
        None, description="Encoding of CSV/JSONL data files; default UTF-8."
    )
    learning_rate: float = Field(5e-4, gt=0)
    epochs: int = Field(3, ge=1)
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps; overrides epochs.")
    batch_size: int = Field(16, ge=1)
    group_by_length: bool | None = Field(
        None,
        description="Draw each batch from examples of similar length (less padding): "
        "None (auto) groups when the model's plugin orders inputs by length (fmhub_batch_order: "
        "text, audio); False keeps plain shuffled batches; True requires it.",
    )
    gradient_accumulation: int = Field(1, ge=1)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    max_grad_norm: float | None = Field(1.0, gt=0)
    seed: int = 0
    mixed_precision: Literal["no", "auto", "bf16", "fp16"] = Field(
        "no", description="auto: bf16 on CUDA where supported, else no. fp16 needs CUDA."
    )
    eval_every: int | None = Field(
        None, ge=1, description="Steps between evaluations; None: each epoch."
    )
    early_stopping_patience: int | None = Field(None, ge=1)
    early_stopping_metric: Literal["accuracy", "macro_f1", "loss"] = "macro_f1"
    output_dir: str | None = Field(None, description="Where the adapter (and checkpoints) go.")
    checkpoint_every: int | None = Field(None, ge=1, description="Steps between checkpoints.")
    resume: bool = Field(
        False,
        description="Resume from output_dir/checkpoint if it exists; refused when the "
        "checkpoint was made with settings or data that change the result.",
    )
    overwrite: bool = Field(
        False,
        description="Replace an adapter or checkpoint an earlier run left in output_dir "
        "(never a folder fmhub did not write).",
    )
    progress: bool | None = None

    @model_validator(mode="after")
    def _check(self) -> FineTuneConfig:
        if (self.checkpoint_every or self.resume) and not self.output_dir:
            raise ValueError("checkpoint_every and resume need output_dir")
        return self
