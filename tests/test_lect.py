"""LeCT-specific checks (the generic per-model checks live in test_models.py)."""
import re
import pytest
import torch
import torch.nn.functional as F
from lect_nb.api import count_params, list_models, create_model
from lect_nb.models import inert_parameters

LECT = ["lect", "lect_v2", "lect_v3", "lect_noskip", "lect_cifar"]


def test_registered():
    assert set(LECT) <= set(list_models("lect*"))


@pytest.mark.parametrize("name,classes,target", [("lect", 100, 1_168_932), ("lect", 10, 1_151_562),
                                                 ("lect_v3", 100, 1_231_539), ("lect_v3", 10, 1_214_169)])
def test_exact_parameter_counts(name, classes, target):
    assert count_params(create_model(name, num_classes=classes)) == target


@pytest.mark.parametrize("name,size", [("lect", 224), ("lect", 96), ("lect", (96, 160)), ("lect_cifar", 32),
                                       ("lect_cifar", (32, 48)), ("lect_v2", 224), ("lect_v3", 224), ("lect_noskip", 224)])
def test_fused_equals_reference_and_backward(name, size):
    torch.manual_seed(0)
    hw = (size, size) if isinstance(size, int) else size
    # no drop path here: with batch 2 a whole branch is dropped for both samples 1% of the time
    m = create_model(name, num_classes=10, img_size=size, drop_path_rate=0.).eval()
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        y_fused = m(x)
        m.set_attn_impl("reference")
        y_ref = m(x)
    assert (y_fused - y_ref).abs().max().item() <= 1e-5
    m.set_attn_impl("fused")
    m.train()
    out = m(x)
    assert torch.isfinite(out).all()
    F.cross_entropy(out, torch.tensor([0, 1])).backward()
    inert = inert_parameters(m)  # train-mode gradients that are zero by construction (notebook 05)
    top = max(p.grad.abs().max().item() for p in m.parameters())
    for n, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
        if n in inert:  # zero, up to float32 rounding of the terms that cancel
            assert p.grad.abs().max().item() <= 1e-5 * top, n
        else:
            assert p.grad.abs().max().item() > 1e-9 * top, n


def test_batch_of_one_gradients_match_batch_of_two():
    """Per-sample gradients at batch 1 equal the sum decomposition at batch 2 (eval-mode BN), which
    catches wrong BatchNorm backward on mixed memory layouts."""
    torch.manual_seed(0)
    m = create_model("lect_cifar", num_classes=5, img_size=32, drop_rate=0., drop_path_rate=0.).eval()
    x = torch.randn(2, 3, 32, 32)
    def grads(inp):
        m.zero_grad(); m(inp).square().sum().backward()
        return torch.cat([p.grad.flatten() for p in m.parameters()])
    g = grads(x[:1]) + grads(x[1:])
    torch.testing.assert_close(g, grads(x), rtol=1e-4, atol=1e-5)


def test_bad_inputs_are_named():
    m = create_model("lect")
    with pytest.raises(ValueError, match="expected 3 input channels, got 1"):
        m(torch.randn(1, 1, 224, 224))
    with pytest.raises(ValueError, match="not a multiple of 224"):
        m(torch.randn(1, 3, 112, 224))
    with pytest.raises(ValueError, match="not a multiple of the total stride 16"):
        create_model("lect", img_size=100)
    with pytest.raises(ValueError, match="lect_v3: this model only supports 96x96 inputs, got 224x224"):
        create_model("lect_v3", img_size=96)(torch.randn(1, 3, 224, 224))   # built for 96x96: that size only
    with pytest.raises(ValueError, match="unknown model 'lectt'"):
        create_model("lectt")


def test_attention_maps_off_by_default():
    m = create_model("lect_cifar", img_size=32).eval()
    with torch.no_grad():
        m(torch.randn(1, 3, 32, 32))
    assert m.attention_maps() == {}
    m.store_attention()
    with torch.no_grad():
        m(torch.randn(1, 3, 32, 32))
    maps = m.attention_maps()
    assert len(maps) == 5
    a = maps["stages.1.blocks.0.attn"]
    torch.testing.assert_close(a.sum(-1), torch.ones_like(a.sum(-1)))


@pytest.mark.parametrize("name,size", [("lect", 224), ("lect_v2", 224), ("lect_v3", 224), ("lect_noskip", 224), ("lect_cifar", 32)])
def test_compile_fullgraph(name, size):
    torch._dynamo.reset()
    m = create_model(name, num_classes=10, img_size=size).eval()
    x = torch.randn(1, 3, size, size)
    compiled = torch.compile(m, backend="eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), m(x), rtol=1e-5, atol=1e-5)


def test_intermediates_and_reset_classifier():
    m = create_model("lect", img_size=(96, 160))
    feats = m.forward_intermediates(torch.randn(1, 3, 96, 160), intermediates_only=True)
    assert [tuple(f.shape[1:]) for f in feats] == [(64, 24, 40), (128, 12, 20), (192, 6, 10)]
    assert [f["num_chs"] for f in m.feature_info] == [64, 128, 192]
    m.reset_classifier(7)
    assert m(torch.randn(1, 3, 96, 160)).shape == (1, 7)
    m.reset_classifier(0)
    assert m(torch.randn(1, 3, 96, 160)).shape == (1, 192)


@pytest.mark.parametrize("name,size", [("lect_cifar", 32), ("lect_v2", 96)])
def test_bf16_autocast_training_on_cpu(name, size):
    "lect-train --amp bf16 on the CPU: BN runs on bf16 maps with float32 parameters; every gradient is finite and close to float32's."
    torch.manual_seed(0)
    m = create_model(name, num_classes=10, img_size=size, drop_rate=0., drop_path_rate=0.).train()   # same function in both
    x, y = torch.randn(4, 3, size, size), torch.randint(0, 10, (4,))
    state = {k: v.clone() for k, v in m.state_dict().items()}
    torch.nn.functional.cross_entropy(m(x), y).backward()
    g32 = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.load_state_dict(state); m.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(m(x), y)
    loss.backward()
    for n, p in m.named_parameters():
        assert p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all(), n
    cos = torch.nn.functional.cosine_similarity(torch.cat([p.grad.flatten() for p in m.parameters()]),
                                                torch.cat([g.flatten() for g in g32.values()]), 0)
    assert cos > 0.95, cos   # the same function at lower precision


def _step_grads(m, x, y, seed=1):
    torch.manual_seed(seed)
    torch.nn.functional.cross_entropy(m(x), y).backward()
    return {n: p.grad.clone() for n, p in m.named_parameters()}


def test_size_advice_works():
    "A forward at a size `lect` does not take names a size it takes and an img_size that builds (issue 36)."
    m = create_model("lect", num_classes=3).eval()
    with pytest.raises(ValueError) as e:
        m(torch.randn(1, 3, 17, 17))
    msg = str(e.value)
    assert "\n" not in msg and "img_size=(17, 17)" not in msg, msg
    took = re.search(r"e\.g\. (\d+)x(\d+)", msg)
    built = re.search(r"build it with img_size=\((\d+), (\d+)\) for (\d+)x(\d+) images", msg)
    assert took and built, msg
    with torch.no_grad():
        assert m(torch.randn(1, 3, *map(int, took.groups()))).shape == (1, 3)
        hw = tuple(map(int, built.groups()[:2]))
        assert hw == tuple(map(int, built.groups()[2:])) == (16, 16)
        assert create_model("lect", num_classes=3, img_size=hw).eval()(torch.randn(1, 3, *hw)).shape == (1, 3)
    v3 = create_model("lect_v3", num_classes=3, img_size=32)      # one size only: the advice builds another
    with pytest.raises(ValueError, match=r"only supports 32x32 inputs, got 17x17; or build it with "
                                         r"img_size=\(16, 16\) for 16x16 images$"):
        v3(torch.randn(1, 3, 17, 17))
    with torch.no_grad():
        assert create_model("lect_v3", num_classes=3, img_size=16).eval()(torch.randn(1, 3, 16, 16)).shape == (1, 3)


def _package_models() -> list[str]:
    "The models lect_nb registers (other test modules register small test models of their own)."
    from lect_nb.api import _MODEL_REGISTRY
    return [n for n in list_models() if _MODEL_REGISTRY[n].__module__.startswith("lect_nb.")]

@pytest.mark.parametrize("name", _package_models())
def test_uint8_images_refused_in_one_line(name):
    "Bytes into any registered model: one line naming the dtype and the conversion (issue 36)."
    m = create_model(name, num_classes=3)
    c, h, w = m.pretrained_cfg["input_size"]
    with pytest.raises(ValueError, match=rf"^{name}: expected floating-point images, got torch\.uint8; "
                                         r"convert them, e\.g\. x\.float\(\) / 255, then normalise"):
        m(torch.zeros(1, c, h, w, dtype=torch.uint8))
