"""CIFAR-10, CIFAR-100 and STL10 end to end from files in torchvision's own on-disk format, written here
(a few images per class), and the errors for missing, incomplete or misplaced files without network.

torchvision checks each file's MD5 against the real dataset's; the fixture `tv_check` replaces that check
(in torchvision's modules, for these tests only) by "the file exists", except for `.gz` archives, which
keep the real check. `offline` makes every `urllib.request.urlopen` fail as it does without network.
"""
import hashlib, json, math, os, pickle, socket, tarfile, urllib.error, urllib.request
import numpy as np, pytest, torch
import torchvision.datasets as tvd
import torchvision.datasets.cifar as tv_cifar, torchvision.datasets.stl10 as tv_stl10
import torchvision.datasets.utils as tv_utils
from lect_nb.training.data import DATASETS, DatasetFilesError, build_datasets, dataset_files
from lect_nb.training.cli import main

@pytest.fixture
def tv_check(monkeypatch):
    real = tv_utils.check_integrity
    def exists(fpath, md5=None):
        return real(fpath, md5) if str(fpath).endswith(".gz") else os.path.isfile(fpath)
    for mod in (tv_utils, tv_cifar, tv_stl10): monkeypatch.setattr(mod, "check_integrity", exists)

@pytest.fixture
def offline(monkeypatch):
    "No network: every urlopen raises the URLError a failed DNS lookup gives; the URLs asked for are kept."
    calls = []
    def urlopen(req, *a, **kw):
        calls.append(getattr(req, "full_url", req))
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))
    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return calls

# ---------------------------------------------------------------- writing torchvision's formats
def labelled_images(n_classes, per_class, side, seed):
    "uint8 HWC images, labels shuffled over classes; image 0 holds a 0 and a 255 in every channel."
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 255, (n_classes * per_class, side, side, 3), dtype=np.uint8)
    x[0, 0, 0], x[0, 1, 1] = 0, 255
    y = rng.permutation(np.repeat(np.arange(n_classes), per_class))
    return x, y

def _pickle(path, obj):
    with open(path, "wb") as f: pickle.dump(obj, f, protocol=2)

def _cifar_rows(x): return x.transpose(0, 3, 1, 2).reshape(len(x), -1)  # CHW, 3072 bytes a row

def write_cifar10(root, per_class=2):
    d = root / "cifar-10-batches-py"; d.mkdir(parents=True)
    (xtr, ytr), (xte, yte) = labelled_images(10, per_class, 32, 0), labelled_images(10, 1, 32, 1)
    for i, idx in enumerate(np.array_split(np.arange(len(xtr)), 5)):
        _pickle(d / f"data_batch_{i + 1}", {"batch_label": f"training batch {i + 1} of 5",
                                            "labels": ytr[idx].tolist(), "data": _cifar_rows(xtr[idx]),
                                            "filenames": [f"{j}.png" for j in idx]})
    _pickle(d / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": yte.tolist(),
                               "data": _cifar_rows(xte), "filenames": [f"{j}.png" for j in range(len(xte))]})
    names = [f"class{c}" for c in range(10)]
    _pickle(d / "batches.meta", {"num_cases_per_batch": 4, "label_names": names, "num_vis": 3072})
    return xtr, ytr, xte, yte, names

def write_cifar100(root, per_class=2, n_names=100):
    d = root / "cifar-100-python"; d.mkdir(parents=True)
    (xtr, ytr), (xte, yte) = labelled_images(100, per_class, 32, 2), labelled_images(100, 1, 32, 3)
    for split, x, y in (("train", xtr, ytr), ("test", xte, yte)):
        _pickle(d / split, {"filenames": [f"{j}.png" for j in range(len(x))], "batch_label": split,
                            "fine_labels": y.tolist(), "coarse_labels": (y // 5).tolist(),
                            "data": _cifar_rows(x)})
    names = [f"fine{c}" for c in range(n_names)]
    _pickle(d / "meta", {"fine_label_names": names, "coarse_label_names": [f"coarse{c}" for c in range(20)]})
    return xtr, ytr, xte, yte, names

def write_stl10(root, per_class=2, label_offset=1):
    d = root / "stl10_binary"; d.mkdir(parents=True)
    (xtr, ytr), (xte, yte) = labelled_images(10, per_class, 96, 4), labelled_images(10, 1, 96, 5)
    for split, x, y in (("train", xtr, ytr), ("test", xte, yte)):
        (d / f"{split}_X.bin").write_bytes(x.transpose(0, 3, 2, 1).tobytes())  # C, then columns: (N, C, W, H)
        (d / f"{split}_y.bin").write_bytes((y + label_offset).astype(np.uint8).tobytes())  # 1-based
    (d / "unlabeled_X.bin").write_bytes(labelled_images(1, 2, 96, 6)[0].transpose(0, 3, 2, 1).tobytes())
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (d / "class_names.txt").write_text("\n".join(names) + "\n")
    return xtr, ytr, xte, yte, names

WRITERS = {"cifar10": (write_cifar10, 20, 10), "cifar100": (write_cifar100, 200, 100),
           "stl10": (write_stl10, 20, 10)}   # writer, training and test images

def tar_gz(root, folder):
    "The folder as a .tar.gz archive in root (the way the official archives hold it)."
    path = root / f"{folder}.tar.gz"
    with tarfile.open(path, "w:gz") as t: t.add(root / folder, arcname=folder)
    return path

def md5(path): return hashlib.md5(path.read_bytes()).hexdigest()

# ---------------------------------------------------------------- build_datasets on each dataset
@pytest.mark.parametrize("name", list(WRITERS))
def test_build_datasets_from_torchvision_files(tmp_path, tv_check, offline, name):
    writer, n_train, n_test = WRITERS[name]
    xtr, ytr, xte, yte, names = writer(tmp_path)
    info0 = DATASETS[name]
    tr, te, info = build_datasets(name, tmp_path)
    assert (len(tr), len(te)) == (n_train, n_test) and offline == []   # read from disk, nothing downloaded
    assert info.classes == tuple(names) and info.num_classes == len(names) and info.in_chans == 3
    mean, std = np.array(info0.mean)[:, None, None], np.array(info0.std)[:, None, None]
    lo, hi = (0 - mean) / std, (1 - mean) / std
    # eval at native size: exactly the written pixels, CHW, scaled and normalised with the dataset's mean/std
    for i in (0, 1, n_test - 1):
        img, label = te[i]
        assert img.shape == (3, info0.native_size, info0.native_size) and label == yte[i]
        ref = (xte[i].transpose(2, 0, 1) / 255 - mean) / std
        np.testing.assert_allclose(img.numpy(), ref, atol=1e-5)
    first = te[0][0].numpy()
    np.testing.assert_allclose(first.min((1, 2)), lo[:, 0, 0], atol=1e-5)   # the 0 pixel
    np.testing.assert_allclose(first.max((1, 2)), hi[:, 0, 0], atol=1e-5)   # the 255 pixel
    assert sorted(tr[i][1] for i in range(n_train)) == sorted(ytr.tolist())
    # training transform at native size: same shape, inside the normalised range, augmented
    torch.manual_seed(0)
    views = torch.stack([tr[0][0] for _ in range(4)]).numpy()
    assert views.shape == (4, 3, info0.native_size, info0.native_size)
    assert (views >= lo - 1e-5).all() and (views <= hi + 1e-5).all() and np.abs(views - views[0]).max() > 0.1
    # the paper's 224x224: resized after the augmentation, values still in range; eval keeps the mean
    tr224, te224, _ = build_datasets(name, tmp_path, img_size=224)
    a, b = tr224[0][0].numpy(), te224[0][0].numpy()
    assert a.shape == b.shape == (3, 224, 224)
    assert (a >= lo - 1e-5).all() and (a <= hi + 1e-5).all() and (b >= lo - 1e-5).all() and (b <= hi + 1e-5).all()
    np.testing.assert_allclose(b.mean((1, 2)), first.mean((1, 2)), atol=0.03)

def test_archive_copied_into_data_dir_is_extracted_offline(tmp_path, tv_check, offline, monkeypatch):
    "The documented way to install a dataset without network: copy the archive into the data directory."
    xtr, ytr, xte, yte, names = write_cifar10(tmp_path / "elsewhere")
    arch = tar_gz(tmp_path / "elsewhere", "cifar-10-batches-py")
    data = tmp_path / "data"; data.mkdir()
    (data / "cifar-10-python.tar.gz").write_bytes(arch.read_bytes())
    monkeypatch.setattr(tvd.CIFAR10, "tgz_md5", md5(arch))   # torchvision knows our archive's MD5
    tr, te, info = build_datasets("cifar10", data)
    assert offline == [] and (len(tr), len(te)) == (20, 10) and info.classes == tuple(names)
    assert sorted(os.listdir(data / "cifar-10-batches-py")) == sorted(f for f, _ in dataset_files("cifar10").files)

# ---------------------------------------------------------------- no network
URLS = {n: dataset_files(n).archives[0][0] for n in WRITERS}

@pytest.mark.parametrize("name", list(WRITERS))
def test_no_network_one_error_and_nothing_left(tmp_path, offline, name):
    spec = dataset_files(name)
    with pytest.raises(DatasetFilesError) as e: build_datasets(name, tmp_path)
    msg = str(e.value)
    assert isinstance(e.value, ValueError) and "\n" not in msg
    assert msg.startswith(f"{name}: not usable from {tmp_path}: torchvision reads {tmp_path}/{spec.folder}/ ")
    assert all(f in msg for f, _ in spec.files) and "(all missing)" in msg
    assert "The download failed (URLError: [Errno -2] Name or service not known)" in msg
    assert f"download {URLS[name]} where the internet is reachable and copy it into {tmp_path}/" in msg
    assert offline and set(offline) == {URLS[name]}          # torchvision's own download was tried
    assert os.listdir(tmp_path) == []
    # downloads disabled: same error without touching the network
    offline.clear()
    with pytest.raises(DatasetFilesError, match=r"Downloads are disabled \(download=False\)"):
        build_datasets(name, tmp_path, download=False)
    assert offline == [] and os.listdir(tmp_path) == []

def test_no_network_default_data_dir_is_not_left_behind(tmp_path, offline, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetFilesError, match="cifar100: not usable from data: .*data/cifar-100-python/"):
        build_datasets("cifar100")
    assert os.listdir(tmp_path) == []           # the data/ folder made for the download is removed again

@pytest.mark.parametrize("name", ["cifar10", "stl10"])
def test_cli_without_network_prints_one_line_and_writes_nothing(tmp_path, offline, capsys, name):
    data, out = tmp_path / "data", tmp_path / "run"
    data.mkdir()
    assert main(["--dataset", name, "--epochs", "1", "--data-dir", str(data), "--out", str(out)]) == 2
    cap = capsys.readouterr()
    lines = cap.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"lect-train: error: {name}: not usable from {data}: ")
    assert dataset_files(name).folder in lines[0] and "The download failed" in lines[0]
    assert "Traceback" not in cap.err + cap.out
    assert not out.exists() and os.listdir(tmp_path) == ["data"] and os.listdir(data) == []

@pytest.mark.parametrize("name", ["cifar10", "stl10"])
def test_half_downloaded_archive_is_named_and_kept(tmp_path, tv_check, offline, name):
    spec = dataset_files(name)
    src = tmp_path / "src"
    WRITERS[name][0](src)
    whole = tar_gz(src, spec.folder).read_bytes()
    data = tmp_path / "data"; data.mkdir()
    part = data / spec.archives[0][1]
    part.write_bytes(whole[: len(whole) // 2])
    for download in (True, False):
        with pytest.raises(DatasetFilesError) as e: build_datasets(name, data, download=download)
        assert (f"The archive {part} is incomplete or corrupt ({len(whole) // 2:,} bytes, "
                "MD5 not torchvision's): delete it") in str(e.value)
        assert ("The download failed" in str(e.value)) == download
        assert part.read_bytes() == whole[: len(whole) // 2] and os.listdir(data) == [part.name]

# ---------------------------------------------------------------- the dataset in another form
def test_renamed_folder_is_named_and_not_downloaded_over(tmp_path, tv_check, offline):
    write_cifar10(tmp_path)
    os.rename(tmp_path / "cifar-10-batches-py", tmp_path / "cifar10")
    with pytest.raises(DatasetFilesError) as e: build_datasets("cifar10", tmp_path)
    assert f"{tmp_path}/cifar10 holds data_batch_1" in str(e.value)
    assert f"move or rename that folder to {tmp_path}/cifar-10-batches-py" in str(e.value)
    assert offline == []                                        # no download started over them
    with pytest.raises(DatasetFilesError, match="give its parent as the data directory"):
        build_datasets("cifar10", tmp_path / "cifar10")          # --data-dir pointing into the folder
    # an archive unpacked one level too deep (cifar-100-python/cifar-100-python/)
    data = tmp_path / "data"
    write_cifar100(data / "cifar-100-python")
    with pytest.raises(DatasetFilesError) as e: build_datasets("cifar100", data)
    assert (f"{data}/cifar-100-python/cifar-100-python holds train, test, meta: move or rename that folder "
            f"to {data}/cifar-100-python.") in str(e.value)
    assert "(all missing)" in str(e.value) and offline == []

def test_missing_and_unreadable_files_are_named(tmp_path, tv_check, offline):
    write_cifar10(tmp_path)
    d = tmp_path / "cifar-10-batches-py"
    os.remove(d / "data_batch_3")
    with pytest.raises(DatasetFilesError, match=r"holding data_batch_1, .* \(missing: data_batch_3\)\. The dow"):
        build_datasets("cifar10", tmp_path)
    with pytest.raises(DatasetFilesError, match=r"\(missing: data_batch_3\)\. Downloads are disabled"):
        build_datasets("cifar10", tmp_path, download=False)
    write_stl10(tmp_path)
    os.remove(tmp_path / "stl10_binary" / "unlabeled_X.bin")   # torchvision checks it too
    with pytest.raises(DatasetFilesError, match=r"\(missing: unlabeled_X\.bin\)"):
        build_datasets("stl10", tmp_path, download=False)
    # present (the MD5 check passed, here by the patch) but unreadable: torchvision's reason is given
    (d / "data_batch_3").write_bytes(b"")
    with pytest.raises(DatasetFilesError, match=r"cifar-10-batches-py/ holding .*batches\.meta \(empty: "
                                                r"data_batch_3\)\. Reading them failed \(EOFError: "):
        build_datasets("cifar10", tmp_path)

def test_wrong_classes_or_labels_are_named(tmp_path, tv_check):
    write_cifar100(tmp_path / "a", n_names=20)                  # a meta with 20 names
    with pytest.raises(DatasetFilesError, match="cifar100: .*cifar-100-python names 20 classes, expected 100"):
        build_datasets("cifar100", tmp_path / "a")
    write_stl10(tmp_path / "b", label_offset=0)                 # 0-based labels: torchvision's -1 wraps to 255
    with pytest.raises(DatasetFilesError, match=r"training labels in .*stl10_binary run from 0 to 255, "
                                                r"expected 0 to 9"):
        build_datasets("stl10", tmp_path / "b")

# ---------------------------------------------------------------- one lect-train epoch on each
@pytest.mark.parametrize("name", list(WRITERS))
def test_one_lect_train_epoch(tmp_path, tv_check, offline, capsys, name):
    WRITERS[name][0](tmp_path / "data")
    out = tmp_path / "run"
    args = ["--model", "lect_cifar", "--dataset", name, "--data-dir", str(tmp_path / "data"), "--img-size", "32",
            "--epochs", "1", "--batch-size", "10", "--limit-train", "20", "--limit-val", "10",
            "--device", "cpu", "--out", str(out)]
    assert main(args) == 0, capsys.readouterr().err
    stdout = capsys.readouterr().out
    assert f"lect_cifar on {name} (20 train / 10 test images, 32x32x3)" in stdout and offline == []
    recs = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(recs) == 1 and recs[0]["epoch"] == 1
    assert math.isfinite(recs[0]["train_loss"]) and math.isfinite(recs[0]["test_loss"]) and 0 <= recs[0]["test_acc"] <= 1
    # the model was built for the dataset's classes
    head = {k: v for k, v in torch.load(out / "last.pt", weights_only=True)["model"].items() if k.startswith("head")}
    assert head["head.weight"].shape[0] == DATASETS[name].num_classes
