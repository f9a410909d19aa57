"""Multi-process training on CPU: 2 gloo processes under torchrun give the same metrics as 1 process.

Same global batch (8): torchrun gives each of the 2 processes 4 images of every global batch (the
DistributedSampler's order is the 1-process order split by parity), DDP averages their gradients, which is
the gradient of the mean loss over the 8. That equality needs a model whose output for one image does not
depend on the other images in its batch: BatchNorm in training mode normalises with per-process batch
statistics (4 images, not 8), so the test model has no BatchNorm (`tiny_nobn`: conv, GELU, LayerNorm, no
dropout) and augmentation is off. What remains is float rounding (sums in a different order).
"""
import json, os, subprocess, sys
from pathlib import Path
import pytest, torch
from lect_nb.training.runs import load_checkpoint

WORKER = """import sys
sys.path.insert(0, {tests!r})
from test_train import register_tiny
register_tiny()
from lect_nb.training.cli import main
sys.exit(main(sys.argv[1:]))
"""

def _run(tmp_path, nproc, out):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(Path(__file__).parent)))
    args = ["--model", "tiny_nobn", "--epochs", "2", "--batch-size", "8", "--limit-train", "64", "--limit-val", "41",
            "--no-augment", "--lr", "3e-3", "--device", "cpu", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if nproc == 1: cmd = [sys.executable, str(script)]
    else: cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", str(script)]
    r = subprocess.run(cmd + args, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return r, [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]

def test_two_gloo_processes_match_one(tmp_path):
    _, one = _run(tmp_path, 1, tmp_path / "one")
    r2, two = _run(tmp_path, 2, tmp_path / "two")
    assert r2.stdout.count("final test accuracy") == 1          # only rank 0 reports
    assert "x2 processes" in r2.stdout
    assert len(one) == len(two) == 2
    for a, b in zip(one, two):
        assert a["epoch"] == b["epoch"] and a["lr"] == b["lr"]
        for k in ("train_loss", "train_acc", "test_loss", "test_acc"):
            assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-6), (k, a[k], b[k])
    # the 41 test images are counted exactly once over the two shards (21 + 20): accuracy is k/41
    assert any(abs(two[-1]["test_acc"] * 41 - k) < 1e-6 for k in range(42))
    w1, w2 = load_checkpoint(tmp_path / "one" / "last.pt")["model"], load_checkpoint(tmp_path / "two" / "last.pt")["model"]
    for k in w1: torch.testing.assert_close(w2[k], w1[k], rtol=1e-4, atol=1e-5)
    assert sorted(os.listdir(tmp_path / "two")) == sorted(os.listdir(tmp_path / "one"))  # no stray temp files
