"Tests of the training loop (lect_nb.training.loop) and of whole runs (lect_nb.training.runs) on tiny data and the tiny model of lect_nb.training.loop, registered here."
import json, math, os
import pytest, torch
from torch import nn
from torch.utils.data import DataLoader
from lect_nb.api import register_model
from lect_nb.training.data import build_datasets
from lect_nb.training.loop import (TinyNet, autocast_for, cosine_lr, evaluate, make_optimizer, make_scheduler,
                                   param_groups, train_one_epoch)
from lect_nb.training.runs import TrainConfig, load_checkpoint, run, save_checkpoint

def register_tiny():
    "Register `tiny_bn` and `tiny_nobn` (idempotent)."
    from lect_nb.api import _MODEL_REGISTRY
    if "tiny_bn" not in _MODEL_REGISTRY:
        register_model("tiny_bn")(lambda num_classes=10, img_size=(32, 32), in_chans=1, **kw: TinyNet(num_classes, in_chans, bn=True))
        register_model("tiny_nobn")(lambda num_classes=10, img_size=(32, 32), in_chans=1, **kw: TinyNet(num_classes, in_chans, bn=False))

register_tiny()
CPU = torch.device("cpu")

def fixed_batch(n=64):
    tr, _, _ = build_datasets("sample", limit_train=n, augment=False)
    return [next(iter(DataLoader(tr, batch_size=n)))]

def test_loss_goes_down_on_a_fixed_batch():
    torch.manual_seed(0)
    m, batch = TinyNet(), fixed_batch()
    opt = make_optimizer(m, 1e-2)
    first = evaluate(m, batch, CPU)["loss"]
    for _ in range(60): r = train_one_epoch(m, batch, opt, CPU)
    assert r["loss"] < 0.25 * first and r["acc"] > 0.9

def test_scheduler_matches_cosine_formula():
    p = [nn.Parameter(torch.zeros(1))]
    for E, w, lo in ((60, 0, 0.), (10, 3, 1e-5), (1, 0, 0.)):
        opt = torch.optim.AdamW(p, lr=1e-3)
        sched = make_scheduler(opt, E, w, lo)
        got = []
        for e in range(E):
            got.append(opt.param_groups[0]["lr"]); opt.step(); sched.step()
        want = [1e-3 * (e + 1) / (w + 1) if e < w else
                lo + 0.5 * (1e-3 - lo) * (1 + math.cos(math.pi * (e - w) / (E - w))) for e in range(E)]
        assert got == pytest.approx(want, rel=1e-12, abs=1e-15)
    assert cosine_lr(0, 6e-3, 60) == 6e-3 and cosine_lr(30, 6e-3, 60) == pytest.approx(3e-3)

def test_no_weight_decay_on_norms_biases_and_named_params():
    torch.manual_seed(0)
    m = TinyNet()
    g = param_groups(m, 0.05)
    name = {id(p): n for n, p in m.named_parameters()}
    assert sorted(name[id(p)] for p in g[0]["params"]) == ["head.weight", "stem.0.weight", "stem.3.weight"]
    assert {name[id(p)] for p in g[1]["params"]} == {"stem.0.bias", "stem.1.weight", "stem.1.bias", "stem.3.bias",
                                                     "norm.weight", "norm.bias", "head.bias", "pos"}
    # the optimizer really decays only the first group: with zero gradients AdamW only applies decay
    opt = make_optimizer(m, lr=0.1, weight_decay=0.05)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    for p in m.parameters(): p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in m.named_parameters():
        factor = (1 - 0.1 * 0.05) if n in ("head.weight", "stem.0.weight", "stem.3.weight") else 1.
        torch.testing.assert_close(p.detach(), before[n] * factor)

def test_amp_bf16_on_cpu():
    torch.manual_seed(0)
    m, batch = TinyNet(), fixed_batch(32)
    with autocast_for(CPU, "bf16"): assert m(batch[0][0]).dtype == torch.bfloat16
    w0 = m.head.weight.detach().clone()
    r = train_one_epoch(m, batch, make_optimizer(m, 1e-3), CPU, amp="bf16")
    assert math.isfinite(r["loss"]) and m.head.weight.dtype == torch.float32
    assert not torch.equal(m.head.weight, w0)
    e32, e16 = evaluate(m, batch, CPU)["loss"], evaluate(m, batch, CPU, amp="bf16")["loss"]
    assert abs(e32 - e16) < 0.05 * e32   # bf16 forward close to fp32, not equal

def test_checkpoint_atomic_and_weights_only(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 1, "w": torch.ones(3)})
    def broken_save(obj, f, *a, **k):
        with open(f, "wb") as fh: fh.write(b"partial")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"): save_checkpoint(path, {"epoch": 2})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["last.pt"]            # no temporary file left
    assert load_checkpoint(path)["epoch"] == 1            # the previous checkpoint is intact
    class Evil:
        def __reduce__(self): return (print, ("pwned",))
    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="evil.pt"): load_checkpoint(tmp_path / "evil.pt")

def test_resume_continues_exactly(tmp_path, monkeypatch):
    "A run killed after epoch 2 and resumed ends with the same metrics and weights as an uninterrupted run."
    import lect_nb.training.runs as lr
    kw = dict(model="tiny_bn", limit_train=96, limit_val=48, batch_size=32, lr=3e-3, workers=0, device="cpu", epochs=3)
    full = run(TrainConfig(**kw, out=str(tmp_path / "full")), progress=False)
    real_plot = lr.plot_curves
    def crash_after_epoch_2(metrics, path=None):
        real_plot(metrics, path)
        if len(metrics) == 2: raise KeyboardInterrupt("simulated kill after epoch 2")
    monkeypatch.setattr(lr, "plot_curves", crash_after_epoch_2)
    with pytest.raises(KeyboardInterrupt): run(TrainConfig(**kw, out=str(tmp_path / "part")), progress=False)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "part" / "last.pt")["epoch"] == 2
    resumed = run(TrainConfig(out=str(tmp_path / "part"), resume=True), progress=False)
    drop = lambda ms: [{k: v for k, v in r.items() if k not in ("seconds", "train_images_per_s")} for r in ms]
    assert drop(resumed["metrics"]) == drop(full["metrics"])
    a, b = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "part" / "last.pt")
    for k in a["model"]: assert torch.equal(a["model"][k], b["model"][k]), k
    lines = (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [1, 2, 3]
