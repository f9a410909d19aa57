#!/usr/bin/env python
"""Table 2 and Table 3's models trained on real Fashion-MNIST at native 32x32, one recipe for all.

Every run is a plain `lect-train` command on one stratified subset of Fashion-MNIST's training set
(the same images for every model) and its full 10,000-image test set. Each finished run writes one
JSON row to `--results` (model, dataset, images, epochs, seed, accuracy per epoch, wall time,
images/s, the machine's CPU and the exact command); a run already written is skipped, and a run
interrupted part-way is resumed exactly (`lect-train --resume`), so the study can span sessions:

    python scripts/fashion_study.py                  # the whole plan, in order
    python scripts/fashion_study.py --runs vit:0     # one run
    python scripts/fashion_study.py --dry-run        # print the commands only

The data directory is Debian's `dataset-fashion-mnist` (`apt-get install dataset-fashion-mnist`).
"""
import argparse, gzip, json, os, shlex, struct, subprocess, sys, time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from lect_nb.reproduce import machine

# model:seed, cheapest and most informative first; LeCT and ResNet get two seeds
PLAN = ["lect_cifar:0", "resnet:0", "vit:0", "ceit:0", "convnext:0", "lect_noskip_cifar:0",
        "lect_v2_cifar:0", "lect_v3_cifar:0", "lect_cifar:1", "resnet:1", "alternet:0"]
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f: raw = f.read()
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def write_idx(path: Path, a: np.ndarray):
    a = np.ascontiguousarray(a, dtype=np.uint8)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(struct.pack(">HBB", 0, 8, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes())


def stratified_indices(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    "`per_class` indices of every class, drawn with `seed`, in the dataset's own order."
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if per_class > len(idx):
            raise ValueError(f"class {c} has {len(idx)} training images, fewer than {per_class}")
        out.append(rng.choice(idx, per_class, replace=False))
    return np.sort(np.concatenate(out))


def make_subset(src: Path, dst: Path, per_class: int, seed: int) -> Path:
    "Fashion-MNIST's layout in `dst`: a stratified training subset and the full test set."
    for f in (*FILES["train"], *FILES["test"]):
        if not (src / f).exists():
            raise FileNotFoundError(f"{src / f} not found (apt-get install dataset-fashion-mnist)")
    marker = dst / "subset.json"
    meta = dict(source=str(src), per_class=per_class, seed=seed)
    if marker.exists() and json.loads(marker.read_text()) == meta: return dst
    dst.mkdir(parents=True, exist_ok=True)
    x, y = read_idx(src / FILES["train"][0]), read_idx(src / FILES["train"][1])
    keep = stratified_indices(y, per_class, seed)
    write_idx(dst / FILES["train"][0], x[keep]); write_idx(dst / FILES["train"][1], y[keep])
    for f in FILES["test"]: (dst / f).write_bytes((src / f).read_bytes())
    marker.write_text(json.dumps(meta))
    return dst


def train_command(model, seed, data, out, epochs, batch_size):
    return ["lect-train", "--model", model, "--dataset", "fashion_mnist", "--data-dir", str(data),
            "--epochs", str(epochs), "--batch-size", str(batch_size), "--seed", str(seed),
            "--out", str(out)]


def row_of(run_dir: Path, model, seed, per_class, subset_seed, threads, command, study_command):
    cfg = json.loads((run_dir / "config.json").read_text())
    m = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines() if l.strip()]
    if len(m) != cfg["epochs"]:
        raise RuntimeError(f"{run_dir}: {len(m)} of {cfg['epochs']} epochs recorded")
    import torch
    return dict(
        model=model, dataset="fashion_mnist", seed=seed, epochs=cfg["epochs"],
        train_images=10 * per_class, test_images=10_000,
        subset=f"{per_class} training images per class, drawn with seed {subset_seed}",
        batch_size=cfg["batch_size"], lr=cfg["lr"], img_size=32,
        test_acc=m[-1]["test_acc"], best_acc=max(r["test_acc"] for r in m),
        curve=[dict(epoch=r["epoch"], test_acc=r["test_acc"], train_loss=round(r["train_loss"], 5))
               for r in m],
        wall_s=round(sum(r["seconds"] for r in m), 1),
        train_images_per_s=round(sum(r["train_images_per_s"] for r in m) / len(m), 1),
        cpu=machine(), threads=threads, torch=torch.__version__,
        date=datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        command=f"OMP_NUM_THREADS={threads} " + shlex.join(command),
        study_command=study_command)


def main(argv=None) -> int:
    p = argparse.ArgumentParser("fashion_study", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist",
                   help="Fashion-MNIST's four .gz IDX files (default: %(default)s)")
    p.add_argument("--per-class", type=int, default=1000,
                   help="training images per class in the subset (default: %(default)s)")
    p.add_argument("--subset-seed", type=int, default=0, help="seed of the subset (default: 0)")
    p.add_argument("--epochs", type=int, default=8, help="epochs of every run (default: 8)")
    p.add_argument("--batch-size", type=int, default=64, help="batch of every run (default: 64)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default: 1)")
    p.add_argument("--runs", nargs="+", default=PLAN, metavar="MODEL:SEED",
                   help="runs in order (default: the whole plan)")
    p.add_argument("--results", default="nbs/results/fashion_study",
                   help="directory of the JSON rows (default: %(default)s)")
    p.add_argument("--work-dir", default="runs/fashion_study",
                   help="subset and run directories, untracked (default: %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    a = p.parse_args(argv)
    plan = []
    for spec in a.runs:
        model, _, seed = spec.partition(":")
        if not seed.isdigit(): p.error(f"--runs takes MODEL:SEED, got {spec!r}")
        plan.append((model, int(seed)))
    work, results = Path(a.work_dir), Path(a.results)
    data = work / f"data-{a.per_class}pc-s{a.subset_seed}"
    study_cmd = "python scripts/fashion_study.py " + shlex.join(
        ["--per-class", str(a.per_class), "--subset-seed", str(a.subset_seed), "--epochs",
         str(a.epochs), "--batch-size", str(a.batch_size), "--threads", str(a.threads)])
    if not a.dry_run:
        make_subset(Path(a.data_dir), data, a.per_class, a.subset_seed)
        results.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))
    for model, seed in plan:
        row_file = results / f"{model}-s{seed}.json"
        if row_file.exists():
            print(f"{row_file}: already recorded, skipped"); continue
        run_dir = work / f"{model}-s{seed}"
        cmd = train_command(model, seed, data, run_dir, a.epochs, a.batch_size)
        go = cmd + ["--resume"] if (run_dir / "last.pt").exists() else cmd
        print("$ OMP_NUM_THREADS=%d %s" % (a.threads, shlex.join(go)), flush=True)
        if a.dry_run: continue
        t = time.monotonic()
        rc = subprocess.call(go, env=env)
        if rc != 0:
            print(f"fashion_study: {model} seed {seed} failed (exit {rc}); later runs go on",
                  file=sys.stderr)
            continue
        row = row_of(run_dir, model, seed, a.per_class, a.subset_seed, a.threads, cmd,
                     f"{study_cmd} --runs {model}:{seed}")
        tmp = row_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(row, indent=1) + "\n"); os.replace(tmp, row_file)
        print(f"{row_file}: test {100 * row['test_acc']:.2f}% in {time.monotonic() - t:.0f} s",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
