"""Reliability guarantees on the toy plugin (docs/reliability.md): saving never destroys what fmhub
did not write, saves survive kill -9 at every file-system step, loads are verified and strict,
manifest options never widen what the caller allowed, resume refuses a different run, and adapters
carry a model card."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import traceback

import numpy as np
import pytest
import torch

import fmhub
import fmhub.manifest as manifest_mod
from fmhub.manifest import MANIFEST, read_manifest, seal

X = [0.1, -0.2, 0.3, 0.4]
POINTS = [[0.1, 0.2, 0.3, 0.4], [1, 0, 0, 0], [0, -1, 2, 0.5], [3, 3, -3, 1]]


def make_data(n: int, seed: int):
    rng = random.Random(seed)
    data = []
    for _ in range(n):
        x = [rng.uniform(-1, 1) for _ in range(4)]
        data.append((x, "pos" if x[0] + x[1] > 0 else "neg"))
    return data


TRAIN = make_data(64, 0)
FAST = {"method": "lora", "epochs": 1, "batch_size": 16, "learning_rate": 1e-2, "progress": False}


def flip(file, offset: int | None = None, n: int = 16) -> None:
    """Flip ``n`` bytes of ``file`` in place (the middle by default), keeping its size."""
    data = bytearray(file.read_bytes())
    start = len(data) // 2 if offset is None else offset
    for i in range(start, min(start + n, len(data))):
        data[i] ^= 0xFF
    file.write_bytes(bytes(data))


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


# -- where a save may go ---------------------------------------------------------------------------


def test_save_destination_table(toy_hub, tmp_path, monkeypatch):
    model = fmhub.load("toy:classify", seed=1)
    other = fmhub.load("toy:classify", seed=2)
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("years of work")
    monkeypatch.chdir(tmp_path)

    refused = {
        "an existing file": (notes, fmhub.DestinationError, "existing file"),
        "a folder fmhub did not write": (mine, fmhub.DestinationError, "did not write"),
        "the working folder": (".", fmhub.DestinationError, "working folder"),
        "a folder holding the working folder": (
            tmp_path.parent,
            fmhub.DestinationError,
            "working folder",
        ),
        "an empty path": ("", fmhub.InputError, "empty"),
        "a blank path": ("  ", fmhub.InputError, "empty"),
        "None": (None, fmhub.InputError, "str or os.PathLike"),
        "a number": (42, fmhub.InputError, "got int"),
        "bytes": (b"out", fmhub.InputError, "got bytes"),
        "an over-long name": ("x" * 300, fmhub.InputError, "Use a shorter name"),
    }
    for what, (dest, error, words) in refused.items():
        with pytest.raises(error, match=words):
            model.save(dest)
        assert notes.read_text() == "mine", what
        assert (
            listing(mine) == ["thesis.txt"] and (mine / "thesis.txt").read_text() == "years of work"
        )
    assert listing(tmp_path) == ["mine", "notes.txt"], "a refused save left something behind"

    (tmp_path / "empty").mkdir()
    assert model.save("empty") == tmp_path / "empty"  # an empty folder holds nothing to lose
    saved = model.save(tmp_path / "m")
    with pytest.raises(fmhub.DestinationError, match="overwrite=True"):
        other.save(saved)
    assert fmhub.load(saved)(X) == model(X)  # the refused save kept the old folder
    other.save(saved, overwrite=True)
    assert fmhub.load(saved)(X) == other(X)
    (saved / "my-notes.md").write_text("a user file inside a saved folder")
    with pytest.raises(fmhub.DestinationError, match="did not write"):
        model.save(saved, overwrite=True)  # even overwrite never deletes what fmhub did not write
    assert (saved / "my-notes.md").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folders left"


def test_finetune_outputs_are_checked_before_training(toy_hub, tmp_path):
    class Counting(torch.utils.data.Dataset):
        reads = 0

        def __len__(self):
            return len(TRAIN)

        def __getitem__(self, i):
            Counting.reads += 1
            return TRAIN[i]

    out = tmp_path / "run"
    (out / "adapter").mkdir(parents=True)
    (out / "adapter" / "thesis.txt").write_text("mine")
    with pytest.raises(fmhub.DestinationError, match="did not write"):
        fmhub.finetune(fmhub.load("toy:embed"), TRAIN, output_dir=str(out), **FAST)
    shutil.rmtree(out / "adapter")
    (tmp_path / "file").write_text("x")
    with pytest.raises(fmhub.DestinationError, match="existing file"):
        fmhub.finetune(fmhub.load("toy:embed"), TRAIN, output_dir=str(tmp_path / "file"), **FAST)

    fmhub.finetune(fmhub.load("toy:embed"), TRAIN, output_dir=str(out), checkpoint_every=2, **FAST)
    reads = Counting.reads
    with pytest.raises(fmhub.DestinationError, match="overwrite=True"):
        fmhub.finetune(
            fmhub.load("toy:embed"), Counting(), output_dir=str(out), labels=["neg", "pos"], **FAST
        )
    assert Counting.reads == reads == 0, "refused after reading the data: it must refuse first"
    (out / "adapter").rename(tmp_path / "kept")
    with pytest.raises(fmhub.DestinationError, match="resume=True to continue"):
        fmhub.finetune(fmhub.load("toy:embed"), TRAIN, output_dir=str(out), **FAST)
    result = fmhub.finetune(
        fmhub.load("toy:embed"), TRAIN, output_dir=str(out), overwrite=True, **FAST
    )
    assert result.adapter_path == out / "adapter" and listing(out) == ["adapter"]


# -- kill -9 at every step of a save ------------------------------------------------------------------

#: Functions a save calls to touch the disk; the child kills itself before the n-th such call.
_STEPS = [
    ("os", "rename"),
    ("os", "fsync"),
    ("os", "rmdir"),
    ("os", "unlink"),
    ("os", "mkdir"),
    ("shutil", "rmtree"),
    ("fmhub.manifest", "_exchange"),
    ("fmhub.manifest", "seal"),
    ("safetensors.torch", "save_file"),
]


def _die_at(n: int) -> None:
    import importlib

    count = [0]
    for mod_name, attr in _STEPS:
        mod = importlib.import_module(mod_name)
        real = getattr(mod, attr)

        def wrapper(*a, _real=real, **k):
            count[0] += 1
            if count[0] == n:
                os.kill(os.getpid(), signal.SIGKILL)
            return _real(*a, **k)

        setattr(mod, attr, wrapper)


@pytest.fixture(autouse=True)
def _one_intra_op_thread():
    """The kill tests fork. A child of a process whose OpenMP pool has started hangs in its first
    parallel region (libgomp is not fork-safe), so the parent runs this module on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _in_child(n: int, action, exchange: bool) -> str:
    """Run ``action`` in a forked child that kills itself (SIGKILL) at step ``n``; return
    ``"killed"`` or ``"done"`` (the action finished before step ``n``)."""
    pid = os.fork()
    if pid == 0:  # the child never returns to pytest
        try:
            if not exchange:
                manifest_mod._exchange = lambda a, b: False
            _die_at(n)
            action()
            os._exit(0)
        except BaseException:  # noqa: BLE001 - the child must never return into pytest
            traceback.print_exc()  # pytest shows the child's stderr with the failure
            sys.stderr.flush()
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        return "killed"
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child failed at step {n}"
    return "done"


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "two-renames"])
def test_kill_9_at_every_step_of_a_save_leaves_old_or_new(toy_hub, tmp_path, exchange):
    old_model = fmhub.load("toy:classify", seed=1)
    new_model = fmhub.load("toy:classify", seed=2)
    old, new = old_model.predict(POINTS), new_model.predict(POINTS)
    seen = set()
    for n in range(1, 60):  # bounded: a save takes about 15 steps
        dest = tmp_path / f"case{n}" / "model"
        old_model.save(dest)
        outcome = _in_child(n, lambda d=dest: new_model.save(d, overwrite=True), exchange)
        got = fmhub.load(dest).predict(POINTS)  # verified: whole, never partial, never missing
        assert got in (old, new), f"kill at step {n}: neither the old nor the new model"
        seen.add("new" if got == new else "old")
        if outcome == "done":
            assert got == new
            break
        old_model.save(dest, overwrite=True)  # the next save cleans what the kill left
        assert listing(dest.parent) == ["model"], f"step {n}: leftovers after the next save"
    else:
        pytest.fail("the save never finished")
    assert seen == {"old", "new"} and n > 8  # kills landed on both sides of the swap


def test_kill_9_during_a_first_save_leaves_nothing_or_the_whole_folder(toy_hub, tmp_path):
    model = fmhub.load("toy:embed")
    for n in range(1, 40):
        dest = tmp_path / f"case{n}" / "model"
        dest.parent.mkdir()
        outcome = _in_child(n, lambda d=dest: model.save(d), True)
        if dest.exists():
            np.testing.assert_array_equal(fmhub.load(dest)(X), model(X))
        if outcome == "done":
            break
        model.save(dest, overwrite=dest.exists())
        assert listing(dest.parent) == ["model"]


def test_a_folder_parked_between_the_two_renames_is_put_back(toy_hub, tmp_path):
    model = fmhub.load("toy:embed")
    dest = model.save(tmp_path / "m")
    parked = tmp_path / f".m{manifest_mod.OLD_TAG}dead"
    os.rename(dest, parked)  # what a kill between the renames of the fallback swap leaves
    (tmp_path / f".m{manifest_mod.TMP_TAG}dead").mkdir()  # and a half-written new folder
    np.testing.assert_array_equal(fmhub.load(str(dest))(X), model(X))  # the next access repairs
    assert dest.is_dir() and not parked.exists()
    model.save(dest, overwrite=True)
    assert listing(tmp_path) == ["m"]


def test_two_processes_saving_one_path_at_once_both_succeed(toy_hub, tmp_path):
    models = [fmhub.load("toy:classify", seed=s) for s in (1, 2)]
    dest = models[0].save(tmp_path / "m")
    pids = []
    for model in models:
        pid = os.fork()
        if pid == 0:
            try:
                for _ in range(6):
                    model.save(dest, overwrite=True)
                os._exit(0)
            except BaseException:  # noqa: BLE001 - the child must never return into pytest
                traceback.print_exc()
                sys.stderr.flush()
                os._exit(3)
        pids.append(pid)
    statuses = [os.waitpid(pid, 0)[1] for pid in pids]
    assert all(os.WIFEXITED(s) and os.WEXITSTATUS(s) == 0 for s in statuses), statuses
    assert fmhub.load(dest)(X) in (models[0](X), models[1](X))
    assert listing(tmp_path) == ["m"]


# -- kill -9 during checkpointed fine-tuning ----------------------------------------------------------


def _forked_backward_works() -> bool:
    """Whether a child forked now can run autograd. Once this process has run
    ``torch.onnx.export`` (another test file on the same pytest worker), its next backward starts
    autograd's device threads and torch refuses backward in any child forked after that."""
    y = torch.ones(2, requires_grad=True)
    (y * 2).sum().backward()  # as the test's own run does before it forks: the threads start here
    pid = os.fork()
    if pid == 0:
        try:
            x = torch.ones(2, requires_grad=True)
            (x * 2).sum().backward()
        finally:
            os._exit(0 if x.grad is not None else 3)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_kill_9_during_checkpointed_finetuning_then_resume_equals_straight_run(
    toy_hub, tmp_path, request
):
    if not _forked_backward_works():  # run this test alone in a fresh pytest process instead
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", request.node.nodeid],
            cwd=request.config.rootpath,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        assert proc.returncode == 0 and last.startswith("1 passed"), proc.stdout[-5000:]
        return
    cfg = dict(FAST, epochs=2, batch_size=8, checkpoint_every=3, labels=["neg", "pos"])
    straight = fmhub.load("toy:embed")
    fmhub.finetune(straight, TRAIN, output_dir=str(tmp_path / "straight"), **cfg)
    want = {n: p.detach().clone() for n, p in straight.module.named_parameters()}
    # steps 1..~130 are the file-system calls of 6 checkpoints and the adapter; 8 kills spread
    kills = 0
    for n in (3, 9, 17, 26, 38, 51, 64, 80):
        out = tmp_path / f"kill{n}"

        def run(out=out):
            fmhub.finetune(fmhub.load("toy:embed"), TRAIN, output_dir=str(out), **cfg)

        if _in_child(n, run, exchange=n % 2 == 0) == "done":
            continue
        kills += 1
        ckpt = out / "checkpoint"
        if ckpt.exists():  # whatever the kill hit, the checkpoint verifies
            manifest_mod.verify_folder(ckpt, read_manifest(ckpt))
        resumed = fmhub.load("toy:embed")
        result = fmhub.finetune(resumed, TRAIN, output_dir=str(out), resume=True, **cfg)
        assert result.steps == 16
        for name, p in resumed.module.named_parameters():
            assert torch.equal(p, want[name]), f"kill at step {n}: resume diverged at {name}"
        assert listing(out) == ["adapter", "checkpoint"]
    assert kills == 8


def test_resume_refuses_a_checkpoint_of_another_run(toy_hub, tmp_path):
    cfg = dict(FAST, checkpoint_every=2, labels=["neg", "pos"])
    out = str(tmp_path / "run")
    fmhub.finetune(fmhub.load("toy:embed"), TRAIN, output_dir=out, max_steps=2, **cfg)
    changes = {
        "learning_rate": {"learning_rate": 2e-2},
        "seed": {"seed": 7},
        "batch_size": {"batch_size": 8},
        "method_options": {"method_options": {"r": 4}},
        "train data (other content)": {"train": TRAIN[::-1]},
        "train data (other size)": {"train": TRAIN[:-1]},
        "max_steps": {"max_steps": 3},
    }
    for what, change in changes.items():
        change = dict(change)
        train = change.pop("train", TRAIN)
        run = {**cfg, "max_steps": 2, **change}
        with pytest.raises(fmhub.FineTuneError, match=f"cannot resume.*{what.split()[0]}"):
            fmhub.finetune(
                fmhub.load("toy:embed"), train, output_dir=out, resume=True, overwrite=True, **run
            )
    with pytest.raises(fmhub.FineTuneError, match="base model options"):
        fmhub.finetune(
            fmhub.load("toy:embed", seed=3), TRAIN, output_dir=out, resume=True, max_steps=2, **cfg
        )
    # what does not change the result may differ
    result = fmhub.finetune(
        fmhub.load("toy:embed"),
        TRAIN,
        output_dir=out,
        resume=True,
        max_steps=2,
        **{**cfg, "checkpoint_every": 5, "progress": None},
    )
    assert result.steps == 2


# -- verified loads --------------------------------------------------------------------------------


def test_manifest_records_every_file_and_its_own_hash(toy_hub, tmp_path):
    folder = fmhub.load("toy:classify").save(tmp_path / "m")
    m = read_manifest(folder)
    assert set(m.files) == {"toy.json", "toy.safetensors"}
    for name, entry in m.files.items():
        assert entry.size == (folder / name).stat().st_size
        assert entry.sha256 == manifest_mod.sha256_file(folder / name)
    assert m.content_sha256 and m.format_version == 2


def test_flipped_bytes_in_a_model_folder_are_refused_naming_the_file(toy_hub, tmp_path):
    model = fmhub.load("toy:classify")
    folder = model.save(tmp_path / "m")
    flip(folder / "toy.safetensors")
    with pytest.raises(fmhub.ManifestError, match=r"toy\.safetensors' does not match the SHA-256"):
        fmhub.load(folder)
    fmhub.load(folder, verify=False)  # for people who must: loads (and here predicts garbage)
    folder = model.save(tmp_path / "m1")
    flip(folder / "toy.safetensors", offset=9)  # the header: the plugin's own load fails too
    with pytest.raises(fmhub.ManifestError, match=r"toy\.safetensors' does not match the SHA-256"):
        fmhub.load(folder)  # the hash error wins over the plugin's error, hashed alongside
    with pytest.raises(fmhub.PluginError):
        fmhub.load(folder, verify=False)
    folder = model.save(tmp_path / "m2")
    (folder / "toy.json").write_text((folder / "toy.json").read_text() + " ")
    with pytest.raises(fmhub.ManifestError, match=r"toy\.json' has \d+ bytes, the manifest says"):
        fmhub.load(folder)
    (folder / "toy.json").unlink()
    with pytest.raises(fmhub.ManifestError, match=r"lacks 'toy\.json'"):
        fmhub.load(folder)


def test_edits_of_the_manifest_itself_are_refused(toy_hub, tmp_path):
    folder = fmhub.load("toy:classify").save(tmp_path / "m")
    data = json.loads((folder / MANIFEST).read_text())
    data["labels"] = data["labels"][::-1]  # reversed label order: silently wrong answers
    (folder / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(fmhub.ManifestError, match="was edited after fmhub wrote it"):
        fmhub.load(folder)
    data = json.loads((folder / MANIFEST).read_text())
    data.pop("content_sha256")
    (folder / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(fmhub.ManifestError, match="records no file hashes"):
        fmhub.load(folder)


def test_a_file_the_manifest_does_not_list_is_refused(toy_hub, tmp_path):
    folder = fmhub.load("toy:classify").save(tmp_path / "m")
    (folder / "added_tokens.json").write_text("{}")
    with pytest.raises(fmhub.ManifestError, match=r"does not list: \['added_tokens\.json'\]"):
        fmhub.load(folder)


def test_oversized_and_deeply_nested_manifests_are_manifest_errors(toy_hub, tmp_path):
    folder = fmhub.load("toy:classify").save(tmp_path / "m")
    (folder / MANIFEST).write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(fmhub.ManifestError, match="nested 100000 levels"):
        fmhub.load(folder)
    (folder / MANIFEST).write_text('{"pad": "' + "x" * (manifest_mod.MAX_MANIFEST_BYTES + 1) + '"}')
    with pytest.raises(fmhub.ManifestError, match="bytes, more than"):
        fmhub.load(folder)
    (folder / MANIFEST).write_text('{"labels": "[[[[" , "x": "\\"]]]]"}')  # brackets in strings
    assert manifest_mod._json_depth((folder / MANIFEST).read_text()) == 1


def _finetuned(tmp_path, method: str, **extra):
    model = fmhub.load("toy:embed")
    result = fmhub.finetune(
        model, TRAIN, output_dir=str(tmp_path / method), **{**FAST, "method": method, **extra}
    )
    return model, result.adapter_path


@pytest.mark.parametrize(
    "method,weights", [("lora", "adapter_model.safetensors"), ("head", "adapter.safetensors")]
)
def test_flipped_bytes_in_adapter_files_are_refused(toy_hub, tmp_path, method, weights):
    _, folder = _finetuned(tmp_path, method)
    flip(folder / weights)
    with pytest.raises(fmhub.ManifestError, match=f"{weights}' does not match the SHA-256"):
        fmhub.load(folder)
    if method == "lora":
        _, folder = _finetuned(tmp_path / "b", method)
        cfg = json.loads((folder / "adapter_config.json").read_text())
        cfg["lora_alpha"] *= 4  # changes what the adapter does
        (folder / "adapter_config.json").write_text(json.dumps(cfg))
        with pytest.raises(fmhub.ManifestError, match=r"adapter_config\.json'"):
            fmhub.load(folder)


def test_adapter_tensor_files_must_hold_exactly_what_the_method_trains(toy_hub, tmp_path):
    from safetensors.torch import load_file, save_file

    model, folder = _finetuned(tmp_path, "head")
    file = folder / "adapter.safetensors"
    good = load_file(str(file))
    assert set(good) == {"head.weight", "head.bias"}
    cases = {
        "a base tensor in the head file": (
            {**good, "fc1.weight": torch.zeros(16, 4)},
            r"does not train: \['fc1\.weight'\]",
        ),
        "an emptied head file": ({}, r"missing: \['head\.bias', 'head\.weight'\]"),
        "a mis-shaped tensor": (
            {**good, "head.weight": torch.zeros(3, 16)},
            r"head\.weight: \[3, 16\] vs \[2, 16\]",
        ),
    }
    for state, words in cases.values():
        save_file(state, str(file)) if state else file.write_bytes(b"")
        with pytest.raises(fmhub.ManifestError, match=words if state else "not a readable"):
            fmhub.load(folder, verify=False)  # strict even without the hashes
    save_file(good, str(file))
    file.write_bytes(file.read_bytes()[:-20])  # truncated
    with pytest.raises(fmhub.ManifestError, match="not a readable safetensors file"):
        fmhub.load(folder, verify=False)
    save_file(good, str(file))
    assert fmhub.load(folder, verify=False)(X) == model(X)


def test_peft_adapter_files_are_strict_too(toy_hub, tmp_path):
    from safetensors.torch import load_file, save_file

    _, folder = _finetuned(tmp_path, "lora")
    file = folder / "adapter_model.safetensors"
    good = load_file(str(file))
    key = next(k for k in good if "lora_A" in k)
    save_file({**good, key: torch.zeros(3, 3)}, str(file))
    with pytest.raises(fmhub.ManifestError, match="shapes differ"):
        fmhub.load(folder, verify=False)
    save_file({k: v for k, v in good.items() if k != key}, str(file))
    with pytest.raises(fmhub.ManifestError, match="missing"):
        fmhub.load(folder, verify=False)
    file.write_bytes(b"")
    with pytest.raises(fmhub.ManifestError, match="not a readable safetensors file"):
        fmhub.load(folder, verify=False)


def test_flipped_bytes_in_a_checkpoint_stop_resume(toy_hub, tmp_path):
    out = tmp_path / "run"
    cfg = dict(FAST, checkpoint_every=2, max_steps=2, labels=["neg", "pos"])
    fmhub.finetune(fmhub.load("toy:embed"), TRAIN, output_dir=str(out), **cfg)
    for name in ("trainable.safetensors", "optimizer.pt", "state.json"):
        run = tmp_path / name
        shutil.copytree(out, run)
        flip(run / "checkpoint" / name, n=4)
        with pytest.raises(fmhub.ManifestError, match=f"{name}'"):
            fmhub.finetune(fmhub.load("toy:embed"), TRAIN, output_dir=str(run), resume=True, **cfg)
    with pytest.raises(fmhub.ManifestError, match="is a fine-tuning checkpoint, not a model"):
        fmhub.load(out / "checkpoint")


# -- consent -----------------------------------------------------------------------------------------


class _Powerful:
    """A plugin whose options include ones that need consent; it records what load received."""

    def __init__(self):
        self.seen = []

    @fmhub.hookimpl
    def fmhub_register_namespaces(self, register):
        from pydantic import Field

        class Opts(fmhub.LoadOptions):
            trust_remote_code: bool = False
            run_hooks: bool = Field(False, json_schema_extra={"consent": True})
            width: int = 3

        register(fmhub.Namespace(name="pow", options=Opts))

    @fmhub.hookimpl
    def fmhub_register_models(self, register):
        register(fmhub.ModelSpec(id="pow:m", task="embedding"))

    @fmhub.hookimpl
    def fmhub_load(self, spec, options):
        self.seen.append(options)
        return fmhub.Loaded(module=torch.nn.Linear(2, options.width), task="embedding")

    @fmhub.hookimpl
    def fmhub_save(self, model, path):
        with open(os.path.join(path, "w.txt"), "w") as f:
            f.write("weights")
        return True


def test_options_replayed_from_a_manifest_never_widen_consent(bare_hub, tmp_path):
    plugin = _Powerful()
    bare_hub.register(plugin, name="pow")
    model = bare_hub.load("pow:m", trust_remote_code=True, run_hooks=True, width=5)
    folder = model.save(tmp_path / "m")
    options = read_manifest(folder).options
    assert options == {"trust_remote_code": True, "run_hooks": True, "width": 5}  # recorded
    bare_hub.load(str(folder))
    seen = plugin.seen[-1]
    assert (seen.trust_remote_code, seen.run_hooks, seen.width) == (False, False, 5)
    spec = bare_hub.model_info(str(folder))
    assert spec.options == {"width": 5}
    bare_hub.load(str(folder), trust_remote_code=True)  # the caller's own word counts
    assert plugin.seen[-1].trust_remote_code is True


def test_adapter_base_paths_resolve_inside_the_adapter_folder(toy_hub, tmp_path, monkeypatch):
    base = fmhub.load("toy:embed").save(tmp_path / "adapter-home" / "base")
    model = fmhub.load(base)
    fmhub.finetune(model, TRAIN, output_dir=str(tmp_path / "adapter-home"), **FAST)
    folder = tmp_path / "adapter-home" / "adapter"
    data = json.loads((folder / MANIFEST).read_text())
    assert data["spec"]["path"] == str(base)  # absolute, as fmhub writes it

    def rewrite(path_value):
        m = read_manifest(folder)
        m.spec["path"] = path_value
        for f in list(folder.iterdir()):
            if f.name == MANIFEST:
                f.unlink()
        seal(folder, m)

    rewrite("../base")  # leaves the adapter folder
    with pytest.raises(fmhub.ManifestError, match="leaves the adapter folder"):
        fmhub.load(folder)
    shutil.copytree(base, folder / "base")
    rewrite("base")  # inside the adapter folder: resolved against it, not the working folder
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    again = fmhub.load(folder)
    assert again(X) == model(X)
    assert again.spec.path == str(folder / "base")


# -- the model card ----------------------------------------------------------------------------------


def test_adapter_has_a_model_card_and_the_manifest_records_training(toy_hub, tmp_path):
    csv = tmp_path / "points.csv"
    csv.write_text("text,label\n" + "".join(f'"{",".join(map(str, x))}",{y}\n' for x, y in TRAIN))
    model = fmhub.load("toy:embed")
    result = fmhub.finetune(
        model,
        str(csv),
        eval=TRAIN[:16],
        output_dir=str(tmp_path / "out"),
        **{**FAST, "method_options": {"r": 4}},
    )
    card = (result.adapter_path / "README.md").read_text()
    m = read_manifest(result.adapter_path)
    t = m.training
    assert t["data"]["train"] == {
        "examples": 64,
        "source": "file points.csv",
        "label_counts": t["data"]["train"]["label_counts"],
    }
    assert sum(t["data"]["train"]["label_counts"].values()) == 64
    assert t["data"]["eval"]["examples"] == 16 and t["steps"] == result.steps == 4
    assert t["metrics"] == result.metrics and t["config"]["learning_rate"] == 1e-2
    assert t["config"]["method_options"] == {"r": 4} and t["train_loss"] > 0
    for fact in (
        "toy:embed",
        "`lora`",
        '"r": 4',
        "0. neg",
        "1. pos",
        "64 examples from file points.csv",
        "16 examples",
        "learning_rate: `0.01`",
        "final evaluation: loss",
        "accuracy",
        f"fmhub: {fmhub.__version__}",
        "torch:",
        "peft:",
        "optimizer steps: 4",
    ):
        assert fact in card, fact
    assert "[More Information Needed]" not in card  # not PEFT's template
    again = fmhub.load(result.adapter_path)
    assert again.adapter.training == t
    resaved = again.save(tmp_path / "copy")
    assert read_manifest(resaved).training == t


def test_an_adapter_whose_base_needed_consent_asks_for_it(toy_hub, tmp_path):
    _, folder = _finetuned(tmp_path, "head")
    m = read_manifest(folder)
    m.options["checkpoint"] = "/elsewhere/weights.safetensors"  # as a timm base loaded from a file
    (folder / MANIFEST).unlink()
    seal(folder, m)
    with pytest.raises(
        fmhub.InvalidOptionError,
        match=r"loaded with checkpoint='/elsewhere/weights\.safetensors'.*pass it "
        r"yourself",
    ):
        fmhub.load(folder)
