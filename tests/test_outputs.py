"""What a reader sees is what the code prints: every notebook is run again and its text outputs are
compared with the saved ones (scripts/run_notebooks.py check), and running them writes no file of
the repository."""
import importlib.util, json, subprocess
from pathlib import Path
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "scripts" / "run_notebooks.py")
rn = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rn)
NOTEBOOKS = rn.notebooks([])


def _tree_state():
    r = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else None


_BEFORE = _tree_state()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_saved_outputs_are_what_the_code_prints(path):
    problems = rn.check(path)
    assert not problems, "saved outputs differ from a fresh run (python scripts/run_notebooks.py " \
        f"write nbs/{path.name} saves the new ones):\n" + "\n\n".join(problems)


def test_running_the_notebooks_wrote_no_repository_file():
    if _BEFORE is None: pytest.skip("not a git checkout")
    assert _tree_state() == _BEFORE, "running the notebooks changed the repository's files"


def test_every_named_exception_is_a_cell_that_exists():
    for name, cells in rn.VARIES.items():
        nb = nbformat.read(ROOT / "nbs" / name, as_version=4)
        ids = {c.get("id") for c in nb.cells if c.cell_type == "code"}
        for cid, (mode, reason) in cells.items():
            assert cid in ids, f"{name}: VARIES names cell {cid}, which is not a code cell there"
            assert mode in ("numbers", "skip") and reason, (name, cid)


def test_slow_cells_are_saved_without_outputs_and_say_how_long_they_take():
    for path in NOTEBOOKS:
        for c in nbformat.read(path, as_version=4).cells:
            if c.cell_type != "code" or not rn.SKIP_FLAGS.search(c.source): continue
            assert not c.get("outputs"), f"{path.name}: a skipped cell has saved outputs"
            lines = c.source.splitlines()
            if any(l.strip() == "#| slow" for l in lines):
                first = next((l for l in lines if not l.startswith("#|")), "")
                assert first.startswith("# Slow:"), f"{path.name}: slow cell starts {first!r}"


def test_the_check_catches_a_changed_output(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(6 * 7)")]
    saved = rn.execute_nb(nb, tmp_path)
    fresh = nbformat.from_dict(json.loads(json.dumps(saved)))
    assert rn.compare(saved, fresh, "t.ipynb") == []
    fresh.cells[0].outputs[0]["text"] = "41\n"
    assert "cell 0" in rn.compare(saved, fresh, "t.ipynb")[0]
    fresh.cells[0].outputs[0]["text"] = "took 3.2 s, 120 img/s, error 2.1e-07\n"
    saved.cells[0].outputs[0]["text"] = "took 9.9 s, 75 img/s, error 1.0e-06\n"
    assert rn.compare(saved, fresh, "t.ipynb") == []  # timings and rounding errors are masked


def test_a_stream_in_pieces_reads_as_one_text():
    one = nbformat.v4.new_code_cell("")
    one.outputs = [nbformat.v4.new_output("stream", name="stdout", text="a\nb\n")]
    two = nbformat.v4.new_code_cell("")
    two.outputs = [nbformat.v4.new_output("stream", name="stdout", text="a\n"),
                   nbformat.v4.new_output("stream", name="stdout", text="b\n")]
    assert rn.output_text(one) == rn.output_text(two)
