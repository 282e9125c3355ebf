"""Generative text models: causal LMs (``text-generation``) and sequence-to-sequence models
(``text2text``). Decoding is transformers' ``generate`` (KV cache, logits processors, stop strings,
beam search); this module turns prompts and chats into its inputs and its outputs into
:class:`fmhub.results.Generation` results."""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from typing import Any

import torch

import fmhub
from fmhub.results import Generation

__all__ = ["ROLES", "GenProcessor", "forward", "generation_config", "postprocess", "preprocess"]

#: Chat roles fmhub passes to a chat template.
ROLES = ("system", "user", "assistant", "tool")
#: transformers' GenerationConfig field -> fmhub GenerationOptions field, read as defaults.
_DEFAULTS = (
    "max_new_tokens",
    "min_new_tokens",
    "do_sample",
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
    "num_beams",
)


@dataclass
class GenProcessor:
    """What the generative stages need: the tokenizer, the context size, the model's kind.

    A fast tokenizer is not safe to call from two threads at once (``model.stream`` decodes in a
    worker while another thread may predict): every use holds ``lock``."""

    tokenizer: Any
    context: int | None
    encoder_decoder: bool
    lock: Any = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def build(cls, module, tokenizer) -> GenProcessor:
        config = module.config
        encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
        if not encoder_decoder:
            tokenizer.padding_side = "left"  # generated tokens follow every prompt directly
        if tokenizer.pad_token_id is None:  # GPT-2, Llama: pad with the end-of-sequence token
            eos = module.generation_config.eos_token_id
            eos = eos[0] if isinstance(eos, list) else eos
            if eos is None:
                eos = tokenizer.eos_token_id
            if eos is not None:
                tokenizer.pad_token_id = eos
        limits = [getattr(config, n, None) for n in ("max_position_embeddings", "n_positions")]
        limits = [v for v in limits if isinstance(v, int) and v > 0]
        if 0 < (tokenizer.model_max_length or 0) < 1_000_000:
            limits.append(int(tokenizer.model_max_length))
        return cls(tokenizer, min(limits) if limits else None, encoder_decoder)

    def decode(self, ids) -> str:
        """The text of generated ids (special tokens dropped, spaces as decoded), under the lock."""
        with self.lock:
            return decode(self.tokenizer, ids)


def call_defaults(module) -> dict[str, Any]:
    """The checkpoint's ``generation_config.json`` values that GenerationOptions has."""
    gc = module.generation_config
    out = {k: getattr(gc, k) for k in _DEFAULTS if getattr(gc, k, None) is not None}
    if out.get("min_new_tokens") == 0:
        out.pop("min_new_tokens")
    return out


# -- preprocess ---------------------------------------------------------------------------------


def _chat(model, i: int, messages: list) -> str:
    tok = model.processor.tokenizer
    if not messages:
        raise fmhub.InputError(f"Input {i} is an empty chat; pass at least one message.")
    for j, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or "role" not in m:
            raise fmhub.InputError(
                f"Input {i}, message {j} is {m!r:.80}; a chat message is a dict "
                "{'role': 'user', 'content': 'text'}."
            )
        if m["role"] not in ROLES:
            raise fmhub.InputError(
                f"Input {i}, message {j} has role {m['role']!r}; chat roles are {', '.join(ROLES)}."
            )
    if not getattr(tok, "chat_template", None):
        raise fmhub.InputError(
            f"{model.spec.id} has no chat template (tokenizer_config.json / chat_template.jinja), so "
            "it cannot render a chat; pass a plain prompt string instead."
        )
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode(model, inputs) -> list[list[int]]:
    """Token ids of each prompt (a string) or chat (a list of role/content messages)."""
    tok = model.processor.tokenizer
    rows = []
    with model.processor.lock:
        return _encode(model, tok, inputs, rows)


def _encode(model, tok, inputs, rows) -> list[list[int]]:
    for i, x in enumerate(inputs):
        if isinstance(x, str):
            if not x.strip():
                raise fmhub.InputError(f"Input {i} is an empty prompt; pass some text.")
            ids = tok(x, add_special_tokens=True)["input_ids"]
        elif isinstance(x, (list, tuple)) and not model.processor.encoder_decoder:
            ids = tok(_chat(model, i, list(x)), add_special_tokens=False)["input_ids"]
        else:
            kind = "a prompt string" + (
                ""
                if model.processor.encoder_decoder
                else " or a chat (a list of {'role', 'content'} messages)"
            )
            raise fmhub.InputError(
                f"Input {i} is a {type(x).__name__} ({x!r:.60}); {model.spec.id} takes {kind}."
            )
        rows.append(list(ids))
    return rows


def preprocess(model, inputs, options) -> dict[str, Any]:
    """Encode and pad (left for causal LMs, right for encoders); refuse what cannot fit."""
    proc: GenProcessor = model.processor
    rows = encode(model, inputs)
    limit = proc.context
    for i, ids in enumerate(rows):
        if not ids:
            raise fmhub.InputError(f"Input {i} encodes to no tokens; pass some text.")
        if limit is None:
            continue
        if len(ids) > limit or (not proc.encoder_decoder and len(ids) >= limit):
            raise fmhub.InputError(
                f"Input {i} is {len(ids)} tokens, longer than the {limit}-token context of "
                f"{model.spec.id}; shorten it."
            )
        if not proc.encoder_decoder and len(ids) + options.max_new_tokens > limit:
            raise fmhub.InputError(
                f"Input {i} is {len(ids)} tokens; with max_new_tokens={options.max_new_tokens} it "
                f"exceeds the {limit}-token context of {model.spec.id}; pass "
                f"max_new_tokens<={limit - len(ids)} or shorten the prompt."
            )
    return pad(proc, rows)


def pad(proc: GenProcessor, rows: list[list[int]]) -> dict[str, Any]:
    width = max(len(r) for r in rows)
    pad_id = proc.tokenizer.pad_token_id or 0
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if proc.encoder_decoder:
            ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
        else:
            ids[i, width - len(r) :], mask[i, width - len(r) :] = torch.tensor(r), 1
    return {"input_ids": ids, "attention_mask": mask, "lengths": [len(r) for r in rows]}


# -- forward ------------------------------------------------------------------------------------


def generation_config(module, options):
    """transformers' GenerationConfig of the checkpoint with the call's options applied."""
    gc = copy.deepcopy(module.generation_config)
    gc.max_length = None
    gc.update(
        max_new_tokens=options.max_new_tokens,
        min_new_tokens=options.min_new_tokens or None,
        do_sample=options.do_sample,
        num_beams=options.num_beams,
        repetition_penalty=options.repetition_penalty,
    )
    if options.do_sample:
        gc.update(temperature=options.temperature, top_p=options.top_p, top_k=options.top_k)
    else:
        gc.update(temperature=None, top_p=None, top_k=None)
    return gc


class _Streamer:
    """Feeds ``stream(index, piece)`` as ``generate`` produces tokens (any batch size)."""

    def __init__(self, proc: GenProcessor, emit, rows: int, eos: set[int]):
        self.proc, self.emit, self.eos = proc, emit, eos
        self.tokens: list[list[int]] = [[] for _ in range(rows)]
        self.sent = [""] * rows
        self.done = [False] * rows
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # the first call carries the prompt (or decoder start)
            self.prompt_seen = True
            return
        for i, tok in enumerate(value.reshape(len(self.tokens), -1)[:, -1].tolist()):
            if self.done[i]:
                continue
            if tok in self.eos:
                self.done[i] = True
                continue
            self.tokens[i].append(tok)
            text = self.proc.decode(self.tokens[i])
            if text.endswith("\ufffd") or not text.startswith(self.sent[i]):
                continue  # an incomplete character: wait for the next token
            piece, self.sent[i] = text[len(self.sent[i]) :], text
            if piece:
                self.emit(i, piece)

    def end(self) -> None:
        pass


class _StopStrings:
    """A stopping criterion: a row is done once its generated text contains a stop string."""

    def __init__(self, proc: GenProcessor, stops, start: int):
        self.proc, self.stops, self.start = proc, tuple(stops), start
        self.window = 4 * max(len(s) for s in stops) + 8  # tokens that can hold any stop string

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        tail = input_ids[:, max(self.start, input_ids.shape[1] - self.window) :].tolist()
        done = [any(s in self.proc.decode(row) for s in self.stops) for row in tail]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def decode(tokenizer, ids) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def eos_ids(module) -> set[int]:
    eos = module.generation_config.eos_token_id
    return set(eos if isinstance(eos, list) else [] if eos is None else [eos])


def forward(model, batch: dict[str, Any], options, stream=None, **extra: Any) -> dict[str, Any]:
    """``generate`` with the call's options; seeded when ``options.seed`` is set."""
    module, proc = model.module, model.processor
    gc = generation_config(module, options)
    kwargs: dict[str, Any] = dict(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        generation_config=gc,
        **extra,
    )
    if options.stop:  # on the generated text only (transformers' stop_strings also see the prompt)
        from transformers import StoppingCriteriaList

        start = 1 if proc.encoder_decoder else batch["input_ids"].shape[1]
        kwargs["stopping_criteria"] = StoppingCriteriaList(
            [_StopStrings(proc, options.stop, start)]
        )
    if stream is not None and options.num_beams == 1:  # generate streams greedy/sampled decoding
        kwargs["streamer"] = _Streamer(proc, stream, batch["input_ids"].shape[0], eos_ids(module))
    devices = [model.device] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, enabled=options.seed is not None):
        if options.seed is not None:
            torch.manual_seed(options.seed)
        sequences = module.generate(**kwargs)
    if not isinstance(sequences, torch.Tensor):
        sequences = sequences.sequences
    start = 1 if proc.encoder_decoder else batch["input_ids"].shape[1]
    return {"generated": sequences[:, start:]}


# -- postprocess --------------------------------------------------------------------------------


def postprocess(model, outputs: dict[str, Any], batch: dict[str, Any], options) -> list[Generation]:
    proc: GenProcessor = model.processor
    eos = eos_ids(model.module)
    pad_id = proc.tokenizer.pad_token_id
    results = []
    for row, n_prompt in zip(outputs["generated"].tolist(), batch["lengths"]):
        cut = next((j for j, t in enumerate(row) if t in eos), None)
        ended = cut is not None
        ids = row[: cut + 1] if ended else row
        text = proc.decode(ids[:-1] if ended else ids)
        hits = [p for p in (text.find(s) for s in options.stop) if p >= 0]
        if hits:
            text, ended = text[: min(hits)], True
            while ids and ids[-1] == pad_id and pad_id not in eos:
                ids = ids[:-1]
        reason = "stop" if ended else "length"
        results.append(
            Generation(
                text=text,
                finish_reason=reason,
                prompt_tokens=n_prompt,
                completion_tokens=len(ids),
                token_ids=tuple(ids),
            )
        )
    return results
