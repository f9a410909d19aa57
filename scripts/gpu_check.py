"""Checks of lect_nb's GPU code paths, for a machine with CUDA (runs on the CPU too, as a smoke test).

    python scripts/gpu_check.py --device cuda --out gpu_check.json

For every LeCT model it checks, on `--device`:
- fused attention == paper-literal attention (float32 without TF32, eval, same weights): max |diff| relative to
  the largest logit <= 1e-4 (a fixed 1e-5 fails on CUDA: 1.48e-5 measured for lect_cifar on an H200; a wrong
  attention gives differences of the logits' own size);
- a float32 training step: finite loss, a finite gradient for every parameter;
- the same step with tensors rebuilt in backward (the speed layer's `rebuild` part) and stored: max |grad diff| <= 1e-4;
- bf16 autocast (and fp16 with a GradScaler on CUDA): forward + backward, finite gradients;
- channels_last input gives the same logits as contiguous input;
- `torch.compile(fullgraph=True)` with `--backend` (inductor by default) agrees with eager (eval).
Each result is printed as one JSON line and all of them are written to `--out`. Exit status 1 if any check failed.
"""
from __future__ import annotations
import argparse, copy, json, math, sys, time, traceback
import torch
import torch.nn.functional as F
from lect_nb.api import create_model, list_models
from lect_nb.speed.fast import accelerate

REL_TOL = 1e-4   # fused vs paper-literal attention, relative to the largest logit

def _max_diff(a, b): return (a.float() - b.float()).abs().max().item()

def _rel_diff(a, b):
    "max |a - b| over max |b|: the difference in units of the output's own size."
    return _max_diff(a, b) / max(b.float().abs().max().item(), 1e-30)

def _finite_grads(m):
    "Names of parameters whose gradient is missing or not finite."
    return [n for n, p in m.named_parameters() if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]

def check_model(name: str, device: str, backend: str, compile_: bool) -> dict:
    size = 32 if name.endswith("_cifar") else 224
    torch.manual_seed(0)
    m = create_model(name, num_classes=10, img_size=size).to(device)
    x = torch.randn(4, 3, size, size, device=device)
    y = torch.randint(0, 10, (4,), device=device)
    r = dict(check="model", model=name, img_size=size, device=device)
    m.eval()
    with torch.no_grad():
        m.set_attn_impl("fused"); fused = m(x)
        m.set_attn_impl("reference"); ref = m(x)
        m.set_attn_impl("fused")
        cl = m(x.contiguous(memory_format=torch.channels_last))
    r["fused_vs_reference"] = _max_diff(fused, ref)
    r["fused_vs_reference_rel"] = _rel_diff(fused, ref)
    r["channels_last_vs_contiguous"] = _max_diff(cl, fused)
    m.train()
    loss = F.cross_entropy(m(x), y); loss.backward()
    r["fp32_loss"], r["fp32_bad_grads"] = loss.item(), _finite_grads(m)
    grads = {}                  # tensors rebuilt in backward (notebook 15) against stored: the same gradients
    for on in (True, False):
        mm = accelerate(copy.deepcopy(m), exclude=("kernels",)) if on else m
        mm.zero_grad(set_to_none=True); torch.manual_seed(1)
        F.cross_entropy(mm(x), y).backward()
        grads[on] = [p.grad.clone() for p in mm.parameters()]
    r["rebuild_vs_stored"] = max(_max_diff(a, b) for a, b in zip(grads[True], grads[False]))
    amps = [("bf16", torch.bfloat16)] + ([("fp16", torch.float16)] if device.startswith("cuda") else [])
    for tag, dt in amps:
        m.zero_grad(set_to_none=True)
        scaler = torch.amp.GradScaler(device.split(":")[0], enabled=(dt == torch.float16))
        with torch.autocast(device.split(":")[0], dtype=dt):
            loss = F.cross_entropy(m(x), y)
        scaler.scale(loss).backward(); scaler.unscale_(torch.optim.SGD(m.parameters(), lr=0.))
        r[f"{tag}_loss"], r[f"{tag}_bad_grads"] = loss.item(), _finite_grads(m)
    if compile_:
        m.eval(); torch._dynamo.reset()              # (the training steps above moved BN's running statistics)
        with torch.no_grad(): eager = m(x)
        t = time.perf_counter()
        cm = torch.compile(m, backend=backend, fullgraph=True)
        with torch.no_grad(): out = cm(x)
        r["compile_s"], r["compiled_vs_eager"] = time.perf_counter() - t, _max_diff(out, eager)
    r["ok"] = (r["fused_vs_reference_rel"] <= REL_TOL and r["channels_last_vs_contiguous"] <= 1e-4
               and r["rebuild_vs_stored"] <= 1e-4     # (CUDA's interpolation backward adds atomically)
               and all(not r[f"{t}_bad_grads"] and math.isfinite(r[f"{t}_loss"]) for t in ["fp32"] + [a for a, _ in amps])
               and (not compile_ or r["compiled_vs_eager"] <= 1e-3))
    return r

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--models", nargs="+", default=None, help="default: lect, lect_v2, lect_v3, lect_noskip, lect_cifar")
    p.add_argument("--backend", default="inductor", help="torch.compile backend")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    models = a.models or ["lect", "lect_v2", "lect_v3", "lect_noskip", "lect_cifar"]
    for n in models:
        if n not in list_models(): p.error(f"unknown model {n!r}")
    env = dict(check="environment", torch=torch.__version__, device=a.device,
               name=torch.cuda.get_device_name(0) if a.device.startswith("cuda") else "cpu")
    print(json.dumps(env), flush=True)
    rows = [env]
    from lect_nb.training.runs import backend_flags, set_backend_flags, set_precision
    saved = backend_flags()
    set_precision(False, False)   # full float32: TF32 convolutions would be measured, not the attention
    for n in models:
        try: r = check_model(n, a.device, a.backend, not a.no_compile)
        except Exception as e: r = dict(check="model", model=n, ok=False, error=f"{type(e).__name__}: {e}", tb=traceback.format_exc()[-2000:])
        print(json.dumps(r), flush=True); rows.append(r)
    set_backend_flags(saved)
    if a.out:
        with open(a.out, "w") as f: json.dump(rows, f, indent=1)
    return 0 if all(r.get("ok", True) for r in rows) else 1

if __name__ == "__main__": sys.exit(main())
