"""Fine-tuning generative models: loss on completion / assistant tokens only, LoRA targets per
architecture, loss and perplexity, PEFT-layout adapters that load back, merge()."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
import torch

import fmhub
from fmhub.finetuning.data import as_generation_examples

ROOT = Path(tempfile.gettempdir()) / f"fmhub-tf-tests-{os.getpid()}"  # as in conftest.py
PAIRS = [
    ("The quick brown fox", " jumps over the lazy dog."),
    ("A man is riding", " a white horse."),
] * 4
CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "A man is eating food."},
    {"role": "user", "content": "And?"},
    {"role": "assistant", "content": "Paris."},
]


def load(name: str):
    return fmhub.load(str(ROOT / name))


def labelled_text(model, batch, row: int) -> str:
    ids = [t for t in batch["labels"][row].tolist() if t != -100]
    return model.processor.tokenizer.decode(ids)


def test_the_loss_covers_only_the_completion_of_a_pair(tiny_zoo):
    model = load("gpt2-lm")
    batch = model.hub.call(
        "fmhub_training_batch",
        model.spec.plugin,
        model=model,
        examples=[("pair", "The quick brown fox", " jumps over."), ("pair", "Paris", " is big.")],
    )
    tok = model.processor.tokenizer
    assert labelled_text(model, batch, 0) == " jumps over." + tok.eos_token
    assert labelled_text(model, batch, 1) == " is big." + tok.eos_token
    n_prompt = len(tok("The quick brown fox")["input_ids"])
    assert (batch["labels"][0, :n_prompt] == -100).all()
    assert (batch["labels"][1][batch["attention_mask"][1] == 0] == -100).all()  # padding


def test_the_loss_covers_only_the_assistant_turns_of_a_chat(tiny_zoo):
    model = load("llama-lm")
    batch = model.hub.call(
        "fmhub_training_batch", model.spec.plugin, model=model, examples=[("chat", CHAT)]
    )
    assert labelled_text(model, batch, 0) == "A man is eating food.</s>Paris.</s>"
    with pytest.raises(fmhub.InputError, match="no chat template"):
        gpt2 = load("gpt2-lm")
        gpt2.hub.call(
            "fmhub_training_batch", gpt2.spec.plugin, model=gpt2, examples=[("chat", CHAT)]
        )


def test_training_data_forms_and_bad_examples(tmp_path):
    rows = [{"prompt": "a", "completion": "b"}, {"messages": CHAT}, {"source": "x", "target": "y"}]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    ex = as_generation_examples(path)
    assert [e[0] for e in ex] == ["pair", "chat", "pair"]
    assert as_generation_examples([CHAT, ("p", "c")])[0][0] == "chat"
    for bad in (
        [("p", "")],
        [{"text": "x"}],
        [[{"role": "user", "content": "only a question"}]],
        [42],
        [],
    ):
        with pytest.raises(fmhub.InputError):
            as_generation_examples(bad)


@pytest.mark.parametrize(
    "name,targets",
    [
        ("gpt2-lm", ["c_attn"]),
        ("llama-lm", ["q_proj", "k_proj", "v_proj", "o_proj"]),
        ("t5-s2s", ["q", "v"]),
        ("bart-s2s", ["q_proj", "v_proj"]),
    ],
)
def test_default_lora_targets_per_architecture(tiny_zoo, name, targets):
    plan = fmhub.finetune_plan(load(name))
    assert plan.head == [] and plan.modules
    assert {m.rpartition(".")[2] for m in plan.modules} == set(targets)


@pytest.mark.parametrize("name,data", [("llama-lm", PAIRS + [CHAT] * 4), ("t5-s2s", PAIRS)])
def test_lora_finetune_learns_saves_in_peft_layout_reloads_and_merges(
    tiny_zoo, tmp_path, name, data
):
    model = load(name)
    result = fmhub.finetune(
        model,
        data,
        eval=data[:4],
        epochs=6,
        batch_size=4,
        learning_rate=1e-2,
        output_dir=str(tmp_path / "run"),
        progress=False,
    )
    first, last = result.history[0], result.history[-1]
    assert set(last) >= {"loss", "perplexity"}
    assert last["loss"] < first["loss"]
    assert last["perplexity"] == pytest.approx(torch.tensor(last["loss"]).exp().item(), rel=1e-5)
    assert model.task in ("text-generation", "text2text")  # no head was attached
    folder = result.adapter_path
    assert (folder / "adapter_config.json").is_file() and (
        folder / "adapter_model.safetensors"
    ).is_file()
    after = model.predict(["The quick brown fox", "A man is riding"], max_new_tokens=6)
    again = fmhub.load(str(folder))
    assert again.predict(["The quick brown fox", "A man is riding"], max_new_tokens=6) == after
    stream = again.stream("The quick brown fox", max_new_tokens=6)
    assert "".join(stream) == after[0].text
    model.merge()
    assert model.adapter is None
    assert model.predict(["The quick brown fox", "A man is riding"], max_new_tokens=6) == after


def test_a_lora_adapter_is_what_peft_loads(tiny_zoo, tmp_path):
    import peft
    import transformers

    model = load("gpt2-lm")
    result = fmhub.finetune(
        model,
        PAIRS,
        epochs=2,
        batch_size=4,
        learning_rate=1e-2,
        output_dir=str(tmp_path / "run"),
        progress=False,
    )
    base = transformers.AutoModelForCausalLM.from_pretrained(ROOT / "gpt2-lm")
    theirs = peft.PeftModel.from_pretrained(base, str(result.adapter_path)).eval()
    ids = model.processor.tokenizer("The quick brown fox", return_tensors="pt")
    with torch.no_grad():
        out = theirs.generate(**ids, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    got = model("The quick brown fox", max_new_tokens=6, min_new_tokens=6)
    assert out[0, ids["input_ids"].shape[1] :].tolist() == list(got.token_ids)


def test_evaluate_perplexity_is_fine_tunings_teacher_forced_loss(tiny_zoo):
    from fmhub.finetuning.loop import evaluate as finetune_evaluate

    model = load("gpt2-lm")
    report = fmhub.evaluate(model, PAIRS, metrics=["perplexity", "exact_match"], batch_size=3)
    want = finetune_evaluate(model, as_generation_examples(PAIRS), batch_size=3)
    # evaluate sums the per-batch token NLL; fine-tuning's eval averages per token likewise
    assert report.metrics["perplexity"] == pytest.approx(want["perplexity"], rel=1e-4)
    assert report.n_examples == len(PAIRS) and 0.0 <= report.metrics["exact_match"] <= 1.0
