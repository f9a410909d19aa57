"""The steps of scripts/gpu_run.sh, one subcommand each; every row goes to OUT/rows.jsonl as soon as it exists.

    python3 scripts/gpu_steps.py --out OUT --work WORK [--dry-run] STEP [ARGS]

Steps: preflight (what is missing, in seconds), check (fused vs paper-literal attention and the training paths,
relative tolerance), bench (lect at 224: fp32 / TF32 / bf16 x contiguous / channels_last, eager: model-only and
full lect-train images/s, peak memory), compiled POINT (one compiled point, in its own process), resume (SIGTERM
after 20 s, --resume, compared with an uninterrupted run), epoch (one epoch of Fashion-MNIST at 224, bf16),
profile (one training step under torch.profiler), summary (summary.json from the rows).
--dry-run: the same steps on the CPU at tiny sizes (the test suite runs it); compiled points use aot_eager.
"""
from __future__ import annotations
import argparse, importlib, json, os, signal, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "fashion-mnist"
FASHION = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
           "t10k-labels-idx1-ubyte.gz")
MIN_TORCH = (2, 11)

def emit(a, step: str, **row):
    "Append one row to OUT/rows.jsonl (flushed at once: a step killed later keeps it) and print it."
    row = {"step": step, **row}
    with open(Path(a.out) / "rows.jsonl", "a") as f: f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)
    return row

# ------------------------------------------------------------------ preflight
def _version(text: str) -> tuple:
    return tuple(int(p) for p in text.split("+")[0].split(".")[:2] if p.isdigit())

def missing(dry: bool) -> list[str]:
    "What this machine lacks for the run, one line each (empty: ready)."
    out = []
    if sys.version_info < (3, 10): out.append(f"python >= 3.10 (this is {sys.version.split()[0]})")
    mods = {}
    for name in ("numpy", "torch", "torchvision"):
        try: mods[name] = importlib.import_module(name)
        except Exception as e: out.append(f"python package {name} ({type(e).__name__}: {e})")
    torch = mods.get("torch")
    if torch is not None and not dry:
        if _version(torch.__version__) < MIN_TORCH:
            out.append(f"PyTorch >= {'.'.join(map(str, MIN_TORCH))} (this is {torch.__version__})")
        if not torch.cuda.is_available(): out.append("a CUDA device (torch.cuda.is_available() is False)")
    if not dry:
        absent = [f for f in FASHION if not (DATA / f).is_file()]
        if absent: out.append(f"Fashion-MNIST in {DATA} ({', '.join(absent)}): run "
                              "python3 scripts/prepare_gpu_data.py and carry data/fashion-mnist")
    if torch is not None and "torchvision" in mods:
        try: importlib.import_module("lect_nb.training.runs")
        except Exception as e: out.append(f"lect_nb importable from {ROOT} ({type(e).__name__}: {e})")
    return out

def preflight(a) -> int:
    lack = missing(a.dry_run)
    for line in lack: print(f"gpu_run.sh: missing: {line}", file=sys.stderr)
    if lack: return 2
    import numpy, torch, torchvision
    cuda = torch.cuda.is_available() and not a.dry_run
    emit(a, "environment", python=sys.version.split()[0], torch=torch.__version__,
         torchvision=torchvision.__version__, numpy=numpy.__version__, cuda=torch.version.cuda,
         device=torch.cuda.get_device_name(0) if cuda else "cpu", dry_run=a.dry_run,
         date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return 0

# ------------------------------------------------------------------ shared
def setup(a):
    "(device, Fashion-MNIST directory, sizes) of this run: the GPU and the real data, or the CPU and a tiny copy."
    if a.dry_run:
        from lect_nb.studies.gpu import write_fashion_idx
        data = Path(a.work) / "fashion-mnist-tiny"
        if not (data / FASHION[0]).is_file(): write_fashion_idx(data, 128, 64)
        return "cpu", data, dict(model="lect_cifar", size=32, batches=(2,), steps=1, warmup=1, train_steps=1,
                                 grid=(("fp32", False), ("bf16", True)), backend="eager")
    grid = tuple((p, cl) for p in ("fp32", "tf32", "bf16") for cl in (False, True))
    return "cuda", DATA, dict(model="lect", size=224, batches=(64, 128), steps=10, warmup=3, train_steps=16,
                              grid=grid, backend="inductor")

def lect_train(args: list[str]) -> list[str]:
    return [sys.executable, "-c", "import sys; from lect_nb.training.cli import main; sys.exit(main())", *args]

def train_speed(a, dev, data, sz, *, batch, amp, cl, tf32, compile_mode=None) -> dict:
    "Images/s of `lect-train`'s training phase with augmentation on the device (the second epoch: warm)."
    from lect_nb.training.runs import TrainConfig, run
    tag = f"{amp}-{'tf32' if tf32 else 'ieee'}-{'cl' if cl else 'nchw'}-{batch}-{compile_mode or 'eager'}"
    cfg = TrainConfig(model=sz["model"], dataset="fashion_mnist", data_dir=str(data), img_size=sz["size"],
                      epochs=2, batch_size=batch, limit_train=batch * sz["train_steps"], limit_val=batch,
                      device=dev, amp=amp, channels_last=cl, tf32=tf32, gpu_augment="on",
                      compile=compile_mode is not None, compile_mode=compile_mode or "default",
                      compile_backend=sz["backend"], out=str(Path(a.work) / "train" / tag))
    res = run(cfg, progress=False)
    return dict(lect_train_images_per_s=res["metrics"][-1]["train_images_per_s"],
                lect_train_first_epoch_images_per_s=res["metrics"][0]["train_images_per_s"])

def model_speed(dev, sz, *, batch, precision, cl, compile_mode="none", backend="inductor", steps, warmup) -> dict:
    "Model-only training images/s (random input, fused AdamW), and peak memory in MiB on CUDA."
    import torch, torch.nn.functional as F
    from lect_nb.api import create_model
    from lect_nb.training.measure import step_seconds
    from lect_nb.training.loop import make_optimizer
    torch.manual_seed(0)
    m = create_model(sz["model"], num_classes=10, img_size=sz["size"], in_chans=1).to(dev)
    x = torch.randn(batch, 1, sz["size"], sz["size"], device=dev); y = torch.randint(0, 10, (batch,), device=dev)
    if cl: m, x = m.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    opt = make_optimizer(m, 1e-4)
    fn = m if compile_mode == "none" else torch.compile(
        m, backend=backend, **({} if compile_mode == "default" else {"mode": compile_mode}))
    dt = torch.bfloat16 if precision == "bf16" else None
    def step():
        if compile_mode == "reduce-overhead": torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(torch.device(dev).type, dtype=dt, enabled=dt is not None):
            loss = F.cross_entropy(fn(x).float(), y)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    t = time.perf_counter()
    for _ in range(max(1, warmup)): step()
    first = time.perf_counter() - t
    cuda = dev.startswith("cuda")
    if cuda: torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    times = sorted(step_seconds(step, steps, dev))
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    return dict(model_images_per_s=batch / times[len(times) // 2], warmup_s=round(first, 2), peak_mib=peak)

def point(a, dev, data, sz, *, batch, precision, cl, compile_mode="none") -> dict:
    "One point: model-only, then lect-train (each recorded, an error as an error)."
    from lect_nb.training.runs import backend_flags, set_backend_flags, set_precision
    amp, tf32 = ("bf16", False) if precision == "bf16" else ("none", precision == "tf32")
    row = dict(model=sz["model"], img_size=sz["size"], batch=batch, precision=precision, channels_last=cl,
               compile=compile_mode, device=dev)
    saved = backend_flags()
    try:
        set_precision(tf32, False)
        row.update(model_speed(dev, sz, batch=batch, precision=precision, cl=cl, compile_mode=compile_mode,
                               backend=sz["backend"], steps=sz["steps"],
                               warmup=sz["warmup"]))
        row.update(train_speed(a, dev, data, sz, batch=batch, amp=amp, cl=cl, tf32=tf32,
                               compile_mode=None if compile_mode == "none" else compile_mode))
        row["status"] = "ok"
    except Exception as e:
        row["status"] = f"error: {type(e).__name__}: {str(e)[:300]}"
    finally:
        set_backend_flags(saved)
        import torch
        if dev.startswith("cuda"): torch.cuda.empty_cache()
    return row

# ------------------------------------------------------------------ the steps
def check(a) -> int:
    "Every LeCT model's GPU paths (scripts/gpu_check.py), one row per model; fp32 comparisons without TF32."
    sys.path.insert(0, str(ROOT / "scripts"))
    import gpu_check
    from lect_nb.training.runs import set_precision
    set_precision(False, False)
    dev = "cpu" if a.dry_run else "cuda"
    models = ["lect_cifar"] if a.dry_run else ["lect", "lect_v2", "lect_v3", "lect_noskip", "lect_cifar"]
    ok = True
    for n in models:
        try: r = gpu_check.check_model(n, dev, "inductor", compile_=False)
        except Exception as e: r = dict(model=n, ok=False, error=f"{type(e).__name__}: {str(e)[:300]}")
        ok &= bool(r["ok"]); emit(a, "check", **r)
    return 0 if ok else 1

def bench(a) -> int:
    "The eager points, most wanted first (batch 64 before 128)."
    dev, data, sz = setup(a)
    for batch in sz["batches"]:
        for precision, cl in sz["grid"]:
            emit(a, "bench", **point(a, dev, data, sz, batch=batch, precision=precision, cl=cl))
    return 0

def compiled(a) -> int:
    "One compiled point PRECISION:BATCH:MODE, in this process alone (a compile that overruns loses only itself)."
    precision, batch, mode = a.arg.split(":")
    dev, data, sz = setup(a)
    emit(a, "compiled", **point(a, dev, data, sz, batch=int(batch), precision=precision, cl=False,
                                compile_mode=mode))
    return 0

def _records(run_dir: Path) -> list[dict]:
    "metrics.jsonl without the timing fields (the rest must match between two runs)."
    recs = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines() if l.strip()]
    return [{k: v for k, v in r.items() if k not in ("seconds", "train_images_per_s")} for r in recs]

def _weights_diff(p: Path, q: Path) -> float:
    import torch
    a, b = (torch.load(f, map_location="cpu", weights_only=True)["model"] for f in (p, q))
    return max(((a[k].double() - b[k].double()).abs().max().item() if a[k].numel() else 0.) for k in a)

def resume(a) -> int:
    "SIGTERM a run after 20 s (dry run: after its first epoch), --resume it, compare with an uninterrupted run."
    dev, data, _ = setup(a)
    work = Path(a.work) / "resume"
    common = ["--dataset", "fashion_mnist", "--data-dir", str(data), "--device", dev, "--deterministic", "--seed", "0"]
    common += (["--model", "lect_cifar", "--epochs", "3", "--batch-size", "16", "--limit-train", "32",
                "--limit-val", "16"] if a.dry_run else
               ["--model", "lect_cifar", "--epochs", "3", "--batch-size", "128", "--limit-train", "46080",
                "--limit-val", "2048"])   # long enough that 20 s fall inside it on a fast GPU
    t0, proc = time.time(), subprocess.Popen(lect_train(common + ["--out", str(work / "a")]))
    metrics = work / "a" / "metrics.jsonl"
    while proc.poll() is None and time.time() - t0 < (120 if a.dry_run else 20):
        if a.dry_run and metrics.is_file() and metrics.read_text().strip(): break
        time.sleep(0.2)
    terminated = proc.poll() is None
    if terminated: proc.send_signal(signal.SIGTERM)
    rc_a = proc.wait()
    rc_resume = subprocess.run(lect_train(["--out", str(work / "a"), "--resume"])).returncode if terminated else None
    rc_b = subprocess.run(lect_train(common + ["--out", str(work / "b")])).returncode
    row = dict(sigterm_after_s=round(time.time() - t0, 1) if terminated else None, rc_interrupted=rc_a,
               rc_resumed=rc_resume, rc_uninterrupted=rc_b, interrupted=terminated)
    if rc_b == 0 and (rc_resume == 0 or not terminated):
        ra, rb = _records(work / "a"), _records(work / "b")
        row.update(same_metrics=ra == rb, epochs=len(rb), final_test_acc=rb[-1]["test_acc"],
                   max_weight_diff=_weights_diff(work / "a" / "last.pt", work / "b" / "last.pt"))
        row["identical"] = row["same_metrics"] and row["max_weight_diff"] == 0.
    emit(a, "resume", **row)
    return 0 if row.get("identical") else 1

def epoch(a) -> int:
    "One epoch of lect-train on the full Fashion-MNIST at 224, bf16 (dry run: lect_cifar on the tiny copy)."
    dev, data, _ = setup(a)
    out = Path(a.work) / "epoch"
    args = (["--model", "lect_cifar", "--img-size", "32", "--limit-train", "32", "--limit-val", "16",
             "--batch-size", "16"] if a.dry_run else ["--model", "lect", "--img-size", "224", "--batch-size", "64"])
    t = time.time()
    rc = subprocess.run(lect_train(args + ["--dataset", "fashion_mnist", "--data-dir", str(data), "--epochs", "1",
                                           "--amp", "bf16", "--device", dev, "--log-every", "100",
                                           "--out", str(out)])).returncode
    row = dict(rc=rc, wall_s=round(time.time() - t, 1), args=args)
    if rc == 0:
        rec = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
        row.update({k: rec[k] for k in ("train_images_per_s", "train_acc", "test_acc", "test_loss", "seconds")})
    emit(a, "epoch", **row)
    return rc

def profile(a) -> int:
    "torch.profiler over one warm training step (train_one_epoch on one batch): the table, top rows in the summary."
    import torch
    from torch.profiler import ProfilerActivity, profile as prof
    from lect_nb.api import create_model
    from lect_nb.training.loop import make_optimizer, train_one_epoch
    dev, _, sz = setup(a)
    torch.manual_seed(0)
    m = create_model(sz["model"], num_classes=10, img_size=sz["size"], in_chans=1).to(dev)
    b = sz["batches"][0]
    batch = [(torch.randn(b, 1, sz["size"], sz["size"], device=dev), torch.randint(0, 10, (b,), device=dev))]
    opt, amp = make_optimizer(m, 1e-4), "bf16"
    for _ in range(3): train_one_epoch(m, batch, opt, torch.device(dev), amp=amp)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev == "cuda" else [])
    with prof(activities=acts) as p: train_one_epoch(m, batch, opt, torch.device(dev), amp=amp)
    key = "self_cuda_time_total" if dev == "cuda" else "self_cpu_time_total"
    table = p.key_averages().table(sort_by=key, row_limit=40)
    (Path(a.work) / "profile.txt").write_text(table + "\n")
    ev = sorted(p.key_averages(), key=lambda e: -getattr(e, key.replace("_total", "_total"), 0))[:10]
    top = [dict(name=e.key, calls=e.count, self_us=round(getattr(e, key), 1)) for e in ev]
    emit(a, "profile", model=sz["model"], img_size=sz["size"], batch=b, amp=amp, sort=key, top=top)
    return 0

def summary(a) -> int:
    "summary.json from rows.jsonl (rewritten after every step); with --arg NAME:RC:SECONDS first records a step."
    out = Path(a.out)
    if a.arg:
        name, rc, secs = a.arg.rsplit(":", 2)
        emit(a, "status", name=name, rc=int(rc), seconds=int(secs))
    rows = [json.loads(l) for l in (out / "rows.jsonl").read_text().splitlines() if l.strip()] \
        if (out / "rows.jsonl").is_file() else []
    pick = lambda s: [{k: v for k, v in r.items() if k != "step"} for r in rows if r["step"] == s]
    one = lambda s: (pick(s) or [None])[-1]
    s = dict(environment=one("environment"), steps=pick("status"), check=pick("check"), bench=pick("bench"),
             compiled=pick("compiled"), resume=one("resume"), epoch=one("epoch"), profile=one("profile"))
    tmp = out / ".summary.json.tmp"
    tmp.write_text(json.dumps(s, indent=1) + "\n"); os.replace(tmp, out / "summary.json")
    return 0

STEPS = dict(preflight=preflight, check=check, bench=bench, compiled=compiled, resume=resume, epoch=epoch,
             profile=profile, summary=summary)

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="results folder (rows.jsonl, summary.json)")
    p.add_argument("--work", required=True, help="scratch folder (run directories, tables)")
    p.add_argument("--dry-run", action="store_true", help="the CPU at tiny sizes")
    p.add_argument("step", choices=STEPS)
    p.add_argument("arg", nargs="?", help="compiled: PRECISION:BATCH:MODE; summary: NAME:RC:SECONDS")
    a = p.parse_args(argv)
    return STEPS[a.step](a)

if __name__ == "__main__": sys.exit(main())
