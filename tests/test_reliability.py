"""Reliability and security of training runs (issue 8): each test fails if its guarantee breaks.

1 exact resume (workers, augmentation, mid-epoch), 2 no lost checkpoint on a failed save, 3 SIGINT/SIGTERM,
4 safe loading, 5 NaN/Inf, 6 bad input, 7 determinism. Tiny models (registered in test_train) on slices of the
embedded sample, one thread.
"""
import json, os, shutil, signal, subprocess, sys
from pathlib import Path
import numpy as np, pytest, torch
import lect_nb.training.runs as lt
from lect_nb.api import register_model, _MODEL_REGISTRY
from lect_nb.training.data import build_datasets
from lect_nb.training.cli import main
from lect_nb.training.loop import cosine_lr
from lect_nb.training.runs import SeededDataset, TrainConfig, load_checkpoint, run, save_checkpoint
from lect_nb.training.loop import TinyNet
from test_train import register_tiny

register_tiny()
torch.set_num_threads(1)
KW = dict(model="tiny_bn", limit_train=96, limit_val=48, batch_size=32, lr=3e-3, device="cpu", epochs=3)
drop = lambda ms: [{k: v for k, v in r.items() if k not in ("seconds", "train_images_per_s")} for r in ms]

def same_weights(a, b):
    wa, wb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    assert wa.keys() == wb.keys()
    for k in wa: assert torch.equal(wa[k], wb[k]), k

def snapshot(d: Path) -> dict:
    "Every file under `d` with its bytes: proves that nothing was written or changed."
    return {str(p.relative_to(d)): p.read_bytes() if p.is_file() else "dir" for p in sorted(d.rglob("*"))}

# ---------------------------------------------------------------- 1 + 2: exact resume, failed save
def test_failed_save_keeps_previous_checkpoint_and_resume_is_exact_with_workers(tmp_path, monkeypatch):
    "Augmented data, 2 workers: a save that dies half-written in epoch 2 leaves epoch 1's checkpoint; resuming gives the uninterrupted run."
    full = run(TrainConfig(**KW, workers=2, out=str(tmp_path / "full")), progress=False)
    real_save, calls = torch.save, []
    def dying_save(obj, f, *a, **k):   # epoch 1 saves last.pt + best.pt; the next save is cut off
        calls.append(f)
        if len(calls) == 3:
            with open(f, "wb") as fh: fh.write(b"PK\x03\x04 half a checkpoint")
            raise OSError("No space left on device")
        return real_save(obj, f, *a, **k)
    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(OSError, match="No space"): run(TrainConfig(**KW, workers=2, out=str(tmp_path / "part")), progress=False)
    monkeypatch.undo()
    part = tmp_path / "part"
    assert Path(calls[2]).name.startswith(".last.pt.tmp")           # the failing write went to a temporary file
    assert sorted(os.listdir(part)) == sorted(lt.RUN_FILES)          # ... which was removed: no stray temp file
    assert load_checkpoint(part / "last.pt")["epoch"] == 1           # the previous checkpoint is intact
    resumed = run(TrainConfig(out=str(part), resume=True, workers=2), progress=False)
    assert drop(resumed["metrics"]) == drop(full["metrics"])
    same_weights(tmp_path / "full" / "last.pt", part / "last.pt")
    a, b = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(part / "last.pt")
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for k in a["optimizer"]["state"]:
        for n in ("exp_avg", "exp_avg_sq"): assert torch.equal(a["optimizer"]["state"][k][n], b["optimizer"]["state"][k][n])
    assert a["scheduler"] == b["scheduler"] and torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    # the augmentation of an image depends on (seed, epoch, index) only: 0 workers give the same run as 2
    zero = run(TrainConfig(**KW, workers=0, out=str(tmp_path / "zero")), progress=False)
    assert drop(zero["metrics"]) == drop(full["metrics"])

def test_augmentation_is_seeded_per_image():
    tr, _, _ = build_datasets("sample", limit_train=4)   # crop, flip, RandAugment
    sd = SeededDataset(tr, seed=0)
    torch.manual_seed(5); state = torch.get_rng_state(); np_state = np.random.get_state()[1].copy()
    x = sd[(0, 1)][0]
    assert torch.equal(x, sd[(0, 1)][0])
    assert not torch.equal(x, sd[(1, 1)][0]) and not torch.equal(x, SeededDataset(tr, seed=1)[(0, 1)][0])
    assert torch.equal(torch.get_rng_state(), state) and (np.random.get_state()[1] == np_state).all()

# ---------------------------------------------------------------- 3: interrupts
WORKER = """import os, signal, sys
sys.path.insert(0, {tests!r})
import torch; torch.set_num_threads(1)
from lect_nb.training.loop import TinyNet
from lect_nb.api import register_model
from lect_nb.training.cli import main
KILL_AT, SIG = int(os.environ.get("KILL_AT", 0)), int(os.environ.get("SIG", 15))
class SelfSignalling(TinyNet):  # sends itself a real signal during training step KILL_AT (1-based)
    calls = 0
    def forward(self, x):
        if self.training:
            SelfSignalling.calls += 1
            if SelfSignalling.calls == KILL_AT: os.kill(os.getpid(), SIG)
        return super().forward(x)
register_model("tiny_sig")(lambda num_classes=10, img_size=(32, 32), in_chans=1, **kw: SelfSignalling(num_classes, in_chans))
sys.exit(main(sys.argv[1:]))
"""
SIG_ARGS = ["--model", "tiny_sig", "--epochs", "3", "--batch-size", "32", "--limit-train", "96", "--limit-val", "48",
            "--lr", "3e-3", "--device", "cpu"]

def _worker(tmp_path, args, **env):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(Path(__file__).parent)))
    return subprocess.run([sys.executable, str(script)] + args, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **env})

def test_sigterm_saves_resumable_checkpoint_and_resume_matches(tmp_path):
    full = _worker(tmp_path, SIG_ARGS + ["--out", str(tmp_path / "full")])
    assert full.returncode == 0, full.stderr[-3000:]
    out = tmp_path / "part"
    r = _worker(tmp_path, SIG_ARGS + ["--out", str(out)], KILL_AT="5", SIG=str(int(signal.SIGTERM)))  # epoch 2, step 2 of 3
    assert r.returncode == 143, r.stderr[-3000:]
    assert "interrupted by SIGTERM at epoch 2, step 2/3" in r.stderr
    assert f"resume with: lect-train --out {out} --resume" in r.stderr
    ck = load_checkpoint(out / "last.pt")
    assert (ck["epoch"], ck["step"]) == (1, 2) and len(ck["metrics"]) == 1
    assert not [f for f in os.listdir(out) if f.startswith(".")]
    r2 = _worker(tmp_path, ["--out", str(out), "--resume"])
    assert r2.returncode == 0, r2.stderr[-3000:]
    a = [json.loads(l) for l in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert drop(b) == drop(a) and [x["epoch"] for x in b] == [1, 2, 3]
    same_weights(tmp_path / "full" / "last.pt", out / "last.pt")

def test_sigint_exits_130_with_checkpoint(tmp_path):
    out = tmp_path / "run"
    r = _worker(tmp_path, SIG_ARGS + ["--out", str(out)], KILL_AT="2", SIG=str(int(signal.SIGINT)))
    assert r.returncode == 130, r.stderr[-3000:]
    assert "interrupted by SIGINT at epoch 1, step 2/3" in r.stderr and "--resume" in r.stderr
    ck = load_checkpoint(out / "last.pt")
    assert (ck["epoch"], ck["step"], ck["metrics"]) == (0, 2, [])
    assert torch.isfinite(ck["train_sums"]).all() and ck["train_sums"][2] == 64   # two steps of 32 images

# ---------------------------------------------------------------- 4: safe loading
@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs")
    small = dict(KW, epochs=1, limit_train=32, limit_val=16)
    run(TrainConfig(**small, out=str(d / "a")), progress=False)
    run(TrainConfig(**{**small, "model": "tiny_nobn"}, out=str(d / "b")), progress=False)
    return d

def _resume_fails(run_dir, capsys, msg):
    before = snapshot(run_dir)
    code = main(["--out", str(run_dir), "--resume", "--epochs", "2"])
    err = capsys.readouterr().err
    assert code == 2 and msg in err, err
    assert snapshot(run_dir) == before            # nothing written, byte for byte

@pytest.mark.parametrize("damage, msg", [
    ("other_model", "checkpoint {ck} was saved for model 'tiny_nobn', not 'tiny_bn'"),
    ("truncated", "checkpoint {ck} is truncated or not a checkpoint"),
    ("empty", "checkpoint {ck} is empty"),
    ("garbage", "checkpoint {ck} is truncated or not a checkpoint"),
    ("not_a_run", "checkpoint {ck} lacks model, optimizer"),
    ("config_json", "{cfg} is not valid JSON"),
])
def test_bad_checkpoint_gives_clear_error_and_writes_nothing(two_runs, tmp_path, capsys, damage, msg):
    d = tmp_path / "a"; shutil.copytree(two_runs / "a", d)
    ck = d / "last.pt"
    if damage == "other_model": shutil.copy(two_runs / "b" / "last.pt", ck)
    elif damage == "truncated": ck.write_bytes(ck.read_bytes()[: ck.stat().st_size // 2])
    elif damage == "empty": ck.write_bytes(b"")
    elif damage == "garbage": ck.write_bytes(os.urandom(1000))
    elif damage == "not_a_run": save_checkpoint(ck, {"config": {"model": "tiny_bn"}, "weights": torch.ones(2)})
    elif damage == "config_json": (d / "config.json").write_text('{"model": "tiny_bn", ')
    _resume_fails(d, capsys, msg.format(ck=ck, cfg=d / "config.json"))

def test_error_names_the_file(two_runs, tmp_path):
    d = tmp_path / "a"; shutil.copytree(two_runs / "a", d)
    shutil.copy(two_runs / "b" / "last.pt", d / "last.pt")
    with pytest.raises(ValueError) as e: run(TrainConfig(out=str(d), resume=True, epochs=2), progress=False)
    assert str(e.value) == f"checkpoint {d / 'last.pt'} was saved for model 'tiny_nobn', not 'tiny_bn'"
    (d / "last.pt").write_bytes((two_runs / "a" / "last.pt").read_bytes()[:-100])
    with pytest.raises(ValueError, match=f"checkpoint {d / 'last.pt'} is truncated"): load_checkpoint(d / "last.pt")

class Evil:
    "Unpickling this runs `open(marker, 'w')`, which creates the marker file."
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (open, (self.marker, "w"))

def test_malicious_pickle_is_refused(two_runs, tmp_path, capsys):
    marker = tmp_path / "pwned"
    torch.save({"model": Evil(str(marker))}, tmp_path / "evil.pt")
    assert not marker.exists()
    with pytest.raises(ValueError, match="refused to load it"): load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()                   # no pickled code ran
    d = tmp_path / "a"; shutil.copytree(two_runs / "a", d)
    torch.save({"config": {"model": "tiny_bn"}, "model": Evil(str(marker))}, d / "last.pt")
    _resume_fails(d, capsys, "refused to load it")
    assert not marker.exists()
    # the check is real: an unrestricted load would have run the code
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()

# ---------------------------------------------------------------- 5: numerical faults
class NaNNet(TinyNet):
    "Training step `bad_step` (1-based, counted over the run) gets a NaN loss (`where='loss'`) or NaN gradients."
    bad_step, where, calls = 0, "loss", 0
    def __init__(self, *a, **k):
        super().__init__(*a, **k); NaNNet.calls = 0
        self.head.weight.register_hook(lambda g: g * float("nan") if self.training and NaNNet.calls == NaNNet.bad_step
                                       and NaNNet.where == "grad" else g)
    def forward(self, x):
        if self.training: NaNNet.calls += 1
        y = super().forward(x)
        return y * float("nan") if self.training and NaNNet.calls == NaNNet.bad_step and NaNNet.where == "loss" else y

if "tiny_nan" not in _MODEL_REGISTRY:
    register_model("tiny_nan")(lambda num_classes=10, img_size=(32, 32), in_chans=1, **kw: NaNNet(num_classes, in_chans))

@pytest.mark.parametrize("where", ["loss", "grad"])
def test_nonfinite_stops_with_epoch_and_step(tmp_path, capsys, where):
    NaNNet.bad_step, NaNNet.where = 5, where      # epoch 2, step 2 of 3
    out = tmp_path / "r"
    code = main(["--model", "tiny_nan", "--epochs", "3", "--batch-size", "32", "--limit-train", "96", "--limit-val", "16",
                 "--device", "cpu", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "non-finite" in err and "at epoch 2, step 2/3" in err and "--on-nan skip" in err, err
    ck = load_checkpoint(out / "last.pt")
    assert ck["epoch"] == 1 and all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())

@pytest.mark.parametrize("where", ["loss", "grad"])
def test_nonfinite_step_is_skipped_when_configured(tmp_path, capsys, where):
    NaNNet.bad_step, NaNNet.where = 5, where
    res = run(TrainConfig(**{**KW, "model": "tiny_nan", "limit_val": 16}, on_nan="skip", out=str(tmp_path / "r")), progress=False)
    err = capsys.readouterr().err
    assert err.count("skipped step with non-finite") == 1 and "at epoch 2, step 2/3" in err
    assert [r["epoch"] for r in res["metrics"]] == [1, 2, 3]
    assert all(np.isfinite(r[k]) for r in res["metrics"] for k in ("train_loss", "test_loss"))
    w = load_checkpoint(tmp_path / "r" / "last.pt")["model"]
    assert all(torch.isfinite(v).all() for v in w.values() if v.is_floating_point())

# ---------------------------------------------------------------- 6: bad input
def _gray_folder(root: Path, n=4, mode="L"):
    from PIL import Image
    for split in ("train", "val"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(n): Image.fromarray(np.full((12, 12), 40 * i, np.uint8)).convert(mode).save(root / split / c / f"{i}.png")

def _prepare(tmp_path, case):
    if case == "empty_dir": (tmp_path / "data").mkdir()
    if case == "empty_classes":
        for s in ("train", "val"): (tmp_path / "data" / s / "a").mkdir(parents=True)
    if case == "file_as_dir": (tmp_path / "data").write_text("x")
    if case == "out_is_file": (tmp_path / "out").write_text("x")
    if case == "out_holds_run":
        (tmp_path / "out").mkdir(); (tmp_path / "out" / "config.json").write_text("{}")
    if case == "unreadable":
        _gray_folder(tmp_path / "data"); os.chmod(tmp_path / "data", 0)

IF = ["--dataset", "imagefolder", "--data-dir", "{tmp}/data", "--img-size", "16"]
@pytest.mark.parametrize("case, args, msg", [
    ("unknown_model", ["--model", "nope"], "unknown model 'nope'"),
    ("unknown_dataset", ["--dataset", "mnist"], "argument --dataset: invalid choice: 'mnist'"),
    ("zero_epochs", ["--epochs", "0"], "argument --epochs: must be a positive integer, got '0'"),
    ("negative_epochs", ["--epochs", "-3"], "argument --epochs: must be a positive integer, got '-3'"),
    ("zero_batch", ["--batch-size", "0"], "argument --batch-size: must be a positive integer, got '0'"),
    ("negative_batch", ["--batch-size", "-8"], "argument --batch-size: must be a positive integer, got '-8'"),
    ("zero_lr", ["--lr", "0"], "argument --lr: must be a positive number, got '0'"),
    ("negative_lr", ["--lr=-1e-3"], "argument --lr: must be a positive number, got '-1e-3'"),
    ("nan_lr", ["--lr", "nan"], "argument --lr: must be a positive number, got 'nan'"),
    ("negative_workers", ["--workers", "-1"], "argument --workers: must be an integer >= 0, got '-1'"),
    ("zero_img_size", ["--img-size", "0"], "argument --img-size: must be a positive integer, got '0'"),
    ("bad_img_size", ["--img-size", "30"], "cannot take 1x30x30"),
    ("zero_limit", ["--limit-train", "0"], "argument --limit-train: must be a positive integer, got '0'"),
    ("negative_wd", ["--weight-decay", "-0.1"], "argument --weight-decay: must be a number >= 0, got '-0.1'"),
    ("negative_min_lr", ["--min-lr", "-1"], "argument --min-lr: must be a number >= 0, got '-1'"),
    ("min_lr_above_lr", ["--lr", "1e-3", "--min-lr", "1e-2"], "--min-lr (0.01) must not exceed --lr (0.001)"),
    ("negative_clip", ["--clip-grad", "-1"], "argument --clip-grad: must be a number >= 0, got '-1'"),
    ("negative_seed", ["--seed", "-1"], "argument --seed: must be an integer >= 0, got '-1'"),
    ("warmup_ge_epochs", ["--epochs", "2", "--warmup-epochs", "2"], "--warmup-epochs (2) must be < --epochs (2)"),
    ("smoothing", ["--label-smoothing", "1.5"], "argument --label-smoothing: must be a number in [0, 1), got '1.5'"),
    ("bad_device", ["--device", "gpu7"], "invalid device 'gpu7'"),
    ("fp16_on_cpu", ["--device", "cpu", "--amp", "fp16"], "--amp fp16 needs CUDA"),
    ("missing_dir", IF, "data directory not found"),
    ("empty_dir", IF, "imagefolder: expected"),
    ("empty_classes", IF, "imagefolder: the train class folder"),
    ("file_as_dir", ["--dataset", "cifar10", "--data-dir", "{tmp}/data"], "data directory not found"),
    ("unreadable", IF, "is not readable"),
    ("out_is_file", [], "exists and is not a directory"),
    ("out_holds_run", [], "already holds a run (config.json); pass --resume"),
    ("nothing_to_resume", ["--resume"], "nothing to resume"),
])
def test_bad_input_exits_nonzero_names_problem_writes_nothing(tmp_path, capsys, monkeypatch, case, args, msg):
    _prepare(tmp_path, case)
    if case == "unreadable" and os.geteuid() == 0:   # root reads any directory: make the permission check say no
        monkeypatch.setattr(lt.os, "access", lambda path, mode: not str(path).startswith(str(tmp_path / "data")))
    before = snapshot(tmp_path)
    try:   # a value the parser refuses: argparse's exit (status 2, usage, message naming the option)
        code = main(["--model", "tiny_bn", "--limit-train", "8", "--limit-val", "8"]
                    + [a.format(tmp=tmp_path) for a in args] + ["--out", str(tmp_path / "out")])
    except SystemExit as e: code = e.code
    err = capsys.readouterr().err
    assert code == 2 and msg in err and "lect-train: error: " in err, err
    assert err.startswith(("lect-train: error:", "usage: lect-train")), err
    assert snapshot(tmp_path) == before          # nothing created or changed (directories included)

@pytest.mark.parametrize("args", [["--on-nan", "ignore"], ["--amp", "fp32"], ["--epochs", "two"]])
def test_argparse_rejects(tmp_path, capsys, args):
    with pytest.raises(SystemExit) as e: main(args + ["--out", str(tmp_path / "out")])
    assert e.value.code == 2 and args[0] in capsys.readouterr().err and not (tmp_path / "out").exists()

def test_grayscale_imagefolder_is_converted_to_rgb(tmp_path):
    "A grayscale-only (and a palette) ImageFolder feeds a 3-channel model: images are converted to RGB explicitly."
    _gray_folder(tmp_path / "data")
    tr, _, info = build_datasets("imagefolder", tmp_path / "data", img_size=16)
    assert info.in_chans == 3 and tr[0][0].shape == (3, 16, 16)
    res = run(TrainConfig(model="tiny_bn", dataset="imagefolder", data_dir=str(tmp_path / "data"), img_size=16, epochs=1,
                          batch_size=4, device="cpu", out=str(tmp_path / "r")), progress=False)
    assert res["metrics"][0]["epoch"] == 1
    assert load_checkpoint(tmp_path / "r" / "last.pt")["model"]["stem.0.weight"].shape[1] == 3

# ---------------------------------------------------------------- 7: determinism
def test_same_seed_same_metrics_other_seed_differs(tmp_path):
    kw = dict(KW, epochs=2)
    a = run(TrainConfig(**kw, out=str(tmp_path / "a")), progress=False)
    b = run(TrainConfig(**kw, out=str(tmp_path / "b")), progress=False)
    c = run(TrainConfig(**kw, seed=1, out=str(tmp_path / "c")), progress=False)
    assert drop(a["metrics"]) == drop(b["metrics"]) and drop(a["metrics"]) != drop(c["metrics"])
    same_weights(tmp_path / "a" / "last.pt", tmp_path / "b" / "last.pt")

def test_deterministic_flag_sets_the_switches(tmp_path, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    old = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
           torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        assert main(["--model", "tiny_bn", "--epochs", "1", "--limit-train", "16", "--limit-val", "8", "--device", "cpu",
                     "--deterministic", "--out", str(tmp_path / "r")]) == 0
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert json.loads((tmp_path / "r" / "config.json").read_text())["deterministic"] is True
    finally:
        torch.use_deterministic_algorithms(old[0], warn_only=old[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = old[2], old[3]

# ---------------------------------------------------------------- extending a finished run (--resume --epochs N)
class SelfStopping(TinyNet):
    "Asks the running `Interrupts` to stop (what SIGTERM does) during training step `at` (1-based, counted in this process)."
    at, calls = 0, 0
    def forward(self, x):
        if self.training:
            SelfStopping.calls += 1
            if SelfStopping.calls == SelfStopping.at: lt.Interrupts.current.request(signal.SIGTERM)
        return super().forward(x)

if "tiny_selfstop" not in _MODEL_REGISTRY:
    register_model("tiny_selfstop")(lambda num_classes=10, img_size=(32, 32), in_chans=1, **kw: SelfStopping(num_classes, in_chans))

@pytest.mark.parametrize("first, total, warmup", [(1, 2, 0), (2, 3, 1), (1, 3, 0)])
def test_extended_run_equals_straight_run(tmp_path, first, total, warmup):
    "A run of `first` epochs resumed with epochs=`total` is the run of `total` epochs: metrics (lr included) and weights."
    kw = dict(KW, warmup_epochs=warmup, min_lr=1e-5)
    straight = run(TrainConfig(**{**kw, "epochs": total}, out=str(tmp_path / "a")), progress=False)
    run(TrainConfig(**{**kw, "epochs": first}, out=str(tmp_path / "b")), progress=False)
    ext = run(TrainConfig(out=str(tmp_path / "b"), resume=True, epochs=total), progress=False)
    assert drop(ext["metrics"]) == drop(straight["metrics"])
    lrs = [r["lr"] for r in straight["metrics"]]
    assert [r["lr"] for r in ext["metrics"]] == lrs
    assert lrs == pytest.approx([cosine_lr(e, 3e-3, total, warmup, 1e-5) for e in range(total)], rel=1e-12)
    assert [json.loads(l)["lr"] for l in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()] == lrs
    same_weights(tmp_path / "a" / "last.pt", tmp_path / "b" / "last.pt")
    assert json.loads((tmp_path / "b" / "config.json").read_text())["epochs"] == total

def test_extension_interrupted_inside_the_added_epoch(tmp_path):
    "1 epoch, extended to 2 and interrupted at step 2 of epoch 2, resumed: the straight 2-epoch run."
    kw = dict(KW, model="tiny_selfstop")
    SelfStopping.at = 0
    straight = run(TrainConfig(**{**kw, "epochs": 2}, out=str(tmp_path / "a")), progress=False)
    run(TrainConfig(**{**kw, "epochs": 1}, out=str(tmp_path / "b")), progress=False)
    SelfStopping.at, SelfStopping.calls = 2, 0
    with pytest.raises(lt.TrainingInterrupted):
        run(TrainConfig(out=str(tmp_path / "b"), resume=True, epochs=2), progress=False)
    ck = load_checkpoint(tmp_path / "b" / "last.pt")
    assert (ck["epoch"], ck["step"], ck["config"]["epochs"]) == (1, 2, 2)
    SelfStopping.at = 0
    ext = run(TrainConfig(out=str(tmp_path / "b"), resume=True), progress=False)
    assert drop(ext["metrics"]) == drop(straight["metrics"])
    same_weights(tmp_path / "a" / "last.pt", tmp_path / "b" / "last.pt")

def test_shorter_epochs_refused_and_nothing_changes(tmp_path, capsys):
    out = tmp_path / "r"
    run(TrainConfig(**{**KW, "epochs": 2}, out=str(out)), progress=False)
    before = snapshot(out)
    assert main(["--out", str(out), "--resume", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "--epochs 1 is fewer than the run has trained (2 epochs)" in err, err
    assert snapshot(out) == before

def test_new_length_refused_for_a_checkpoint_inside_an_epoch(tmp_path, capsys):
    out = tmp_path / "r"
    SelfStopping.at, SelfStopping.calls = 5, 0               # epoch 2, step 2 of 3
    with pytest.raises(lt.TrainingInterrupted): run(TrainConfig(**{**KW, "model": "tiny_selfstop"}, out=str(out)), progress=False)
    SelfStopping.at = 0
    before = snapshot(out)
    assert main(["--out", str(out), "--resume", "--epochs", "4"]) == 2
    err = capsys.readouterr().err
    assert "last.pt was written inside epoch 2 of 3" in err and "--epochs 3" in err and "extend to 4" in err, err
    assert snapshot(out) == before
