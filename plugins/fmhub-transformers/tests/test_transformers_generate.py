"""Causal LMs and sequence-to-sequence models: fidelity to transformers' ``generate`` token for
token, batching, stop strings, seeded sampling, chat templates, streaming, the KV cache, bad
inputs; loaded from local folders and from an offline hub cache."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch
import transformers

import fmhub
from fmhub.results import Generation, check_result

ROOT = Path(tempfile.gettempdir()) / f"fmhub-tf-tests-{os.getpid()}"  # as in conftest.py
PROMPTS = ["A man is eating food.", "The quick brown fox", "Paris", "What is the weather like?"]
CLASSES = {
    "gpt2-lm": "AutoModelForCausalLM",
    "llama-lm": "AutoModelForCausalLM",
    "t5-s2s": "AutoModelForSeq2SeqLM",
    "bart-s2s": "AutoModelForSeq2SeqLM",
}


@pytest.fixture(scope="module")
def models(offline_hub):
    return {name: fmhub.load(str(ROOT / name)) for name in CLASSES}


def reference(name: str, prompt: str, **kwargs) -> list[int]:
    """What transformers' own generate produces for one prompt (the generated ids)."""
    folder = ROOT / name
    module = getattr(transformers, CLASSES[name]).from_pretrained(folder).eval()
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    enc = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = module.generate(**enc, do_sample=False, **kwargs)
    start = 1 if module.config.is_encoder_decoder else enc["input_ids"].shape[1]
    return out[0, start:].tolist()


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_greedy_equals_transformers_generate_token_for_token(models, name):
    model = models[name]
    assert model.task == ("text2text" if "s2s" in name else "text-generation")
    for prompt in PROMPTS[:2]:
        got = model(prompt, max_new_tokens=10, min_new_tokens=10)
        check_result(model.task, got)
        assert list(got.token_ids) == reference(name, prompt, max_new_tokens=10, min_new_tokens=10)
        ends = got.token_ids[-1] == model.module.generation_config.eos_token_id  # BART forces one
        assert got.completion_tokens == 10 and got.finish_reason == ("stop" if ends else "length")
        tok = model.processor.tokenizer
        assert got.text == tok.decode(
            got.token_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        assert got.prompt_tokens == len(tok(prompt)["input_ids"])


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_batched_left_padded_generation_equals_one_by_one(models, name):
    model = models[name]
    batched = model.predict(PROMPTS, batch_size=4, max_new_tokens=8)
    single = [model(p, max_new_tokens=8) for p in PROMPTS]
    assert batched == single
    if "lm" in name:
        assert model.processor.tokenizer.padding_side == "left"


def test_checkpoint_defaults_and_per_call_options(models):
    model = models["gpt2-lm"]
    assert model.call_defaults["max_new_tokens"] == 32  # from generation_config.json
    assert model(PROMPTS[0], min_new_tokens=32).completion_tokens == 32
    with pytest.raises(fmhub.InputError, match="Valid options"):
        model(PROMPTS[0], max_tokens=3)


def test_stop_strings_end_generation_and_are_trimmed(models):
    model = models["gpt2-lm"]
    full = model(PROMPTS[1], max_new_tokens=12, min_new_tokens=12).text
    stop = full[4:7]
    assert stop.strip()
    got = model(PROMPTS[1], max_new_tokens=12, min_new_tokens=0, stop=[stop])
    assert got.finish_reason == "stop" and stop not in got.text
    assert full.startswith(got.text) and len(got.text) == full.find(stop)
    assert got.completion_tokens < 12
    pieces = list(stream := model.stream(PROMPTS[1], max_new_tokens=12, stop=stop))
    assert "".join(pieces) == stream.result.text == got.text


def test_seeded_sampling_is_reproducible(models):
    model = models["llama-lm"]
    a = model.predict(PROMPTS, max_new_tokens=10, temperature=1.5, seed=7)
    b = model.predict(PROMPTS, max_new_tokens=10, temperature=1.5, seed=7)
    c = model.predict(PROMPTS, max_new_tokens=10, temperature=1.5, seed=8)
    assert a == b and a != c
    greedy = model.predict(PROMPTS, max_new_tokens=10)
    assert a != greedy


def test_chat_is_rendered_with_the_chat_template(models):
    model = models["llama-lm"]
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    got = model(chat, max_new_tokens=6)
    tok = model.processor.tokenizer
    rendered = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert rendered.endswith("<|assistant|>")
    ids = tok(rendered, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        out = model.module.generate(**ids, max_new_tokens=6, do_sample=False)
    assert list(got.token_ids) == out[0, ids["input_ids"].shape[1] :].tolist()
    assert model.predict([chat, "Paris"], max_new_tokens=6)[0] == got  # chats and prompts mix


def test_streaming_pieces_add_up_and_arrive_before_the_end(models):
    for name in ("gpt2-lm", "t5-s2s"):
        model = models[name]
        stream = model.stream(PROMPTS[0], max_new_tokens=10, min_new_tokens=10)
        pieces = list(stream)
        assert len(pieces) > 1, "text must arrive piece by piece"
        assert (
            "".join(pieces)
            == stream.result.text
            == model(PROMPTS[0], max_new_tokens=10, min_new_tokens=10).text
        )


def test_the_kv_cache_is_used(models):
    """After the prompt, each decoding step feeds the module one new token, not the prefix."""
    model = models["llama-lm"]
    widths = []
    handle = model.module.model.register_forward_pre_hook(
        lambda mod, args, kwargs: widths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    try:
        model(PROMPTS[0], max_new_tokens=6, min_new_tokens=6)
    finally:
        handle.remove()
    assert widths[0] > 1 and widths[1:] == [1] * 5


def test_loads_from_the_offline_hub_cache(models):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    for repo, name in (("tiny-org/llama-lm", "llama-lm"), ("tiny-org/t5-s2s", "t5-s2s")):
        model = fmhub.load(f"hf:{repo}")
        assert model(PROMPTS[2], max_new_tokens=5) == models[name](PROMPTS[2], max_new_tokens=5)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        None,
        42,
        b"bytes",
        [{"role": "robot", "content": "hi"}],
        [{"role": "user"}],
        ["not a message"],
        [],
    ],
)
def test_bad_inputs_are_input_errors(models, bad):
    with pytest.raises(fmhub.InputError):
        models["llama-lm"](bad, max_new_tokens=3)


def test_too_long_prompts_zero_tokens_and_missing_chat_templates_are_input_errors(models):
    model = models["gpt2-lm"]
    with pytest.raises(fmhub.InputError, match="context"):
        model("horse " * 200, max_new_tokens=3)
    with pytest.raises(fmhub.InputError, match="max_new_tokens"):
        model("horse " * 60, max_new_tokens=100)
    with pytest.raises(fmhub.InputError, match="max_new_tokens"):
        model("horse", max_new_tokens=0)
    with pytest.raises(fmhub.InputError, match="no chat template"):
        model([{"role": "user", "content": "hi"}])
    with pytest.raises(fmhub.InputError, match="prompt string"):
        models["t5-s2s"]([{"role": "user", "content": "hi"}])


def test_save_load_round_trip_generates_the_same_tokens(models, tmp_path):
    for name in ("llama-lm", "bart-s2s"):
        model = models[name]
        before = model.predict(PROMPTS, max_new_tokens=6, min_new_tokens=6)
        again = fmhub.load(str(model.save(tmp_path / name)))
        assert again.task == model.task and again.call_defaults == model.call_defaults
        assert again.predict(PROMPTS, max_new_tokens=6, min_new_tokens=6) == before
        assert all(isinstance(g, Generation) for g in before)


def test_threads_share_a_model_while_it_streams(models):
    """The tokenizer is used under a lock: predicts in threads and a stream at once agree with
    sequential calls."""
    import threading

    model = models["llama-lm"]
    expected = model.predict(PROMPTS, max_new_tokens=6)
    got, errors = {}, []

    def work(k):
        try:
            got[k] = model.predict(PROMPTS, max_new_tokens=6)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    stream = model.stream(PROMPTS[0], max_new_tokens=6)
    for t in threads:
        t.start()
    text = "".join(stream)
    for t in threads:
        t.join()
    assert not errors and all(v == expected for v in got.values())
    assert text == expected[0].text
