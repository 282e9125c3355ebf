"""Fine-tuning through the core, on the toy plugin: every method learns, adapters round-trip,
merge keeps outputs, resume is exact, the NaN guard fires, seeds reproduce."""

from __future__ import annotations

import json
import random

import pytest
import torch

import fmhub
from fmhub.finetuning.data import as_examples


def make_data(n: int, seed: int):
    rng = random.Random(seed)
    data = []
    for _ in range(n):
        x = [rng.uniform(-1, 1) for _ in range(4)]
        data.append((x, "pos" if x[0] + x[1] > 0 else "neg"))
    return data


TRAIN, EVAL = make_data(256, 0), make_data(128, 1)
FAST = dict(epochs=6, learning_rate=1e-2, batch_size=16, progress=False)


def accuracy(model, data):
    preds = model.predict([x for x, _ in data], progress=False)
    return sum(p.label == y for p, (_, y) in zip(preds, data)) / len(data)


@pytest.mark.parametrize("method", ["lora", "ia3", "bitfit", "head", "full"])
def test_every_method_learns_and_round_trips(method, tmp_path):
    model = fmhub.load("toy:embed")
    result = fmhub.finetune(
        model, TRAIN, eval=EVAL, method=method, output_dir=str(tmp_path), **FAST
    )
    assert model.task == "classification" and model.labels == ("neg", "pos")
    assert accuracy(model, EVAL) >= 0.8, result.history  # chance is 0.5
    assert result.history and result.history[-1]["step"] == result.steps
    folder = result.adapter_path
    manifest = json.loads((folder / "fmhub.json").read_text())
    assert manifest["kind"] == "adapter" and manifest["labels"] == ["neg", "pos"]
    assert manifest["adapter"]["method"] == method and manifest["adapter"]["head"] == ["head"]
    if method in ("lora", "ia3"):
        assert (folder / "adapter_config.json").is_file()
        assert (folder / "adapter_model.safetensors").is_file()
    again = fmhub.load(str(folder))
    xs = [x for x, _ in EVAL]
    before = model.predict(xs, progress=False)
    after = again.predict(xs, progress=False)
    assert [a.label for a in after] == [b.label for b in before]
    assert max(abs(a.score - b.score) for a, b in zip(after, before)) < 1e-6
    again.merge()
    assert again.adapter is None
    merged = again.predict(xs, progress=False)
    assert max(abs(a.score - b.score) for a, b in zip(merged, before)) < 1e-4


def test_lora_never_wraps_the_head_and_plan_matches():
    model = fmhub.load("toy:embed")
    plan = fmhub.finetune_plan(model, "lora", method_options={"r": 4})
    assert plan.modules == ["fc1", "fc2"] and plan.head == ["head"]
    # r=4 on two 16-wide layers: 4*(4+16) + 4*(16+16) = 208, plus a 2-label head of 16*2+2.
    assert plan.trainable == 208 + 34
    assert "head" not in str(plan.modules) and "trainable parameters" in str(plan)
    assert model.adapter is None and model.task == "embedding", "the plan must not touch the model"
    fmhub.finetune(
        model, TRAIN, method="lora", method_options={"r": 4}, max_steps=2, progress=False
    )
    names = [n for n, _ in model.module.named_modules()]
    assert not any(n.startswith("head") and "lora" in n for n in names)
    trainable = {n for n, p in model.module.named_parameters() if p.requires_grad}
    assert any("head" in n for n in trainable) and any("lora_A" in n for n in trainable)


def test_same_seed_same_result_other_seed_differs():
    def run(seed):
        model = fmhub.load("toy:embed")
        fmhub.finetune(model, TRAIN, method="lora", seed=seed, max_steps=10, progress=False)
        return torch.cat([p.detach().flatten() for p in model.module.parameters()])

    a, b, c = run(3), run(3), run(4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


class _Interrupting(torch.utils.data.Dataset):
    """Raises KeyboardInterrupt at the n-th access, like a user pressing Ctrl-C mid-epoch."""

    def __init__(self, data, after):
        self.data, self.after, self.calls = data, after, 0

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        self.calls += 1
        if self.after is not None and self.calls > self.after:
            raise KeyboardInterrupt
        return self.data[i]


def test_resume_continues_where_it_stopped(tmp_path):
    cfg = dict(
        method="lora",
        epochs=3,
        batch_size=16,
        learning_rate=1e-2,
        checkpoint_every=4,
        progress=False,
        labels=["neg", "pos"],
    )
    straight = fmhub.load("toy:embed")
    fmhub.finetune(straight, TRAIN, output_dir=str(tmp_path / "a"), **cfg)

    interrupted = fmhub.load("toy:embed")
    with pytest.raises(KeyboardInterrupt):  # dies during step 11 of 48, after checkpoint 8
        fmhub.finetune(
            interrupted,
            _Interrupting(TRAIN, after=16 * 10 + 5),
            output_dir=str(tmp_path / "b"),
            **cfg,
        )
    state = json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 8
    resumed = fmhub.load("toy:embed")
    result = fmhub.finetune(resumed, TRAIN, output_dir=str(tmp_path / "b"), resume=True, **cfg)
    assert result.steps == 48
    for (n, p), (_, q) in zip(
        straight.module.named_parameters(), resumed.module.named_parameters()
    ):
        assert torch.allclose(p, q, atol=1e-6), n


def test_non_finite_loss_stops_before_corrupting_weights():
    model = fmhub.load("toy:embed")
    poisoned = TRAIN[:40] + [([float("nan")] * 4, "pos")] + TRAIN[40:]
    snapshot = {}

    def keep(_module, _inputs, _outputs):
        snapshot.update({n: p.detach().clone() for n, p in model.module.named_parameters()})

    with pytest.raises(fmhub.NonFiniteLossError, match=r"at step \d+"):
        model.module.register_forward_hook(keep)
        fmhub.finetune(model, poisoned, method="full", batch_size=8, epochs=1, progress=False)
    for n, p in model.module.named_parameters():
        assert torch.isfinite(p).all(), n
        assert torch.equal(p, snapshot[n]), f"{n} changed after the non-finite loss"


def test_early_stopping_keeps_best(tmp_path):
    model = fmhub.load("toy:embed")
    result = fmhub.finetune(
        model,
        TRAIN,
        eval=EVAL,
        method="head",
        epochs=30,
        eval_every=2,
        early_stopping_patience=2,
        early_stopping_metric="loss",
        learning_rate=0.5,
        warmup_ratio=0.0,
        scheduler="constant",
        progress=False,
    )
    assert result.stopped_early and result.steps < 30 * 16
    assert result.best["loss"] == min(h["loss"] for h in result.history)


def test_config_and_method_errors_are_clear():
    model = fmhub.load("toy:embed")
    with pytest.raises(
        fmhub.InvalidOptionError, match="learning_rat.*Did you mean 'learning_rate'"
    ):
        fmhub.finetune(model, TRAIN, learning_rat=1e-3)
    with pytest.raises(fmhub.FineTuneError, match="Did you mean 'lora'"):
        fmhub.finetune(model, TRAIN, method="lorra")
    with pytest.raises(fmhub.InvalidOptionError, match="unknown option 'rank'.*Valid options"):
        fmhub.finetune(model, TRAIN, method="lora", method_options={"rank": 4})
    with pytest.raises(fmhub.InputError, match="at least two labels"):
        fmhub.finetune(model, [([0, 0, 0, 0], "a")])
    with pytest.raises(fmhub.FineTuneError, match="eval"):
        fmhub.finetune(model, TRAIN, early_stopping_patience=2)


def test_mismatching_base_is_a_clear_error(tmp_path):
    model = fmhub.load("toy:embed")
    result = fmhub.finetune(
        model, TRAIN, method="lora", max_steps=2, output_dir=str(tmp_path), progress=False
    )
    manifest_file = result.adapter_path / "fmhub.json"
    manifest = json.loads(manifest_file.read_text())
    shapes = manifest["adapter"]["fingerprint"]["shapes"]
    shapes["fc1.weight"] = [32, 4]  # as if trained on a wider base
    manifest["adapter"]["fingerprint"]["sha256"] = "0" * 16
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(fmhub.ManifestError, match=r"fmhub\.json' was edited"):
        fmhub.load(str(result.adapter_path))  # the manifest protects its own content
    with pytest.raises(
        fmhub.ManifestError, match=r"fc1\.weight: saved \[32, 4\] vs base \[16, 4\]"
    ):
        fmhub.load(str(result.adapter_path), verify=False)


def test_third_party_method_through_the_registration_hook():
    class LastLayer(fmhub.FineTuneMethod):
        name = "last-layer"
        description = "Train fc2 and the head."

        def targets(self, model, head, options):
            return ["fc2"]

        def apply(self, model, head, options):
            for n, p in model.module.named_parameters():
                p.requires_grad_(n.startswith(("fc2", "head")))

    class Plugin:
        @fmhub.hookimpl
        def fmhub_register_finetune_methods(self, register):
            register(LastLayer())

    hub = fmhub.Hub()
    hub.register(Plugin(), name="last-layer-method")
    model = hub.load("toy:embed")
    assert "last-layer" in hub.finetune_methods()
    plan = fmhub.finetune_plan(model, "last-layer")
    assert plan.modules == ["fc2"] and plan.trainable == 16 * 16 + 16 + 16 * 2 + 2
    fmhub.finetune(model, TRAIN, method="last-layer", **FAST)
    assert accuracy(model, EVAL) >= 0.8


def test_data_forms(tmp_path):
    (tmp_path / "d.csv").write_text("text,label\nhello,greet\nbye,leave\nhi,greet\n")
    ex = as_examples(tmp_path / "d.csv")
    assert ex.labels == ["greet", "leave"] and ex[1] == ("bye", 1)
    (tmp_path / "d.jsonl").write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n')
    ex = as_examples(tmp_path / "d.jsonl")
    assert ex.labels == ["0", "1"] and ex[0] == ("a", 1)
    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        (tmp_path / "imgs" / cls / "1.png").write_bytes(b"x")
    ex = as_examples(tmp_path / "imgs")
    assert ex.labels == ["cat", "dog"] and ex[1][1] == 1 and ex[1][0].endswith("dog/1.png")
    (tmp_path / "bad.csv").write_text("sentence,y\na,b\n")
    with pytest.raises(fmhub.InputError, match="label column"):
        as_examples(tmp_path / "bad.csv")
    with pytest.raises(fmhub.InputError, match="not one of the labels"):
        as_examples([("a", "x"), ("b", "y")], labels=["x", "z"])[1]


def test_gradient_accumulation_matches_the_larger_batch():
    def run(**cfg):
        model = fmhub.load("toy:embed")
        fmhub.finetune(
            model, TRAIN, method="full", max_steps=6, progress=False, max_grad_norm=None, **cfg
        )
        return torch.cat([p.detach().flatten() for p in model.module.parameters()])

    # the same permutation, cut into 8s and accumulated in pairs, is the same examples as 16s
    assert torch.allclose(run(batch_size=16), run(batch_size=8, gradient_accumulation=2), atol=1e-5)


def test_mixed_precision_bf16_trains_and_fp16_needs_cuda():
    model = fmhub.load("toy:embed")
    fmhub.finetune(model, TRAIN, method="lora", mixed_precision="bf16", **FAST)
    assert accuracy(model, EVAL) >= 0.8
    with pytest.raises(fmhub.FineTuneError, match="fp16.*CUDA"):
        fmhub.finetune(fmhub.load("toy:embed"), TRAIN, mixed_precision="fp16", progress=False)
