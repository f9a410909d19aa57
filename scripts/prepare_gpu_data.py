"""Copy Fashion-MNIST's four .gz IDX files into data/fashion-mnist/ (ignored by git), where scripts/gpu_run.sh
finds them on a GPU machine without network: carry `data/fashion-mnist` with the working tree (about 30 MB).

    python3 scripts/prepare_gpu_data.py [--src DIR]

--src defaults to Debian's package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist;
`apt-get install dataset-fashion-mnist`). Standard library only.
"""
import argparse, gzip, shutil, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
         "t10k-labels-idx1-ubyte.gz")
COUNTS = {"train": 60_000, "t10k": 10_000}

def items(path: Path) -> int:
    "The item count in an IDX file's header (bytes 4-8, big-endian), read through gzip."
    with gzip.open(path, "rb") as f: head = f.read(8)
    return int.from_bytes(head[4:8], "big")

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", default="/usr/share/datasets/fashion-mnist", help="folder holding the four .gz files")
    p.add_argument("--dest", default=str(ROOT / "data" / "fashion-mnist"), help="where they go")
    a = p.parse_args(argv)
    src, dest = Path(a.src), Path(a.dest)
    absent = [f for f in FILES if not (src / f).is_file()]
    if absent:
        print(f"prepare_gpu_data.py: {src} lacks {', '.join(absent)}; install Debian's dataset-fashion-mnist "
              "or give --src", file=sys.stderr)
        return 2
    dest.mkdir(parents=True, exist_ok=True)
    for f in FILES:
        n, want = items(src / f), COUNTS[f.split("-")[0]]
        if n != want:
            print(f"prepare_gpu_data.py: {src / f} holds {n} items, not {want}", file=sys.stderr); return 2
        shutil.copyfile(src / f, dest / f)
    size = sum((dest / f).stat().st_size for f in FILES)
    print(f"{len(FILES)} files, {size / 2**20:.1f} MiB in {dest}; carry data/fashion-mnist to the GPU machine")
    return 0

if __name__ == "__main__": sys.exit(main())
