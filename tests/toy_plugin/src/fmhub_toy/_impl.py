from __future__ import annotations

import json
import os

import numpy as np
import torch
from torch import nn

import fmhub
from fmhub.results import top_k_classification

from . import HIDDEN, IN_DIM, LABELS


class ToyNet(nn.Module):
    def __init__(self, task: str, out_dim: int):
        super().__init__()
        self.task = task
        self.fc1 = nn.Linear(IN_DIM, HIDDEN)
        self.fc2 = nn.Linear(HIDDEN, HIDDEN)
        self.head = nn.Linear(HIDDEN, out_dim)

    def forward(self, x):
        h = torch.relu(self.fc2(torch.relu(self.fc1(x))))
        return self.head(h)


def load(spec, options):
    if spec.path:
        with open(os.path.join(spec.path, "toy.json")) as f:
            cfg = json.load(f)
        net = ToyNet(cfg["task"], cfg["out_dim"])
        from safetensors.torch import load_file

        net.load_state_dict(load_file(os.path.join(spec.path, "toy.safetensors")))
        labels = cfg.get("labels")
        task = cfg["task"]
    else:
        task = spec.task
        labels = LABELS if task == "classification" else None
        gen = torch.Generator().manual_seed(options.seed + (1 if task == "classification" else 0))
        net = ToyNet(task, 3 if task == "classification" else 8)
        for p in net.parameters():
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return fmhub.Loaded(module=net.eval(), task=task, labels=labels)


def preprocess(inputs):
    rows = []
    for i, x in enumerate(inputs):
        if isinstance(x, str):  # the CLI passes "0.1,0.2,0.3,0.4"
            try:
                x = [float(v) for v in x.split(",")]
            except ValueError:
                raise fmhub.InputError(
                    f"toy models take {IN_DIM} comma-separated numbers per text input, got {x!r}.",
                    index=i,
                ) from None
        try:
            arr = np.asarray(x, dtype=np.float32)
        except (TypeError, ValueError):
            arr = None
        if arr is None or arr.shape != (IN_DIM,):
            raise fmhub.InputError(
                f"toy models take {IN_DIM} numbers per input, got {x!r}.", index=i
            )
        rows.append(arr)
    return {"x": torch.from_numpy(np.stack(rows))}


def postprocess(model, outputs):
    if model.task == "classification":
        return top_k_classification(outputs.float().softmax(-1), model.labels, k=3)
    return list(outputs.float().cpu().numpy())


def save(model, path):
    from safetensors.torch import save_file

    net = model.module
    cfg = {
        "task": model.task,
        "out_dim": net.head.out_features,
        "labels": list(model.labels) if model.labels else None,
    }
    with open(os.path.join(path, "toy.json"), "w") as f:
        json.dump(cfg, f)
    save_file(
        {k: v.contiguous() for k, v in net.state_dict().items()},
        os.path.join(path, "toy.safetensors"),
    )
