"""The GPU recipe, tested on the CPU: batched transforms (determinism, equality with the per-image path, in
distribution for the random parts), lect-train with --gpu-augment and images/s per epoch, the sweep's
bookkeeping, Table 2's models at 32x32, and scripts/gpu_run.sh --dry-run."""
import json, os, subprocess
from pathlib import Path
import numpy as np
import pytest
import torch
from PIL import Image
from lect_nb.training.cli import main as train_main
from lect_nb.training.data import (BatchTransform, DeviceBatches, build_datasets, build_transforms, dataset_info,
                          held_images, load_sample, RANDAUG_OPS)
from lect_nb.studies.gpu import (SweepPoint, TABLE2_MODELS, run_sweep, sweep_plan, write_fashion_idx)
from lect_nb.api import create_model
from lect_nb.training.runs import DEVICE_DEFAULTS, EpochSampler, TrainConfig, device_defaults
from torch.utils.data import DistributedSampler

ROOT = Path(__file__).parents[1]
INFO = dataset_info("fashion_mnist")

def _x(n=32):
    return torch.from_numpy(load_sample()["x_train"][:n])[:, None]

def test_eval_batch_equals_per_image_transform():
    x = _x(16)
    batched = BatchTransform(INFO, 96, train=False)(x, range(16))
    per_image = torch.stack([build_transforms(INFO, 96, train=False)(Image.fromarray(im[0].numpy())) for im in x])
    assert batched.shape == (16, 1, 96, 96)
    assert (batched - per_image).abs().max().item() < 1e-5

def test_crop_and_flip_are_the_per_image_ops():
    "With RandAugment's ops forced to Identity, each image is its padded copy, cropped and flipped as drawn."
    x, bt = _x(64), BatchTransform(INFO, None, seed=5)
    prm = bt.params(0, np.arange(64))
    prm["ops"][:] = 0                                       # Identity
    got = bt._crop_flip_randaugment(torch.nn.functional.pad(x, (2, 2, 2, 2)), prm)
    for i in range(64):
        im = Image.fromarray(x[i, 0].numpy())
        im = build_transforms(INFO, None, train=False, augment=False).transforms[0](im)   # base pad 2
        im = Image.fromarray(np.pad(np.asarray(im), 4))                                   # crop padding 4
        t, l = int(prm["top"][i]), int(prm["left"][i])
        ref = np.asarray(im)[t:t + 32, l:l + 32]
        if prm["flip"][i]: ref = ref[:, ::-1]
        assert np.array_equal(got[i, 0].numpy(), ref), i
    assert 0 < prm["flip"].sum() < 64 and len(set(prm["top"].tolist())) > 3

def test_deterministic_and_independent_of_batch_composition():
    x, bt = _x(24), BatchTransform(INFO, 48, seed=1)
    a = bt(x, np.arange(24), epoch=3)
    assert torch.equal(a, bt(x, np.arange(24), epoch=3))
    assert torch.equal(a[5:9], bt(x[5:9], np.arange(5, 9), epoch=3))     # a different batch, same images
    assert not torch.equal(a, BatchTransform(INFO, 48, seed=2)(x, np.arange(24), epoch=3))

def test_random_parts_match_the_per_image_path_in_distribution():
    "Per-image mean brightness after augmentation: two-sample KS test, batched path vs torchvision's."
    x = _x(200)
    rng_imgs = [Image.fromarray(im[0].numpy()) for im in x]
    per = build_transforms(INFO, None, train=True)
    torch.manual_seed(0)
    a = np.array([per(im).mean().item() for _ in range(5) for im in rng_imgs])
    b = np.concatenate([BatchTransform(INFO, None, seed=0)(x, np.arange(200), epoch=e).mean((1, 2, 3)).numpy()
                        for e in range(5)])
    grid = np.sort(np.concatenate([a, b]))
    ks = np.abs(np.searchsorted(np.sort(a), grid, "right") / len(a)
                - np.searchsorted(np.sort(b), grid, "right") / len(b)).max()
    n = len(a) * len(b) / (len(a) + len(b))
    assert ks < 1.95 / np.sqrt(n), ks          # alpha = 0.001
    # and the identity is not what both do: augmentation moves the statistic
    plain = np.array([build_transforms(INFO, None, train=False)(im).mean().item() for im in rng_imgs])
    assert np.abs(np.sort(np.tile(plain, 5)) - np.sort(a)).max() > 0.05

def test_op_frequencies_uniform():
    prm = BatchTransform(INFO).params(0, np.arange(30_000))
    counts = np.bincount(prm["ops"].ravel(), minlength=len(RANDAUG_OPS))
    p = 1 / len(RANDAUG_OPS); n = counts.sum()
    assert np.all(np.abs(counts - n * p) <= 5 * np.sqrt(n * p * (1 - p))), counts

def test_held_images_and_device_batches_follow_subsets_and_sampler():
    tr, _, _ = build_datasets("sample", limit_train=40)
    x, y = held_images(tr)
    assert x.shape == (40, 1, 28, 28) and x.dtype == torch.uint8 and torch.equal(y, torch.as_tensor(tr.dataset.targets[:40]))
    sampler = EpochSampler(DistributedSampler(range(40), num_replicas=1, rank=0, shuffle=True, seed=0))
    sampler.set_epoch(2)
    batches = list(DeviceBatches(x, y, sampler, 16, BatchTransform(INFO, None, seed=0)))
    assert [len(b[1]) for b in batches] == [16, 16, 8]
    order = [i for _, i in sampler]
    assert torch.equal(torch.cat([b[1] for b in batches]), y[order])
    assert held_images(torch.utils.data.TensorDataset(torch.zeros(2))) is None

def test_device_defaults_and_cli_switches():
    assert DEVICE_DEFAULTS["cpu"] == dict(amp="none", channels_last=False, compile=False)
    c = device_defaults(TrainConfig(), torch.device("cuda"))
    assert (c.amp, c.gpu_augment) == (DEVICE_DEFAULTS["cuda"]["amp"], "on")
    c = device_defaults(TrainConfig(amp="none", channels_last=True, compile=False), torch.device("cuda"))
    assert (c.amp, c.channels_last, c.compile) == ("none", True, False)

def test_lect_train_gpu_augment_on_cpu_writes_images_per_s(tmp_path):
    out = tmp_path / "run"
    args = ["--model", "lect_cifar", "--epochs", "1", "--batch-size", "16", "--limit-train", "32", "--limit-val", "16",
            "--device", "cpu", "--gpu-augment", "on", "--img-size", "48", "--out", str(out)]
    assert train_main(args) == 0
    rec = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    cfg = json.loads((out / "config.json").read_text())
    assert rec["train_images_per_s"] > 0 and cfg["gpu_augment"] == "on" and cfg["amp"] == "none"

def test_gpu_augment_rejects_file_datasets(tmp_path, capsys):
    d = tmp_path / "imgs"
    for split in ("train", "val"):
        for c in ("a", "b"):
            (d / split / c).mkdir(parents=True)
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(d / split / c / "0.png")
    code = train_main(["--model", "lect_cifar", "--dataset", "imagefolder", "--data-dir", str(d), "--img-size", "32",
                       "--gpu-augment", "on", "--device", "cpu", "--out", str(tmp_path / "r")])
    assert code == 2 and "--gpu-augment off" in capsys.readouterr().err and not (tmp_path / "r").exists()

def test_sweep_records_errors_and_budget():
    fake = lambda step, n, device: [step() or 0.5 for _ in range(n)]
    rows = run_sweep([SweepPoint("lect_cifar", 30, 2), SweepPoint("resnet", 32, 2)], "cpu", steps=1, warmup=1,
                     timer=fake)
    assert rows[0]["status"].startswith("error:") and rows[1]["status"] == "ok"
    assert rows[1]["train_images_per_s"] == 4.0 and rows[1]["infer_step_s"] == 0.5
    with pytest.raises(ValueError, match="unknown compile mode"): sweep_plan(compile_modes=("fast",))

@pytest.mark.parametrize("name", TABLE2_MODELS)
def test_table2_models_build_at_32_with_one_channel(name):
    m = create_model(name, num_classes=10, img_size=32, in_chans=1).eval()
    with torch.no_grad(): assert m(torch.zeros(2, 1, 32, 32)).shape == (2, 10)

def test_gpu_run_dry_run(tmp_path):
    fm = write_fashion_idx(tmp_path / "fm", 64, 32)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(["bash", str(ROOT / "scripts/gpu_run.sh"), "--dry-run", "--out", str(out), "--fashion-dir", str(fm)],
                       capture_output=True, text=True, timeout=600, env=env)
    log = (out / "log.txt").read_text()
    assert r.returncode == 0 and log.count("rc=0") == 4, log[-3000:]
    sweep = json.loads((out / "sweep.json").read_text())
    assert {row["status"] for row in sweep["rows"]} == {"ok"} and (out / "sweep_lect_cifar_32.png").is_file()
    rec = json.loads((out / "train224" / "metrics.jsonl").read_text())
    assert rec["train_images_per_s"] > 0
    table = json.loads((out / "fashion_table2.json").read_text())
    assert [t["model"] for t in table] == ["resnet", "lect_v3"] and all(t["status"] == "ok" for t in table)

def test_device_draws_are_the_numpy_draws():
    "The codes drawn on the device are the NumPy reference's crop, flip, ops and signs, packed."
    bt, idx = BatchTransform(INFO, None, seed=9), np.arange(1000)
    prm, codes = bt.params(4, idx), bt.codes(4, torch.from_numpy(idx)).numpy()
    np.testing.assert_array_equal(codes[:, 0], (prm["top"] * 9 + prm["left"]) * 2 + ~prm["flip"])
    np.testing.assert_array_equal(codes[:, 1:], 2 * prm["ops"] + ~prm["negative"])

def test_training_batches_have_one_shape_and_few_aten_calls():
    from lect_nb.training.data import OpCounter
    x = _x(150)
    db = DeviceBatches(x, torch.zeros(150, dtype=torch.int64), range(150), 64, BatchTransform(INFO, 224),
                       drop_last=True)
    it = iter(db); next(it)
    with OpCounter() as c: x1, _ = next(it)
    assert len(db) == 2 and x1.shape == (64, 1, 224, 224)
    assert c.total <= 100 and c.host_syncs == 0, (c.total, dict(c.syncs))
