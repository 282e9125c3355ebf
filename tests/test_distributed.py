"""Fine-tuning and batch prediction on 2 gloo processes (1 thread each) against 1 process: the
ranks end with identical weights equal to the 1-process run on the same global batches; only rank 0
writes; a dead rank or a NaN on one rank stops every rank; resume is exact.

The API scenarios and ``fmhub finetune`` on each rank share one launch of ``ddp/worker.py`` on 2
processes started by hand (no torchrun watching them, so that a rank dying at the end is for rank 0
to detect; starting processes is the slow part); torchrun itself is what ``fmhub predict
--nproc-per-node`` launches for real, and what ``fmhub finetune --nproc-per-node`` hands torchrun
is checked in process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import fmhub

HERE = Path(__file__).parent / "ddp"  # not "dist": .gitignore keeps build output out
sys.path.insert(0, str(HERE))
import worker  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")


def env(**extra) -> dict[str, str]:
    e = dict(
        os.environ, FMHUB_LOAD_PLUGINS="toy", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false"
    )
    e.pop("FMHUB_DISABLE_PLUGINS", None)
    e.update(extra)
    return e


def weights(out: Path, name: str, rank: int) -> dict[str, torch.Tensor]:
    return load_file(str(out / f"{name}.rank{rank}.safetensors"))


def assert_close(a: dict, b: dict, tol: float) -> None:
    assert a.keys() == b.keys()
    for k, v in a.items():
        assert torch.allclose(v, b[k], atol=tol, rtol=0), (k, (v - b[k]).abs().max())


def one_process(data, **cfg) -> dict[str, torch.Tensor]:
    from fmhub.finetuning.adapter import trainable_state

    model = fmhub.load("toy:embed")
    fmhub.finetune(model, data, **{**worker.TOY, **cfg})
    return trainable_state(model.module)


def tiny_bert(folder: Path) -> Path | None:
    """A tiny random BERT with dropout off, or None without the Transformers plugin and PEFT."""
    try:
        import peft  # noqa: F401

        from fmhub_transformers import testing as tt
    except ImportError:
        return None
    model_dir = tt.build_tiny_model(folder, "bert", "embedding", seed=0)
    cfg = json.loads((model_dir / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (model_dir / "config.json").write_text(json.dumps(cfg))
    return model_dir


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """One launch of worker.py on 2 processes, each started by hand with RANK/WORLD_SIZE and no
    torchrun watching: the toy runs, the tiny BERT's, ``fmhub finetune`` through the CLI, then
    "die" (rank 1 exits mid-run; rank 0
    must stop with DistributedError, not hang, within the bounded process-group timeout).
    Gives the output folder, the BERT folder (None without fmhub-transformers and PEFT), and
    each rank's Popen and (stdout, stderr)."""
    out = tmp_path_factory.mktemp("toy")
    bert = tiny_bert(tmp_path_factory.mktemp("tiny-bert"))
    scenarios = ["toy", "hf", "cli", "die"] if bert else ["toy", "cli", "die"]
    (out / "train.jsonl").write_text(  # the data of the "cli" scenario
        "".join(json.dumps({"text": x, "label": y}) + "\n" for x, y in worker.toy_data(256, 0))
    )
    port = free_port()
    procs = []
    for rank in (0, 1):
        e = env(
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE="2",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            FMHUB_DIST_TIMEOUT="60",
            FMHUB_LOAD_PLUGINS="toy,transformers",
        )
        args = [str(HERE / "worker.py"), ",".join(scenarios), str(out), *([str(bert)] * bool(bert))]
        procs.append(
            subprocess.Popen(
                [sys.executable, *args],
                env=e,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        outs = [p.communicate(timeout=300) for p in procs]
    finally:  # a hung rank must not outlive the tests (it would slow every test after it)
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for scenario in scenarios[:-1]:  # every scenario before "die" finished on every rank
        for rank in (0, 1):
            if not (out / f"{scenario}.done.rank{rank}").is_file():
                pytest.fail(f"{scenario} did not finish on rank {rank}:\n{outs[rank][1][-5000:]}")
    return out, bert, procs, outs


def test_two_ranks_equal_one_process_and_each_other(ranks, toy_hub):
    toy_run = ranks[0]
    a0, a1 = weights(toy_run, "a", 0), weights(toy_run, "a", 1)
    assert_close(a0, a1, 0.0)  # bit-identical on every rank
    from fmhub.finetuning.adapter import trainable_state
    from fmhub.finetuning.data import as_examples
    from fmhub.finetuning.loop import evaluate

    model = fmhub.load("toy:embed")  # the 1-process run: its weights, loss and evaluation
    res = fmhub.finetune(model, worker.toy_data(256, 0), **worker.TOY)
    single = trainable_state(model.module)
    assert_close(a0, single, 1e-5)
    assert any(
        not torch.equal(single[k], one_process(worker.toy_data(256, 0), epochs=1)[k])
        for k in single
    ), "the comparison must be able to fail"
    # evaluation reduced over the ranks: the same metrics on each, over all 64 eval examples
    h0 = json.loads((toy_run / "a.rank0.json").read_text())
    h1 = json.loads((toy_run / "a.rank1.json").read_text())
    assert h0 == h1 and h0["history"][-1]["step"] == h0["steps"] == 32
    assert abs(h0["train_loss"] - res.train_loss) < 1e-5  # the mean over every rank's batches
    ev = evaluate(model, as_examples(worker.toy_data(64, 1), ["neg", "pos"]), batch_size=16)
    for key in ("accuracy", "macro_f1"):
        assert h0["history"][-1][key] == ev[key]
    assert abs(h0["history"][-1]["loss"] - ev["loss"]) < 1e-5


def test_only_rank_zero_wrote_and_the_adapter_loads(ranks, toy_hub):
    toy_run = ranks[0]
    folder = toy_run / "a" / "adapter"
    assert (folder / "fmhub.json").is_file() and (toy_run / "a" / "checkpoint").is_dir()
    state = json.loads((toy_run / "a" / "checkpoint" / "state.json").read_text())
    assert state["world_size"] == 2
    # nothing else in the output folder: no per-rank copies, no leftover temporary folders
    assert sorted(p.name for p in (toy_run / "a").iterdir()) == ["adapter", "checkpoint"]
    model = fmhub.load(str(folder))
    from fmhub.finetuning.adapter import trainable_state

    assert_close(
        {k: v for k, v in trainable_state(model.module).items()}, weights(toy_run, "a", 0), 1e-6
    )


def test_interrupted_then_resumed_equals_uninterrupted(ranks):
    toy_run = ranks[0]
    info = json.loads((toy_run / "b.rank0.json").read_text())
    assert info == {"steps": 32, "resumed_from": 8}
    for rank in (0, 1):
        assert_close(weights(toy_run, "b", rank), weights(toy_run, "a", 0), 0.0)


def test_nan_on_one_rank_stops_every_rank_before_the_update(ranks, toy_hub):
    toy_run = ranks[0]
    after_two = one_process(worker.toy_data(256, 0), max_steps=2)
    for rank in (0, 1):
        assert_close(weights(toy_run, "nan", rank), after_two, 1e-5)
        msg = json.loads((toy_run / f"nan.rank{rank}.json").read_text())["error"]
        assert "step 3" in msg and ("rank 1" in msg or "rank(s) [1]" in msg), msg


def test_a_dead_rank_stops_the_others_with_an_error(ranks):
    """The launch's last scenario: rank 1 exits mid-run; rank 0 (no torchrun to stop it) must fail
    with DistributedError, not hang, within the bounded process-group timeout."""
    out, _, procs, outs = ranks
    assert procs[1].returncode == 17, outs[1][1][-3000:]
    assert procs[0].returncode != 0, outs[0]
    assert "DistributedError" in outs[0][1], outs[0][1][-3000:]
    text = (out / "died.rank0.txt").read_text()
    waited = float((out / "died.rank0.seconds").read_text())
    print(f"rank 0 stopped after {waited:.1f} s: {text}")
    assert "rank 0 of 2 lost the other ranks" in text, text
    assert waited < 100


def test_transformers_lora_two_ranks_equal_one_process(ranks):
    out, bert = ranks[:2]
    if bert is None:
        pytest.skip("needs fmhub-transformers and peft")
    from fmhub.finetuning.adapter import trainable_state

    model = fmhub.load(str(bert))
    fmhub.finetune(
        model,
        worker.text_data(32, 0),
        method="lora",
        optimizer="sgd",
        learning_rate=0.05,
        batch_size=8,
        max_steps=6,
        scheduler="constant",
        warmup_ratio=0.0,
        weight_decay=0.0,
        progress=False,
    )
    single = trainable_state(model.module)
    assert_close(weights(out, "hf", 0), weights(out, "hf", 1), 0.0)
    assert_close(weights(out, "hf", 0), single, 1e-5)
    assert (out / "hf" / "adapter" / "adapter_model.safetensors").is_file()


# -- the CLI: fmhub finetune / predict --nproc-per-node ------------------------------------------


def fmhub_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fmhub", *args],
        env=env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_cli_finetune_on_two_ranks_equals_one_process_and_nproc_per_node_starts_torchrun(
    ranks, toy_hub, monkeypatch
):
    """``fmhub finetune`` on each of the 2 ranks (the command torchrun runs for
    ``--nproc-per-node 2``) gives what one process gives: only rank 0 saves and prints the summary.
    BitFit, so no PEFT (LoRA over two ranks is the API tests' case). ``--nproc-per-node 2`` hands
    torchrun's own parser that command; the real torchrun launch is the prediction test's."""
    out = ranks[0]
    assert [(out / f"cli.rank{r}.rc").read_text() for r in (0, 1)] == ["0", "0"]
    printed = (out / "cli.rank0.stdout").read_text()
    summary = json.loads(printed[printed.index("{") :])  # printed once, by rank 0
    assert printed.count('"steps"') == 1 and summary["steps"] == 32
    assert (out / "cli.rank1.stdout").read_text() == ""
    assert sorted(p.name for p in (out / "cli").iterdir()) == ["adapter"]
    from fmhub.finetuning.adapter import trainable_state

    cli = trainable_state(fmhub.load(str(out / "cli" / "adapter")).module)
    single = one_process(worker.toy_data(256, 0), method="bitfit")
    assert_close(cli, single, 1e-5)
    shorter = one_process(worker.toy_data(256, 0), method="bitfit", epochs=1)
    assert any(not torch.equal(single[k], shorter[k]) for k in single), "must be able to fail"

    import torch.distributed.run as trun

    from fmhub.cli import main

    seen = []
    monkeypatch.setattr(trun, "run", seen.append)
    command = worker.cli_args(out / "train.jsonl", out / "cli-launched")
    assert main([*command[:2], "--nproc-per-node", "2", *command[2:]]) == 0
    (args,) = seen
    assert args.nproc_per_node == "2" and args.standalone and args.max_restarts == 0
    assert (args.module, args.training_script) == (True, "fmhub")
    assert args.training_script_args == command
    assert not (out / "cli-launched").exists()  # the launcher itself trains nothing


def toy_lines(path: Path, n: int) -> Path:
    import random

    rng = random.Random(n)
    path.write_text(
        "".join(",".join(f"{rng.uniform(-1, 1):.4f}" for _ in range(4)) + "\n" for _ in range(n))
    )
    return path


def test_sharded_prediction_equals_one_process(tmp_path, toy_hub):
    from fmhub.cli import main

    src = toy_lines(tmp_path / "in.txt", 230)
    assert (
        main(
            [
                "predict",
                "toy:classify",
                "--input",
                str(src),
                "--output",
                str(tmp_path / "one.jsonl"),
                "--chunk-size",
                "20",
                "-q",
            ]
        )
        == 0
    )
    proc = fmhub_cli(
        "predict",
        "toy:classify",
        "--input",
        str(src),
        "--output",
        str(tmp_path / "two.jsonl"),
        "--chunk-size",
        "20",
        "--nproc-per-node",
        "2",
        "-q",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = (tmp_path / "one.jsonl").read_bytes()
    assert one == (tmp_path / "two.jsonl").read_bytes()
    rows = [json.loads(line) for line in one.decode().splitlines()]
    assert [r["input"] for r in rows] == src.read_text().split()  # input order
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "one.jsonl", "two.jsonl"]


def test_interrupted_prediction_resumes_to_the_same_file(tmp_path, toy_hub, monkeypatch):
    from fmhub.cli import main
    from fmhub.model import Model

    src = toy_lines(tmp_path / "in.txt", 170)
    args = ["predict", "toy:embed", "--input", str(src), "--chunk-size", "16", "-q", "--output"]
    assert main([*args, str(tmp_path / "full.jsonl")]) == 0
    assert main([*args, str(tmp_path / "full.npy")]) == 0
    calls = {"n": 0}
    real = Model.predict

    def flaky(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    for name in ("part.jsonl", "part.npy"):
        calls["n"] = 0
        monkeypatch.setattr(Model, "predict", flaky)
        assert main([*args, str(tmp_path / name)]) == 130
        part = tmp_path / f"{name}.partial"
        assert not (tmp_path / name).exists() and (part / "meta.json").is_file()
        with next(part.glob("rank0-of-1.*")).open("ab") as f:
            f.write(b"torn half of a chun")  # as if killed in the middle of a write
        monkeypatch.setattr(Model, "predict", real)
        # other arguments than the interrupted run: refused, the partial run is kept
        assert main([*args[:-2], "--chunk-size", "8", "--output", str(tmp_path / name)]) == 2
        assert main([*args, str(tmp_path / name)]) == 0
        assert not part.exists()
    assert (tmp_path / "part.jsonl").read_bytes() == (tmp_path / "full.jsonl").read_bytes()
    assert (tmp_path / "part.npy").read_bytes() == (tmp_path / "full.npy").read_bytes()
    import numpy as np

    vectors = np.load(tmp_path / "full.npy")
    rows = [
        json.loads(line)["result"] for line in (tmp_path / "full.jsonl").read_text().splitlines()
    ]
    assert vectors.shape == (170, 8) and np.allclose(vectors, np.array(rows, dtype=np.float32))
    # a finished output is never overwritten without --overwrite
    assert main([*args, str(tmp_path / "full.jsonl")]) == 2
    assert main([*args, str(tmp_path / "full.jsonl"), "--overwrite"]) == 0


def test_batch_inputs_stream_from_csv_jsonl_and_folders(tmp_path):
    from fmhub.batch import count_inputs, iter_inputs

    (tmp_path / "a.csv").write_text('id,text\n1,"0.1,0.2,0.3,0.4"\n2,hello\n')
    assert list(iter_inputs(tmp_path / "a.csv")) == [
        ("0.1,0.2,0.3,0.4", {"id": "1"}),
        ("hello", {"id": "2"}),
    ]
    (tmp_path / "b.jsonl").write_text('{"path": "x.png"}\n\n"plain"\n{"input": [1, 2], "id": 7}\n')
    assert list(iter_inputs(tmp_path / "b.jsonl")) == [
        ("x.png", {}),
        ("plain", {}),
        ([1, 2], {"id": 7}),
    ]
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    for name in ("b.png", "a.png", "sub/c.wav", ".hidden"):
        (folder / name).write_bytes(b"")
    assert [x for x, _ in iter_inputs(folder)] == [
        str(folder / n) for n in ("a.png", "b.png", "sub/c.wav")
    ]
    assert count_inputs(folder) == 3
    with pytest.raises(fmhub.InputError, match="--column"):
        list(iter_inputs(tmp_path / "a.csv", column="sentence"))


def test_resume_refuses_another_world_size(tmp_path, toy_hub):
    data = worker.toy_data(64, 0)
    fmhub.finetune(
        fmhub.load("toy:embed"),
        data,
        output_dir=str(tmp_path),
        checkpoint_every=2,
        **{**worker.TOY, "epochs": 1},
    )
    state = tmp_path / "checkpoint" / "state.json"
    saved = json.loads(state.read_text())
    assert saved["world_size"] == 1
    state.write_text(json.dumps({**saved, "world_size": 2}))
    from fmhub.manifest import read_manifest, seal

    seal(state.parent, read_manifest(state.parent))  # as if written so: past the hash check
    with pytest.raises(fmhub.FineTuneError, match="trained on 2 process"):
        fmhub.finetune(
            fmhub.load("toy:embed"),
            data,
            output_dir=str(tmp_path),
            checkpoint_every=2,
            resume=True,
            **{**worker.TOY, "epochs": 1},
        )


def test_a_failed_launch_names_the_rank(monkeypatch):
    """What torchrun reports when a worker fails becomes one DistributedError naming the rank (the
    launch itself is exercised by the prediction test above)."""
    import torch.distributed.run as trun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    from fmhub.finetuning.distributed import launch, strip_launch_flags

    seen = {}

    def fail(args):
        seen["args"] = args
        failure = ProcessFailure(local_rank=1, pid=1, exitcode=3, error_file="/nonexistent")
        raise ChildFailedError("fmhub", {1: failure})

    monkeypatch.setattr(trun, "run", fail)
    argv = ["finetune", "toy:embed", "--nproc-per-node", "2", "--train", "t.csv", "--nnodes=1"]
    assert strip_launch_flags(argv) == ["finetune", "toy:embed", "--train", "t.csv"]
    with pytest.raises(fmhub.DistributedError, match="rank 1 exited with code 3"):
        launch(argv, 2)
    assert seen["args"].nproc_per_node == "2" and seen["args"].standalone
    assert seen["args"].training_script_args == ["finetune", "toy:embed", "--train", "t.csv"]
    with pytest.raises(fmhub.DistributedError, match="rdzv-endpoint"):
        launch(argv, 2, nnodes=2)
