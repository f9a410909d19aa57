"""What a new user meets with `lect-train` (issue 36, rows 1-6 and `--amp fp16` on the CPU; issue 35's `--config`):
each test fails on the code before these fixes, and each checks that nothing saved before is lost (the files
under the test's directory byte for byte). Tiny models on slices of the embedded sample, one thread, 1-2 epochs
of 2 steps."""
import json, os, signal, subprocess, sys
from pathlib import Path
import numpy as np, pytest, torch
from lect_nb.api import _MODEL_REGISTRY, register_model
from lect_nb.training.cli import main
from lect_nb.training.loop import TinyNet
from lect_nb.training.runs import TrainConfig, load_checkpoint, run
from test_train import register_tiny

register_tiny()
torch.set_num_threads(1)
TINY = ["--model", "tiny_bn", "--batch-size", "32", "--limit-train", "64", "--limit-val", "32", "--device", "cpu"]
ONLY = "only --epochs, --device, --workers, --plain, --data-dir may be given with it"

def snapshot(d: Path) -> dict:
    "Every file under `d` with its bytes: proves that nothing was written or changed."
    return {str(p.relative_to(d)): p.read_bytes() if p.is_file() else "dir" for p in sorted(d.rglob("*"))}

def records(run_dir: Path) -> list:
    "metrics.jsonl without its timings."
    return [{k: v for k, v in json.loads(l).items() if k not in ("seconds", "train_images_per_s")}
            for l in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]

def call(args, capsys):
    "(status, stdout, stderr) of `lect-train ARGS`, argparse's exits included."
    try: code = main([str(a) for a in args])
    except SystemExit as e: code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err

def start_line(out: str) -> str:
    return next(l for l in out.splitlines() if l.startswith("lect-train: "))

@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    "A finished 1-epoch run, recorded once for the tests that only read it."
    d = tmp_path_factory.mktemp("recorded")
    assert main(TINY + ["--epochs", "1", "--out", str(d / "run")]) == 0
    return d / "run"

# ------------------------------------------------ row 1: --resume with flags that would change the run
@pytest.mark.parametrize("args, named", [
    (["--lr", "0.1"], "--lr 0.1 (recorded 0.001)"),
    (["--model", "resnet", "--batch-size", "8", "--dataset", "cifar10"],
     "--model resnet (recorded 'tiny_bn'), --batch-size 8 (recorded 32), --dataset cifar10 (recorded 'sample')"),
    (["--no-augment", "--clip-grad", "0"], "--no-augment (recorded True), --clip-grad 0 (recorded 5.0)"),
])
def test_resume_refuses_flags_that_change_the_recorded_run(recorded, capsys, args, named):
    before = snapshot(recorded.parent)
    code, out, err = call(["--out", recorded, "--resume"] + args, capsys)
    assert code == 2 and out == "", err
    assert err == (f"lect-train: error: --resume continues {recorded} with its recorded settings, and {named} "
                   f"would change them; {ONLY}\n")
    assert snapshot(recorded.parent) == before

def test_resume_takes_what_may_change_and_lists_it_at_the_start(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(TINY + ["--epochs", "1", "--out", str(out)]) == 0
    first = (out / "metrics.jsonl").read_text()
    capsys.readouterr()
    # the same values typed again are no change; --epochs and --workers may change
    code, o, err = call(["--out", out, "--resume", "--epochs", "2", "--workers", "1", "--lr", "0.001",
                         "--model", "tiny_bn", "--amp", "auto"], capsys)
    assert code == 0, err
    assert start_line(o).endswith("; given on resume: --epochs 2 (recorded 1), --workers 1 (recorded 0)")
    assert [r["epoch"] for r in records(out)] == [1, 2]
    assert (out / "metrics.jsonl").read_text().startswith(first)       # the recorded epoch is kept as it was
    assert json.loads((out / "config.json").read_text())["lr"] == 0.001

def test_help_lists_what_resume_may_change(capsys):
    with pytest.raises(SystemExit) as e: main(["--help"])
    assert e.value.code == 0
    assert ONLY + ", another setting that differs from the recorded one is refused" in " ".join(capsys.readouterr().out.split())

def test_resume_from_python_refuses_a_field_that_changes_the_run(recorded):
    before = snapshot(recorded.parent)
    with pytest.raises(ValueError, match=r"resume continues .* and lr=0\.1 \(recorded 0\.001\) would change them"):
        run(TrainConfig(out=str(recorded), resume=True, lr=0.1), progress=False)
    assert snapshot(recorded.parent) == before

# ------------------------------------------------ row 2: a run that stops before its first checkpoint
class FailsAt(TinyNet):
    "Fails at training step `at` (1-based, counted over the whole run): an exception, or a NaN output."
    at, kind, calls = 0, "error", 0
    def forward(self, x):
        y = super().forward(x)
        if self.training:
            FailsAt.calls += 1
            if FailsAt.calls == FailsAt.at:
                if FailsAt.kind == "error": raise RuntimeError("something broke at step 2")
                return y * float("nan")
        return y

if "tiny_fails" not in _MODEL_REGISTRY:
    register_model("tiny_fails")(lambda num_classes=10, img_size=(32, 32), in_chans=1, **kw: FailsAt(num_classes, in_chans))

@pytest.mark.parametrize("kind", ["error", "nan"])
@pytest.mark.parametrize("out_exists", [False, True])
def test_run_stopped_before_its_first_checkpoint_leaves_nothing_and_restarts(tmp_path, capsys, kind, out_exists):
    out = tmp_path / "run"
    (tmp_path / "older").mkdir(); (tmp_path / "older" / "notes.txt").write_text("saved before")
    if out_exists: out.mkdir(); (out / "README").write_text("the user's")
    before = snapshot(tmp_path)
    args = TINY + ["--model", "tiny_fails", "--epochs", "1", "--out", out]
    FailsAt.at, FailsAt.kind, FailsAt.calls = 2, kind, 0
    what = (f"{out} was removed" if not out_exists else f"its files were removed from {out}")
    note = f"nothing was saved (the run stopped before its first checkpoint): {what}, and the same command starts it again"
    if kind == "error":   # a bug: its traceback, and the note at its end
        with pytest.raises(RuntimeError, match="step 2") as e: main([str(a) for a in args])
        assert e.value.__notes__ == [note]
    else:
        code, _, err = call(args, capsys)
        assert code == 1 and "non-finite" in err and err.splitlines()[-1] == f"lect-train: {note}", err
    assert snapshot(tmp_path) == before
    FailsAt.at = 0
    code, _, err = call(args, capsys)                       # the same command, now that nothing fails
    assert code == 0, err
    assert load_checkpoint(out / "last.pt")["epoch"] == 1

def test_run_stopped_after_a_checkpoint_says_how_to_resume(tmp_path, capsys):
    out = tmp_path / "run"
    args = TINY + ["--model", "tiny_fails", "--epochs", "2", "--out", out]
    FailsAt.at, FailsAt.kind, FailsAt.calls = 4, "nan", 0   # epoch 2, step 2
    code, _, err = call(args, capsys)
    assert code == 1 and err.splitlines()[-1] == f"lect-train: resume with: lect-train --out {out} --resume", err
    assert load_checkpoint(out / "last.pt")["epoch"] == 1 and len(records(out)) == 1
    FailsAt.at = 0
    assert call(["--out", out, "--resume"], capsys)[0] == 0 and len(records(out)) == 2

def _killed(out: Path):
    "What a run killed before its first checkpoint (SIGKILL: nothing could be removed) leaves."
    for f in ("last.pt", "best.pt", "curves.png"): (out / f).unlink()
    (out / "metrics.jsonl").write_text("")

def test_folder_of_a_killed_run_restarts(tmp_path, capsys):
    out = tmp_path / "run"
    args = TINY + ["--epochs", "1", "--out", out]
    assert call(args, capsys)[0] == 0
    _killed(out)
    before = snapshot(tmp_path)
    again = f"lect-train --config {out / 'config.json'} --out {out}"
    code, _, err = call(["--out", out, "--resume"], capsys)
    assert code == 2 and err == (f"lect-train: error: nothing to resume: {out} holds a run that stopped before its "
                                 f"first checkpoint (no last.pt); start it again with: {again}\n")
    code, _, err = call(TINY + ["--epochs", "2", "--out", out], capsys)          # another run there: refused
    assert code == 2 and err == (f"lect-train: error: {out} holds another run that stopped before its first "
                                 f"checkpoint (config.json, no last.pt); start that one again with: {again}, or "
                                 "choose another --out\n")
    assert snapshot(tmp_path) == before
    assert call(again.split()[1:], capsys)[0] == 0 and len(records(out)) == 1   # the command the message gives
    _killed(out)
    assert call(args, capsys)[0] == 0 and len(records(out)) == 1                # the same command

# ------------------------------------------------ rows 3 and 5: ImageFolder errors before training
def _folder(root: Path, splits=("train", "val"), n=4):
    from PIL import Image
    for split in splits:
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.full((12, 12, 3), 30 * i, np.uint8)).save(root / split / c / f"{i}.png")

def _truncate(p: Path): p.write_bytes(p.read_bytes()[:40])

def imagefolder(tmp_path):
    return TINY + ["--dataset", "imagefolder", "--data-dir", tmp_path / "data", "--img-size", "16", "--epochs", "1",
                   "--out", tmp_path / "run"]

def test_corrupt_image_is_found_before_training(tmp_path, capsys):
    _folder(tmp_path / "data")
    bad = tmp_path / "data" / "train" / "b" / "2.png"
    bad.write_bytes(b"not a png at all")
    before = snapshot(tmp_path)
    code, out, err = call(imagefolder(tmp_path), capsys)
    assert code == 2 and out == "", err                          # no start line: nothing trained
    assert err == (f"lect-train: error: imagefolder: 1 image in the train split cannot be read, the first {bad} "
                   f"(UnidentifiedImageError: cannot identify image file '{bad}'); remove it or leave them out "
                   "with bad_images='skip' (lect-train: --bad-images skip)\n")
    assert snapshot(tmp_path) == before

def test_corrupt_images_are_skipped_when_asked(tmp_path, capsys):
    _folder(tmp_path / "data")
    bad = tmp_path / "data" / "train" / "b" / "2.png"
    bad.write_bytes(b"not a png at all")
    _truncate(tmp_path / "data" / "val" / "a" / "1.png")
    data = snapshot(tmp_path / "data")
    code, out, err = call(imagefolder(tmp_path) + ["--bad-images", "skip"], capsys)
    assert code == 0, err
    assert (f"lect-train: left out 2 unreadable images (--bad-images skip); the first: {bad} "
            "(UnidentifiedImageError: cannot identify image file") in err
    assert "(7 train / 7 test images, 16x16x3)" in start_line(out)
    assert snapshot(tmp_path / "data") == data

@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_empty_class_folder_names_its_split(tmp_path, capsys, split):
    _folder(tmp_path / "data", splits=("train", "test" if split == "test" else "val"))
    (tmp_path / "data" / split / "c").mkdir()
    before = snapshot(tmp_path)
    code, out, err = call(imagefolder(tmp_path), capsys)
    assert code == 2 and err.startswith(f"lect-train: error: imagefolder: the {split} class folder "
                                        f"{tmp_path / 'data' / split / 'c'} holds no image (.jpg"), err
    assert err.count("\n") == 1 and snapshot(tmp_path) == before

# ------------------------------------------------ row 4: the second Ctrl-C
WORKER = """import os, signal, sys
sys.path.insert(0, {tests!r})
import torch; torch.set_num_threads(1)
from lect_nb.training.loop import TinyNet
from lect_nb.api import register_model
from lect_nb.training.cli import main
AT = int(os.environ["AT"])
class CtrlCTwice(TinyNet):   # during training step AT (1-based), Ctrl-C twice: real SIGINTs
    calls = 0
    def forward(self, x):
        if self.training:
            CtrlCTwice.calls += 1
            if CtrlCTwice.calls == AT:
                os.kill(os.getpid(), signal.SIGINT); os.kill(os.getpid(), signal.SIGINT)
        return super().forward(x)
register_model("tiny_twice")(lambda num_classes=10, img_size=(32, 32), in_chans=1, **kw: CtrlCTwice(num_classes, in_chans))
sys.exit(main(sys.argv[1:]))
"""

def _twice(tmp_path, at, args):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(Path(__file__).parent)))
    return subprocess.run([sys.executable, str(script)] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1", "AT": str(at)})

def test_second_ctrl_c_before_a_checkpoint_exits_quietly_and_leaves_nothing(tmp_path):
    (tmp_path / "older").mkdir(); (tmp_path / "older" / "notes.txt").write_text("saved before")
    before = snapshot(tmp_path)
    out = tmp_path / "run"
    r = _twice(tmp_path, 2, TINY + ["--model", "tiny_twice", "--epochs", "1", "--out", out])
    assert r.returncode == 130 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.stderr.strip().splitlines()[-1] == (
        f"lect-train: stopped at once by Ctrl-C; nothing was saved (the run stopped before its first checkpoint): "
        f"{out} was removed, and the same command starts it again")
    assert len(r.stderr.strip().splitlines()) == 2                    # "received SIGINT ..." and that line
    after = snapshot(tmp_path); after.pop("worker.py")
    assert after == before

def test_second_ctrl_c_after_a_checkpoint_gives_the_resume_command(tmp_path):
    out = tmp_path / "run"
    args = TINY + ["--model", "tiny_twice", "--epochs", "2", "--out", out]
    r = _twice(tmp_path, 3, args)                                     # epoch 2, step 1
    assert r.returncode == 130 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.stderr.strip().splitlines()[-1] == f"lect-train: stopped at once by Ctrl-C; resume with: lect-train --out {out} --resume"
    assert load_checkpoint(out / "last.pt")["epoch"] == 1 and len(records(out)) == 1
    r = _twice(tmp_path, 0, ["--out", out, "--resume"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert [x["epoch"] for x in records(out)] == [1, 2]

# ------------------------------------------------ row 6: flag names in errors
@pytest.mark.parametrize("args, msg", [
    (["--amp", "fp16"], "--amp fp16 needs CUDA (the device is cpu); use --amp bf16 on the CPU"),
    (["--dataset", "cifar10", "--data-dir", "{tmp}/missing"], "data directory not found: --data-dir {tmp}/missing"),
])
def test_errors_name_the_flag_as_typed(tmp_path, capsys, args, msg):
    before = snapshot(tmp_path)
    code, _, err = call(TINY + [a.format(tmp=tmp_path) for a in args] + ["--out", tmp_path / "r"], capsys)
    assert code == 2 and err == f"lect-train: error: {msg.format(tmp=tmp_path)}\n"
    assert snapshot(tmp_path) == before

def test_python_errors_name_the_field(tmp_path):
    with pytest.raises(ValueError, match=r"^amp='fp16' needs CUDA \(the device is cpu\); use amp='bf16' on the CPU$"):
        run(TrainConfig(model="tiny_bn", device="cpu", amp="fp16", out=str(tmp_path / "r")), progress=False)
    assert not (tmp_path / "r").exists()

# ------------------------------------------------ issue 35: rerun from a recorded config
def test_config_reruns_the_recorded_run_to_the_same_metrics(recorded, tmp_path, capsys):
    before = snapshot(recorded.parent)
    again = tmp_path / "again"
    code, out, err = call(["--config", recorded / "config.json", "--out", again], capsys)
    assert code == 0, err
    assert start_line(out).endswith(f"; the settings of {recorded / 'config.json'}, with --out {again} given beside it")
    assert records(again) == records(recorded)
    a, b = (json.loads((d / "config.json").read_text()) for d in (recorded, again))
    assert a.pop("out") == str(recorded) and b.pop("out") == str(again) and a == b
    assert snapshot(recorded.parent) == before

def test_config_with_options_beside_it(recorded, tmp_path, capsys):
    longer = tmp_path / "longer"
    code, out, err = call(["--config", recorded / "config.json", "--epochs", "2", "--out", longer], capsys)
    assert code == 0, err
    assert start_line(out).endswith(f"with --epochs 2, --out {longer} given beside it")
    assert records(longer)[0] == records(recorded)[0]                # epoch 1 is the recorded run's epoch 1
    assert json.loads((longer / "config.json").read_text())["epochs"] == 2

@pytest.mark.parametrize("text, msg", [
    ('{"model": "tiny_bn", "lrr": 0.1}', "unknown key 'lrr' (did you mean 'lr'?)"),
    ('{"model": "tiny_bn", "colour": 1}', "unknown key 'colour' (not a lect-train setting)"),
    ('{"model": "tiny_bn",', "is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 21 (char 20)"),
    ('{"batch_size": "32"}', "key 'batch_size' must be an integer, got '32'"),
    ('["tiny_bn"]', "holds a JSON list, not an object of settings"),
])
def test_bad_config_is_one_line_and_touches_nothing(tmp_path, capsys, monkeypatch, text, msg):
    monkeypatch.chdir(tmp_path)                                     # a default --out would land here
    old = tmp_path / "old"; old.mkdir()
    (old / "config.json").write_text(text); (old / "metrics.jsonl").write_text("{}\n")
    before = snapshot(tmp_path)
    code, out, err = call(["--config", old / "config.json"], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith(f"lect-train: error: --config {old / 'config.json'}: ") and msg in err, err
    assert snapshot(tmp_path) == before

@pytest.mark.parametrize("extra, msg", [
    (["--resume"], "--config reruns a recorded run in a new --out, and --resume continues the run in --out: give one of them"),
    (["--out", "{rec}"], "already holds a run (config.json, metrics.jsonl, last.pt, best.pt, curves.png)"),
])
def test_config_never_writes_into_the_recorded_run(recorded, capsys, extra, msg):
    before = snapshot(recorded.parent)
    code, _, err = call(["--config", recorded / "config.json"] + [a.format(rec=recorded) for a in extra], capsys)
    assert code == 2 and msg in err and err.count("\n") == 1, err
    assert snapshot(recorded.parent) == before
