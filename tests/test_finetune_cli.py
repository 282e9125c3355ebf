"""``fmhub finetune``: --plan prints the matched modules; a run writes an adapter that predicts."""

import json

from fmhub.cli import main


def test_finetune_plan_and_run_from_the_command_line(tmp_path, capsys):
    assert main(["finetune", "toy:embed", "--plan", "--method", "lora",
                 "-c", 'method_options={"r": 2}']) == 0
    out = capsys.readouterr().out
    assert "fc1" in out and "fc2" in out and "trainable parameters: 138 of 524" in out
    rows = ["text,label"] + [f'"{a},{b},0,0",{"pos" if a + b > 0 else "neg"}'
                             for a in (-1, -0.5, 0.5, 1) for b in (-0.9, -0.2, 0.3, 0.8)]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    assert main(["finetune", "toy:embed", "--train", str(tmp_path / "train.csv"),
                 "--eval", str(tmp_path / "train.csv"), "--output", str(tmp_path / "out"),
                 "-c", "epochs=20", "-c", "learning_rate=0.02", "-c", "progress=false"]) == 0
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
