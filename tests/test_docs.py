"""Docs: the offline render (scripts/render_docs.py) gives every notebook its page with its title and figures;
the Quarto config is what nbdev-docs expects; every exported function and class, and every public method of an exported class, has a docstring."""
import html, importlib, inspect, io, json, pkgutil, re, subprocess, sys
from contextlib import redirect_stdout
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
NOTEBOOKS = sorted(p for p in NBS.glob("*.ipynb") if not p.name.startswith(("_", ".")))

def _page(nb: Path) -> str:
    "Quarto's page name: numeric prefix stripped (nbdev's nbpath2html)."
    return re.sub(r"^\d+[a-zA-Z0-9]*_", "", nb.stem.lower()) + ".html"

def _src(cell) -> str: return "".join(cell["source"])

def _h1(nb: Path) -> str:
    cells = json.loads(nb.read_text())["cells"]
    m = re.match(r"#\s+(.+)", _src(cells[0]).strip()) if cells and cells[0]["cell_type"] == "markdown" else None
    assert m, f"{nb.name}: the first cell must be a markdown '# Title'"
    return m[1].strip()

def _shown_figures(nb: Path) -> int:
    "image/png outputs of code cells the docs show (not `#| hide`, `#| include: false`, `#| output: false`)."
    n = 0
    for c in json.loads(nb.read_text())["cells"]:
        if c["cell_type"] != "code": continue
        flags = {l[3:].strip().replace(" ", "") for l in _src(c).splitlines() if l.startswith("#|")}
        if flags & {"hide", "include:false", "output:false"}: continue
        n += sum("image/png" in o.get("data", {}) for o in c.get("outputs", []))
    return n

@pytest.fixture(scope="module")
def site(tmp_path_factory):
    "Render once per session, in its own interpreter (notebook cells run there, not in pytest's)."
    out = tmp_path_factory.mktemp("docs_html")
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "render_docs.py"), "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return out

def test_one_page_per_notebook(site):
    assert len(NOTEBOOKS) >= 15
    pages = sorted(p.name for p in site.glob("*.html"))
    assert pages == sorted(_page(nb) for nb in NOTEBOOKS)
    assert not any(p.startswith("_") for p in pages)

@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_page_has_title_and_figures(site, nb):
    page = (site / _page(nb)).read_text()
    h1s = [html.unescape(re.sub(r"<[^>]+>", "", h)).replace("¶", "").strip()
           for h in re.findall(r"<h1[^>]*>(.*?)</h1>", page, flags=re.S)]
    title = _h1(nb).replace("`", "")                 # markdown code spans render as <code>
    assert title in h1s, f"{nb.name}: H1 {title!r} not in page headings {h1s}"
    figs = _shown_figures(nb)
    assert page.count("data:image/png;base64,") >= figs, f"{nb.name}: {figs} figures in the notebook"
    assert "<title>" + html.escape(_h1(nb), quote=False) in page

def test_index_links_every_page_in_learning_order(site):
    index = (site / "index.html").read_text()
    nav = re.search(r'<nav id="docs-nav">(.*?)</nav>', index, flags=re.S)[1]
    hrefs = re.findall(r'<li><a href="([^"]+)"', nav)
    order = sorted(NOTEBOOKS, key=lambda p: "00" if p.stem == "index" else p.name)
    assert hrefs == [_page(nb) for nb in order] and hrefs[0] == "index.html"
    assert "https://lect-nb.github.io/lect_nb/" not in index          # doc links point at local pages

def test_sidebar_is_nbdevs_and_lists_every_notebook():
    import yaml
    from nbdev.quarto import nbdev_sidebar
    buf = io.StringIO()
    with redirect_stdout(buf): nbdev_sidebar.__wrapped__(path=str(NBS), printit=True, force=True)
    committed = (NBS / "sidebar.yml").read_text()
    assert committed.strip() == buf.getvalue().strip(), "nbs/sidebar.yml is stale: run `nbdev-sidebar --force`"
    contents = yaml.safe_load(committed)["website"]["sidebar"]["contents"]
    assert contents == ["index.ipynb"] + sorted(p.name for p in NOTEBOOKS if p.stem != "index")

def test_quarto_config_is_what_nbdev_docs_uses():
    import yaml
    from nbdev.config import get_config
    from nbdev.quarto import _nbdev_yml
    q = yaml.safe_load((NBS / "_quarto.yml").read_text())
    assert q["project"]["type"] == "website"
    assert {"nbdev.yml", "sidebar.yml"} <= set(q["metadata-files"])
    for css in [q["format"]["html"].get("css")] if q["format"]["html"].get("css") else []:
        assert (NBS / css).is_file(), f"_quarto.yml names {css}, which nbs/ lacks"
    cfg = get_config()                                   # nbdev-docs rewrites nbdev.yml from pyproject.toml
    vals = {k: cfg[k] for k in ["title", "description", "branch", "git_url", "doc_host", "doc_baseurl"]}
    assert (NBS / "nbdev.yml").read_text() == _nbdev_yml.format(doc_path=cfg.doc_path.name, **vals)
    assert not cfg.custom_sidebar                        # so nbdev-docs regenerates sidebar.yml itself

def test_workflows():
    import yaml
    deploy = (ROOT / ".github/workflows/deploy.yaml").read_text()
    for step in ('pip install -e ".[dev]"', "quarto-dev/quarto-actions/setup", "nbdev-docs",
                 "actions/upload-pages-artifact", "actions/deploy-pages"):
        assert step in deploy, step
    test = (ROOT / ".github/workflows/test.yaml").read_text()
    assert "nbdev-test && pytest" in test and 'pip install -e ".[dev]"' in test
    for f in (deploy, test): yaml.safe_load(f)

def _public_methods(cls) -> dict:
    "Public methods, static/class methods and properties defined in `cls`'s own `__dict__` (inherited ones are checked where defined)."
    out = {}
    for k, v in vars(cls).items():
        if k.startswith("_"): continue
        if isinstance(v, (staticmethod, classmethod)): v = v.__func__
        elif isinstance(v, property): v = v.fget
        if inspect.isfunction(v): out[k] = v
    return out

def _undocumented() -> list[str]:
    import lect_nb
    missing = []
    for m in pkgutil.iter_modules(lect_nb.__path__):
        if m.name.startswith("_"): continue
        mod = importlib.import_module(f"lect_nb.{m.name}")
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and not (obj.__doc__ or "").strip():
                missing.append(f"{m.name}.{name}")
            if inspect.isclass(obj):
                missing += [f"{m.name}.{name}.{k}" for k, f in _public_methods(obj).items() if not (f.__doc__ or "").strip()]
    return missing

def test_every_exported_function_and_class_has_a_docstring():
    # constants in __all__ (dicts, tuples) cannot carry docstrings; functions, classes and the public
    # methods (incl. static/class methods and properties) each exported class defines itself must
    assert _undocumented() == []

# ---------------------------------------------------------------------------------------- what readers see
def _code_cells(nb: Path):
    for i, c in enumerate(json.loads(nb.read_text())["cells"]):
        if c["cell_type"] == "code": yield i, _src(c)

def _directives(src: str) -> set:
    return {l[2:].strip().split(":")[0].strip() for l in src.splitlines() if l.startswith("#|")}

# Words about how the repository was made, which mean nothing to a reader of the site or the README.
DEV_LOG = [r"PAPER\.md", r"\bshared/", r"\bthe issue\b", r"\bissue #?\d+", r"\bissue's\b",
           r"\blent (to|an?) ", r"\b(this|that|one|the|a) session\b", r"\bWhat changed\b",
           r"\bx\s?\d+(\.\d+)? (inference |memory |training )?targets?\b", r"\btargets? \(x\s?\d",
           r"\bworktree\b", r"\bthe lead\b",
           # a lab log's clock: what a chapter says holds now; dated runs live on the results page
           r"\bof that date\b", r"\bthat day\b", r"\bthe day's runs\b", r"\bthe same day\b",
           r"\bwhen this notebook was written\b", r"\bhas not been measured\b", r"\bno GPU run has happened\b"]
_re_devlog = re.compile("|".join(DEV_LOG), re.I)

def _text_sources():
    "(where, text) for every cell of every notebook (source and text outputs) and README.md."
    for nb in NOTEBOOKS:
        for i, c in enumerate(json.loads(nb.read_text())["cells"]):
            yield f"{nb.name} cell {i}", _src(c)
            for o in c.get("outputs", []):
                t = o.get("text") or o.get("data", {}).get("text/markdown") or o.get("data", {}).get("text/plain")
                if t: yield f"{nb.name} cell {i} output", "".join(t) if isinstance(t, list) else t
    yield "README.md", (ROOT / "README.md").read_text()

def _devlog_hits() -> list[str]:
    return [f"{where}: {m[0]!r} in ...{text[max(0, m.start() - 40):m.end() + 40]!r}..."
            for where, text in _text_sources() for m in _re_devlog.finditer(text)]

def test_devlog_pattern_catches_what_it_should():
    for s in ["see PAPER.md section 3", "as the issue asks", "one NVIDIA H200 lent to one session",
              "What changed in this session", "The x1.5 target is below", "targets (x1.5) are not met",
              "files in shared/ ", "issue 8", "with the version of the code of that date",
              "in the runs of that day", "across the day's runs", "has not been measured on a GPU",
              "No GPU was available when this notebook was written"]:
        assert _re_devlog.search(s), s
    for s in ["the paper's model", "PAPER_TABLE2", "between sessions", "a 1.5x speed-up", "the LeCT report",
              "one epoch per day", "measured on 2026-12-01"]:
        assert not _re_devlog.search(s), s

def test_no_development_log_wording():
    hits = _devlog_hits()
    assert not hits, "development-log wording on pages:\n" + "\n".join(hits)

RESULTS_PAGE = NBS / "16_results.ipynb"     # the one page that holds dated measurements
_re_date = re.compile(r"\b20\d\d-[01]\d-[0-3]\d\b")

def _dated_prose() -> list[str]:
    "ISO dates in the markdown of every notebook but the results page (chapters say what holds now)."
    return [f"{nb.name} cell {i}: ...{_src(c)[max(0, m.start() - 60):m.end() + 20]!r}..."
            for nb in NOTEBOOKS if nb != RESULTS_PAGE
            for i, c in enumerate(json.loads(nb.read_text())["cells"]) if c["cell_type"] == "markdown"
            for m in _re_date.finditer(_src(c))]

def test_dates_only_on_the_results_page():
    assert _re_date.search("Recorded on 2026-12-01 on a 2-core Xeon") and not _re_date.search("v2.14.1")
    assert RESULTS_PAGE in NOTEBOOKS and _h1(RESULTS_PAGE) == "Measured results"
    cells = json.loads(RESULTS_PAGE.read_text())["cells"]
    assert any(_re_date.search(_src(c)) for c in cells if c["cell_type"] == "markdown")
    assert not any("default_exp" in _src(c) or "export" in _directives(_src(c))
                   for c in cells if c["cell_type"] == "code"), "the results page exports nothing"
    hits = _dated_prose()
    assert not hits, "dates in chapters (move the dated statement to 16_results.ipynb):\n" + "\n".join(hits)

def test_results_page_reads_every_results_file():
    "Every JSON file in nbs/results/ is shown by the results page (read there, not typed in)."
    code = "\n".join(_src(c) for c in json.loads(RESULTS_PAGE.read_text())["cells"] if c["cell_type"] == "code")
    files = sorted(p.relative_to(NBS / "results").as_posix() for p in (NBS / "results").rglob("*.json*"))
    assert files
    # a file is read by name, or as one of a folder's rows that the page reads as a whole
    missing = [f for f in files if f not in code and not ("/" in f and f.rsplit("/", 1)[0] + "/" in code)]
    assert not missing, f"results files the results page does not read: {missing}"

def _png_images():
    import base64
    for nb in NOTEBOOKS:
        for i, c in enumerate(json.loads(nb.read_text())["cells"]):
            for o in c.get("outputs", []):
                d = o.get("data", {}).get("image/png")
                if d: yield f"{nb.name} cell {i}", base64.b64decode("".join(d) if isinstance(d, list) else d)

def _empty_frames(rgb, min_side: int = 30) -> list[tuple]:
    "Axes frames (thin dark rectangles, sides >= min_side px) with nothing drawn inside: (top, left, bottom, right)."
    import numpy as np
    rgb = rgb[..., :3].astype(int)
    dark = rgb.sum(-1) < 300
    tops, bots = {}, {}
    for r in range(2, dark.shape[0] - 2):
        d = np.flatnonzero(np.diff(np.concatenate([[0], dark[r].astype(int), [0]])))
        for c1, c2 in zip(d[::2], d[1::2]):
            if c2 - c1 < min_side: continue
            if dark[r + 2, c1 + 2:c2 - 2].mean() < .5: tops.setdefault((int(c1), int(c2)), []).append(r)
            if dark[r - 2, c1 + 2:c2 - 2].mean() < .5: bots.setdefault((int(c1), int(c2)), []).append(r)
    found = []
    for (c1, c2), rows in tops.items():
        for r1 in rows:
            r2 = min((b for b in bots.get((c1, c2), []) if b - r1 >= min_side), default=None)
            if r2 is None: continue
            inner = rgb[r1 + 2:r2 - 1, c1 + 2:c2 - 2]
            if inner.size and (inner == inner[0, 0]).all(): found.append((r1, c1, r2, c2))
    return found

def _blank_reasons(png: bytes) -> list[str]:
    "Why an image looks blank: (almost) one colour, or an axes frame with nothing inside (an empty panel)."
    import numpy as np
    from PIL import Image
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    g = rgb.astype(float).mean(-1)
    _, counts = np.unique(g, return_counts=True)
    out = []
    if g.std() < 5: out.append(f"grey-level std {g.std():.2f}")
    if 1 - counts.max() / g.size < 0.01: out.append(f"{1 - counts.max() / g.size:.2%} of pixels not background")
    out += [f"empty panel at rows {r1}-{r2}, columns {c1}-{c2}" for r1, c1, r2, c2 in _empty_frames(rgb)]
    return out

def _fig_png(panels) -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt, numpy as np
    fig, axs = plt.subplots(1, len(panels), figsize=(2 * len(panels), 2))
    for ax, p in zip(np.atleast_1d(axs), panels):
        if p is not None: ax.imshow(p)
        ax.set_xticks([]); ax.set_yticks([])
    buf = io.BytesIO(); fig.savefig(buf, format="png"); plt.close(fig)
    return buf.getvalue()

def test_blank_figure_check_catches_blank_panels():
    import numpy as np
    rng = np.random.default_rng(0)
    assert _blank_reasons(_fig_png([rng.random((16, 16)), rng.random((16, 16))])) == []
    assert any("empty panel" in r for r in _blank_reasons(_fig_png([rng.random((16, 16)), None])))
    from PIL import Image
    buf = io.BytesIO(); Image.new("RGB", (200, 100), "white").save(buf, format="PNG")
    assert _blank_reasons(buf.getvalue())

def test_no_committed_figure_is_blank():
    bad = [f"{where}: {', '.join(r)}" for where, png in _png_images() if (r := _blank_reasons(png))]
    assert len(list(_png_images())) >= 10
    assert not bad, "blank figures (re-run the cell):\n" + "\n".join(bad)

def _field_table(nb_name: str) -> list[tuple[str, str, str]]:
    """(field, default, meaning) rows of the one `| field | default | meaning |` table in a notebook: a markdown
    cell, or the markdown output of a cell that generates it from the dataclass."""
    nb = json.loads((NBS / nb_name).read_text())
    head = "| field | default | meaning |"
    texts = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]
    texts += ["".join(o.get("data", {}).get("text/markdown", "")) for c in nb["cells"] if c["cell_type"] == "code"
              for o in c.get("outputs", [])]
    tables = [t for t in texts if head in t]
    assert len(tables) == 1, f"{len(tables)} field tables in {nb_name}"
    rows = []
    for line in tables[0].split(head)[1].splitlines()[2:]:
        if not line.startswith("|"): break
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        assert len(cells) == 3, line
        rows.append(tuple(cells))
    return rows

# (TrainConfig's table in 09b_runs is written from its fields: tests/test_cli_light.py checks the generator)
@pytest.mark.parametrize("nb_name,cls", [("05_lect.ipynb", "lect_nb.models:LeCTConfig")])
def test_config_tables_match_their_dataclass(nb_name, cls):
    "The field tables shown for the config dataclasses list every field, in order, with its default."
    import ast, dataclasses
    mod, name = cls.split(":")
    fields = dataclasses.fields(getattr(importlib.import_module(mod), name))
    rows = _field_table(nb_name)
    assert [r[0] for r in rows] == [f"`{f.name}`" for f in fields]          # every field, in order
    for (field, default, meaning), f in zip(rows, fields):
        assert default.startswith("`") and default.endswith("`"), (field, default)
        value = ast.literal_eval(default[1:-1])
        assert value == f.default and type(value) is type(f.default), (field, default, f.default)
        assert len(meaning) > 10, (field, meaning)                            # described, not just named

MAX_CODE_LINE = 105          # wrap at about 100; past this the site's code boxes scroll sideways
# Every notebook is wrapped to the page width and holds one public definition per exported cell; the two
# checks below hold them to it.
LAID_OUT = {nb.name for nb in NOTEBOOKS}

def test_code_lines_fit_the_page():
    long = [f"{nb.name} cell {i} line {j + 1} ({len(l)} chars): {l.strip()[:60]}..."
            for nb in NOTEBOOKS if nb.name in LAID_OUT for i, s in _code_cells(nb) for j, l in enumerate(s.splitlines())
            if len(l) > MAX_CODE_LINE]
    assert not long, f"{len(long)} code lines longer than {MAX_CODE_LINE} characters:\n" + "\n".join(long)

def _mixed_import_cell(src: str) -> bool:
    """A cell nbdev-docs executes because of an import (nbdev's `_do_eval`: any import, at any depth) that
    also holds other code. Exported cells run anyway: for them only top-level imports count."""
    import ast
    lines = ["" if l.lstrip().startswith(("%", "!")) else l for l in src.splitlines()]
    tree = ast.parse("\n".join(lines))
    d = _directives(src)
    if d & {"eval"} and re.search(r"^#\|\s*eval:\s*false", src, re.M | re.I): return False
    nodes = tree.body if d & {"export", "exports", "exporti"} else list(ast.walk(tree))
    imps = (ast.Import, ast.ImportFrom)
    return any(isinstance(n, imps) for n in nodes) and any(not isinstance(n, imps) for n in tree.body)

def test_mixed_import_check():
    assert _mixed_import_cell("import os\nx = 1")
    assert _mixed_import_cell("with open('f') as f:\n    import json")
    assert not _mixed_import_cell("#| hide\nimport os, sys\nfrom pathlib import Path  # comment")
    assert not _mixed_import_cell("#| export\ndef f():\n    import os\n    return os.sep")
    assert _mixed_import_cell("#| export\nimport os\ndef f(): return os.sep")

def test_imports_in_their_own_cells():
    bad = [f"{nb.name} cell {i}: {s.splitlines()[0][:70]!r}"
           for nb in NOTEBOOKS for i, s in _code_cells(nb) if _mixed_import_cell(s)]
    assert not bad, "cells mixing imports with other code (nbdev-docs executes them whole):\n" + "\n".join(bad)

def _show_doc_order(nb: Path) -> list[str]:
    "Names whose API entry nbdev's `add_show_docs` puts out of source order (several definitions in one cell)."
    import nbdev.config                      # noqa: F401  (nbdev.process first is a circular import)
    from fastcore.nbio import read_nb
    from nbdev.process import NBProcessor
    from nbdev.processors import add_show_docs
    book = read_nb(nb)
    NBProcessor(nb=book, procs=[add_show_docs]).process()
    out, defs = [], []
    for c in book.cells:
        if getattr(c, "has_sd", False): defs.append(re.match(r"show_doc\((.*)\)", c.source)[1])
        elif defs:
            if defs != list(reversed(defs)) : out += [f"{nb.name}: API entries {defs} (source order {defs[::-1]})"]
            defs = []
    return out

def test_api_entries_in_source_order():
    bad = [o for nb in NOTEBOOKS if nb.name in LAID_OUT for o in _show_doc_order(nb)]
    assert not bad, ("nbdev lists a cell's definitions backwards: one public definition per exported cell\n"
                     + "\n".join(bad))

# ---------------------------------------------------------------------------------------- offline render == nbdev
AGREE_NB = NBS / "12a_receptive_fields.ipynb"      # `#| export`, `#| exports`, `#| hide`, figures, API entries

_NBDEV_PROC = """
import json, sys
from pathlib import Path
import nbdev.config, nbdev.serve_drv
from nbdev.processors import FilterDefaults
nbdev.serve_drv.main((Path(sys.argv[1]), Path(sys.argv[2]), FilterDefaults))   # what nbdev-docs gives Quarto
"""

_RENDER = """
import json, sys
sys.path.insert(0, sys.argv[3])
import render_docs, nbformat
from pathlib import Path
nb = render_docs.process_notebook(sys.argv[1])
nb.metadata.pop("lect_docs")
Path(sys.argv[2]).write_text(nbformat.writes(nb))
Path(sys.argv[2] + ".html").write_text(render_docs.to_html(nb, Path(sys.argv[1]).parent, "t"))
"""

def _quarto_shows(nb: dict) -> list[tuple]:
    "What Quarto shows of nbdev's processed notebook: each code cell's code (unless hidden) and output kinds."
    out = []
    for c in nb["cells"]:
        if c["cell_type"] != "code": continue
        lines = _src(c).splitlines()
        opts = {}
        while lines and lines[0].startswith("#|"):
            k, _, v = lines.pop(0)[2:].partition(":")
            opts[k.strip()] = v.strip().strip("'\"").lower() or "true"
        if opts.get("include") == "false": continue
        code = "\n".join(lines).strip()
        if code and opts.get("echo") != "false":
            out.append(("code", code, opts.get("code-fold") == "show"))
        if opts.get("output") != "false":
            out += [("output", o["output_type"], _shown_mime(o)) for o in c.get("outputs", [])]
    return out

_MIME_PRIORITY = ["text/html", "image/svg+xml", "image/png", "image/jpeg", "text/markdown", "text/latex",
                  "text/plain"]

def _shown_mime(o: dict) -> str:
    "The one representation of an output a page shows (Quarto and nbconvert both pick by priority)."
    if o["output_type"] == "stream": return o.get("name", "stdout")
    return next((m for m in _MIME_PRIORITY if m in o.get("data", {})), "")

def _render_shows(nb: dict) -> list[tuple]:
    "What the offline render shows: nbconvert drops the input of cells tagged `remove_input`."
    out = []
    for c in nb["cells"]:
        if c["cell_type"] != "code": continue
        tags = c.get("metadata", {}).get("tags", [])
        if "remove_input" not in tags: out.append(("code", _src(c).strip(), "fold-show" in tags))
        out += [("output", o["output_type"], _shown_mime(o)) for o in c.get("outputs", [])]
    return out

@pytest.fixture(scope="module")
def agree(tmp_path_factory):
    d = tmp_path_factory.mktemp("agree")
    for script, dst in ((_NBDEV_PROC, d / "nbdev.ipynb"), (_RENDER, d / "render.ipynb")):
        r = subprocess.run([sys.executable, "-c", script, str(AGREE_NB), str(dst), str(ROOT / "scripts")],
                           cwd=NBS, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
    return (json.loads((d / "nbdev.ipynb").read_text()), json.loads((d / "render.ipynb").read_text()),
            (d / "render.ipynb.html").read_text())

def test_offline_render_shows_what_nbdev_shows(agree):
    nbdev_nb, render_nb, page = agree
    q, r = _quarto_shows(nbdev_nb), _render_shows(render_nb)
    assert q == r
    codes = [x for x in q if x[0] == "code"]
    src = json.loads(AGREE_NB.read_text())["cells"]
    n_export = sum("export" in _directives(_src(c)) for c in src)
    n_exports = sum("exports" in _directives(_src(c)) for c in src)
    assert n_export >= 1 and n_exports >= 1
    assert sum(x[2] for x in codes) == n_exports                  # `#| exports` code shown, folded open
    assert not any(x[1].startswith("from __future__") for x in codes)   # `#| export` code hidden
    assert not any("show_doc" in x[1] for x in codes)             # API entries show without their call
    shown_docs = [o for o in q if o[0] == "output" and o[2] == "text/markdown"]
    assert len(shown_docs) >= 2                                   # effective_receptive_field, plot_erfs
    # and nbconvert shows exactly those inputs and figures
    code_cells = [c for c in re.split(r'<div class="jp-Cell ', page)[1:] if c.startswith("jp-CodeCell")]
    assert sum('jp-InputArea' in c.split("jp-OutputArea")[0] for c in code_cells) == len(codes)
    figs = sum(c.count("data:image/png;base64,") for c in code_cells)
    assert figs == sum(o[2] == "image/png" for o in q if o[0] == "output") >= 2
    assert page.count("celltag_fold-show") == n_exports

def test_offline_pages_render_maths(site):
    import html as h
    pages = [p for p in site.glob("*.html") if "$$" in h.unescape(re.sub(r"<(code|pre|script)\b.*?</\1>", "",
                                                                          p.read_text(), flags=re.S))]
    assert not pages, f"raw TeX left in {pages}"
    # latex2mathml turns an `&` it cannot place (`aligned`, `gathered`: environments it lacks) into a symbol
    lost = [p.name for p in site.glob("*.html") if "<mi>&</mi>" in p.read_text()]
    assert not lost, f"a multi-line TeX environment the offline render cannot lay out (use a table) in {lost}"
    assert "<math" in (site / "train.html").read_text()            # the cosine schedule
    assert "mathjax" not in (site / "train.html").read_text().lower()   # nothing loaded from a CDN

# ---------------------------------------------------------------------------------------- anchors
def _render_docs():
    if str(ROOT / "scripts") not in sys.path: sys.path.insert(0, str(ROOT / "scripts"))
    import render_docs
    return render_docs

# Pandoc's manual (auto_identifiers) and what pandoc 3.9 (`-f markdown -t html`) gives these headings
PANDOC_IDS = [("Heading identifiers in HTML", "heading-identifiers-in-html"),
              ("Maître d'hôtel", "maître-dhôtel"), ("Dogs?--in my house?", "dogs--in-my-house"),
              ("HTML, S5, or RTF?", "html-s5-or-rtf"), ("3. Applications", "applications"), ("33", "section"),
              ("ImageClassifier", "imageclassifier"), ("LeCT.forward_features", "lect.forward_features"),
              ("Drop path (stochastic depth)", "drop-path-stochastic-depth"), ("Table 2 (top-1 %)", "table-2-top-1"),
              ("The pooled_grid rule", "the-pooled_grid-rule"), ("3x3 conv", "x3-conv"),
              ("_KeepBatchNormStats", "keepbatchnormstats"), ("Cost: (N/K²)·N  instead of N²", "cost-nk²n-instead-of-n²")]

@pytest.mark.parametrize("text,ident", PANDOC_IDS)
def test_heading_ids_are_pandocs(text, ident):
    assert _render_docs().heading_id(text) == ident

def test_heading_ids_in_a_page():
    "nbconvert's ids (case kept, `(`, `:` kept) become Quarto's; repeats get -1, -2 as Pandoc numbers them."
    page = ('<h2 id="The-model-API">The model API<a class="anchor-link" href="#The-model-API">¶</a></h2>'
            '<h3 id="ImageClassifier">ImageClassifier<a class="anchor-link" href="#ImageClassifier">¶</a></h3>'
            '<h3 id="A-$x_1$">A <code>$x_1$</code><a class="anchor-link" href="#A-$x_1$">¶</a></h3>'
            '<h2 id="The-model-API">The model API<a class="anchor-link" href="#The-model-API">¶</a></h2>'
            '<h2>no id</h2>')
    out = _render_docs().quarto_heading_ids(page)
    assert re.findall(r'<h\d id="([^"]*)"', out) == ["the-model-api", "imageclassifier", "a-x_1", "the-model-api-1"]
    assert re.findall(r'class="anchor-link" href="#([^"]*)"', out) == ["the-model-api", "imageclassifier", "a-x_1",
                                                                         "the-model-api-1"]
    assert "<h2>no id</h2>" in out and out.count("¶") == 4 and "<code>$x_1$</code>" in out

def _broken_anchor_links(site: Path) -> tuple[int, list[str]]:
    "(internal links with a `#fragment`, those whose page has no element with that id)."
    from urllib.parse import unquote
    pages = {p.name: p.read_text() for p in sorted(site.glob("*.html"))}
    ids = {n: {html.unescape(i) for i in re.findall(r'\sid="([^"]*)"', t)} for n, t in pages.items()}
    n, broken = 0, []
    for name, text in pages.items():
        for href in map(html.unescape, re.findall(r'<a\s[^>]*?href="([^"]*#[^"]*)"', text)):
            if re.match(r"([a-zA-Z][\w+.-]*:|//)", href): continue          # another site (GitHub source links)
            page, frag = href.split("#", 1)
            n += 1
            if unquote(frag) not in ids.get(page or name, set()): broken.append(f"{name}: {href}")
    return n, broken

def test_anchor_link_check_catches_a_missing_id(tmp_path):
    (tmp_path / "a.html").write_text('<h2 id="x">X</h2><a href="#x">ok</a><a href="b.html#y">ok</a>'
                                     '<a href="b.html#Y">case</a><a href="c.html#x">no page</a>'
                                     '<a href="https://example.org/b.html#z">elsewhere</a>')
    (tmp_path / "b.html").write_text('<h3 id="y">Y</h3><a href="a.html#x">ok</a><a href="#nope">missing</a>')
    assert _broken_anchor_links(tmp_path) == (6, ["a.html: b.html#Y", "a.html: c.html#x", "b.html: #nope"])

def test_every_internal_anchor_link_finds_its_target(site):
    "nbdev's doc links (`page.html#name`, lowercase), the headings' ¶ links and links written in the prose."
    n, broken = _broken_anchor_links(site)
    assert n >= 500, n
    assert not broken, (f"{len(broken)} of {n} links point at an id their page lacks (nbdev links a private "
                        "`_name` to `#_name`, but Pandoc drops the leading `_`: name it without backticks):\n"
                        + "\n".join(broken))

# ---------------------------------------------------------------------------------------- project URLs
def test_project_urls_are_one_setting():
    import tomllib
    from nbdev.config import get_config
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    urls, cfg = proj["urls"], get_config()
    m = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+)", urls["Repository"])
    assert m, urls["Repository"]
    owner, repo = m.groups()
    assert urls["Documentation"] == f"https://{owner.lower()}.github.io/{repo}/"
    assert (cfg.git_url, cfg.doc_host, cfg.doc_baseurl) == (urls["Repository"], f"https://{owner.lower()}.github.io",
                                                            f"/{repo}")
    for a in proj["authors"]:
        assert not re.search(r"@(example\.(org|com|net)|.*\.example)$", a.get("email", "")), a
    from lect_nb._modidx import d                               # source links of the API entries
    assert d["settings"]["git_url"] == cfg.git_url and d["settings"]["doc_host"] == cfg.doc_host

def test_deploy_workflow_cancels_and_links_to_its_own_repository():
    import yaml
    wf = yaml.safe_load((ROOT / ".github/workflows/deploy.yaml").read_text())
    assert wf["concurrency"]["cancel-in-progress"] is True
    steps = " ".join(str(s.get("run", "")) for s in wf["jobs"]["build"]["steps"])
    assert "--set-project-urls" in steps and "GITHUB_REPOSITORY" in steps


def _source_links(text: str) -> list[str]:
    "The `[source](...)` links of show_doc entries in `text`."
    return re.findall(r"\[source\]\(([^)\s]+)\)", text)

def test_source_links_name_a_line():
    """A show_doc entry of an object imported from another module gets `#LNone` from nbdev (its lookup
    wants the short name); such an entry belongs to the notebook that defines the object."""
    assert _source_links("[source](https://x/lect_nb/a.py#LNone){target=\"_blank\"} [source](https://x/b.py#L41)") == \
        ["https://x/lect_nb/a.py#LNone", "https://x/b.py#L41"]
    bad = [f"{nb.name}: {link}" for nb in sorted(NBS.glob("*.ipynb"))
           for c in json.loads(nb.read_text())["cells"] for o in c.get("outputs", [])
           for link in _source_links("".join(o.get("data", {}).get("text/markdown", "")))
           if not re.search(r"#L\d+$", link)]
    assert not bad, "source links without a line number:\n" + "\n".join(bad)
