"""timm's model contract, checked on every registered model (`list_models()`), so that code written for timm's
models works with ours: `create_model` arguments (`pretrained`, `global_pool`, `features_only`, drop rates),
`pretrained_cfg` keys that point at real modules, `forward_intermediates(x, indices, norm, stop_early,
output_fmt, intermediates_only)` returning `(final, intermediates)`, `reset_classifier(num_classes,
global_pool)`, `group_matcher`, input errors naming the registered model, and torch.fx feature extraction.
With timm installed (a dev dependency): `timm.data.resolve_data_config`, `timm.optim.create_optimizer_v2(...,
layer_decay=...)` and `timm.create_model` after `register_timm_models()`.

Each model runs at the cheapest size it supports (its fixed size, else 32x32, else 64x64), batch 2. The full
contract runs on the main models (`MAIN`); the ablations, LeCT configurations of the same class, get the
registry checks (`test_default_cfg`) and two of them the timm checks."""
import functools, re
import pytest
import torch
from torch import nn
from lect_nb.api import create_model, list_models, model_default_cfg, _MODEL_REGISTRY
from lect_nb.models import LeCT, LeCTStage

MODELS = [n for n in list_models() if _MODEL_REGISTRY[n].__module__.startswith("lect_nb.")]
MAIN = ["lect", "lect_v2", "lect_v3", "lect_noskip", "lect_cifar",
        "resnet", "convnext", "vit", "ceit", "alternet", "cvt", "localvit", "lesa"]
TIMM = MAIN + ["lect_grid2_cifar", "lect_v3_cifar"]
B = 2
CFG_KEYS = {"input_size", "num_classes", "mean", "std", "interpolation", "crop_pct", "first_conv", "classifier",
            "architecture"}


@functools.lru_cache(maxsize=None)
def cheap_size(name):
    "Its fixed size if it has one, else the smaller of 32x32 and 64x64 that it builds at."
    for size in (32, 64):
        try: m = create_model(name, num_classes=3, img_size=size)
        except ValueError: continue
        fixed = getattr(m, "fixed_img_size", None)
        return tuple(fixed) if fixed is not None else (size, size)
    raise AssertionError(f"{name} builds at neither 32x32 nor 64x64")


def build(name, **kw):
    torch.manual_seed(0)
    kw.setdefault("num_classes", 5)
    return create_model(name, img_size=cheap_size(name), **kw).eval()


def images(name, chans=3):
    torch.manual_seed(1)
    return torch.randn(B, chans, *cheap_size(name))


def test_main_models_listed():
    assert set(MAIN) <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_default_cfg(name):
    "timm's config keys; the registry name's size (`*_cifar`: 32x32); first_conv sees the images; head."
    cfg = model_default_cfg(name)
    want = (3, 32, 32) if name.endswith("_cifar") else (3, 224, 224)
    assert cfg["input_size"] == want, f"{name}: default input_size {cfg['input_size']}, expected {want}"
    m = build(name)
    pc = m.pretrained_cfg
    assert CFG_KEYS <= set(pc), f"{name}: pretrained_cfg lacks {CFG_KEYS - set(pc)}"
    assert m.default_cfg is pc and pc["architecture"] == name and pc["num_classes"] == 5
    assert pc["input_size"] == (3, *cheap_size(name))
    assert len(pc["mean"]) == len(pc["std"]) == 3
    conv = m.get_submodule(pc["first_conv"])
    assert isinstance(conv, nn.Conv2d) and conv.in_channels == 3, f"{name}: first_conv {pc['first_conv']!r} is {conv}"
    if name in MAIN:                                  # (the ablations are LeCTs: the same first_conv)
        seen = []
        h = conv.register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
        x = images(name)
        with torch.no_grad(): m.forward_features(x)
        h.remove()
        assert len(seen) == 1 and seen[0] is x, f"{name}: first_conv {pc['first_conv']!r} does not see the images"
    head = m.get_submodule(pc["classifier"])
    assert head is m.get_classifier() and isinstance(head, nn.Linear)
    assert head.in_features == m.head_hidden_size == m.num_features and head.out_features == 5


@pytest.mark.parametrize("name", MAIN)
def test_contract(name):
    "create_model's arguments, forward_intermediates, reset_classifier, input errors: timm's contract."
    build(name, pretrained=False, drop_rate=0.1, drop_path_rate=0.1)
    with pytest.raises(ValueError, match="pretrained=True needs a tag"):
        build(name, pretrained=True)
    with pytest.raises(ValueError, match="drop_path_rate must be a number in \\[0, 1\\)"):
        build(name, drop_path_rate=1.0)
    with pytest.raises(ValueError, match="needs num_classes=0"):
        build(name, global_pool="")
    with pytest.raises(ValueError, match="global_pool must be one of"):
        build(name, global_pool="median")
    m, x = build(name), images(name)
    n = len(m.feature_info)
    with torch.no_grad():
        # forward_intermediates: (final, maps); final is forward_features' output
        feats = m.forward_features(x)
        final, maps = m.forward_intermediates(x)
        torch.testing.assert_close(final, feats, rtol=0, atol=0)
        assert len(maps) == n >= 3
        for t, info in zip(maps, m.feature_info):
            r = info["reduction"]
            assert t.shape == (B, info["num_chs"], x.shape[2] // r, x.shape[3] // r), (name, t.shape, info)
        last2 = m.forward_intermediates(x, indices=2, output_fmt="NHWC", intermediates_only=True)  # the last 2
        assert isinstance(last2, list) and len(last2) == 2
        assert torch.equal(last2[0], maps[-2].permute(0, 2, 3, 1)) and torch.equal(last2[1], maps[-1].permute(0, 2, 3, 1))
        f0, first = m.forward_intermediates(x, indices=[0, -n], stop_early=True)       # duplicates, negatives
        assert len(first) == 1 and torch.equal(first[0], maps[0]) and torch.equal(f0, maps[0])
        normed = m.forward_intermediates(x, indices=[-1], norm=True, intermediates_only=True)
        assert normed[0].shape == maps[-1].shape
        # unpooled features: global_pool="" with num_classes=0, from create_model and from reset_classifier
        m0 = build(name, num_classes=0, global_pool="")
        m0.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("head.")})
        torch.testing.assert_close(m0(x), feats, rtol=0, atol=0)
        m.reset_classifier(0, "")
        torch.testing.assert_close(m(x), feats, rtol=0, atol=0)
        f = build(name, features_only=True, out_indices=(-2, -1))
        assert [t.shape[1] for t in f(x)] == [i["num_chs"] for i in m.feature_info[n - 2:]]
        assert f.feature_info.get("index") == [n - 2, n - 1] and f.out_indices == (n - 2, n - 1)
        assert f.feature_info.channels() == [i["num_chs"] for i in m.feature_info[n - 2:]] and len(f.feature_info) == n
    with pytest.raises(ValueError, match="out of range"):
        m.forward_intermediates(x, indices=[n])
    with pytest.raises(ValueError, match="output_fmt"):
        m.forward_intermediates(x, output_fmt="NLC")
    with pytest.raises(ValueError, match="needs num_classes=0"):
        m.reset_classifier(4)                                     # still unpooled: a classifier cannot follow
    m.reset_classifier(3, "avg")
    assert m.global_pool == "avg" and m.get_classifier().out_features == 3
    m.set_grad_checkpointing(True); m.set_grad_checkpointing(False)
    with pytest.raises(ValueError, match=f"^{name}: expected 3 input channels, got 4"):
        m(torch.randn(1, 4, *x.shape[2:]))


def block_prefixes(model):
    "Distinct transformer/residual blocks, from parameter names."
    pat = re.compile(r"^(stages\.\d+\.(?:blocks\.)?\d+|blocks\.\d+)\.")
    return {m[1] for n, _ in model.named_parameters() if (m := pat.match(n))}


@pytest.mark.parametrize("name", MAIN)
def test_fx_feature_extraction(name):
    "torchvision's create_feature_extractor traces the whole model (a LeCT stage as one leaf call): the last map "
    "(or the final norm's tokens) and the logits are those of the eager model."
    from torchvision.models.feature_extraction import create_feature_extractor
    m, x = build(name), images(name)
    leaf = {"leaf_modules": [LeCTStage]} if isinstance(m, LeCT) else {}
    last = "norm" if m.output_fmt == "NLC" else m.feature_info[-1]["module"]
    fx = create_feature_extractor(m, return_nodes={last: "features", "head": "logits"}, tracer_kwargs=leaf)
    with torch.no_grad():
        out = fx(x)
        want = m.forward_features(x) if last == "norm" else m.forward_intermediates(x, intermediates_only=True)[-1]
        torch.testing.assert_close(out["features"], want, rtol=0, atol=0)
        torch.testing.assert_close(out["logits"], m(x), rtol=0, atol=0)


# ---- with timm installed (a dev dependency)

@pytest.mark.parametrize("name", TIMM)
def test_timm_data_config_and_layer_decay(name):
    data = pytest.importorskip("timm.data")
    optim = pytest.importorskip("timm.optim")
    m = build(name)
    cfg = data.resolve_data_config(model=m)
    assert cfg["input_size"] == (3, *cheap_size(name)) and cfg["mean"] == m.pretrained_cfg["mean"]
    assert cfg["std"] == m.pretrained_cfg["std"] and cfg["interpolation"] == "bilinear" and cfg["crop_pct"] == 1.0
    g = create_model(name, in_chans=1, img_size=cheap_size(name))
    assert data.resolve_data_config(model=g)["input_size"] == (1, *cheap_size(name))

    opt = optim.create_optimizer_v2(m, "adamw", lr=1e-3, weight_decay=0.05, layer_decay=0.75)
    scale = {id(p): grp["lr_scale"] for grp in opt.param_groups for p in grp["params"]}
    params = dict(m.named_parameters())
    assert len(scale) == len(params), f"{name}: {len(params) - len(scale)} parameters not in the optimizer"
    by_name = {n: scale[id(p)] for n, p in params.items()}
    layers = 1 + len(block_prefixes(m)) + 1                            # stem, every block, head
    assert len(set(by_name.values())) == layers, f"{name}: {len(set(by_name.values()))} lr scales, {layers} layers"
    assert by_name["head.weight"] == 1.0
    assert by_name[m.pretrained_cfg["first_conv"] + ".weight"] == pytest.approx(0.75 ** (layers - 1))
    coarse = m.group_matcher(coarse=True)
    assert set(coarse) == {"stem", "blocks"}


def test_timm_create_model_after_registration():
    timm = pytest.importorskip("timm")
    from lect_nb.timm import register_timm_models
    names = register_timm_models("lect*")
    assert "lect_cifar" in names and timm.is_model("lect_cifar") and register_timm_models("lect*") == names
    m = timm.create_model("lect_cifar", pretrained=False, num_classes=7, drop_path_rate=0.05,
                          pretrained_cfg_overlay=dict(mean=(0.5,) * 3)).eval()
    assert m(torch.randn(1, 3, 32, 32)).shape == (1, 7) and m.pretrained_cfg["mean"] == (0.5,) * 3
    f = timm.create_model("lect_cifar", features_only=True, out_indices=[2])
    assert [t.shape for t in f(torch.randn(1, 3, 32, 32))] == [(1, 192, 4, 4)]
    with pytest.raises(ValueError, match="pretrained=True needs a tag"):
        timm.create_model("lect_cifar", pretrained=True)
    assert timm.is_model("test_resnet")                                 # timm's own: never overwritten
    with pytest.raises(ValueError, match="timm already has a model named 'test_resnet'"):
        register_timm_models("resnet", prefix="test_")
    assert timm.models.model_entrypoint("test_resnet").__module__.startswith("timm.")


def test_fx_feature_extraction_survives_notebooks_redefining_the_model_code():
    """nbdev-test runs notebooks in reused processes: after the export cells of notebooks 05 (the model)
    and 05a (the contract and registry) have run there, the library's registry still builds the
    library's classes, and timm's fx feature extraction keeps every LeCT stage whole (run in a
    subprocess, which may have its registry changed)."""
    import subprocess, sys, textwrap
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    code = textwrap.dedent("""
        import timm, lect_nb.api, lect_nb.models  # the library first, then the notebooks' cells
        for f in ("lect_nb/models.py", "lect_nb/api.py"):
            src = open(f).read().replace("from .", "from lect_nb.")
            exec(compile(src, f"<{f}>", "exec"), {"__name__": "__main__"})
        from lect_nb.timm import register_timm_models
        from timm.models import create_feature_extractor
        register_timm_models()
        m = timm.create_model("lect_cifar", num_classes=10).eval()
        assert type(m) is lect_nb.api.LeCTModel, type(m)
        assert type(m.stages[0]) is lect_nb.models.LeCTStage, type(m.stages[0])
        create_feature_extractor(m, return_nodes={"stages.1": "s1", "stages.2": "s2"})
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_unregister_model_undoes_register_model():
    "A temporary registration leaves nothing behind; unknown names are a clear error."
    from lect_nb.api import register_model, unregister_model, _DEFAULT_CFGS
    fn = register_model("_temporary", input_size=(1, 8, 8))(lambda **kw: nn.Identity())
    assert "_temporary" in list_models() and model_default_cfg("_temporary")["input_size"] == (1, 8, 8)
    assert unregister_model("_temporary") is fn
    assert "_temporary" not in list_models() and "_temporary" not in _DEFAULT_CFGS
    with pytest.raises(ValueError, match="unknown model '_temporary'"):
        create_model("_temporary")
    with pytest.raises(ValueError, match="no model named '_temporary' is registered"):
        unregister_model("_temporary")


def test_size_errors_name_the_sizes_a_model_accepts():
    m = create_model("lect", num_classes=3).eval()                      # built for 224x224
    with pytest.raises(ValueError, match=r"lect: image size 128x128 is not a multiple of 224: built for 224x224, "
                                         r"it accepts heights and widths that are multiples of 224.*"
                                         r"img_size=\(128, 128\)"):
        m(torch.randn(1, 3, 128, 128))
    m = create_model("lect", num_classes=3, img_size=128).eval()       # pooling ratios for 128x128 maps
    assert m.pretrained_cfg["min_input_size"] == (3, 32, 32)
    with torch.no_grad():
        assert m(torch.randn(1, 3, 32, 32)).shape == m(torch.randn(1, 3, 128, 128)).shape == (1, 3)
    v3 = create_model("lect_v3", num_classes=3, img_size=32)
    with pytest.raises(ValueError, match=r"only supports 32x32 inputs, got 64x64; .*img_size=\(64, 64\)"):
        v3(torch.randn(1, 3, 64, 64))
    assert v3.pretrained_cfg["fixed_input_size"] and v3.pretrained_cfg["min_input_size"] == (3, 32, 32)
