"""``fmhub finetune``: --plan prints the matched modules; a run writes an adapter that predicts."""

import json

import pytest

import fmhub
from fmhub.cli import main


def test_finetune_plan_and_run_from_the_command_line(tmp_path, capsys):
    assert (
        main(
            ["finetune", "toy:embed", "--plan", "--method", "lora", "-c", 'method_options={"r": 2}']
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "fc1" in out and "fc2" in out and "trainable parameters: 138 of 524" in out
    rows = ["text,label"] + [
        f'"{a},{b},0,0",{"pos" if a + b > 0 else "neg"}'
        for a in (-1, -0.5, 0.5, 1)
        for b in (-0.9, -0.2, 0.3, 0.8)
    ]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    assert (
        main(
            [
                "finetune",
                "toy:embed",
                "--train",
                str(tmp_path / "train.csv"),
                "--eval",
                str(tmp_path / "train.csv"),
                "--output",
                str(tmp_path / "out"),
                "-c",
                "epochs=20",
                "-c",
                "learning_rate=0.02",
                "-c",
                "progress=false",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["adapter"].endswith("adapter") and report["metrics"]["accuracy"] >= 0.75
    assert report["train_loss"] > 0
    assert main(["predict", report["adapter"], "--", "1,1,0,0", "-1,-1,0,0"]) == 0
    preds = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [p["result"]["label"] for p in preds] == ["pos", "neg"]


def test_finetune_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["finetune", "toy:embed", "--method", "lora"]) == 2
    assert "needs --train" in capsys.readouterr().err
    assert main(["finetune", "toy:embed", "--plan", "--method", "lorra"]) == 2
    assert "Did you mean 'lora'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Arguments, data files and the output are checked before the model loads.
# ---------------------------------------------------------------------------------------------


def table(path, header=("text", "label"), encoding="utf-8"):
    rows = [",".join(header)] + [
        f'"{a},{b},0,0",{"pos" if a + b > 0 else "neg"}'
        for a in (-1, -0.5, 0.5, 1)
        for b in (-0.9, -0.2, 0.3, 0.8)
    ]
    path.write_bytes(("\n".join(rows) + "\n").encode(encoding))
    return str(path)


@pytest.fixture
def no_load(monkeypatch):
    """Fail the test if anything loads a model."""
    monkeypatch.setattr(fmhub.Hub, "load", lambda *a, **k: pytest.fail("a model was loaded"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "needs --train"),
        (["--train", "missing.csv"], "--train 'missing.csv' does not exist"),
        (["--train", "{train}", "--eval", "missing.csv"], "--eval 'missing.csv' does not exist"),
        (["--train", "{train}", "-c", "epohcs=3"], "epohcs"),
        (["--train", "{train}", "--method", "lorra"], "Did you mean 'lora'"),
        (["--train", "{train}", "-c", 'method_options={"rank": 2}'], "rank"),
        (["--train", "{train}", "--text-column", "review"], "no column 'review' (text_column)"),
        (["--train", "{latin}"], "is not utf-8 text (byte 0xe9"),
        (["--train", "{train}", "--encoding", "nope"], "encoding='nope'"),
        (["--train", "{train}", "--output", "{train}"], "is a file"),
        (["--train", "{train}", "-c", "checkpoint_every=2"], "need --output"),
        (["--train", "{train}", "--output", "{train}/out"], "is a file"),
        (["--train", "{train}", "-c", "output_dir=x"], "with --output"),
    ],
)
def test_finetune_usage_errors_exit_2_before_loading(
    toy_hub, no_load, tmp_path, capsys, args, message
):
    train = table(tmp_path / "train.csv")
    latin = tmp_path / "latin.csv"
    latin.write_bytes('text,label\n"1,2,3,4",caf\xe9\n"4,3,2,1",th\xe9\n'.encode("latin-1"))
    argv = [a.replace("{train}", train).replace("{latin}", str(latin)) for a in args]
    assert main(["finetune", "toy:embed", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fmhub: error: ") and err.count("\n") == 1 and message in err


def test_non_utf8_csv_offers_encoding_and_trains_with_it(toy_hub, tmp_path, capsys):
    path = tmp_path / "latin.csv"
    hi, lo = "caf\xe9", "th\xe9"
    rows = ["text,label"] + [
        f'"{a},{b},0,0",{hi if a + b > 0 else lo}' for a in (-1, 1) for b in (-0.5, 0.5)
    ]
    path.write_bytes(("\n".join(rows) + "\n").encode("latin-1"))
    assert main(["finetune", "toy:embed", "--train", str(path)]) == 2
    err = capsys.readouterr().err
    assert "--encoding" in err and "Traceback" not in err
    assert (
        main(
            [
                "finetune",
                "toy:embed",
                "--train",
                str(path),
                "--encoding",
                "latin-1",
                "--output",
                str(tmp_path / "out"),
                "-c",
                "epochs=1",
                "-q",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert fmhub.load(str(tmp_path / "out" / "adapter")).labels == ("caf\xe9", "th\xe9")


def test_text_and_label_columns(toy_hub, tmp_path, capsys):
    train = table(tmp_path / "train.csv", header=("review", "stars"))
    assert main(["finetune", "toy:embed", "--train", train, "-q"]) == 2
    assert "--text-column" in capsys.readouterr().err
    assert (
        main(
            [
                "finetune",
                "toy:embed",
                "--train",
                train,
                "--text-column",
                "review",
                "--label-column",
                "stars",
                "-c",
                "epochs=1",
                "-q",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["steps"] == 1 and report["train_loss"] > 0


def test_output_is_not_overwritten_without_overwrite(toy_hub, tmp_path, capsys, monkeypatch):
    train = table(tmp_path / "train.csv")
    out = tmp_path / "out"
    argv = ["finetune", "toy:embed", "--train", train, "--output", str(out), "-c", "epochs=1", "-q"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    before = {p.name: p.read_bytes() for p in (out / "adapter").iterdir() if p.is_file()}
    with monkeypatch.context() as m:
        m.setattr(fmhub.Hub, "load", lambda *a, **k: pytest.fail("a model was loaded"))
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert "already holds an adapter" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in (out / "adapter").iterdir() if p.is_file()} == before
    assert main([*argv, "--overwrite", "-c", "seed=5"]) == 0
    second = json.loads(capsys.readouterr().out)
    after = {p.name: p.read_bytes() for p in (out / "adapter").iterdir() if p.is_file()}
    assert second["adapter"] == first["adapter"] and after != before


def test_finetune_reports_training_loss_and_logs_progress(toy_hub, tmp_path, capsys, monkeypatch):
    from fmhub import _progress

    monkeypatch.setenv(_progress.INTERVAL_ENV, "0.0001")
    train = table(tmp_path / "train.csv")
    assert (
        main(
            [
                "finetune",
                "toy:embed",
                "--train",
                train,
                "-c",
                "epochs=20",
                "-c",
                "learning_rate=0.02",
            ]
        )
        == 0
    )
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["steps"] == 20 and 0 < report["train_loss"] < 1.0
    lines = [line for line in err.splitlines() if line.startswith("fine-tune: ")]
    assert lines and lines[-1].startswith("fine-tune: 20/20 steps (100%), loss=")


def test_train_loss_is_the_mean_of_the_last_epoch(toy_hub):
    """With a learning rate too small to move the weights, the mean training loss of the last
    epoch (two equal batches) equals the loss of an evaluation on the same data."""
    model = fmhub.load("toy:embed")
    data = [([a, b, 0, 0], "pos" if a + b > 0 else "neg") for a in (-1, 1) for b in (-0.5, 0.5)]
    result = fmhub.finetune(
        model, data, eval=data, epochs=3, batch_size=2, learning_rate=1e-12, progress=False
    )
    assert result.train_loss == pytest.approx(result.history[-1]["loss"], rel=1e-5)
    assert result.train_loss > 0.1
