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
    assert _h1(nb) in h1s, f"{nb.name}: H1 {_h1(nb)!r} not in page headings {h1s}"
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
