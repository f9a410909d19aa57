"""The baseline and related families (notebooks 06*, 07*): one module per family, registered whatever the
import order; `drop_rate` / `drop_path_rate` on every model; `set_grad_checkpointing` that really recomputes
the blocks and changes no number; input errors that name the model."""
import copy, subprocess, sys
import pytest
import torch
from torch import nn
from lect_nb.core import DropPath
from lect_nb.api import create_model, list_models, _MODEL_REGISTRY

FAMILIES = {"resnet": "lect_nb.baselines.resnet", "convnext": "lect_nb.baselines.convnext", "vit": "lect_nb.baselines.vit", "ceit": "lect_nb.baselines.ceit",
            "alternet": "lect_nb.baselines.alternet", "cvt": "lect_nb.baselines.cvt", "localvit": "lect_nb.baselines.localvit", "lesa": "lect_nb.baselines.lesa"}
NAMES = [n for n in list_models() if _MODEL_REGISTRY[n].__module__ in FAMILIES.values()]
SIZE = (32, 32)


def test_every_family_registered_from_its_own_module():
    assert sorted(NAMES) == sorted(FAMILIES)
    for name, mod in FAMILIES.items():
        assert _MODEL_REGISTRY[name].__module__ == mod


@pytest.mark.parametrize("mod", sorted(set(FAMILIES.values()) | {"lect_nb.baselines.layers", "lect_nb.baselines.related",
                                                                   "lect_nb.studies.receptive_fields"}))
def test_import_order_and_no_matplotlib(mod):
    "Imported first in a fresh interpreter, any of these modules works, create_model finds all eight families, "
    "and matplotlib stays unloaded (it is imported only inside `plot_erfs`)."
    code = (f"import sys, {mod}\nfrom lect_nb.api import create_model, list_models\n"
            f"missing = {sorted(FAMILIES)!r}\nmissing = [n for n in missing if n not in list_models()]\n"
            "assert not missing, missing\ncreate_model('ceit', img_size=32)\n"
            "assert 'matplotlib' not in sys.modules, 'matplotlib was imported'\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def build(name, **kw):
    torch.manual_seed(0)
    return create_model(name, num_classes=5, img_size=SIZE, **kw)


@pytest.mark.parametrize("name", NAMES)
def test_drop_rates(name):
    "`drop_rate` and `drop_path_rate` reach layers of the model; at 0 training is deterministic; bad rates fail."
    m = build(name, drop_rate=0.25, drop_path_rate=0.3)
    dropouts = [mod.p for mod in m.modules() if isinstance(mod, nn.Dropout)]
    paths = [mod.p for mod in m.modules() if isinstance(mod, DropPath)]
    assert 0.25 in dropouts, f"{name}: no dropout with p=0.25 ({sorted(set(dropouts))})"
    assert paths and abs(max(paths) - 0.3) < 1e-6, f"{name}: drop path rates {paths}"
    x = torch.randn(4, 3, *SIZE)
    m.train()
    with torch.no_grad():
        assert not torch.equal(m(x), m(x)), f"{name}: dropout/drop path inactive in training"
    m0 = build(name, drop_rate=0., drop_path_rate=0.).train()
    assert all(mod.p == 0 for mod in m0.modules() if isinstance(mod, (nn.Dropout, DropPath))), name
    with torch.no_grad():
        torch.testing.assert_close(m0(x), m0(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="drop_path_rate must be a number in \\[0, 1\\), got 1.5"):
        build(name, drop_path_rate=1.5)
    with pytest.raises(ValueError, match="drop_rate must be a number in \\[0, 1\\), got -0.1"):
        build(name, drop_rate=-0.1)


def _blocks(m):
    "The modules the model runs through `run_block` (its residual blocks)."
    from lect_nb.baselines.resnet import BasicBlock
    from lect_nb.baselines.convnext import ConvNeXtBlock
    from lect_nb.baselines.layers import TransformerBlock
    from lect_nb.baselines.alternet import PreActBlock, AttentionBlock
    from lect_nb.baselines.cvt import CvTBlock
    kinds = (BasicBlock, ConvNeXtBlock, TransformerBlock, PreActBlock, AttentionBlock, CvTBlock)
    return [mod for mod in m.modules() if isinstance(mod, kinds)]


def _train_step(m, x, w, enable):
    "Loss, gradients, buffers after one training step, and how often each block's forward started."
    m.set_grad_checkpointing(enable)
    calls = []
    hooks = [b.register_forward_pre_hook(lambda *a: calls.append(1)) for b in _blocks(m)]
    torch.manual_seed(123)                                # the same dropout / drop path draws in both runs
    loss = (m.train()(x) * w).sum()
    loss.backward()
    for h in hooks: h.remove()
    return loss.detach(), {n: p.grad for n, p in m.named_parameters()}, dict(m.named_buffers()), len(calls)


@pytest.mark.parametrize("name", NAMES)
def test_grad_checkpointing_changes_nothing_but_recomputes(name):
    m = build(name, drop_rate=0.1, drop_path_rate=0.1)
    n_blocks = len(_blocks(m))
    assert n_blocks > 0
    x, w = torch.randn(2, 3, *SIZE), torch.randn(2, 5)
    loss0, g0, b0, c0 = _train_step(copy.deepcopy(m), x, w, False)
    loss1, g1, b1, c1 = _train_step(copy.deepcopy(m), x, w, True)
    assert c0 == n_blocks and c1 == 2 * n_blocks, f"{name}: {c0} / {c1} block calls for {n_blocks} blocks"
    torch.testing.assert_close(loss1, loss0, rtol=0, atol=1e-6)
    assert g0.keys() == g1.keys() and all(g is not None for g in g1.values())
    for k in g0: torch.testing.assert_close(g1[k], g0[k], rtol=1e-6, atol=1e-6, msg=lambda s: f"{name} {k}: {s}")
    for k in b0: torch.testing.assert_close(b1[k], b0[k], rtol=0, atol=0, msg=lambda s: f"{name} {k}: {s}")
    # no gradients or eval mode: the plain forward, one call per block
    mc = copy.deepcopy(m)
    mc.set_grad_checkpointing(True)
    calls = []
    for b in _blocks(mc): b.register_forward_pre_hook(lambda *a: calls.append(1))
    with torch.no_grad(): mc.train()(x)
    mc.eval()(x)
    assert len(calls) == 2 * n_blocks


@pytest.mark.parametrize("name", NAMES)
def test_input_errors_name_the_model(name):
    m = build(name).eval()
    with pytest.raises(ValueError, match=f"^{name}: expected 3 input channels, got 4"):
        m(torch.randn(1, 4, *SIZE))
    with pytest.raises(ValueError, match=f"^{name}: image size 33x32"):
        m(torch.randn(1, 3, 33, 32))
