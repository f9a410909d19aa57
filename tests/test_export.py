"""ONNX export (notebook 09d): every main model of the LeCT report's Tables 2 and 3, the CIFAR forms of LeCT
and the related models CvT, LocalViT and LESA export with a free batch axis at their default size and at the
smallest size they accept, and onnxruntime matches PyTorch on batches of 1 and 3."""
import subprocess, sys
import pytest
import torch

for _dep in ("onnx", "onnxscript", "onnxruntime"):
    pytest.importorskip(_dep, reason=f"{_dep} is a development extra (pip install -e '.[dev]')")

from lect_nb.api import create_model, model_default_cfg
from lect_nb.training.export import ExportError, onnx_parity, to_onnx

# name -> the smallest square size it builds and runs at (a multiple of 8, found by trying each); the
# second size each model is exported at, beside its default one
SMALLEST = dict(lect=16, lect_v2=16, lect_v3=16, lect_cifar=8, lect_v2_cifar=8, lect_v3_cifar=8,
                resnet=8, convnext=8, vit=8, ceit=8, alternet=8, cvt=8, localvit=8, lesa=8)
CASES = [(n, s) for n in SMALLEST for s in (model_default_cfg(n)["input_size"][1], SMALLEST[n])]
TOLERANCE = 1e-4

def test_the_list_covers_the_reports_tables():
    from lect_nb.training.settings import TABLE2_MODELS
    assert set(TABLE2_MODELS) | {"cvt", "localvit", "lesa"} <= set(SMALLEST)
    assert {f"{n}_cifar" for n in ("lect", "lect_v2", "lect_v3")} <= set(SMALLEST)
    assert all(a != b for a, b in zip(CASES[::2], CASES[1::2]))      # two sizes per model

@pytest.mark.parametrize("name,size", CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_export_matches_pytorch(name, size, tmp_path):
    torch.manual_seed(0)
    model = create_model(name, img_size=size, num_classes=10)
    f = to_onnx(model, tmp_path / f"{name}.onnx")
    diffs = onnx_parity(model, f, batch_sizes=(1, 3))
    print(f"{name} at {size}: max |onnxruntime - torch| {diffs}")
    assert sorted(diffs) == [1, 3]
    assert max(diffs.values()) <= TOLERANCE, diffs

def test_export_by_name_and_the_input_it_declares(tmp_path):
    import onnx
    f = to_onnx("lect_cifar", tmp_path / "m.onnx", img_size=16, in_chans=1)
    inp = onnx.load(str(f)).graph.input[0]
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert inp.name == "images" and isinstance(dims[0], str) and dims[1:] == [1, 16, 16]

def test_an_operation_without_onnx_form_is_one_line_naming_it(tmp_path):
    class Hist(torch.nn.Module):
        def forward(self, x): return torch.histc(x, 4)[None].expand(x.shape[0], -1)
    with pytest.raises(ExportError) as e:
        to_onnx(Hist(), tmp_path / "h.onnx", img_size=8, in_chans=1)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("Hist: cannot export to ONNX at 8x8: the operation aten.histc")
    with pytest.raises(ValueError, match="opset must be an int >= 18"):
        to_onnx(Hist(), tmp_path / "h.onnx", img_size=8, in_chans=1, opset=14)

def test_importing_the_exporter_loads_no_onnx_package():
    probe = ("import sys, lect_nb, lect_nb.training.export; "
             "print(sorted(m for m in ('onnx', 'onnxscript', 'onnxruntime') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert (r.returncode, r.stdout.strip()) == (0, "[]"), r.stderr[-2000:]
