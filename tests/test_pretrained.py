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
