"""A/B of the speed layer's parts in pairs of fresh processes; writes nbs/results/fast_ab.json.

    python scripts/fast_ab.py [--pairs 5]

For `lect` at 224x224 (batch 16) and `lect_cifar` at 32x32 (batch 64), 2 threads: the full speed layer
against the plain model and against the speed layer with one part left out (`lect-bench --ab`).
Run it on a quiet machine: each pair's two processes run back to back, so slow drifts cancel, but other
work on the same cores does not.
"""
import argparse, json, platform, time
from pathlib import Path
import torch
from lect_nb.studies.bench import ab_processes

CASES = [("lect", 224, 16, "plain"), ("lect", 224, 16, "nokernels"), ("lect", 224, 16, "norebuild"),
         ("lect_cifar", 32, 64, "plain"), ("lect_cifar", 32, 64, "nokernels"),
         ("lect_cifar", 32, 64, "norebuild")]

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "nbs" / "results" / "fast_ab.json"))
    a = p.parse_args()
    rows = []
    for name, size, batch, opt in CASES:
        t = time.time()
        r = ab_processes(f"{name}@{opt}", name, size, batch, pairs=a.pairs, steps=a.steps, threads=2)
        r["seconds"] = round(time.time() - t)
        rows.append(r); print(json.dumps(r), flush=True)
        _write(a, rows)

def _write(a, rows):
    "Write what has been measured so far (a stopped run keeps its finished rows)."
    meta = dict(command="python scripts/fast_ab.py --pairs %d --steps %d" % (a.pairs, a.steps),
                date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), torch=torch.__version__,
                cpu=platform.processor() or platform.machine())
    Path(a.out).write_text(json.dumps(dict(meta=meta, rows=rows), indent=1) + "\n")

if __name__ == "__main__":
    main()
