"scripts/model_fingerprints.py: the check that a restructure changed no registered model."
import importlib.util, json
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("model_fingerprints", ROOT / "scripts" / "model_fingerprints.py")
fp = importlib.util.module_from_spec(spec); spec.loader.exec_module(fp)

def _write(d: Path, prints: dict, logits: dict):
    d.mkdir()
    (d / "fingerprints.json").write_text(json.dumps(prints))
    for n, l in logits.items(): torch.save(l, d / f"{n}.pt")

def test_fingerprint_is_reproducible_and_compare_names_what_differs(tmp_path, capsys):
    info, logits = fp.fingerprint("lect_cifar")
    again, logits2 = fp.fingerprint("lect_cifar")
    assert info == again and all(torch.equal(a, b) for a, b in zip(logits, logits2))
    assert info["params"] == 1_161_252                     # lect_cifar, 100 classes
    assert info["keys"][0].startswith("stages.0.embed") and info["cls"] == "LeCTModel"
    _write(tmp_path / "old", {"lect_cifar": info}, {"lect_cifar": logits})
    _write(tmp_path / "same", {"lect_cifar": info}, {"lect_cifar": logits})
    assert fp.compare(tmp_path / "old", tmp_path / "same") == 0
    assert "all 1 models identical" in capsys.readouterr().out
    changed = (logits[0], logits[1].clone().index_put_((torch.tensor([0]), torch.tensor([0])),
                                                       torch.tensor(1e3)))
    _write(tmp_path / "new", {"lect_cifar": {**info, "state": "0" * 64}}, {"lect_cifar": changed})
    assert fp.compare(tmp_path / "old", tmp_path / "new") == 1
    assert "lect_cifar: state, train logits differ" in capsys.readouterr().out
