"""Length-grouped batches in fine-tuning (``group_by_length``): the order comes from the plugin's
``fmhub_batch_order`` hook, is seeded and reproducible, holds every example once per epoch, keeps
similar lengths together, resumes exactly and does not cost accuracy."""

from __future__ import annotations

import json
import random

import pytest
import torch

import fmhub
from fmhub import hookimpl
from fmhub.finetuning.loop import GROUP_BUCKET, _Trainer, grouped_batches, length_ranks


def make_data(n: int, seed: int):
    rng = random.Random(seed)
    data = []
    for _ in range(n):
        x = [rng.uniform(-1, 1) for _ in range(4)]
        data.append((x, "pos" if x[0] + x[1] > 0 else "neg"))
    return data


TRAIN, EVAL = make_data(256, 0), make_data(128, 1)


def accuracy(model, data):
    preds = model.predict([x for x, _ in data], progress=False)
    return sum(p.label == y for p, (_, y) in zip(preds, data)) / len(data)


class _Interrupting(torch.utils.data.Dataset):
    """Raises KeyboardInterrupt at the n-th access, like a user pressing Ctrl-C mid-epoch."""

    def __init__(self, data, after):
        self.data, self.after, self.calls = data, after, 0

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        self.calls += 1
        if self.calls > self.after:
            raise KeyboardInterrupt
        return self.data[i]


def size(x) -> float:
    """The toy inputs' stand-in for a length: unrelated to the label (x0 + x1 > 0)."""
    return abs(x[2]) + abs(x[3])


class Lengths:
    """A cross-cutting plugin ordering inputs longest first, like fmhub-transformers does."""

    def __init__(self):
        self.calls = 0

    @hookimpl
    def fmhub_batch_order(self, model, inputs):
        self.calls += 1
        return sorted(range(len(inputs)), key=lambda i: -size(inputs[i]))


@pytest.fixture
def lengths(toy_hub):
    plugin = Lengths()
    toy_hub.register(plugin, name="lengths")
    return plugin


def trainer(model, data=TRAIN, **cfg):
    from fmhub.finetuning.config import FineTuneConfig
    from fmhub.finetuning.data import as_examples

    config = FineTuneConfig(**{"progress": False, **cfg})
    ex = as_examples(data, config.labels)
    model.attach_head(ex.labels)
    return _Trainer(model, config, ex, None)


def spread(batches, data) -> float:
    """Mean, over batches, of the range of sizes in a batch."""
    return sum(
        max(size(data[i][0]) for i in b) - min(size(data[i][0]) for i in b) for b in batches
    ) / len(batches)


def test_batches_are_grouped_reproducible_and_hold_every_example_once(lengths):
    data = TRAIN * 5  # 1280 examples: two buckets of 50 batches of 8
    t = trainer(fmhub.load("toy:embed"), data, batch_size=8)
    assert t.length_ranks is not None and lengths.calls == 1
    epochs = [t._epoch_batches(e) for e in range(3)]
    assert lengths.calls == 1, "lengths are measured once per run"
    for batches in epochs:
        assert sorted(i for b in batches for i in b) == list(range(len(data)))
        assert len(batches) == t.batches_per_epoch == 160
        assert [len(b) for b in batches].count(8) == 160
    assert epochs[0] != epochs[1], "each epoch is shuffled anew"
    assert t._epoch_batches(1) == epochs[1], "the same seed and epoch give the same batches"
    plain = trainer(fmhub.load("toy:embed"), data, batch_size=8, group_by_length=False)
    assert plain.length_ranks is None
    ungrouped = plain._epoch_batches(0)
    assert spread(epochs[0], data) < 0.2 * spread(ungrouped, data)
    other = trainer(fmhub.load("toy:embed"), data, batch_size=8, seed=1)._epoch_batches(0)
    assert other != epochs[0]


def test_grouped_batches_keep_one_short_batch_and_mix_buckets():
    n, bs = 1000, 7
    ranks = list(range(n))
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(n, generator=gen).tolist()
    batches = grouped_batches(order, ranks, bs, gen)
    assert sorted(i for b in batches for i in b) == list(range(n))
    assert len(batches) == -(-n // bs) and sum(len(b) < bs for b in batches) == 1
    # the first batch of the epoch is not always the longest bucket's first
    firsts = {
        grouped_batches(order, ranks, bs, torch.Generator().manual_seed(s))[0][0] for s in range(5)
    }
    assert len(firsts) > 1
    assert GROUP_BUCKET * bs < n, "this test spans more than one bucket"


def test_auto_is_off_without_a_length_order_and_true_then_refused(toy_hub):
    t = trainer(fmhub.load("toy:embed"))
    assert t.length_ranks is None  # the toy plugin orders nothing: plain shuffled batches
    with pytest.raises(fmhub.FineTuneError, match="group_by_length=True.*fmhub_batch_order"):
        fmhub.finetune(
            fmhub.load("toy:embed"), TRAIN, group_by_length=True, max_steps=1, progress=False
        )


def test_an_order_that_is_not_a_permutation_is_a_plugin_error(toy_hub):
    class Bad:
        @hookimpl
        def fmhub_batch_order(self, model, inputs):
            return [0] * len(inputs)

    toy_hub.register(Bad(), name="bad-order")
    with pytest.raises(fmhub.PluginError, match="not a permutation"):
        fmhub.finetune(fmhub.load("toy:embed"), TRAIN, max_steps=1, progress=False)


def test_grouped_training_is_reproducible_and_resumes_exactly(lengths, tmp_path):
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
    again = fmhub.load("toy:embed")
    fmhub.finetune(again, TRAIN, output_dir=str(tmp_path / "c"), **cfg)
    for p, q in zip(straight.module.parameters(), again.module.parameters()):
        assert torch.equal(p, q)

    interrupted = fmhub.load("toy:embed")
    with pytest.raises(KeyboardInterrupt):  # lengths read every example once, then step 11
        fmhub.finetune(
            interrupted,
            _Interrupting(TRAIN, after=len(TRAIN) + 16 * 10 + 5),
            output_dir=str(tmp_path / "b"),
            **cfg,
        )
    state = json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 8 and state["config"]["group_by_length"] is None
    resumed = fmhub.load("toy:embed")
    result = fmhub.finetune(resumed, TRAIN, output_dir=str(tmp_path / "b"), resume=True, **cfg)
    assert result.steps == 48
    for (n, p), (_, q) in zip(
        straight.module.named_parameters(), resumed.module.named_parameters()
    ):
        assert torch.allclose(p, q, atol=1e-6), n
    with pytest.raises(fmhub.FineTuneError, match="group_by_length was None, now False"):
        fmhub.finetune(
            fmhub.load("toy:embed"),
            TRAIN,
            output_dir=str(tmp_path / "b"),
            resume=True,
            **{**cfg, "group_by_length": False},
        )


def test_grouping_does_not_cost_accuracy(lengths):
    scores = {}
    for grouped in (None, False):
        accs = []
        for seed in (0, 1):
            model = fmhub.load("toy:embed")
            fmhub.finetune(
                model,
                TRAIN,
                method="lora",
                epochs=6,
                learning_rate=1e-2,
                batch_size=16,
                seed=seed,
                group_by_length=grouped,
                progress=False,
            )
            accs.append(accuracy(model, EVAL))
        scores[grouped] = sum(accs) / len(accs)
    assert scores[False] > 0.8, scores
    assert scores[None] >= scores[False] - 0.03, scores


def test_distributed_ranks_share_the_same_grouped_batches(lengths):
    from fmhub.finetuning.distributed import shares

    class FakeDist:
        def __init__(self, rank):
            self.rank, self.world = rank, 2

    data = TRAIN
    t = trainer(fmhub.load("toy:embed"), data, batch_size=8)
    batch = t._epoch_batches(0)[3]
    parts = [shares(batch, FakeDist(r)) for r in range(2)]
    assert sorted(parts[0] + parts[1]) == sorted(batch) and not set(parts[0]) & set(parts[1])
    again = trainer(fmhub.load("toy:embed"), data, batch_size=8)._epoch_batches(0)[3]
    assert again == batch, "every rank computes the same global batches"


def test_lengths_come_from_the_owner_hook_only_for_labelled_data(lengths):
    from fmhub.finetuning.config import FineTuneConfig
    from fmhub.finetuning.data import as_examples

    model = fmhub.load("toy:embed")
    cfg = FineTuneConfig(batch_size=300)
    assert length_ranks(model, as_examples(TRAIN), cfg) is None, "one batch: nothing to group"
    ranks = length_ranks(model, as_examples(TRAIN), FineTuneConfig(batch_size=4))
    longest = max(range(len(TRAIN)), key=lambda i: size(TRAIN[i][0]))
    assert sorted(ranks) == list(range(len(TRAIN))) and ranks[longest] == 0
