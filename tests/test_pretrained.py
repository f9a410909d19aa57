"""The weights that ship with the package: `create_model("name.tag", pretrained=True)` loads them and
they reach the test accuracy their configuration records."""
from pathlib import Path
import pytest
import torch
from lect_nb.api import create_model, pretrained_tags, pretrained_entry

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
TAGS = pretrained_tags()


def test_the_study_s_models_ship():
    assert {"lect_cifar.fashion_mnist", "resnet.fashion_mnist"} <= set(TAGS)


@pytest.mark.parametrize("full", TAGS)
def test_shipped_weights_reach_their_recorded_accuracy(full):
    from lect_nb.training.data import build_datasets
    m = create_model(full, pretrained=True).eval()
    cfg = m.pretrained_cfg
    for k in ("input_size", "num_classes", "mean", "std", "dataset", "test_acc", "trained_with"):
        assert k in cfg, k
    assert cfg["architecture"] == full.split(".")[0] and cfg["tag"] == full.split(".")[1]
    if DEBIAN.is_dir():  # the real test set: the recorded number, up to a few flipped predictions
        _, test, _ = build_datasets(cfg["dataset"], DEBIAN, augment=False)
        assert len(test) == cfg["test_images"] == 10_000
    else:  # the embedded sample's 1,000 test images (a subset of the real test set)
        _, test, _ = build_datasets("sample", augment=False)
    loader = torch.utils.data.DataLoader(test, batch_size=500)
    with torch.no_grad():
        acc = sum((m(x).argmax(1) == y).sum().item() for x, y in loader) / len(test)
    if DEBIAN.is_dir():
        assert abs(acc - cfg["test_acc"]) <= 5e-4, (acc, cfg["test_acc"])
    else:  # 1,000 images: within 5 standard errors of the recorded accuracy
        se = (cfg["test_acc"] * (1 - cfg["test_acc"]) / len(test)) ** 0.5
        assert abs(acc - cfg["test_acc"]) <= 5 * se, (acc, cfg["test_acc"])


def test_the_tag_selects_the_configuration_without_loading():
    m = create_model("lect_cifar.fashion_mnist")  # no weights: the architecture of the tag
    assert m.pretrained_cfg["input_size"] == (1, 32, 32) and m.in_chans == 1
    assert m.pretrained_cfg["num_classes"] == 10


def test_missing_or_unknown_tags_are_clear_errors():
    with pytest.raises(ValueError, match=r"pretrained=True needs a tag.*lect_cifar\.fashion_mnist"):
        create_model("lect_cifar", pretrained=True)
    with pytest.raises(ValueError, match=r"no shipped weights tagged 'imagenet'.*lect_cifar\.fashion_mnist"):
        create_model("lect_cifar.imagenet", pretrained=True)
    with pytest.raises(ValueError, match=r"none for 'vit'.*resnet\.fashion_mnist"):
        pretrained_entry("vit", "fashion_mnist")


# ------------------------------------------------------------------ fine-tuning the shipped weights (timm's way)
def _shipped(full="lect_cifar.fashion_mnist") -> dict:
    "The shipped tensors as stored (float16), read from the package's file."
    import io
    from importlib import resources
    entry = pretrained_entry(*full.split("."))
    data = resources.files("lect_nb").joinpath("assets", entry["file"]).read_bytes()
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _fine_tuned(**kw):
    "The shipped lect_cifar fitted to `kw`, its one warning, and the model create_model builds fresh."
    torch.manual_seed(0)
    with pytest.warns(UserWarning) as w:
        m = create_model("lect_cifar.fashion_mnist", pretrained=True, **kw)
    torch.manual_seed(0)
    fresh = create_model("lect_cifar", img_size=32, **{"in_chans": 1, **kw})
    return m, [str(x.message) for x in w], fresh


def test_fine_tuning_loads_the_trunk_adapts_the_first_conv_and_starts_a_new_head():
    m, msgs, fresh = _fine_tuned(num_classes=100, in_chans=3)
    conv = m.pretrained_cfg["first_conv"] + ".weight"
    assert msgs == [f"lect_cifar.fashion_mnist: {conv} adapted from 1 to 3 channels; not loaded: "
                    "head.weight, head.bias (a new 100-class classifier)"]
    new, shipped = m.state_dict(), _shipped()
    assert new[conv].shape[1] == 3 and shipped[conv].shape[1] == 1
    assert torch.equal(new[conv], shipped[conv].float().repeat(1, 3, 1, 1) * (1 / 3))  # timm's rule
    trunk = [k for k in shipped if k != conv and not k.startswith("head.")]
    assert len(trunk) == len(new) - 3
    for k in trunk: assert torch.equal(new[k], shipped[k].float()), k           # exactly as shipped
    for k in ("head.weight", "head.bias"):                                       # the model's own init
        assert torch.equal(new[k], fresh.state_dict()[k]) and new[k].shape[0] == 100
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 100)


def test_fine_tuning_changes_only_what_differs():
    m, msgs, _ = _fine_tuned(num_classes=5)
    assert msgs == ["lect_cifar.fashion_mnist: not loaded: head.weight, head.bias (a new 5-class classifier)"]
    m, msgs, _ = _fine_tuned(in_chans=3)          # 10 classes: the shipped classifier is kept
    conv = m.pretrained_cfg["first_conv"] + ".weight"
    assert msgs == [f"lect_cifar.fashion_mnist: {conv} adapted from 1 to 3 channels"]
    assert torch.equal(m.state_dict()["head.weight"], _shipped()["head.weight"].float())
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # the shipped configuration: no warning at all
        create_model("lect_cifar.fashion_mnist", pretrained=True)


def test_a_3_channel_model_adapted_to_1_channel_sums_the_kernels():
    from lect_nb.api import adapt_input_conv
    w = torch.randn(8, 3, 3, 3)
    assert torch.equal(adapt_input_conv(w, 1), w.sum(1, keepdim=True))
    assert torch.equal(adapt_input_conv(w, 3), w)
    assert torch.equal(adapt_input_conv(w, 5), torch.cat([w, w[:, :2]], 1) * (3 / 5))


def test_weights_that_do_not_fit_are_one_line():
    with pytest.raises(ValueError) as e:
        create_model("lect_cifar.fashion_mnist", pretrained=True, mlp_ratios=(2, 2, 2))
    assert "\n" not in str(e.value) and "lect_cifar.fashion_mnist: the shipped weights do not fit" in str(e.value)


def _rgb_folder(root, classes=5, train=4, val=2):
    "An ImageFolder of real Fashion-MNIST images from the embedded sample, saved as RGB PNGs."
    import numpy as np
    from importlib import resources
    from PIL import Image
    with resources.files("lect_nb").joinpath("assets", "fashion_mnist_sample.npz").open("rb") as f:
        d = dict(np.load(f))
    for split, (x, y), n in (("train", (d["x_train"], d["y_train"]), train),
                             ("val", (d["x_test"], d["y_test"]), val)):
        for c in range(classes):
            (root / split / f"class{c}").mkdir(parents=True)
            for i, img in enumerate(x[y == c][:n]):
                Image.fromarray(img).convert("RGB").save(root / split / f"class{c}" / f"{i}.png")
    return root


def test_lect_train_fine_tunes_the_shipped_model_on_a_colour_folder(tmp_path, capsys):
    import json
    from lect_nb.training.cli import main
    data, out = _rgb_folder(tmp_path / "data"), tmp_path / "run"
    args = ["--pretrained", "lect_cifar.fashion_mnist", "--dataset", "imagefolder", "--data-dir",
            str(data), "--img-size", "32", "--epochs", "1", "--batch-size", "8", "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert ("lect-train: lect_cifar from lect_cifar.fashion_mnist (trunk loaded, a new 5-class "
            "classifier, first convolution adapted from 1 to 3 channels) on imagefolder (20 train / "
            "10 test images, 32x32x3)") in text
    assert json.loads((out / "config.json").read_text())["pretrained"] == "lect_cifar.fashion_mnist"
    ck = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    assert ck["model"]["head.weight"].shape == (5, 192) and ck["model"]["stages.0.embed.proj.weight"].shape[1] == 3
    # what the run started from: the same fitted model create_model gives (seed 0, 5 classes, 3 channels)
    torch.manual_seed(0)
    with pytest.warns(UserWarning):
        m = create_model("lect_cifar.fashion_mnist", pretrained=True, num_classes=5, in_chans=3)
    assert m(torch.randn(1, 3, 32, 32)).shape == (1, 5)


@pytest.mark.parametrize("args,msg", [
    (["--pretrained", "lect_cifar.imagenet"],
     "--pretrained lect_cifar.imagenet: lect_cifar: no shipped weights tagged 'imagenet'"),
    (["--pretrained", "lect_cifar"], "--pretrained lect_cifar: lect_cifar: pretrained=True needs a tag"),
    (["--pretrained", "resnet.fashion_mnist"],
     "--pretrained resnet.fashion_mnist holds weights of resnet, not of the model lect_cifar: add --model resnet"),
])
def test_lect_train_pretrained_errors_are_one_line(tmp_path, capsys, args, msg):
    from lect_nb.training.cli import main
    assert main(args + ["--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"lect-train: error: {msg}") and "\n" not in err, err
    assert not (tmp_path / "r").exists()
