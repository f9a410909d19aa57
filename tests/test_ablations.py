"""Ablations (notebook 11) and analysis helpers (notebook 12): every ablation is registered, is what its diff
says, trains one step at its base's size; the study's records and the saved cost sweep are consistent."""
import json, math
from dataclasses import fields, replace
from pathlib import Path
import pytest
import torch
from lect_nb.api import create_model, list_models
from lect_nb.models import LECT_CONFIGS
from lect_nb.variants import (ABLATIONS, ABLATION_BASES, VARIANT_CONFIGS, ablation_name, ablation_config,
                              ablation_names, variant_config)
from lect_nb.studies.ablations import (describe_attention, train_one_step, study_command, summarize, STUDY_MODELS,
                                       STUDY_SETTINGS, results_table, PAPER_TABLE3)
from lect_nb.studies.analysis import (capture_lemsa_inputs, lemsa_paths, log_amplitude_profile, high_frequency_fraction,
                              fit_exponent, measure_point, window_mass)

RESULTS = Path(__file__).parent.parent / "nbs" / "results"


def test_all_registered_and_named_by_rule():
    names = ablation_names()
    assert len(names) == len(set(names)) == 2 * len(ABLATIONS)
    assert set(names) <= set(list_models())
    assert all(n.endswith("_cifar") for n in ablation_names("lect_cifar"))
    assert ablation_name("seqonly") == "lect_seqonly" and ablation_name("seqonly", "lect_cifar") == "lect_seqonly_cifar"
    assert set(STUDY_MODELS) <= set(list_models())


def test_existing_names_equal_base_plus_diff():
    # the report's Table 3 model is the `noskip` ablation itself, registered with the others (notebook 05b)
    assert ablation_name("noskip") == "lect_noskip"
    assert create_model("lect_noskip").cfg == variant_config(LECT_CONFIGS["lect"], **ABLATIONS["noskip"].diff)
    assert VARIANT_CONFIGS["lect_v3"] == variant_config(LECT_CONFIGS["lect"], **ABLATIONS["qup_sv"].diff)


@pytest.mark.parametrize("base", list(ABLATION_BASES))
def test_config_is_base_plus_diff(base):
    for tag, abl in ABLATIONS.items():
        m = create_model(ablation_name(tag, base), num_classes=10, img_size=ABLATION_BASES[base].size)
        assert m.cfg == variant_config(LECT_CONFIGS[ABLATION_BASES[base].model], **abl.diff), tag
        assert m.cfg != variant_config(LECT_CONFIGS[ABLATION_BASES[base].model]), tag


def test_diffs_reach_the_layers():
    base = describe_attention(create_model("lect_cifar", num_classes=10, img_size=32))
    for tag in ABLATIONS:
        d = describe_attention(create_model(ablation_name(tag, "lect_cifar"), num_classes=10, img_size=32))
        assert d != base, f"{tag} builds the same layers as the base"
    d = describe_attention(create_model("lect_skiponly", num_classes=10))
    assert all(r["projection"] == "ParallelConvProjection" and r["conv_skip"] for r in d)
    assert [r["K"] for r in describe_attention(create_model("lect_grid2", num_classes=10))] == [28, 14, 7]
    assert [r["K"] for r in describe_attention(create_model("lect_nopool", num_classes=10))] == [1, 1, 1]


def test_errors():
    with pytest.raises(ValueError, match="unknown ablation 'x'"): ablation_name("x")
    with pytest.raises(ValueError, match="unknown ablation base"): ablation_name("noskip", "resnet")
    with pytest.raises(ValueError, match="only supports 32x32 inputs, got 64x64"):
        create_model("lect_v3_cifar")(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="bogus"): create_model("lect_seqonly_cifar", img_size=32, bogus=1)


@pytest.mark.parametrize("base", list(ABLATION_BASES))
def test_every_ablation_trains_one_step(base):
    size = ABLATION_BASES[base].size
    x, y = torch.randn(2, 3, *size), torch.tensor([1, 3])
    for name in ablation_names(base):
        torch.manual_seed(0)
        r = train_one_step(create_model(name, num_classes=10, img_size=size), x, y)
        assert math.isfinite(r["loss"]), name
        assert r["no_grad"] == [] and r["unchanged"] == [], (name, r["no_grad"][:3], r["unchanged"][:3])


def test_study_command_parses_to_the_same_config():
    from lect_nb.training.cli import build_parser
    from lect_nb.training.runs import TrainConfig
    cmd = study_command("lect_kup_none_cifar", 1, out="runs/y")
    a = vars(build_parser().parse_args(cmd.split()[1:]))
    got = TrainConfig(**{f.name: a[f.name] for f in fields(TrainConfig)})
    assert got == TrainConfig(model="lect_kup_none_cifar", seed=1, out="runs/y", **STUDY_SETTINGS)


def test_summarize():
    recs = [dict(model="m", test_acc=a) for a in (0.2, 0.4, 0.6)]
    (row,) = summarize(recs)
    assert row["n"] == 3 and row["mean"] == pytest.approx(40.0) and row["std"] == pytest.approx(20.0)


def test_results_table_fills_ours_only_from_runs(tmp_path):
    rows = results_table(["lect", "lect_seqonly"], tmp_path)
    assert rows[0]["cifar100 paper"] == PAPER_TABLE3["lect"]["cifar100"] and rows[0]["cifar100 ours"] is None
    assert rows[1]["cifar10 paper"] is None
    (tmp_path / "lect-cifar10").mkdir()
    (tmp_path / "lect-cifar10" / "metrics.jsonl").write_text(json.dumps(dict(epoch=1, test_acc=0.5)) + "\n")
    assert results_table(["lect"], tmp_path)[0]["cifar10 ours"] == pytest.approx(50.0)


@pytest.mark.skipif(not (RESULTS / "ablation_cpu_study.json").is_file(), reason="study not run")
def test_saved_study_is_complete():
    recs = json.loads((RESULTS / "ablation_cpu_study.json").read_text())
    for m in STUDY_MODELS:
        mine = [r for r in recs if r["model"] == m]
        assert sorted(r["seed"] for r in mine) == [0, 1, 2], m
        assert all(r["settings"] == STUDY_SETTINGS and 0 <= r["test_acc"] <= 1 for r in mine), m


# ---- analysis helpers (notebook 12)

def test_lemsa_paths_rebuild_the_layer_output():
    torch.manual_seed(0)
    for name in ("lect_cifar", "lect_skiponly_cifar", "lect_kup_none_cifar", "lect_pool_avgmax_cifar"):
        m = create_model(name, num_classes=10, img_size=32).eval()
        for _, (layer, x, hw) in capture_lemsa_inputs(m, torch.randn(2, 3, 32, 32)).items():
            p = lemsa_paths(layer, x, hw)
            with torch.no_grad(): torch.testing.assert_close(p["out"], layer(x, hw), rtol=1e-4, atol=1e-5)
            if p["attn"] is not None:
                mass = window_mass(p["attn"], p["hw"], p["pooled_hw"])
                torch.testing.assert_close(mass.sum(-1), torch.ones_like(mass[..., 0]))


def test_frequency_measures():
    yy, xx = torch.meshgrid(torch.arange(8.), torch.arange(8.), indexing="ij")
    checker = ((yy + xx) % 2 * 2 - 1)[None, None] + 0.01
    assert log_amplitude_profile(checker)[-1] > 3
    assert high_frequency_fraction(checker) == pytest.approx(1.0)
    # a blurred map has less high-frequency content than the same map unblurred
    x = torch.randn(4, 8, 16, 16)
    blur = torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    assert high_frequency_fraction(blur) < high_frequency_fraction(x)
    assert log_amplitude_profile(blur)[-1] < log_amplitude_profile(x)[-1]


def test_cost_flops_scale():
    a, b = measure_point("lemsa", 16, repeats=1, memory=False), measure_point("lemsa", 32, repeats=1, memory=False)
    assert 3.5 < b["flops"] / a["flops"] < 4.5                 # linear in tokens
    a, b = measure_point("msa", 16, repeats=1, memory=False), measure_point("msa", 32, repeats=1, memory=False)
    assert b["flops"] / a["flops"] > 10                          # quadratic term dominates
    assert fit_exponent([dict(tokens=n, flops=n ** 2) for n in (4, 16, 64)], "flops") == pytest.approx(2.0)


@pytest.mark.skipif(not (RESULTS / "cost_vs_resolution.json").is_file(), reason="cost sweep not run")
def test_saved_cost_sweep_shapes():
    rows = json.loads((RESULTS / "cost_vs_resolution.json").read_text())
    by = lambda k: [r for r in rows if r["layer"] == k]
    assert fit_exponent(by("lemsa"), "flops") < 1.2 and fit_exponent(by("msa"), "flops") > 1.8
