"""Generation speed: fmhub vs ``model.generate`` written by hand vs transformers' pipelines.

Greedy tokens per second at batch 1 and batch 8 and the time to the first streamed piece of text,
for a random-weight Llama-architecture causal LM (default: hidden 512, 4 layers, 8 heads, ~14 M
parameters; the weights are random, so only speed means something), and the real-time factor of a
random-weight Whisper (d_model 256, 4+4 layers) on 30 s of audio. The sides run interleaved in one
process on the same weights and prompts, and the generated tokens are checked to be identical.

    python bench/generate.py [--repeats 3] [--new-tokens 32] [--threads N] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

import fmhub
from fmhub_transformers.testing import CORPUS, build_tiny_generative, build_tiny_whisper

LM_SIZES = {
    "hidden_size": 512,
    "intermediate_size": 1376,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "max_position_embeddings": 512,
}
WHISPER_SIZES = {
    "d_model": 256,
    "encoder_layers": 4,
    "decoder_layers": 4,
    "encoder_attention_heads": 4,
    "decoder_attention_heads": 4,
    "encoder_ffn_dim": 1024,
    "decoder_ffn_dim": 1024,
}


def timed(fn):
    sync()
    t = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t, out


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    from summary import quick, summary

    if quick():  # make bench
        args.repeats, args.new_tokens = 2, 16
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers

    transformers.utils.logging.set_verbosity_error()
    tmp = Path(tempfile.mkdtemp(prefix="fmhub-bench-gen-"))
    folder = build_tiny_generative(tmp / "llama", "llama", sizes=LM_SIZES)
    model = fmhub.load(str(folder), device=args.device, dtype="float32")
    module, tok = model.module, model.processor.tokenizer  # the same weights for every side
    n_params = sum(p.numel() for p in module.parameters())
    print(
        f"model: random-weight Llama ({n_params / 1e6:.1f} M parameters, vocab {len(tok)}), "
        f"device {model.device}, {torch.get_num_threads()} threads, greedy, "
        f"{args.new_tokens} new tokens per prompt"
    )
    opts = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens}
    pipe = transformers.pipeline("text-generation", model=module, tokenizer=tok)
    prompts = list(CORPUS[:8])

    def by_hand(batch):
        enc = tok(batch, return_tensors="pt", padding=True).to(model.device)
        with torch.inference_mode():
            out = module.generate(**enc, do_sample=False, **opts)
        return [row[enc["input_ids"].shape[1] :].tolist() for row in out]

    def with_fmhub(batch):
        return [list(g.token_ids) for g in model.predict(batch, batch_size=len(batch), **opts)]

    def with_pipeline(batch):
        out = pipe(batch, batch_size=len(batch), return_full_text=False, do_sample=False, **opts)
        return [o[0]["generated_text"] for o in out]

    rows = {}
    for bs in (1, 8):
        batch = prompts[:bs]
        with_fmhub(batch), by_hand(batch), with_pipeline(batch)  # warm up
        times = {"fmhub": [], "generate by hand": [], "pipeline": []}
        for _ in range(args.repeats):  # interleaved
            t, ours = timed(lambda b=batch: with_fmhub(b))
            times["fmhub"].append(t)
            t, theirs = timed(lambda b=batch: by_hand(b))
            times["generate by hand"].append(t)
            t, texts = timed(lambda b=batch: with_pipeline(b))
            times["pipeline"].append(t)
            assert ours == theirs, "fmhub and generate by hand produced different tokens"
            decoded = [tok.decode(ids, skip_special_tokens=True) for ids in ours]
            assert decoded == texts, "fmhub and the pipeline produced different text"
        rows[bs] = {k: bs * args.new_tokens / statistics.median(v) for k, v in times.items()}

    print("\ngreedy tokens/s (median of interleaved runs; tokens identical on every side)")
    print(f"{'':<18}{'batch 1':>10}{'batch 8':>10}{'8 vs 1':>9}")
    for side in ("fmhub", "generate by hand", "pipeline"):
        a, b = rows[1][side], rows[8][side]
        print(f"{side:<18}{a:>10.1f}{b:>10.1f}{b / a:>8.2f}x")
    for bs in (1, 8):
        print(
            f"fmhub / generate by hand at batch {bs}: "
            f"{rows[bs]['fmhub'] / rows[bs]['generate by hand']:.3f}x"
        )
        summary(
            f"generate_llama_tiny_batch{bs}_vs_generate_by_hand",
            rows[bs]["fmhub"],
            rows[bs]["generate by hand"],
            "tokens/s",
        )

    # time to the first streamed piece
    from transformers import TextIteratorStreamer

    def first_fmhub():
        t = time.perf_counter()
        stream = model.stream(prompts[0], **opts)
        next(iter(stream))
        dt = time.perf_counter() - t
        list(stream)
        return dt

    def first_by_hand():
        t = time.perf_counter()
        streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
        enc = tok([prompts[0]], return_tensors="pt").to(model.device)
        worker = threading.Thread(
            target=lambda: module.generate(**enc, do_sample=False, streamer=streamer, **opts)
        )
        worker.start()
        next(s for s in streamer if s)
        dt = time.perf_counter() - t
        for _ in streamer:
            pass
        worker.join()
        return dt

    first_fmhub(), first_by_hand()
    ttft = {"fmhub": [], "generate by hand": []}
    for _ in range(args.repeats * 2):
        ttft["fmhub"].append(first_fmhub())
        ttft["generate by hand"].append(first_by_hand())
    print("\ntime to the first streamed text (median, batch 1)")
    for side, v in ttft.items():
        print(f"{side:<18}{1000 * statistics.median(v):>8.1f} ms")
    summary(
        "generate_time_to_first_text_vs_by_hand",
        1000 * statistics.median(ttft["fmhub"]),
        1000 * statistics.median(ttft["generate by hand"]),
        "ms",
    )

    # Whisper real-time factor
    wfolder = build_tiny_whisper(tmp / "whisper", sizes=WHISPER_SIZES)
    asr = fmhub.load(str(wfolder), device=args.device, dtype="float32")
    wpipe = transformers.pipeline(
        "automatic-speech-recognition",
        model=asr.module,
        tokenizer=asr.processor.tokenizer,
        feature_extractor=asr.processor.feature_extractor,
    )
    seconds = 30.0
    audio = (np.random.default_rng(0).standard_normal(int(16000 * seconds)) * 0.1).astype(
        np.float32
    )
    wopts = {"language": "en", "task": "transcribe", "max_new_tokens": args.new_tokens}
    ours = lambda: asr((audio, 16000), **wopts)
    theirs = lambda: wpipe(
        audio.copy(), return_timestamps=True, generate_kwargs={**wopts, "num_beams": 1}
    )
    ours(), theirs()
    rtf = {"fmhub": [], "pipeline": []}
    for _ in range(args.repeats):
        t, a = timed(ours)
        rtf["fmhub"].append(t / seconds)
        t, b = timed(theirs)
        rtf["pipeline"].append(t / seconds)
        assert a.text == b["text"], "fmhub and the pipeline transcribed differently"
    print(
        f"\nWhisper (random weights, {sum(p.numel() for p in asr.module.parameters()) / 1e6:.1f} M "
        f"parameters) on {seconds:.0f} s of audio, real-time factor (lower is faster; "
        "transcripts identical)"
    )
    for side, v in rtf.items():
        print(f"{side:<18}{statistics.median(v):>8.4f}")
    summary(
        "whisper_tiny_rtf_vs_pipeline",
        statistics.median(rtf["fmhub"]),
        statistics.median(rtf["pipeline"]),
        "s_per_audio_s",
    )


if __name__ == "__main__":
    main()
