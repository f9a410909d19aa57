"""timm's generic model tests, on our models: each of the main models is built through `timm.create_model`
after `register_timm_models()` and put through the checks timm's own test suite runs on every timm model
(its tests/test_models.py): forward, backward reaching every parameter, the default configuration (its keys,
`pool_size`, classifier and first convolution), `resolve_data_config`, `create_optimizer_v2`, `features_only`
with timm's `FeatureInfo` interface, `forward_intermediates`, `reset_classifier`, batch consistency,
channels_last, torch.fx (timm's feature extraction) and `torch.export`. TorchScript is out of scope.

Each model is built at the smallest size it accepts among 32x32 and 64x64 (LeCTv3 takes only the size it is
built for), with batch 2, so the file runs in a few minutes on two CPU cores."""
import functools, math
import pytest
import torch

timm = pytest.importorskip("timm")
from timm.data import resolve_data_config, create_transform
from timm.optim import create_optimizer_v2
from timm.models import FeatureInfo as TimmFeatureInfo
from timm.layers import get_notrace_modules, get_notrace_functions
from torchvision.models.feature_extraction import get_graph_node_names, create_feature_extractor
from lect_nb.timm import register_timm_models

MODELS = ["lect", "lect_v2", "lect_v3", "lect_noskip", "lect_cifar",
          "resnet", "convnext", "vit", "ceit", "alternet", "cvt", "localvit", "lesa"]
B = 2
TIMM_CFG_KEYS = {"input_size", "num_classes", "mean", "std", "interpolation", "crop_pct", "first_conv",
                 "classifier", "pool_size"}


@functools.lru_cache(maxsize=None)
def registered(name):
    "Our `name` in timm's registry (registered once per process; registering again changes nothing)."
    assert register_timm_models(name) == [name] and register_timm_models(name) == [name]
    return name


@functools.lru_cache(maxsize=None)
def size(name):
    "The smallest of 32 and 64 that `name` builds at and accepts as input."
    for s in (32, 64):
        try: m = timm.create_model(registered(name), img_size=s, num_classes=3)
        except ValueError: continue
        assert m.pretrained_cfg["input_size"] == (3, s, s)
        return s
    raise AssertionError(f"{name} builds at neither 32x32 nor 64x64")


def build(name, **kw):
    torch.manual_seed(0)
    return timm.create_model(registered(name), pretrained=False, img_size=size(name), **kw)


def images(name, batch=B):
    torch.manual_seed(1)
    return torch.randn(batch, 3, size(name), size(name))


def is_map_model(model):
    return getattr(model, "output_fmt", "NCHW") == "NCHW"


@pytest.mark.parametrize("name", MODELS)
def test_registered_with_its_cfg(name):
    "timm's registry knows the model and its configuration without building it."
    registered(name)
    assert timm.is_model(name) and name in timm.list_models(name_matches_cfg=True)
    cfg = timm.models.get_pretrained_cfg(name)
    want = (3, 32, 32) if name.endswith("_cifar") else (3, 224, 224)
    assert cfg.input_size == want and cfg.architecture == name and cfg.classifier == "head"
    assert cfg.first_conv and cfg.min_input_size is not None
    m = build(name)
    assert (cfg.pool_size is not None) == is_map_model(m)
    assert cfg.fixed_input_size == (name == "lect_v3")
    assert timm.models.get_pretrained_cfg_value(name, "input_size") == want


@pytest.mark.parametrize("name", MODELS)
def test_forward(name):
    m, x = build(name).eval(), images(name)
    with torch.no_grad(): out = m(x)
    assert out.shape == (B, m.num_classes) and not torch.isnan(out).any()


@pytest.mark.parametrize("name", MODELS)
def test_backward_reaches_every_parameter(name):
    m = build(name, num_classes=42).train()
    out = m(images(name))
    assert out.shape == (B, 42)
    out.mean().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    assert not missing, f"{name}: no gradient for {missing}"
    assert sum(p.numel() for p in m.parameters()) == sum(p.grad.numel() for p in m.parameters())


@pytest.mark.parametrize("name", MODELS)
def test_default_cfg(name):
    "timm's keys; forward_features and the unpooled forward have the size `pool_size` says; names exist."
    m, x = build(name).eval(), images(name)
    cfg = m.default_cfg
    assert m.pretrained_cfg is cfg and TIMM_CFG_KEYS <= set(cfg)
    assert cfg["input_size"] == (3, size(name), size(name)) and cfg["architecture"] == name
    sd = m.state_dict()
    assert cfg["classifier"] + ".weight" in sd and cfg["first_conv"] + ".weight" in sd
    with torch.no_grad():
        feats = m.forward_features(x)
        if is_map_model(m):
            assert feats.shape[-2:] == cfg["pool_size"] and feats.shape[1] == m.num_features
        else:                                            # tokens (B, N, C): timm's ViTs, no pool_size
            assert cfg["pool_size"] is None and feats.shape[-1] == m.num_features
        m.reset_classifier(0)
        pooled = m(x)
        assert pooled.shape == (B, m.num_features)
        m.reset_classifier(0, "")
        unpooled = m(x)
        assert unpooled.shape == feats.shape
        if is_map_model(m): assert unpooled.shape[-2:] == cfg["pool_size"]


@pytest.mark.parametrize("name", MODELS)
def test_size_limits_in_cfg(name):
    "min_input_size is accepted (at the size it was built for); a fixed-size model takes only that size."
    m = build(name).eval()
    cfg = m.pretrained_cfg
    c, h, w = cfg["min_input_size"]
    with torch.no_grad(): assert m(torch.randn(1, c, h, w)).shape == (1, m.num_classes)
    if cfg.get("fixed_input_size"):
        assert cfg["min_input_size"] == cfg["input_size"]
        with pytest.raises(ValueError, match=f"only supports {h}x{w}"):
            m(torch.randn(1, c, 2 * h, 2 * w))


@pytest.mark.parametrize("name", MODELS)
def test_data_config_and_transform(name):
    from PIL import Image
    m = build(name)
    cfg = resolve_data_config(model=m)
    for k in ("input_size", "mean", "std", "interpolation", "crop_pct"):
        assert cfg[k] == m.pretrained_cfg[k], k
    t = create_transform(**cfg)
    img = t(Image.new("RGB", (50, 40), (128, 64, 32)))
    assert img.shape == cfg["input_size"]


@pytest.mark.parametrize("name", MODELS)
def test_create_optimizer(name):
    m = build(name)
    for kw in ({}, {"layer_decay": 0.75}):
        opt = create_optimizer_v2(m, "adamw", lr=1e-3, weight_decay=0.05, **kw)
        in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
        assert in_opt == {id(p) for p in m.parameters()}, kw
    m(images(name)).mean().backward()
    opt.step()


@pytest.mark.parametrize("name", MODELS)
def test_features_only(name):
    "timm's features_only contract, with timm's FeatureInfo interface (ours, compared with timm's class)."
    x = images(name)
    s = size(name)
    f = build(name, features_only=True).eval()
    fi = f.feature_info
    channels, reductions = fi.channels(), fi.reduction()
    assert len(channels) >= 3 and len(fi) == len(channels)
    theirs = TimmFeatureInfo([dict(d) for d in f.model.feature_info], fi.out_indices)
    for attr in ("channels", "reduction", "module_name", "get_dicts"):
        assert getattr(fi, attr)() == getattr(theirs, attr)(), attr
    assert fi.get_dicts(keys=["num_chs"], idx=[0]) == theirs.get_dicts(keys=["num_chs"], idx=[0])
    assert fi[0] == theirs[0] and fi.channels(0) == theirs.channels(0)
    with torch.no_grad(): outs = f(x)
    assert len(outs) == len(channels)
    for c, r, o in zip(channels, reductions, outs):
        assert o.shape[:2] == (B, c) and not torch.isnan(o).any()
        assert o.shape[2] <= math.ceil(s / r) + 1 and o.shape[3] <= math.ceil(s / r) + 1
    g = build(name, features_only=True, feature_cls="getter", out_indices=(-1,)).eval()
    assert g.feature_info.out_indices == (len(fi) - 1,) and g.feature_info.channels() == channels[-1:]
    with torch.no_grad(): torch.testing.assert_close(g(x)[0], outs[-1], rtol=0, atol=0)
    with pytest.raises(ValueError, match="feature_cls='hook' does not apply"):
        build(name, features_only=True, feature_cls="hook")


@pytest.mark.parametrize("name", MODELS)
def test_forward_intermediates(name):
    m, x = build(name).eval(), images(name)
    info = TimmFeatureInfo([dict(d) for d in m.feature_info], len(m.feature_info))
    with torch.no_grad():
        final, feats = m.forward_intermediates(x)
        torch.testing.assert_close(final, m.forward_features(x), rtol=0, atol=0)
        assert len(feats) == len(info.channels()) >= 3
        for c, r, t in zip(info.channels(), info.reduction(), feats):
            assert t.shape == (B, c, math.ceil(size(name) / r), math.ceil(size(name) / r))
        only = m.forward_intermediates(x, indices=2, intermediates_only=True, output_fmt="NHWC")
        assert [t.shape for t in only] == [t.permute(0, 2, 3, 1).shape for t in feats[-2:]]


@pytest.mark.parametrize("name", MODELS)
def test_reset_classifier(name):
    m, x = build(name).eval(), images(name)
    m.reset_classifier(7)
    assert m.get_classifier().out_features == 7 and m.num_classes == 7
    with torch.no_grad(): assert m(x).shape == (B, 7)


@pytest.mark.parametrize("name", MODELS)
def test_batch_consistency(name):
    "In eval mode each image's output does not depend on the rest of the batch."
    m, x = build(name).eval(), images(name, batch=3)
    with torch.no_grad():
        whole = m(x)
        alone = torch.cat([m(x[i:i + 1]) for i in range(len(x))])
    torch.testing.assert_close(whole, alone, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_channels_last(name):
    m, x = build(name).eval(), images(name)
    with torch.no_grad():
        ref = m(x)
        m = m.to(memory_format=torch.channels_last)
        out = m(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_fx(name):
    """torch.fx feature extraction of the last node with timm's leaf modules (a LeCT stage is one, registered by
    `register_timm_models`), as timm's tests do: eval gives the model's output, train reaches every parameter."""
    m, x = build(name), images(name)
    tracer = dict(leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions())  # timm's
    train_nodes, eval_nodes = get_graph_node_names(m, tracer_kwargs=tracer)
    fx = create_feature_extractor(m, train_return_nodes=[train_nodes[-1]], eval_return_nodes=[eval_nodes[-1]],
                                  tracer_kwargs=tracer)
    m.eval(); fx.eval()
    with torch.no_grad():
        out = fx(x)
        out = out[0] if isinstance(out, tuple) else next(iter(out.values()))
        torch.testing.assert_close(out, m(x), rtol=0, atol=0)
    fx.train()
    out = fx(x)
    out = out[0] if isinstance(out, tuple) else next(iter(out.values()))
    out.mean().backward()
    assert all(p.grad is not None for p in fx.parameters()), name


@pytest.mark.parametrize("name", MODELS)
def test_torch_export(name):
    m, x = build(name).eval(), images(name)
    ep = torch.export.export(m, (x,))
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x), m(x), rtol=1e-5, atol=1e-5)
