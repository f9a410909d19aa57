"Tests of the lect-train command: bad input fails fast and writes nothing; a tiny end-to-end run writes a full run dir."
import json, os, subprocess, sys
from pathlib import Path
import pytest
from lect_nb.cli import main
from lect_nb.runs import RUN_FILES, load_checkpoint
from test_train import register_tiny

register_tiny()
METRIC_KEYS = {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"}

@pytest.mark.parametrize("args, msg", [
    (["--dataset", "mnist"], "unknown dataset 'mnist'"),
    (["--model", "no_such_model"], "unknown model 'no_such_model'"),
    (["--batch-size", "0"], "batch_size must be a positive integer, got 0"),
    (["--dataset", "cifar10", "--data-dir", "{tmp}/missing"], "data directory not found"),
    (["--dataset", "imagefolder", "--data-dir", "{tmp}/missing", "--img-size", "32"], "data directory not found"),
    (["--img-size", "36"], "36x36"),       # lect_cifar needs multiples of 8
    (["--epochs", "0"], "epochs must be a positive integer"),
    (["--resume"], "nothing to resume"),
])
def test_bad_input_fails_fast_and_writes_nothing(tmp_path, capsys, args, msg):
    out = tmp_path / "run"
    code = main([a.format(tmp=tmp_path) for a in args] + ["--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and msg in err and err.startswith("lect-train: error:"), err
    assert not out.exists() and os.listdir(tmp_path) == []

def test_console_script_reports_error_with_status(tmp_path):
    r = subprocess.run([sys.executable, "-c", "import sys; from lect_nb.cli import main; sys.exit(main())",
                        "--model", "nope", "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown model 'nope'" in r.stderr and not (tmp_path / "r").exists()

def test_end_to_end_tiny_run_and_refusal_to_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--model", "tiny_bn", "--epochs", "2", "--batch-size", "32", "--limit-train", "128", "--limit-val", "64",
            "--lr", "3e-3", "--device", "cpu", "--out", str(out)]
    assert main(args) == 0
    assert "final test accuracy" in capsys.readouterr().out
    assert sorted(os.listdir(out)) == sorted(RUN_FILES)
    recs = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in recs] == [1, 2] and all(set(r) == METRIC_KEYS for r in recs)
    assert all(0 <= r["val_acc"] <= 1 and r["train_loss"] > 0 and r["seconds"] > 0 for r in recs)
    assert recs[0]["lr"] == pytest.approx(3e-3) and recs[1]["lr"] == pytest.approx(3e-3 * 0.5 * (1 + 0))
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"] == "tiny_bn" and cfg["epochs"] == 2 and cfg["limit_train"] == 128
    ck = load_checkpoint(out / "last.pt")   # weights_only=True
    assert ck["epoch"] == 2 and set(ck) >= {"model", "optimizer", "scheduler", "scaler", "rng", "config", "metrics"}
    best = load_checkpoint(out / "best.pt")
    assert best["best_acc"] == max(r["val_acc"] for r in recs)
    before = {f: (out / f).stat().st_mtime_ns for f in RUN_FILES}
    assert main(args) == 2 and "already holds a run" in capsys.readouterr().err
    assert {f: (out / f).stat().st_mtime_ns for f in RUN_FILES} == before

def _declared_entry_point() -> str:
    "The `lect-train` target in pyproject.toml, e.g. 'lect_nb.cli:main'."
    import tomllib
    return tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["scripts"]["lect-train"]

def test_console_script_points_at_the_cli_module():
    assert _declared_entry_point() == "lect_nb.cli:main"
    from lect_nb.cli import main as cli_main
    assert cli_main is main

def test_lect_train_console_script_with_lect_cifar(tmp_path):
    "The installed console script (if it was installed from this tree), default model and dataset, on a small slice."
    mod, fn = _declared_entry_point().split(":")
    exe = os.path.join(os.path.dirname(sys.executable), "lect-train")
    current = os.path.exists(exe) and f"from {mod} import {fn}" in Path(exe).read_text(errors="replace")
    cmd = [exe] if current else [sys.executable, "-c", f"import sys; from {mod} import {fn}; sys.exit({fn}())"]
    r = subprocess.run(cmd + ["--epochs", "1", "--limit-train", "64", "--limit-val", "64", "--batch-size", "32", "--device", "cpu",
                              "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "lect_cifar on sample" in r.stdout and "final test accuracy" in r.stdout
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert (cfg["model"], cfg["dataset"], cfg["img_size"], cfg["lr"]) == ("lect_cifar", "sample", None, 1e-3)
    assert sorted(os.listdir(tmp_path / "r")) == sorted(RUN_FILES)
