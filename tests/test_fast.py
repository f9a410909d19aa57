"""The speed layer (lect_nb.speed.fast) computes the plain model's function; the model modules do not depend on it.

Tolerances: each comparison of the accelerated model with the plain one is also made against a float64 run
of the plain model; the accelerated model must be as close to float64 as the plain float32 model is (within
a small factor), and the logits within 1e-5 of the plain model's.
"""
import copy, os, re, subprocess, sys, warnings
from pathlib import Path
import pytest, torch
import torch.nn.functional as F
from lect_nb.api import create_model
from lect_nb.speed.fast import accelerate, to_plain, with_kernel_masks, is_accelerated, PARTS
from lect_nb.speed.kernels import load_kernels

KERNELS = load_kernels() is not None
ROOT = Path(__file__).resolve().parents[1]


def _step(m, x, y):
    torch.manual_seed(1)
    m.train(); m.zero_grad(set_to_none=True)
    out = m(x); F.cross_entropy(out, y).backward()
    return (out.detach(), {n: p.grad.clone() for n, p in m.named_parameters()},
            {n: b.clone() for n, b in m.named_buffers()})


def _rel(a, b):
    "Largest difference relative to the reference tensor's scale (+1e-3: gradients that are exactly 0 in float64)."
    a, b = a.double(), b.double()
    return ((a - b).abs().max() / (b.abs().max() + 1e-3)).item()


@pytest.mark.parametrize("name,size", [("lect", 224), ("lect_v2", 224), ("lect_v3", 224), ("lect_noskip", 224),
                                       ("lect_cifar", 32), ("lect", 32)])
def test_accelerated_equals_plain(name, size):
    "Train mode with dropout and drop path on (shared mask source); eval runs the plain forward (equal to the bit)."
    torch.manual_seed(0)
    plain = create_model(name, num_classes=10, img_size=size, drop_rate=0.2, drop_path_rate=0.2)
    fast = accelerate(copy.deepcopy(plain))
    assert is_accelerated(fast) == KERNELS
    assert list(fast.state_dict()) == list(plain.state_dict())
    with_kernel_masks(plain)                          # the plain model draws the kernels' dropout masks
    if not KERNELS: with_kernel_masks(fast)           # (no kernels: `fast` is a plain model too)
    ref = copy.deepcopy(plain).double()
    x, y = torch.randn(2, 3, size, size), torch.tensor([1, 2])
    (o0, g0, b0), (o1, g1, b1), (od, gd, bd) = _step(plain, x, y), _step(fast, x, y), _step(ref, x.double(), y)
    assert (o1 - o0).abs().max() <= 1e-5
    assert (o1.double() - od).abs().max() <= 4 * (o0.double() - od).abs().max() + 1e-6
    for n in g0:       # as close to float64 as the plain float32 model is (their difference is float32 noise)
        assert g1[n] is not None, n
        assert _rel(g1[n], gd[n]) <= 4 * _rel(g0[n], gd[n]) + 1e-5, n
    for n in b0:
        if b0[n].is_floating_point(): assert _rel(b1[n], bd[n]) <= 4 * _rel(b0[n], bd[n]) + 1e-6, n
        else: assert torch.equal(b1[n], b0[n]), n      # num_batches_tracked
    plain.eval(); fast.eval()
    fast.load_state_dict(plain.state_dict())            # the same buffers: eval runs the same plain forward
    with torch.no_grad(): assert torch.equal(fast(x), plain(x))
    assert torch.equal(fast(x), plain(x))                # eval with gradients (e.g. saliency maps) too


def test_parts_can_be_left_out_and_undone():
    torch.manual_seed(0)
    plain = create_model("lect_cifar", num_classes=10, drop_rate=0., drop_path_rate=0.)
    x, y = torch.randn(4, 3, 32, 32), torch.arange(4)
    o0, g0, _ = _step(plain, x, y)
    assert set(PARTS) == {"kernels", "rebuild"}
    for exclude in [(), ("kernels",), ("rebuild",), tuple(PARTS)]:
        m = accelerate(copy.deepcopy(plain), exclude=exclude)
        o1, g1, _ = _step(m, x, y)
        torch.testing.assert_close(o1, o0, rtol=0, atol=1e-5)
        scale = max(g.abs().max().item() for g in g0.values())
        for n in g0: assert (g1[n] - g0[n]).abs().max() <= max(5e-4 * g0[n].abs().max().item(), 1e-5 * scale), n
        assert type(to_plain(m).stages[0].blocks[0].ffn).__name__ == "LeFFN"
    with pytest.raises(ValueError, match="unknown part"): accelerate(plain, exclude=("kernel",))


def test_accelerate_swaps_exact_classes_only():
    "A subclass of a plain class (an ablation variant) keeps its own forward; its plain children are swapped."
    from lect_nb.attention import LocallyEnhancedAttention
    from lect_nb.speed.fast import FAST_FORMS
    class Variant(LocallyEnhancedAttention): "An ablation subclass: not in FAST_FORMS."
    torch.manual_seed(0)
    plain = create_model("lect_cifar", num_classes=10, drop_rate=0., drop_path_rate=0.)
    plain.stages[1].blocks[0].attn.__class__ = Variant
    fast = accelerate(copy.deepcopy(plain))
    blocks = fast.stages[1].blocks
    assert type(blocks[0].attn) is Variant
    if KERNELS:
        assert type(blocks[0].attn.qkv) is FAST_FORMS[type(plain.stages[1].blocks[0].attn.qkv)]
        assert type(blocks[1].attn) is FAST_FORMS[LocallyEnhancedAttention]
    x, y = torch.randn(4, 3, 32, 32), torch.arange(4)
    torch.testing.assert_close(_step(fast, x, y)[0], _step(plain, x, y)[0], rtol=0, atol=1e-5)
    assert type(to_plain(fast).stages[1].blocks[0].attn) is Variant
    with pytest.raises(TypeError): FAST_FORMS[Variant] = FAST_FORMS[LocallyEnhancedAttention]   # read-only

@pytest.mark.skipif(not KERNELS, reason="rebuilding is measured with the kernels' model")
def test_rebuilt_tensors_give_identical_gradients():
    "Rebuilding in backward changes nothing but memory: the same step to the bit with and without it."
    from lect_nb.speed import fast as fastmod
    torch.manual_seed(0)
    base = create_model("lect", num_classes=10, img_size=96)
    a, b = accelerate(copy.deepcopy(base)), accelerate(copy.deepcopy(base), exclude=("rebuild",))
    x, y = torch.randn(4, 3, 96, 96), torch.randint(0, 10, (4,))
    made, make = [0], fastmod._Recipe.make
    def counting(self): made[0] += 1; return make(self)
    fastmod._Recipe.make = counting
    try:
        ga = _step(a, x, y)[1]; n_on = made[0]
        gb = _step(b, x, y)[1]
    finally: fastmod._Recipe.make = make
    assert made[0] == n_on and n_on >= 3 * sum(len(s.blocks) for s in base.stages), n_on
    for n in ga: assert torch.equal(ga[n], gb[n]), n


def test_checkpointing_in_the_accelerated_model():
    "set_grad_checkpointing with dropout on: same gradients, BN counts each batch once, also when accelerated."
    torch.manual_seed(0)
    base = create_model("lect", num_classes=10, img_size=96)
    x, y = torch.randn(4, 3, 96, 96), torch.randint(0, 10, (4,))
    for m0 in (base, accelerate(copy.deepcopy(base))):
        m1 = copy.deepcopy(m0); m1.set_grad_checkpointing(True)
        s0, s1 = _step(m0, x, y), _step(m1, x, y)
        for n in s0[1]: torch.testing.assert_close(s1[1][n], s0[1][n], rtol=1e-4, atol=1e-6, msg=n)
        for n in s0[2]: torch.testing.assert_close(s1[2][n], s0[2][n], msg=n)


def test_without_kernels_the_model_stays_plain_with_one_message():
    code = ("import warnings, torch; from lect_nb.api import create_model; from lect_nb.speed.fast import accelerate, "
            "is_accelerated\nwith warnings.catch_warnings(record=True) as w:\n    warnings.simplefilter('always')\n"
            "    m = accelerate(create_model('lect_cifar'))\nprint(is_accelerated(m), len(w), w[0].message)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "LECT_NB_KERNELS": "0"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("False 1 lect_nb.speed.fast: C kernels unavailable (disabled by LECT_NB_KERNELS=0)"), r.stdout


def test_model_modules_do_not_load_the_speed_layer_or_matplotlib():
    code = ("import sys; import lect_nb.models; from lect_nb.api import create_model, list_models\n"
            "create_model('lect'); create_model('resnet'); list_models()\n"
            "print(sorted(m for m in sys.modules if m in ('lect_nb.speed.kernels', 'lect_nb.speed.fast') or "
            "m.startswith('matplotlib')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", r.stdout


SPEED_NAMES = ["kernels", "fast", "fused_", "rebuild", "BatchNormAct", "FastDropout", "keep_mask", "conv_gelu", "fast_gelu",
               "accelerate", "_RECOMPUTING", "_CHECKPOINTED", "use_rebuild", "then_conv", "after_conv"]

@pytest.mark.parametrize("module", ["core", "patch_embed", "projections", "attention", "leffn", "models"])
def test_model_modules_name_nothing_of_the_speed_layer(module):
    text = (ROOT / "lect_nb" / f"{module}.py").read_text()
    code = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#"))
    found = [n for n in SPEED_NAMES if re.search(rf"\b{re.escape(n)}", code)]
    assert not found, f"{module}.py names {found}"


def test_forward_hooks_fire_on_every_leaf_of_a_plain_lect():
    m = create_model("lect", num_classes=10, img_size=96)
    leaves = {n: mod for n, mod in m.named_modules() if not list(mod.children())}
    for training in (True, False):
        fired = set()
        hooks = [mod.register_forward_hook(lambda mod, i, o, n=n: fired.add(n)) for n, mod in leaves.items()]
        m.train(training); m(torch.randn(2, 3, 96, 96))
        for h in hooks: h.remove()
        assert set(leaves) == fired, sorted(set(leaves) - fired)[:5]
