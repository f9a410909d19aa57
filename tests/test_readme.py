"""README.md: every ```python block runs alone in a fresh interpreter outside the repository and prints what
the README shows after it; the README is what scripts/render_readme.py makes of nbs/index.ipynb, whose
hidden cells give the shown code nothing; it cites the LeCT report and the papers of the models we build."""
import json, os, re, subprocess, sys
from pathlib import Path
import pytest
import lect_nb

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()

def python_blocks(md: str) -> list[tuple[str, str | None]]:
    """(code, shown output) of every ```python block; the output is the indented paragraph right after the
    block (how render_readme.py writes a cell's printed text), or None when the README shows none."""
    out, lines, i = [], md.splitlines(), 0
    while i < len(lines):
        if lines[i].strip() != "```python": i += 1; continue
        j = next(k for k in range(i + 1, len(lines)) if lines[k].strip() == "```")
        code = "\n".join(lines[i + 1:j])
        k = j + 1
        while k < len(lines) and not lines[k].strip(): k += 1
        shown = []
        while k < len(lines) and lines[k].startswith("    "): shown.append(lines[k][4:]); k += 1
        out.append((code, "\n".join(shown) if shown else None))
        i = k
    return out

def test_block_parser():
    md = "text\n\n```python\nprint(1)\nprint(2)\n```\n\n    1\n    2\n\nmore\n\n```sh\nls\n```\n\n```python\nx = 1\n```\n\nend\n"
    assert python_blocks(md) == [("print(1)\nprint(2)", "1\n2"), ("x = 1", None)]

BLOCKS = python_blocks(README)

def test_readme_has_its_python_blocks():
    assert len(BLOCKS) >= 2
    assert sum(shown is not None for _, shown in BLOCKS) >= 1

def _run_alone(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    "`code` as a script in an empty directory outside the repository, in a fresh interpreter."
    script = tmp_path / "block.py"
    script.write_text(code + "\n")
    env = {**os.environ, "MPLBACKEND": "Agg"}
    pkg_parent = str(Path(lect_nb.__file__).resolve().parents[1])   # the lect_nb these tests test
    env["PYTHONPATH"] = os.pathsep.join([pkg_parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                                        if p and Path(p).resolve() != ROOT])
    assert ROOT not in tmp_path.resolve().parents
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)

@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_python_block_runs_alone_and_prints_what_readme_shows(i, tmp_path):
    code, shown = BLOCKS[i]
    r = _run_alone(code, tmp_path)
    assert r.returncode == 0, f"README python block {i + 1} fails on its own:\n{code}\n---\n{r.stderr[-3000:]}"
    if shown is not None:
        assert r.stdout.rstrip() == shown.rstrip(), (f"README python block {i + 1} prints\n{r.stdout}\n"
                                                     f"but the README shows\n{shown}")

def test_a_block_that_relies_on_an_earlier_one_fails(tmp_path):
    "The check can fail: a name imported by nothing in the block is an error in a fresh process."
    r = _run_alone("print(count_params)", tmp_path)
    assert r.returncode != 0 and "NameError" in r.stderr

def test_readme_is_rendered_from_index(tmp_path):
    "README.md and README_files/ are what scripts/render_readme.py makes of nbs/index.ipynb now."
    import shutil
    for d in ("scripts", "nbs"): (tmp_path / d).mkdir()
    shutil.copy(ROOT / "scripts" / "render_readme.py", tmp_path / "scripts")
    shutil.copy(ROOT / "nbs" / "index.ipynb", tmp_path / "nbs")
    subprocess.run([sys.executable, str(tmp_path / "scripts" / "render_readme.py")], check=True,
                   capture_output=True)
    assert (tmp_path / "README.md").read_text() == README, "README.md is stale: python scripts/render_readme.py"
    figs = sorted(p.name for p in (tmp_path / "README_files").glob("*.png"))
    assert figs == sorted(p.name for p in (ROOT / "README_files").glob("*.png"))
    for f in figs: assert (tmp_path / "README_files" / f).read_bytes() == (ROOT / "README_files" / f).read_bytes()

def test_index_hidden_cells_give_the_shown_code_nothing():
    "No hidden cell of index.ipynb imports the library: the code the README shows imports what it uses."
    cells = json.loads((ROOT / "nbs" / "index.ipynb").read_text())["cells"]
    hidden = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"
              and re.search(r"^#\|\s*(hide|include:\s*false)", "".join(c["source"]), re.M)]
    bad = [s for s in hidden if re.search(r"^\s*(from|import)\s+lect_nb", s, re.M)]
    assert not bad, f"hidden cells of index.ipynb import lect_nb: {bad}"

REPORT = "https://github.com/ysj9909/Vision_Backbone_projects/blob/main/LeCT_report.pdf"
PAPERS = {"CvT": "2103.15808", "CeiT": "2103.11816", "LocalViT": "2104.05707", "LESA": "2107.05637",
          "AlterNet": "2202.06709", "ConvNeXt": "2201.03545", "ViT": "2010.11929", "ResNet": "1512.03385"}

def test_readme_cites_the_report_and_the_papers():
    assert REPORT in README and "https://github.com/ysj9909/Vision_Backbone_projects" in README
    refs = README.split("## References", 1)
    assert len(refs) == 2, "README has no References section"
    for model, arxiv in PAPERS.items():
        assert f"https://arxiv.org/abs/{arxiv}" in refs[1], f"{model}: arXiv:{arxiv} not in References"
    first = README.index("LeCT report") if "LeCT report" in README else len(README)
    assert README.index(REPORT) < min(first, README.index("## Quick start")), \
        "the report is cited where the README first mentions it"

def test_readme_install_notes():
    assert "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu" in README
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "download.pytorch.org/whl/cpu" in quick  # said where a new user reads first
    # ... but not inside a command block: those run verbatim here, and this index is not reachable
    assert not any("download.pytorch.org" in b for b in re.findall(r"```sh\n(.*?)```", quick, re.S))
    assert re.search(r"\b2 to 4 minutes on 2 CPU cores", quick), "the Quick start time is a measured range"

def test_readme_links_the_results_page_and_lists_no_dated_runs():
    measured = README.split("## What we measured here", 1)[1].split("\n## ", 1)[0]
    assert "](nbs/16_results.ipynb)" in measured and (ROOT / "nbs" / "16_results.ipynb").is_file()
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", README), "dates belong on the results page"
