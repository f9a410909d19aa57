#!/usr/bin/env python
"""Ship the weights of a finished `lect-train` run with the package, as `name.tag`.

    python scripts/export_pretrained.py runs/fashion_study/lect_cifar-s0 fashion_mnist \\
        --row nbs/results/fashion_study/lect_cifar-s0.json

Writes lect_nb/assets/<name>.<tag>.pt (the run's last.pt weights in float16) and its entry in
lect_nb/assets/pretrained.json: the configuration to build the model with, the dataset, the test
accuracy the *shipped* (float16-rounded) weights reach on the run's test set, measured here, and the
command that trained them. `create_model("<name>.<tag>", pretrained=True)` then loads them.
"""
import argparse, json, shlex, sys
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "lect_nb" / "assets"


def main(argv=None) -> int:
    p = argparse.ArgumentParser("export_pretrained", description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a finished lect-train run directory")
    p.add_argument("tag", help="the tag, e.g. fashion_mnist")
    p.add_argument("--row", help="the run's JSON row (its exact training command is recorded)")
    a = p.parse_args(argv)
    import torch
    from lect_nb.api import create_model
    from lect_nb.training.data import build_datasets, dataset_info
    from lect_nb.training.runs import load_checkpoint
    run = Path(a.run)
    cfg = json.loads((run / "config.json").read_text())
    metrics = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
    if len(metrics) != cfg["epochs"]:
        p.error(f"{run}: unfinished ({len(metrics)} of {cfg['epochs']} epochs)")
    info = dataset_info(cfg["dataset"])
    size = cfg["img_size"] or info.native_size
    name = cfg["model"]
    model = create_model(name, num_classes=info.num_classes, img_size=size, in_chans=info.in_chans)
    sd = {k: (v.half() if v.is_floating_point() else v)
          for k, v in load_checkpoint(run / "last.pt", map_location="cpu")["model"].items()}
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
    model.eval()
    _, test, _ = build_datasets(cfg["dataset"], cfg["data_dir"], img_size=cfg["img_size"],
                                augment=False)
    loader = torch.utils.data.DataLoader(test, batch_size=256)
    with torch.no_grad():
        correct = sum((model(x).argmax(1) == y).sum().item() for x, y in loader)
    acc = correct / len(test)
    file = f"{name}.{a.tag}.pt"
    torch.save(sd, ASSETS / file)
    row = json.loads(Path(a.row).read_text()) if a.row else {}
    entry = dict(file=file, cfg=dict(
        input_size=(info.in_chans, size, size), num_classes=info.num_classes,
        mean=tuple(info.mean), std=tuple(info.std), dataset=cfg["dataset"],
        base_pad=info.base_pad, test_acc=round(acc, 4), test_images=len(test),
        train_images=row.get("train_images"), epochs=cfg["epochs"], seed=cfg["seed"],
        trained_with=row.get("study_command") or f"lect-train (config.json of {run.name})",
        lect_train_command=row.get("command"),
        exported_with="python scripts/export_pretrained.py " + shlex.join(argv or sys.argv[1:])))
    index_file = ASSETS / "pretrained.json"
    index = json.loads(index_file.read_text()) if index_file.exists() else {}
    index[f"{name}.{a.tag}"] = entry
    index_file.write_text(json.dumps(dict(sorted(index.items())), indent=1) + "\n")
    print(f"{name}.{a.tag}: {acc:.2%} on {len(test)} test images "
          f"({(ASSETS / file).stat().st_size / 1e6:.1f} MB) -> {ASSETS / file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
