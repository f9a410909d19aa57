"""Write lect_nb/assets/fashion_mnist_sample.npz: a small, stratified, real subset of Fashion-MNIST.

Source: the four IDX files of Debian's `dataset-fashion-mnist` package
(`apt-get install dataset-fashion-mnist`, files in /usr/share/datasets/fashion-mnist), or any directory
holding the same four .gz files (torchvision's download). Fashion-MNIST is (c) Zalando SE, MIT licence.

    python scripts/make_fashion_sample.py [--src DIR] [--train-per-class 500] [--test-per-class 100]

Draws `train-per-class` training and `test-per-class` test images of every class with a fixed seed,
shuffles each split (so any prefix is roughly balanced) and stores uint8 arrays x_train (N, 28, 28),
y_train (N,), x_test, y_test in one compressed .npz. Same inputs and seed -> same file contents.
"""
import argparse, hashlib
from pathlib import Path
import numpy as np
from lect_nb.training.data import load_fashion_dir, SAMPLE_FILE

def stratified(x, y, per_class, rng):
    "Indices of `per_class` random examples of every class, in a random order."
    idx = np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in np.unique(y)])
    return idx[rng.permutation(len(idx))]

def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--src", default="/usr/share/datasets/fashion-mnist", help="directory with the four .gz files")
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "lect_nb" / "assets" / SAMPLE_FILE))
    p.add_argument("--train-per-class", type=int, default=500)
    p.add_argument("--test-per-class", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    rng = np.random.default_rng(a.seed)
    arrays = {}
    for split, n in (("train", a.train_per_class), ("test", a.test_per_class)):
        x, y = load_fashion_dir(a.src, split)
        i = stratified(x, y, n, rng)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x[i], y[i].astype(np.uint8)
    out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    digest = hashlib.sha256(b"".join(v.tobytes() for v in arrays.values())).hexdigest()[:16]
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): "
          + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()) + f"; content sha256 {digest}")

if __name__ == "__main__":
    main()
