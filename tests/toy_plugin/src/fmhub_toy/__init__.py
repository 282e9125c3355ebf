"""A tiny pure-torch model family, the smallest complete fmhub plugin.

Inputs are sequences of 4 numbers (or a string of 4 comma-separated numbers, as the CLI passes).
``toy:embed`` maps them to an 8-dim embedding, ``toy:classify`` to one of three labels. Weights are
"pretrained" deterministically from a seed. Registration imports nothing but fmhub; torch is
imported when a model is loaded.
"""

from __future__ import annotations

import fmhub
from fmhub import hookimpl

LABELS = ("low", "mid", "high")
IN_DIM, HIDDEN = 4, 16


class ToyOptions(fmhub.LoadOptions):
    seed: int = 0


@hookimpl
def fmhub_register_namespaces(register):
    register(
        fmhub.Namespace(
            name="toy",
            distribution="fmhub-toy",
            options=ToyOptions,
            description="Tiny pure-torch test models.",
        )
    )


@hookimpl
def fmhub_register_models(register):
    register(
        fmhub.ModelSpec(
            id="toy:embed",
            aliases=("toy-embed",),
            task="embedding",
            tasks=("embedding",),
            modality="vector",
            architecture="mlp",
            license="MIT",
            source="seeded random weights",
        )
    )
    register(
        fmhub.ModelSpec(
            id="toy:classify",
            aliases=("toy-classifier",),
            task="classification",
            tasks=("classification",),
            modality="vector",
            architecture="mlp",
            license="MIT",
            source="seeded random weights",
        )
    )


@hookimpl
def fmhub_claim_path(path):
    import os

    if os.path.isfile(os.path.join(path, "toy.json")):
        return fmhub.ModelSpec(id="toy:local", path=path)
    return None


@hookimpl
def fmhub_load(spec, options):
    from ._impl import load

    return load(spec, options)


@hookimpl
def fmhub_preprocess(model, inputs):
    from ._impl import preprocess

    return preprocess(inputs)


@hookimpl
def fmhub_forward(model, batch):
    return model.module(batch["x"])


@hookimpl
def fmhub_postprocess(model, outputs, batch):
    from ._impl import postprocess

    return postprocess(model, outputs)


@hookimpl
def fmhub_save(model, path):
    from ._impl import save

    save(model, path)
    return True


@hookimpl
def fmhub_finetune_targets(model, method):
    return ["fc1", "fc2"]


@hookimpl
def fmhub_attach_head(model, labels):
    import torch

    model.module.head = torch.nn.Linear(HIDDEN, len(labels))
    model.module.task = "classification"
    return ["head"]


@hookimpl
def fmhub_training_loss(model, outputs, targets):
    import torch.nn.functional as F

    return F.cross_entropy(outputs.float(), targets)


@hookimpl
def fmhub_export_spec(model):
    return fmhub.ExportSpec(
        module=model.module,
        input_names=["x"],
        output_names=["logits" if model.task == "classification" else "embedding"],
        example=[[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 2.0]],
        check=[[4.0, 3.0, 2.0, 1.0], [0.0, 0.5, -0.5, 1.0], [2.0, 2.0, 2.0, 2.0]],
        dynamic_axes={"x": {0: "batch"}},
    )
