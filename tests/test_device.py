"""Runs that put each state where it belongs, testable on the CPU: checkpoints loaded on the CPU and restored onto
the model's device, generator states restored as CPU byte tensors (CUDA's through its own setter), DDP's device
per local rank; precision switches set for a run and restored after it; torch.compile with a mode and a backend."""
import json, os, random
import numpy as np
import pytest, torch
import torch.distributed as dist
from lect_nb.api import _MODEL_REGISTRY, register_model
from lect_nb.training import loop, runs
from lect_nb.training.loop import DistInfo, TinyNet, init_distributed
from lect_nb.training.runs import TrainConfig, rng_state, run, set_rng_state

if "tiny_dev" not in _MODEL_REGISTRY:
    register_model("tiny_dev")(lambda num_classes=10, img_size=(32, 32), in_chans=1, **kw: TinyNet(num_classes, in_chans))
KW = dict(model="tiny_dev", dataset="sample", epochs=2, batch_size=32, limit_train=64, limit_val=32, device="cpu")

@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    run(TrainConfig(**{**KW, "epochs": 1}, out=str(out)), progress=False)
    return out

def test_resume_loads_on_the_cpu_and_restores_cuda_generators_through_their_setter(finished, monkeypatch):
    "A CUDA run resumed: torch.load maps to the CPU; the CUDA generator state goes to torch.cuda.set_rng_state."
    ck = torch.load(finished / "last.pt", weights_only=True)
    cuda_state = torch.arange(16, dtype=torch.uint8)
    ck["rng"]["cuda"] = [cuda_state]               # as a CUDA run saves it (get_rng_state_all)
    torch.save(ck, finished / "last.pt")
    maps, set_calls, real_load = [], [], torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: maps.append(k.get("map_location")) or real_load(*a, **k))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda st, i: set_calls.append((st, i)))
    cfg = TrainConfig(**{**KW, "epochs": 2}, out=str(finished), resume=True)
    cfg, _ = runs._settle_config(cfg, out=finished, dev=torch.device("cpu"), di=DistInfo(), cli=False)
    model = TinyNet()
    parts = runs._parts(cfg, model, dev=torch.device("cpu"))
    h = runs._resume(cfg, parts, out=finished, dev=torch.device("cuda"), di=DistInfo())
    assert maps == ["cpu"] and h.epoch == 1
    (st, i), = set_calls
    assert i == 0 and st.dtype == torch.uint8 and st.device.type == "cpu" and torch.equal(st, cuda_state)
    assert torch.equal(torch.get_rng_state(), ck["rng"]["torch"])

def test_set_rng_state_takes_states_as_loaded_anywhere():
    s = rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    s2 = {**s, "torch": s["torch"].to(torch.int64),                # another dtype, as a careless save would give
          "numpy": [s["numpy"][0], s["numpy"][1].clone(), *s["numpy"][2:]]}
    set_rng_state(s2, cuda=False)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a
    assert torch.get_rng_state().dtype == torch.uint8

def test_set_rng_state_leaves_cuda_alone_when_not_asked(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda *a: calls.append(a))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    set_rng_state({**rng_state(), "cuda": [torch.zeros(16, dtype=torch.uint8)] * 2}, cuda=False)
    assert calls == []

def test_init_distributed_sets_the_local_rank_device_before_the_group(monkeypatch):
    calls = []
    monkeypatch.setenv("WORLD_SIZE", "4"); monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: calls.append(("set_device", i)))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: calls.append(("init", backend)))
    monkeypatch.setattr(dist, "get_rank", lambda: 3); monkeypatch.setattr(dist, "get_world_size", lambda: 4)
    assert init_distributed(torch.device("cuda")) == DistInfo(3, 4, 3)
    assert calls == [("set_device", 3), ("init", "nccl")]
    calls.clear()
    init_distributed(torch.device("cpu"))
    assert calls == [("init", "gloo")]             # no CUDA call on a CPU job

def test_default_out_broadcasts_from_this_process_gpu(monkeypatch):
    seen = []
    monkeypatch.setattr(dist, "broadcast_object_list", lambda obj, src, device=None: seen.append((src, device)))
    runs._default_out(TrainConfig(), DistInfo(1, 2, 1), torch.device("cuda", 1))
    runs._default_out(TrainConfig(), DistInfo(1, 2, 1), torch.device("cpu"))
    assert seen == [(0, torch.device("cuda", 1)), (0, None)]

def test_precision_switches_set_for_the_run_recorded_and_restored(tmp_path, monkeypatch):
    before = runs.backend_flags()
    during, real = [], loop.train_one_epoch
    def spy(*a, **k):
        during.append([getattr(o, name) for o, name, _ in runs.backend_flags()])
        return real(*a, **k)
    monkeypatch.setattr(runs, "train_one_epoch", spy)
    out = tmp_path / "r"
    run(TrainConfig(**{**KW, "epochs": 1}, tf32=True, cudnn_benchmark=True, out=str(out)), progress=False)
    on = [v for _, _, v, _ in runs._fp32_switches()] + [True]
    assert during == [on] and runs.backend_flags() == before
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["tf32"], cfg["cudnn_benchmark"], cfg["compile_mode"], cfg["log_every"]) == (True, True, None, 50)

def test_compile_with_a_mode_and_backend_on_the_cpu(tmp_path, monkeypatch):
    compiled, real = [], torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, **k: compiled.append(k) or real(m, **k))
    res = run(TrainConfig(**{**KW, "epochs": 1}, compile=True, compile_backend="aot_eager", out=str(tmp_path / "r")),
              progress=False)
    assert compiled == [dict(backend="aot_eager")] * 2 and np.isfinite(res["final"]["train_loss"])
    with pytest.raises(ValueError, match="unknown compile backend 'nope'"):
        run(TrainConfig(**{**KW, "epochs": 1}, compile=True, compile_backend="nope", out=str(tmp_path / "s")),
            progress=False)
    assert not (tmp_path / "s").exists()

def test_training_batches_are_equal(tmp_path, monkeypatch):
    "The training DataLoader drops an epoch's last partial batch (static shapes), unless it is the only batch."
    shapes, real = [], loop.train_one_epoch
    def spy(model, loader, *a, **k):
        shapes.extend(len(y) for _, y in loader)
        return real(model, loader, *a, **k)
    monkeypatch.setattr(runs, "train_one_epoch", spy)
    run(TrainConfig(**{**KW, "epochs": 1, "limit_train": 80}, gpu_augment="off", out=str(tmp_path / "a")), progress=False)
    run(TrainConfig(**{**KW, "epochs": 1, "limit_train": 20}, gpu_augment="off", out=str(tmp_path / "b")), progress=False)
    assert shapes == [32, 32, 20]
