"Tests of the lect-train command: bad input fails fast and writes nothing; a tiny end-to-end run writes a full run dir."
import json, os, re, subprocess, sys
from pathlib import Path
import pytest
from lect_nb.training.cli import main
from lect_nb.training.runs import RUN_FILES, load_checkpoint
from test_train import register_tiny

register_tiny()
METRIC_KEYS = {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds", "train_images_per_s"}

@pytest.mark.parametrize("args, msg", [
    (["--model", "no_such_model"], "unknown model 'no_such_model'"),
    (["--dataset", "cifar10", "--data-dir", "{tmp}/missing"], "data directory not found"),
    (["--dataset", "imagefolder", "--data-dir", "{tmp}/missing", "--img-size", "32"], "data directory not found"),
    (["--img-size", "36"], "36x36"),       # lect_cifar needs multiples of 8
    (["--warmup-epochs", "2", "--epochs", "2"], "--warmup-epochs (2) must be < --epochs (2)"),
    (["--min-lr", "0.1", "--lr", "0.01"], "--min-lr (0.1) must not exceed --lr (0.01)"),
    (["--val-split", "0.001", "--limit-train", "64"], "--val-split 0.001 of 64 training images holds out 0"),
    (["--resume"], "nothing to resume"),
])
def test_bad_input_fails_fast_and_writes_nothing(tmp_path, capsys, args, msg):
    out = tmp_path / "run"
    code = main([a.format(tmp=tmp_path) for a in args] + ["--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and msg in err and err.startswith("lect-train: error:"), err
    assert not out.exists() and os.listdir(tmp_path) == []

def test_console_script_reports_error_with_status(tmp_path):
    r = subprocess.run([sys.executable, "-c", "import sys; from lect_nb.training.cli import main; sys.exit(main())",
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
    assert all(0 <= r["test_acc"] <= 1 and r["train_loss"] > 0 and r["seconds"] > 0 for r in recs)
    assert recs[0]["lr"] == pytest.approx(3e-3) and recs[1]["lr"] == pytest.approx(3e-3 * 0.5 * (1 + 0))
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"] == "tiny_bn" and cfg["epochs"] == 2 and cfg["limit_train"] == 128
    ck = load_checkpoint(out / "last.pt")   # weights_only=True
    assert ck["epoch"] == 2 and set(ck) >= {"model", "optimizer", "scheduler", "scaler", "rng", "config", "metrics"}
    best = load_checkpoint(out / "best.pt")
    assert best["best_acc"] == max(r["test_acc"] for r in recs)
    before = {f: (out / f).stat().st_mtime_ns for f in RUN_FILES}
    assert main(args) == 2 and "already holds a run" in capsys.readouterr().err
    assert {f: (out / f).stat().st_mtime_ns for f in RUN_FILES} == before

def _declared_entry_point() -> str:
    "The `lect-train` target in pyproject.toml, e.g. 'lect_nb.training.cli:main'."
    import tomllib
    return tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["scripts"]["lect-train"]

def test_console_script_points_at_the_cli_module():
    assert _declared_entry_point() == "lect_nb.training.cli:main"
    from lect_nb.training.cli import main as cli_main
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

# ---------------------------------------------------------------- --help, learning rate, --val-split
def _help_entries(text: str) -> dict:
    "option -> its help text, from the options section of `--help` (wrapped lines joined)."
    body = text.split("options:")[1].split("datasets (--dataset):")[0]
    entries, cur = {}, None
    for line in body.splitlines():
        m = re.match(r"  (-[-\w]+)(?:[ ,][^ ].*?)?(?:  +(.*))?$", line)
        if m and not line.startswith("   "):
            cur = m[1]; entries[cur] = (m[2] or "").strip()
        elif cur and line.strip(): entries[cur] += " " + line.strip()
    return entries

def test_help_documents_every_option_once(capsys):
    from lect_nb.training.cli import build_parser
    with pytest.raises(SystemExit) as e: main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    entries = _help_entries(text)
    options = {s for a in build_parser()._actions for s in a.option_strings if s.startswith("--") and a.dest != "help"}
    assert set(entries) == options, set(entries) ^ options
    for opt, h in entries.items():
        assert len(h) > 15, (opt, h)                               # documented, not just named
        assert h.count("default") <= 1, (opt, h)                  # each default stated once
    assert "(default: None)" not in text and "(default: True)" not in text and "(default: False)" not in text
    assert "default" not in entries["--no-augment"] and "which is on otherwise" in entries["--no-augment"]
    assert "DIR/train/<class>/" in text and "DIR/val/<class>/" in text   # the imagefolder layout
    assert "best.pt is chosen on the test split as in the report" in " ".join(text.split())

def test_imagefolder_without_img_size_names_the_option(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    code = main(["--dataset", "imagefolder", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "has no native image size: give --img-size" in err, err
    assert not (tmp_path / "r").exists()

def test_default_lr_is_printed_and_saved(tmp_path, capsys):
    from lect_nb.api import _MODEL_REGISTRY, register_model
    from lect_nb.training.loop import TinyNet
    if "tiny_resnet" not in _MODEL_REGISTRY:   # a name with "resnet": the paper's 6e-3
        register_model("tiny_resnet")(lambda num_classes=10, img_size=(32, 32), in_chans=1, **kw: TinyNet(num_classes, in_chans))
    base = ["--epochs", "1", "--batch-size", "32", "--limit-train", "32", "--limit-val", "16", "--device", "cpu"]
    assert main(["--model", "tiny_resnet", "--out", str(tmp_path / "a")] + base) == 0
    out = capsys.readouterr().out
    assert "lr 0.006 (the paper's for this model)," in out, out
    assert "best.pt: best test accuracy, as in the LeCT report" in out
    assert json.loads((tmp_path / "a" / "config.json").read_text())["lr"] == 6e-3
    assert main(["--model", "tiny_bn", "--lr", "0.002", "--out", str(tmp_path / "b")] + base) == 0
    out = capsys.readouterr().out
    assert "lr 0.002," in out and "the paper's for this model" not in out
    assert json.loads((tmp_path / "b" / "config.json").read_text())["lr"] == 2e-3

def test_split_train_val_disjoint_and_seeded():
    from lect_nb.training.runs import split_train_val
    tr, va = split_train_val(96, 0.25, seed=3)
    assert len(va) == 24 and len(tr) == 72 and not set(tr) & set(va) and sorted(tr + va) == list(range(96))
    assert split_train_val(96, 0.25, seed=3) == (tr, va) and split_train_val(96, 0.25, seed=4)[1] != va
    with pytest.raises(ValueError, match="val_split must be in"): split_train_val(96, 1.0)

def test_val_split_chooses_best_on_held_out_images(tmp_path, capsys, monkeypatch):
    "Scripted accuracies: the held-out split peaks at epoch 2, the test split at epoch 1; best.pt must be epoch 2."
    import lect_nb.training.runs as lr
    from lect_nb.training.runs import split_train_val
    seen, real = {}, lr.evaluate
    script = {"val": [0.2, 0.9, 0.5], "test": [0.9, 0.1, 0.3]}
    def scripted(model, loader, *a, **k):
        r = real(model, loader, *a, **k)
        split = "val" if len(loader.sampler) == 24 else "test"
        seen.setdefault(split, set()).update(loader.dataset.indices if split == "val" else [])
        n = sum(1 for _ in seen.setdefault(split + "_calls", []))
        seen[split + "_calls"].append(1)
        return {**r, "acc": script[split][n]}
    monkeypatch.setattr(lr, "evaluate", scripted)
    trained = []
    real_train = lr.train_one_epoch
    def spy(model, loader, *a, **k):
        trained.extend(loader.dataset.ds.indices); return real_train(model, loader, *a, **k)
    monkeypatch.setattr(lr, "train_one_epoch", spy)
    out = tmp_path / "r"
    args = ["--model", "tiny_bn", "--epochs", "3", "--batch-size", "32", "--limit-train", "96", "--limit-val", "48",
            "--val-split", "0.25", "--seed", "3", "--device", "cpu", "--out", str(out)]
    assert main(args) == 0
    stdout = capsys.readouterr().out
    assert "(72 train / 24 val / 48 test images" in stdout
    assert "best.pt: best accuracy on the 24 held-out training images (val split 0.25)" in stdout
    assert "best.pt: epoch 2 (val 90.00%, test 10.00%)" in stdout, stdout
    recs = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_acc"] for r in recs] == script["val"] and [r["test_acc"] for r in recs] == script["test"]
    assert load_checkpoint(out / "best.pt")["epoch"] == 2 and load_checkpoint(out / "best.pt")["best_acc"] == 0.9
    tr_idx, va_idx = split_train_val(96, 0.25, seed=3)
    assert seen["val"] == set(va_idx) and set(trained) == set(tr_idx) and not set(trained) & seen["val"]
    assert json.loads((out / "config.json").read_text())["val_split"] == 0.25

@pytest.mark.parametrize("value", ["1", "-0.1"])
def test_bad_val_split(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as e: main([f"--val-split={value}", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "argument --val-split: must be a number in [0, 1)" in err, err
    assert not (tmp_path / "r").exists()
