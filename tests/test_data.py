"Tests of lect_nb.training.data: the embedded sample, IDX reading, transforms, dataset building and bad input."
import gzip, struct
import numpy as np, pytest, torch
from lect_nb.training.data import (DATASETS, build_datasets, build_transforms, dataset_info, load_sample, read_idx,
                          FASHION_MEAN, FASHION_STD)

def test_sample_is_stratified_uint8_and_small():
    from importlib import resources
    s = load_sample()
    assert np.bincount(s["y_train"]).tolist() == [500] * 10
    assert np.bincount(s["y_test"]).tolist() == [100] * 10
    assert s["x_train"].dtype == np.uint8 and s["x_train"].shape == (5000, 28, 28)
    with resources.as_file(resources.files("lect_nb").joinpath("assets", "fashion_mnist_sample.npz")) as f:
        assert f.stat().st_size < 5_000_000
    # train and test images are distinct, and the first 100 training images cover every class
    assert len(np.unique(s["y_train"][:100])) == 10
    x = s["x_train"] / 255
    assert abs(x.mean() - FASHION_MEAN[0]) < 5e-3 and abs(x.std() - FASHION_STD[0]) < 5e-3

def test_read_idx_roundtrip_and_truncation(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (5, 7), dtype=np.uint8)
    hdr = struct.pack(">HBB2I", 0, 8, 2, 5, 7)
    with gzip.open(tmp_path / "ok.gz", "wb") as f: f.write(hdr + a.tobytes())
    np.testing.assert_array_equal(read_idx(tmp_path / "ok.gz"), a)
    with gzip.open(tmp_path / "bad.gz", "wb") as f: f.write(hdr + a.tobytes()[:-3])
    with pytest.raises(ValueError, match="bad.gz"): read_idx(tmp_path / "bad.gz")

def test_eval_transform_is_pad_scale_normalise():
    info = dataset_info("sample")
    tr, te, _ = build_datasets("sample", limit_val=3)
    s = load_sample()
    ref = (np.pad(s["x_test"][2], 2) / 255 - FASHION_MEAN[0]) / FASHION_STD[0]
    np.testing.assert_allclose(te[2][0][0].numpy(), ref, atol=1e-5)
    assert te[2][1] == s["y_test"][2]

def test_train_transform_shapes_and_randomness():
    tr, _, _ = build_datasets("sample", limit_train=4)
    torch.manual_seed(0)
    views = torch.stack([tr[0][0] for _ in range(6)])
    assert views.shape == (6, 1, 32, 32)
    assert (views - views[0]).abs().amax() > 0.1   # augmentation does something
    tr224, _, _ = build_datasets("sample", img_size=224, limit_train=2)
    assert tr224[0][0].shape == (1, 224, 224)
    assert build_transforms(DATASETS["cifar100"], 224, train=False).transforms[-1].mean == (0.5071, 0.4867, 0.4408)

def test_bad_input():
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"): build_datasets("mnist")
    with pytest.raises(FileNotFoundError, match="/no/such"): build_datasets("cifar10", data_dir="/no/such")
    with pytest.raises(ValueError, match="limit_val"): build_datasets("sample", limit_val=-1)
