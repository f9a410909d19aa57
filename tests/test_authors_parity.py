"""The authors' checkpoints, converted, give the authors' logits.

`authors_forward` re-derives the authors' LeCT forward pass from PAPER.md section 2 directly on a state
dict in *their* key layout, with functional ops and their conventions (map side recovered as sqrt(N),
logits upsampled along the key axis with nn.Upsample-style bilinear interpolation, scale C**-0.5).
It is an independent reference: it shares no code with lect_nb.
"""
import math
from pathlib import Path
import pytest
import torch
import torch.nn.functional as F
from lect_nb.api import create_model
from lect_nb.authors import AUTHORS_SR_RATIOS, convert_authors_state_dict, load_authors_checkpoint

LISTING = Path(__file__).parent / "data" / "authors_lect_state_dict.txt"


AUTHORS_GRIDS = ((4, 4), (4, 4), (7, 7))   # the pooled grids of the listing (224x224, K = 14, 7, 2)


def synth_state_dict(section, seed=0, grids=AUTHORS_GRIDS):
    "Random tensors with the listing's shapes; LeCTv3's per-position kernels resized to other pooled `grids`."
    g = torch.Generator().manual_seed(seed)
    out, cur = {}, None
    for line in LISTING.read_text().splitlines():
        if line.startswith("## "):
            cur = line[3:].strip(); continue
        if cur != section or not line or line.startswith("#"):
            continue
        key, shape = line.split("\t")
        dims = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
        if ".v_upsample.2." in key and section == "LeCTv3":    # (C' * h * w, ...) for stage i's pooled grid
            i = int(key[len("blocks")]) - 1
            (h0, w0), (h, w) = AUTHORS_GRIDS[i], grids[i]
            dims = (dims[0] // (h0 * w0) * h * w,) + dims[1:]
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            out[key] = torch.rand(dims, generator=g) + 0.5
        elif key.endswith(("norm.weight", "norm1.weight", "norm2.weight")) or key.split(".")[0].startswith("norm"):
            out[key] = 1 + 0.1 * torch.randn(dims, generator=g)
        else:
            fan = max(1, math.prod(dims[1:]))
            out[key] = torch.randn(dims, generator=g) / math.sqrt(fan)
    return out


def _bn(x, sd, p):
    return F.batch_norm(x, sd[p + "running_mean"], sd[p + "running_var"], sd[p + "weight"], sd[p + "bias"], False, 0., 1e-5)


def _dw(x, w, b=None):
    return F.conv2d(x, w, b, 1, w.shape[-1] // 2, 1, x.shape[1])


def _attention(t, sd, p, heads, K, v3, hw=None):
    B, N, C = t.shape
    h, w = hw or (int(math.sqrt(N)),) * 2          # the authors recover the side as sqrt(N); explicit for non-square
    v = F.linear(t, sd[p + "proj_v.weight"])
    s = v.reshape(B, h, w, C).permute(0, 3, 1, 2)
    s = _bn(_dw(s, sd[p + "conv1.0.weight"]), sd, p + "conv1.1.")
    q = F.avg_pool2d(s, K)
    s = _bn(_dw(F.gelu(s), sd[p + "conv2.0.weight"]), sd, p + "conv2.1.")
    k = F.avg_pool2d(s, K)
    skip = F.gelu(s).reshape(B, C, N).transpose(1, 2)
    d = C // heads
    q = q.reshape(B, heads, d, -1).transpose(-2, -1)
    k = k.reshape(B, heads, d, -1).transpose(-2, -1)
    vv = v.reshape(B, N, heads, d).transpose(1, 2)
    logits = q @ k.transpose(-2, -1)
    n = logits.shape[-1]; hh, ww = h // K, w // K
    logits = F.interpolate(logits.reshape(-1, n, hh, ww), scale_factor=K, mode="bilinear") * C ** -0.5
    a = logits.reshape(B, heads, n, N).softmax(-1)
    o = (a @ vv).reshape(B, heads, hh, ww, d).permute(0, 1, 4, 2, 3).reshape(B, C, hh, ww)
    if v3:
        r = F.conv2d(o, sd[p + "v_upsample.0.weight"])
        cr = r.shape[1]; G = cr * hh * ww
        r = F.conv_transpose2d(r.reshape(B, G, 1, 1), sd[p + "v_upsample.2.weight"], sd[p + "v_upsample.2.bias"], groups=G)
        r = r.reshape(B, cr, hh, ww, K, K).permute(0, 1, 2, 4, 3, 5).reshape(B, cr, hh * K, ww * K)
        o = F.conv2d(r, sd[p + "v_upsample.4.weight"])
    else:
        o = F.interpolate(o, scale_factor=K, mode="bilinear")
        o = _bn(_dw(o, sd[p + "v_upsample.1.weight"]), sd, p + "v_upsample.2.")
    return F.linear(o.reshape(B, C, N).transpose(1, 2) + skip, sd[p + "proj.weight"], sd[p + "proj.bias"])


def _leff(t, sd, p, hw=None):
    B, N, C = t.shape
    h, w = hw or (int(math.sqrt(N)),) * 2
    x = t.reshape(B, h, w, C).permute(0, 3, 1, 2)
    x = F.gelu(_bn(F.conv2d(x, sd[p + "conv1.weight"], sd[p + "conv1.bias"]), sd, p + "bn1."))
    x = F.gelu(_bn(_dw(x, sd[p + "conv2.weight"], sd[p + "conv2.bias"]), sd, p + "bn2."))
    x = _bn(F.conv2d(x, sd[p + "conv3.weight"], sd[p + "conv3.bias"]), sd, p + "bn3.")
    return x.flatten(2).transpose(1, 2)


def authors_forward(sd, x, v3=False, heads=(2, 4, 6), srs=(14, 7, 2), depths=(1, 3, 1)):
    B = x.shape[0]
    for i in range(3):
        p = f"patch_embed{i + 1}."
        wgt = sd[p + "proj.weight"]
        x = F.conv2d(x, wgt, sd[p + "proj.bias"], 4 if i == 0 else 2, wgt.shape[-1] // 2)
        _, C, H, W = x.shape
        t = F.layer_norm(x.reshape(B, C, H * W).transpose(1, 2), (C,), sd[p + "norm.weight"], sd[p + "norm.bias"], 1e-5)
        for j in range(depths[i]):
            b = f"blocks{i + 1}.{j}."
            t = t + _attention(F.layer_norm(t, (C,), sd[b + "norm1.weight"], sd[b + "norm1.bias"], 1e-6), sd,
                               b + "leatt.", heads[i], srs[i], v3, (H, W))
            t = t + _leff(F.layer_norm(t, (C,), sd[b + "norm2.weight"], sd[b + "norm2.bias"], 1e-6), sd, b + "leff.",
                          (H, W))
        t = F.layer_norm(t, (C,), sd[f"norm{i + 1}.weight"], sd[f"norm{i + 1}.bias"], 1e-6)
        x = t.reshape(B, H, W, C).permute(0, 3, 1, 2)
    return F.linear(t.mean(1), sd["head.weight"], sd["head.bias"])


@pytest.mark.parametrize("section,name", [("LeCT", "lect"), ("LeCTv3", "lect_v3")])
@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_converted_checkpoint_gives_authors_logits(section, name, impl):
    sd = synth_state_dict(section)
    model = create_model(name, num_classes=100, attn_impl=impl).eval()
    model.load_state_dict(convert_authors_state_dict(sd, name), strict=True)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = authors_forward(sd, x, v3=(name == "lect_v3"))
        ours = model(x)
    assert ref.abs().max() > 0.1                      # a non-trivial function
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)


def test_converter_names_first_bad_key():
    sd = synth_state_dict("LeCT")
    sd["blocks2.1.leff.conv1.weight"] = torch.randn(10, 128, 1, 1)
    with pytest.raises(ValueError, match=r"blocks2\.1\.leff\.conv1\.weight.*shape \(10, 128, 1, 1\)"):
        convert_authors_state_dict(sd, "lect")
    sd = synth_state_dict("LeCT"); del sd["norm3.bias"]
    with pytest.raises(ValueError, match=r"lacks 1 tensors.*stages\.2\.norm\.bias"):
        convert_authors_state_dict(sd, "lect")
    with pytest.raises(ValueError, match="no authors' checkpoint layout"):
        convert_authors_state_dict(sd, "resnet")


def test_dataparallel_prefix_and_10_classes():
    sd = synth_state_dict("LeCT")
    sd["head.weight"], sd["head.bias"] = torch.randn(10, 192), torch.randn(10)
    sd = {"module." + k: v for k, v in sd.items()}
    model = create_model("lect", num_classes=10)
    model.load_state_dict(convert_authors_state_dict(sd, "lect"), strict=True)


@pytest.mark.parametrize("section,name", [("LeCT", "lect"), ("LeCTv3", "lect_v3")])
@pytest.mark.parametrize("size", [(448, 448), (224, 448)])
def test_authors_checkpoint_at_its_own_size(tmp_path, section, name, size):
    "A checkpoint trained at another size: built with the authors' ratios, our logits are theirs within 1e-5."
    grids = [(size[0] // s // k, size[1] // s // k) for s, k in zip((4, 8, 16), AUTHORS_SR_RATIOS)]
    sd = synth_state_dict(section, grids=grids)
    path = tmp_path / "authors.pth"
    torch.save(sd, path)
    model = load_authors_checkpoint(path, name, size).eval()
    assert model.sr_ratios == AUTHORS_SR_RATIOS and model.img_size == size
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = authors_forward(sd, x, v3=(name == "lect_v3"))
        ours = model(x)
    assert ref.abs().max() > 0.1
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    if size == (448, 448):              # our own derived ratios are another function there
        assert create_model(name, img_size=size).sr_ratios != AUTHORS_SR_RATIOS
