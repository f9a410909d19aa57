"""The three console scripts answer before torch is imported; every option states its default and has a help
text; every bad value names its option; epoch counts read "1 epoch", "2 epochs"."""
import argparse, json, re, subprocess, sys, tomllib
from pathlib import Path
import pytest
from lect_nb.training import cli
from lect_nb.studies import commands

ROOT = Path(__file__).parents[1]
HEAVY = ("torch", "torchvision", "numpy", "matplotlib")

def _in_fresh_process(target: str, argv: list[str]) -> tuple[int, str, list[str]]:
    "Call `module:function`(argv) in a new interpreter: (exit status, stderr, heavy modules imported by then)."
    mod, fn = target.split(":")
    code = (f"import json, sys\nfrom {mod} import {fn}\n"
            f"try: status = {fn}({argv!r})\nexcept SystemExit as e: status = e.code\n"
            f"print(json.dumps([status, [m for m in {HEAVY!r} if m in sys.modules]]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    status, heavy = json.loads(r.stdout.strip().splitlines()[-1])
    return status, r.stderr, heavy

SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]

def test_console_scripts_point_at_the_light_module():
    assert SCRIPTS == {"lect-train": "lect_nb.training.cli:main", "lect-bench": "lect_nb.studies.commands:bench_main",
                       "lect-sweep": "lect_nb.studies.commands:sweep_main"}

@pytest.mark.parametrize("script, argv", [
    ("lect-train", ["--help"]), ("lect-bench", ["--help"]), ("lect-sweep", ["--help"]),
    ("lect-sweep", ["table2", "--help"]), ("lect-sweep", ["speed", "--help"])])
def test_help_answers_without_torch(script, argv):
    status, err, heavy = _in_fresh_process(SCRIPTS[script], argv)
    assert (status, heavy) == (0, []), err

@pytest.mark.parametrize("script, argv, flag", [
    ("lect-train", ["--batch-size", "-1"], "--batch-size"),
    ("lect-train", ["--epochs", "0"], "--epochs"),
    ("lect-train", ["--lr", "-1e-3"], "--lr"),
    ("lect-train", ["--val-split", "1.5"], "--val-split"),
    ("lect-train", ["--dataset", "mnist"], "--dataset"),
    ("lect-bench", ["--repeats", "0"], "--repeats"),
    ("lect-sweep", ["table2", "--data-dir", "d", "--out", "o", "--epochs", "two"], "--epochs"),
    ("lect-sweep", ["speed", "--out", "o", "--compile-modes", "fast"], "--compile-modes"),
    ("lect-sweep", ["table2", "--out", "o"], "--data-dir"),                  # required
])
def test_argument_error_without_torch_names_the_flag(script, argv, flag):
    status, err, heavy = _in_fresh_process(SCRIPTS[script], argv)
    assert (status, heavy) == (2, []), err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"{script}") and ": error: " in last and flag in last, err

def test_package_import_is_light():
    out = subprocess.run([sys.executable, "-c", f"import sys, lect_nb, lect_nb.training.settings, lect_nb.training.cli, lect_nb.studies.commands; "
                          f"print([m for m in {HEAVY!r} if m in sys.modules])"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stderr

# ------------------------------------------------------------------------------- every option: help and default
def _parsers() -> dict[str, argparse.ArgumentParser]:
    sweep = commands.sweep_parser()
    sub = next(a for a in sweep._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {"speed", "table2"}
    return {"lect-train": cli.build_parser(), "lect-bench": commands.bench_parser(),
            "lect-sweep speed": sub.choices["speed"], "lect-sweep table2": sub.choices["table2"]}

def _options():
    for name, p in _parsers().items():
        for a in p._actions:
            if a.option_strings and a.dest != "help": yield name, a

def _shown(v) -> list[str]:
    "The ways a default may be written in a help text."
    if isinstance(v, (list, tuple)): return [" ".join(map(str, v))]
    return [str(v)] + ([f"{v:g}"] if isinstance(v, float) else [])

@pytest.mark.parametrize("cmd, action", list(_options()), ids=lambda x: x if isinstance(x, str) else x.option_strings[-1])
def test_every_option_has_help_and_states_its_default(cmd, action):
    h = " ".join((action.help or "").split())
    assert len(h) > 15, (cmd, action.option_strings, h)                    # described, not just named
    negation = action.option_strings[0].startswith("--no-")
    assert ("(default: " in h or "(required)" in h or (negation and ("otherwise" in h or "default" in h))), (cmd, h)
    assert h.count("(default: ") <= 1, (cmd, h)                             # stated once
    if action.required: assert "(required)" in h, (cmd, h)
    v = action.default
    if v not in (None, True, False) and not negation:                       # the stated value is the real one
        stated = h.split("(default: ")[1]
        assert any(s in stated for s in _shown(v)), (cmd, action.option_strings, v, h)

def test_help_texts_print_the_defaults(capsys):
    for argv, fn in ((["--help"], commands.bench_main), (["table2", "--help"], commands.sweep_main)):
        with pytest.raises(SystemExit) as e: fn(argv)
        assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "images per step (default: 16)" in out and "process pairs of --ab (default: 5)" in out
    assert "epochs of every run (default: 10)" in out and "seed of every run (default: 0)" in out
    assert all(k in out for k in ("nokernels", "norebuild", "reference", "ckpt", "nodrop"))  # spec options

# ------------------------------------------------------------------------------------- bad numbers name the flag
_BAD = {cli._positive_int: ["0", "-3", "2.5", "x"], cli._count: ["-1", "1.5", "x"],
        cli._positive: ["0", "-1", "nan", "inf", "x"], cli._nonnegative: ["-0.5", "nan", "x"],
        cli._fraction: ["1", "-0.1", "nan", "x"]}
_PREFIX = {"lect-train": [], "lect-bench": [], "lect-sweep speed": ["--out", "o"],
           "lect-sweep table2": ["--data-dir", "d", "--out", "o"]}

def _numeric_cases():
    for cmd, a in _options():
        assert a.type in _BAD or a.type is None, (cmd, a.option_strings, a.type)   # every number is checked
        for bad in _BAD.get(a.type, []): yield cmd, a.option_strings[-1], bad

@pytest.mark.parametrize("cmd, flag, bad", list(_numeric_cases()))
def test_every_bad_number_names_its_flag(capsys, cmd, flag, bad):
    p = _parsers()[cmd]
    with pytest.raises(SystemExit) as e: p.parse_args(_PREFIX[cmd] + [f"{flag}={bad}"])
    assert e.value.code == 2
    assert f"error: argument {flag}: must be " in capsys.readouterr().err

def test_numeric_flags_are_many():
    "The generic test above covers the options it should (it would pass vacuously with no typed option)."
    flags = {(c, f) for c, f, _ in _numeric_cases()}
    assert {("lect-train", "--batch-size"), ("lect-train", "--epochs"), ("lect-train", "--lr"),
            ("lect-train", "--val-split"), ("lect-bench", "--batch"), ("lect-sweep table2", "--epochs"),
            ("lect-sweep speed", "--budget")} <= flags
    assert len(flags) >= 30

def test_good_numbers_pass():
    a = cli.build_parser().parse_args(["--batch-size", "32", "--epochs", "3", "--lr", "2e-3", "--val-split", "0",
                                       "--clip-grad", "0", "--seed", "0", "--label-smoothing", "0.1"])
    assert (a.batch_size, a.epochs, a.lr, a.val_split, a.clip_grad, a.seed, a.label_smoothing) == (32, 3, 2e-3, 0., 0., 0, .1)

@pytest.mark.parametrize("args, flag", [(["--batch-size", "-1"], "--batch-size"), (["--epochs", "0"], "--epochs"),
                                        (["--lr", "0"], "--lr"), (["--val-split", "1"], "--val-split"),
                                        (["--workers", "-2"], "--workers"), (["--min-lr", "-0.5"], "--min-lr")])
def test_lect_train_errors_name_the_flag(tmp_path, capsys, args, flag):
    with pytest.raises(SystemExit) as e: cli.main(args + ["--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"lect-train: error: argument {flag}: must be" in err, err
    assert "batch_size" not in err and not (tmp_path / "r").exists()

def test_check_config_names_flags_for_the_command_line():
    from lect_nb.training.runs import TrainConfig, check_config
    with pytest.raises(ValueError, match=r"^--batch-size 6 is not divisible by the 4 processes$"):
        check_config(TrainConfig(batch_size=6), world=4, cli=True)
    with pytest.raises(ValueError, match=r"^batch_size 6 is not divisible"):   # the library names fields
        check_config(TrainConfig(batch_size=6), world=4)
    with pytest.raises(ValueError, match=r"^--label-smoothing must be in \[0, 1\), got 1.0$"):
        check_config(TrainConfig(label_smoothing=1.), cli=True)

def test_the_name_lists_match_their_tables():
    from lect_nb.training import settings
    from lect_nb.training.data import DATASETS
    from lect_nb.studies.gpu import PRECISIONS
    from lect_nb.training.loop import AMP_DTYPES
    assert (tuple(DATASETS), tuple(AMP_DTYPES), tuple(PRECISIONS)) == (settings.DATASET_NAMES, settings.AMP_NAMES,
                                                                       settings.PRECISION_NAMES)
    import lect_nb.studies.bench, lect_nb.studies.gpu, lect_nb.training.runs            # the old import paths: the same objects
    assert lect_nb.training.runs.TrainConfig is settings.TrainConfig and lect_nb.training.runs.DEVICE_DEFAULTS is settings.DEVICE_DEFAULTS
    assert lect_nb.studies.bench.SPEC_OPTIONS is settings.SPEC_OPTIONS and lect_nb.studies.gpu.TABLE2_MODELS is settings.TABLE2_MODELS

# ---------------------------------------------------------------------------------------- "1 epoch", "2 epochs"
def test_plural():
    from lect_nb.training.settings import plural
    assert [plural(n, "epoch") for n in (0, 1, 2)] == ["0 epochs", "1 epoch", "2 epochs"]

def test_run_output_counts_epochs_in_words(tmp_path, capsys):
    from test_train import register_tiny
    register_tiny()
    base = ["--model", "tiny_bn", "--batch-size", "32", "--limit-train", "64", "--limit-val", "32", "--device", "cpu",
            "--out", str(tmp_path / "r")]
    assert cli.main(base + ["--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\), 1 epoch, batch 32,", out) and "after 1 epoch;" in out, out
    assert "1 epochs" not in out
    assert cli.main(base + ["--resume", "--epochs", "2"]) == 0          # extend the finished run by one epoch
    out = capsys.readouterr().out
    assert "extended from 1 epoch: epoch 2 follows the 2-epoch schedule" in out, out
    assert "after 2 epochs;" in out and "1 epochs" not in out

def test_table2_header_counts_epochs_in_words():
    from lect_nb.studies.gpu import table2_markdown
    row = dict(model="resnet", status="ok", epochs=1, test_acc=0.5, wall_s=3.)
    assert "(ours, 1 epoch)" in table2_markdown([row]).splitlines()[0]
    assert "(ours, 2 epochs)" in table2_markdown([{**row, "epochs": 2}]).splitlines()[0]

# ------------------------------------------------------------------------ one source: the fields' documentation
def test_field_table_lists_every_field_with_its_default():
    "The table of notebook 09b_runs is written from TrainConfig's field metadata: every field, in order."
    import ast, dataclasses
    from lect_nb.training.settings import TrainConfig, field_table
    lines = field_table().splitlines()
    assert lines[0] == "| field | default | meaning |"
    rows = [[c.strip() for c in l.strip().strip("|").split(" | ")] for l in lines[2:]]
    fields = dataclasses.fields(TrainConfig)
    assert [r[0] for r in rows] == [f"`{f.name}`" for f in fields]
    for (name, default, meaning), f in zip(rows, fields):
        value = ast.literal_eval(default.strip("`"))
        assert value == f.default and type(value) is type(f.default), (name, default)
        assert meaning.startswith(f.metadata["doc"]) and len(meaning) > 10, (name, meaning)

def test_options_are_written_from_the_fields():
    "Every TrainConfig field is an option (or a switch pair) whose help opens with the field's documentation."
    import dataclasses
    from lect_nb.training.settings import TrainConfig
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    acts = [a for a in cli.build_parser()._actions if a.dest != "help"]
    assert {a.dest for a in acts} == set(fields) | {"config"}   # --config: a recorded run's settings
    for a in acts:
        if a.option_strings[0].startswith("--no-") or a.dest == "config": continue
        assert " ".join(a.help.split()).startswith(cli.option_text(fields[a.dest].metadata["doc"])), a.help
