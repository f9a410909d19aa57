#!/usr/bin/env python
"""Prove that a restructure changed no registered model: fingerprint every model at one commit, again
at another, and compare.

    python scripts/model_fingerprints.py save OLD_DIR       # at the old commit
    python scripts/model_fingerprints.py save NEW_DIR       # at the new one
    python scripts/model_fingerprints.py compare OLD_DIR NEW_DIR

A fingerprint is, per registered name: the parameter count, the state-dict keys in order, a SHA-256 of
every state-dict value (built with one seed), and the logits of one random batch in eval and in train
mode (seeded). `compare` lists every model whose fingerprint differs in any of these, and exits 1 if
one does; logits are compared bit for bit (same machine, same threads).
"""
from __future__ import annotations
import argparse, hashlib, json, sys
from pathlib import Path
import torch

def fingerprint(name: str) -> tuple[dict, tuple[torch.Tensor, torch.Tensor]]:
    "(the fingerprint of model `name`, its eval and train logits)."
    from lect_nb.api import create_model, model_default_cfg
    c, h, w = model_default_cfg(name).get("input_size", (3, 224, 224))
    torch.manual_seed(0)
    m = create_model(name)
    sd, digest = m.state_dict(), hashlib.sha256()
    for k, v in sd.items(): digest.update(k.encode()); digest.update(v.detach().float().numpy().tobytes())
    torch.manual_seed(1); x = torch.randn(2, c, h, w)
    with torch.no_grad():
        y_eval = m.eval()(x)
        torch.manual_seed(2); y_train = m.train()(x)
    info = dict(cls=type(m).__name__, params=sum(p.numel() for p in m.parameters()),
                keys=list(sd), state=digest.hexdigest())
    return info, (y_eval, y_train)

def save(out: Path):
    from lect_nb.api import list_models
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    prints = {}
    for name in list_models():
        prints[name], logits = fingerprint(name)
        torch.save(logits, out / f"{name}.pt")
    (out / "fingerprints.json").write_text(json.dumps(prints, indent=1) + "\n")
    print(f"{len(prints)} models fingerprinted in {out}")

def compare(old: Path, new: Path) -> int:
    a = json.loads((old / "fingerprints.json").read_text())
    b = json.loads((new / "fingerprints.json").read_text())
    bad = [f"{n}: only in {old if n in a else new}" for n in sorted(set(a) ^ set(b))]
    for n in sorted(set(a) & set(b)):
        what = [k for k in ("params", "keys", "state") if a[n][k] != b[n][k]]
        la, lb = torch.load(old / f"{n}.pt"), torch.load(new / f"{n}.pt")
        what += [m for m, x, y in zip(("eval logits", "train logits"), la, lb) if not torch.equal(x, y)]
        if what: bad.append(f"{n}: {', '.join(what)} differ")
        elif a[n]["cls"] != b[n]["cls"]: print(f"{n}: class {a[n]['cls']} -> {b[n]['cls']} (same model)")
    print("\n".join(bad) if bad else f"all {len(a)} models identical: parameters, state dicts, logits")
    return 1 if bad else 0

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("save").add_argument("dir", type=Path)
    c = sub.add_parser("compare"); c.add_argument("old", type=Path); c.add_argument("new", type=Path)
    args = p.parse_args()
    sys.exit(save(args.dir) if args.cmd == "save" else compare(args.old, args.new))
