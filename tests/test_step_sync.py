"""The training step never waits for the device: host reads counted with a dispatch mode on the CPU, exactly zero
between logging points (tests/test_step_sync.py); the non-finite protocol with reads every `log_every` steps; logs
written to a file."""
import io, math
import pytest, torch
from torch.utils._python_dispatch import TorchDispatchMode
from lect_nb.training.data import build_datasets
from lect_nb.training.loop import NonFiniteError, Progress, TinyNet, make_optimizer, train_one_epoch
from torch.utils.data import DataLoader

CPU = torch.device("cpu")
READS = {"_local_scalar_dense", "is_nonzero", "item"}   # a scalar read: the host waits for the device

class HostReads(TorchDispatchMode):
    ("Counts what makes the host wait for the device: scalar reads, copies from another device to the CPU, and "
     "`Tensor.tolist`/`numpy` (they read memory without a dispatched call, so they are wrapped).")
    def __init__(self):
        super().__init__(); self.n, self.names = 0, []
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func.overloadpacket.__name__
        src = args[-1] if name == "copy_" else args[0] if args else None
        to_host = (name in ("_to_copy", "copy_") and isinstance(src, torch.Tensor) and isinstance(out, torch.Tensor)
                   and src.device.type != "cpu" and out.device.type == "cpu")
        if name in READS or to_host: self.n += 1; self.names.append(name)
        return out
    def __enter__(self):
        self._saved = torch.Tensor.tolist, torch.Tensor.numpy
        mode = self
        def wrap(f, name):
            def counted(t, *a, **k):
                mode.n += 1; mode.names.append(name)
                return f(t, *a, **k)
            return counted
        torch.Tensor.tolist, torch.Tensor.numpy = wrap(self._saved[0], "tolist"), wrap(self._saved[1], "numpy")
        return super().__enter__()
    def __exit__(self, *exc):
        torch.Tensor.tolist, torch.Tensor.numpy = self._saved
        return super().__exit__(*exc)

def _batches(n_steps, bs=16):
    tr, _, _ = build_datasets("sample", limit_train=n_steps * bs, augment=False)
    return list(DataLoader(tr, batch_size=bs))

def _counted(loader, counter, seen):
    "Yield `loader`'s batches, noting the reads counted before each one (after the previous step)."
    for b in loader:
        seen.append(counter.n); yield b
    seen.append(counter.n)

class Sized:
    def __init__(self, it, n): self.it, self.n = it, n
    def __iter__(self): return iter(self.it)
    def __len__(self): return self.n

def test_counter_sees_each_kind_of_read():
    t = torch.ones(3)
    with HostReads() as c: t.sum().item(); bool(t[0]); t.tolist(); float(t[1]); t.numpy()
    assert c.n == 5

@pytest.mark.parametrize("log_every", [3, 100])
def test_no_host_read_between_logging_points(log_every):
    torch.manual_seed(0)
    m, batches = TinyNet(), _batches(7)
    opt = make_optimizer(m, 1e-3)
    assert opt.defaults["fused"]                       # the step can be skipped on the device
    train_one_epoch(m, batches[:1], opt, CPU)          # warm: the optimizer's state exists
    seen = []
    with HostReads() as c:
        r = train_one_epoch(m, Sized(_counted(batches, c, seen), 7), opt, CPU, log_every=log_every)
    per_step = [b - a for a, b in zip(seen, seen[1:])]
    # one read (the interval, in one transfer) at each logging point: steps 3 and 6 and the last, 7;
    # one more at the end (the epoch's sums); nothing anywhere else
    want = [1 if (k % log_every == 0 or k == 7) else 0 for k in range(1, 8)]
    assert per_step == want, (per_step, c.names)
    assert c.n == sum(want) + 1 and math.isfinite(r["loss"]) and r["sums"][2].item() == 7 * 16

class NaNAt(TinyNet):
    "Training call `at` (1-based) gives NaN logits."
    def __init__(self, at):
        super().__init__(); self.at, self.calls = at, 0
    def forward(self, x):
        self.calls += 1
        y = super().forward(x)
        return y * float("nan") if self.calls == self.at else y

def test_stop_raises_at_the_next_logging_point_naming_the_first_bad_step():
    torch.manual_seed(0)
    m = NaNAt(2); opt = make_optimizer(m, 1e-3)
    seen, batches = [], _batches(6)
    with HostReads() as c, pytest.raises(NonFiniteError) as e:
        train_one_epoch(m, Sized(_counted(batches, c, seen), 6), opt, CPU, log_every=4, epoch=1)
    assert "at epoch 2, step 2/6" in str(e.value) and "--on-nan skip" in str(e.value)
    assert m.calls == 4 and c.n == 1                  # steps 3-4 trained, the read at step 4 raised
    assert all(torch.isfinite(p).all() for p in m.parameters())   # the bad step was skipped on the device

def test_skip_counts_and_warns_once_per_logging_point(capsys):
    torch.manual_seed(0)
    m = NaNAt(2); opt = make_optimizer(m, 1e-3)
    w0 = [p.detach().clone() for p in m.parameters()]
    r = train_one_epoch(m, _batches(5), opt, CPU, log_every=10, on_nan="skip")
    err = capsys.readouterr().err
    assert err.count("skipped step with non-finite") == 1 and "at epoch 1, step 2/5" in err
    assert r["skipped"] == 1 and r["sums"][2].item() == 4 * 16 and math.isfinite(r["loss"])
    assert all(torch.isfinite(p).all() for p in m.parameters()) and not torch.equal(w0[0], m.stem[0].weight)

def test_skipped_step_leaves_weights_and_adam_state_as_they_were():
    "A skipped step changes nothing: the same weights and moments as an optimizer that never saw it."
    torch.manual_seed(0)
    a = TinyNet(bn=False); b = TinyNet(bn=False); b.load_state_dict(a.state_dict())
    oa, ob = make_optimizer(a, 1e-2), make_optimizer(b, 1e-2)
    good = _batches(2)
    nan_x = good[0][0].clone(); nan_x[0] = float("nan")
    train_one_epoch(a, [good[0], (nan_x, good[0][1]), good[1]], oa, CPU, on_nan="skip")
    train_one_epoch(b, [good[0], good[1]], ob, CPU)
    for p, q in zip(a.parameters(), b.parameters()): assert torch.equal(p, q)
    sa, sb = oa.state_dict()["state"], ob.state_dict()["state"]
    assert all(torch.equal(sa[k][n], sb[k][n]) for k in sa for n in ("step", "exp_avg", "exp_avg_sq"))

def test_stop_request_between_logging_points_stops_after_that_step():
    torch.manual_seed(0)
    m = TinyNet(); opt = make_optimizer(m, 1e-3)
    asked = iter([False, False, True] + [False] * 10)
    r = train_one_epoch(m, _batches(6), opt, CPU, log_every=50, stop=lambda: next(asked))
    assert r["stopped_at"] == 3 and r["sums"][2].item() == 3 * 16

class File(io.StringIO):
    def isatty(self): return False

def test_log_file_gets_whole_lines_every_log_every_steps():
    s = File()
    p = Progress(1, notebook=False, stream=s)
    torch.manual_seed(0)
    m = TinyNet(); opt = make_optimizer(m, 1e-3)
    r = train_one_epoch(m, _batches(7), opt, CPU, log_every=2, progress=p)
    p.epoch_end(dict(epoch=1, train_loss=r["loss"], train_acc=r["acc"], test_loss=1., test_acc=.5, lr=1e-3,
                     seconds=1.))
    lines = s.getvalue().split("\n")
    assert "\r" not in s.getvalue() and lines[-1] == ""
    assert [l.split("  ")[1] for l in lines[:-2]] == ["step 2/7", "step 4/7", "step 6/7"]
    assert all("loss " in l and l.endswith("img/s") for l in lines[:-2]) and lines[-2].startswith("epoch 1/1  train_loss")

def test_fastprogress_is_optional(monkeypatch):
    "Without fastprogress (the GPU machines have none) a notebook gets the plain lines; with it, its bars."
    import sys
    from lect_nb.training import loop
    monkeypatch.setitem(sys.modules, "fastprogress", None)            # `import fastprogress...` now fails
    monkeypatch.setitem(sys.modules, "fastprogress.fastprogress", None)
    assert loop._in_notebook() is False
    s = File()
    p = Progress(1, stream=s)
    assert p.notebook is False and list(p.epoch_iter(0)) == [0]
    for i in p.batches(range(2), 0): p.step(i, 4 * (i + 1), loss=2.0)
    assert s.getvalue().startswith("epoch 1/1  step 1/2  loss 2.0000")
