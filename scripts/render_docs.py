"""Render every notebook in nbs/ to a self-contained HTML page, without Quarto (which `nbdev-docs` needs).

    python scripts/render_docs.py [--out docs_html] [--workers N]

What a page shows is decided by nbdev's own processors, unchanged: each notebook goes through
`nbdev.processors.FilterDefaults().procs()` (the list `nbdev-docs` runs before Quarto, plus any
`doc_procs` of pyproject.toml), so the offline pages and the hosted site show the same cells and outputs
(`tests/test_docs.py::test_offline_render_shows_what_nbdev_shows` checks it on a notebook). The one
substitution is nbdev's `exec_show_docs`, subclassed so that a cell that would make `nbdev-docs` fail or
run long is reported (`problems.json`) instead of stopping the render; it still executes what nbdev
executes for `show_doc`, so nothing shown changes. What Quarto then does with nbdev's output is done
here: `#| echo: false`, `#| output: asis`, `#| include: false`, `#| output: false`, and
`#| code-fold: show` / `#| code-summary` (an open, collapsible box), Pandoc-only markdown
(`[source](url){...}`, `:::` divs) turned into HTML, links into the hosted site
(`https://<doc_host>/<baseurl>/x.html`) pointed at the local pages, and headings given Pandoc's
identifiers (`heading_id`: `#imageclassifier`, not nbconvert's `#ImageClassifier`), so that nbdev's links
(`core.html#imageclassifier`) and the site's own `#anchor` links land where they do on the hosted site.

Which code a reader sees (the rule for the notebooks, applied by nbdev's processors):

- `#| exports`: the code is shown (in an open "Exported source" box, after its API entry). Use it for
  what the notebooks teach: the model's code (patch embedding, projections, attention, LeFFN, the
  LeCT blocks and stages: notebooks 01-05) and the key parts of the baselines, data, training and
  analysis (06-12: e.g. a baseline's block, the transforms, the training step, the ERF computation).
- `#| export`: the code is hidden and only its API entry (signature and docstring) is shown. Use it for
  plumbing: imports, registries, argument checking, file handling, I/O, kernels and their bindings.
- `#| exporti`, `#| hide`: nothing is shown (the cell still runs).
- One public definition per exported cell: nbdev inserts the API entries of a cell's definitions in
  reverse order, so a cell with several definitions lists them backwards.

Output: one page per notebook named like the site's (`03_attention.ipynb` -> `attention.html`,
`index.ipynb` -> `index.html`), each with a sidebar listing every page in learning order (nbdev's
sidebar order), figures embedded as base64 `data:` URIs. Maths (`$...$`, `$$...$$` in markdown) is
converted to MathML when the page is written (the `latex2mathml` package, a dev dependency), which
browsers display without any script or network access; no CDN is loaded.

Run from anywhere: paths are taken from pyproject.toml (nbdev's config).
"""
from __future__ import annotations

import argparse, html, json, multiprocessing as mp, os, re, sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]

def notebooks(nbs_path: Path) -> list[Path]:
    "Notebooks of the site in nbdev's sidebar order: index first, then by name; `_`/`.`-prefixed ones skipped."
    nbs = [p for p in nbs_path.glob("*.ipynb") if not p.name.startswith(("_", "."))]
    return sorted(nbs, key=lambda p: ("00" if p.stem == "index" else p.name))

def page_name(nb_path: Path) -> str:
    "The site's page name for a notebook, as nbdev/Quarto name it (numeric prefix stripped)."
    from nbdev.config import nbpath2html
    return nbpath2html(Path(nb_path)).name

# ---------------------------------------------------------------------------------------- nbdev processing
_re_opt = re.compile(r"^#\|\s*([\w-]+)\s*(?::\s*(.*?))?\s*$")

def _cell_options(src: str) -> tuple[dict, str]:
    "Split leading `#| key: value` lines (Quarto cell options left by nbdev) from the code."
    lines, opts = src.splitlines(), {}
    while lines and _re_opt.match(lines[0]):
        k, v = _re_opt.match(lines.pop(0)).groups()
        opts[k] = (v or "true").strip().strip("'\"").lower()
    return opts, "\n".join(lines).strip("\n")

def _site_url() -> str:
    from nbdev.config import get_config
    cfg = get_config()
    return f"{cfg.doc_host}{cfg.doc_baseurl}".rstrip("/") + "/"

def _pandoc_md_to_html(md: str, site: str) -> str:
    "Turn the Pandoc-only bits of nbdev's markdown into plain markdown/HTML that nbconvert renders."
    # [text](url){target=... style=...}: show_doc's source link, floated right like the Quarto site's
    md = re.sub(r"(\[[^\]]+\]\([^)\s]+\))\{[^}\n]*\}", r"\1", md)        # link attributes (show_doc's source link)
    md = re.sub(r"^:::.*$", "", md, flags=re.MULTILINE)                     # fenced divs: keep the content
    md = md.replace(site, "")                                               # hosted pages -> local pages
    # [text](16_results.ipynb): a link to another notebook, which Quarto turns into a link to its page
    md = re.sub(r"\]\(([\w-]+\.ipynb)(#[^)\s]*)?\)", lambda m: f"]({page_name(m[1])}{m[2] or ''})", md)
    return md

def _exec_docs_proc():
    "nbdev's `exec_show_docs`, made to report instead of run what would make `nbdev-docs` slow or fail."
    import ast, copy
    from nbdev.processors import exec_show_docs, _do_eval, _show_docs, _ast_contains
    from fastcore.basics import str2bool
    _imports, _def_dirs = (ast.Import, ast.ImportFrom), {"export", "exports", "exporti", "exec_doc"}

    class exec_show_docs_reporting(exec_show_docs):
        """Like nbdev's: runs exported cells, imports and `show_doc` cells so `show_doc` has what it documents.
        nbdev also runs *every* cell holding an import, whole (even `#| slow`/`#| cuda` ones); here only the
        import statements of such a mixed cell run, and the cell is listed in `nb.docs_problems_`. A cell
        that raises keeps its stored outputs and is listed too (under `nbdev-docs` it stops the build)."""
        def begin(self):
            super().begin()
            self.nb.docs_problems_ = []
        def __call__(self, cell):
            if not self.nb.has_docs_ or not hasattr(self, "k"): return
            if str2bool(getattr(self.nb, "frontmatter_", {}).get("skip_showdoc", False)): return
            if not _do_eval(cell): return
            trees = cell.parsed_()
            code = [l for l in cell.source.splitlines() if l.strip() and not l.startswith("#|")]
            first = code[0][:70] if code else ""
            if not (cell.directives_.keys() & (_def_dirs | {"hide"})) and not _show_docs(trees) and \
               any(not isinstance(t, _imports) for t in trees):
                flags = " ".join(f"#| {k}" for k in cell.directives_ if k in ("slow", "cuda", "notest"))
                self.nb.docs_problems_.append(
                    f"cell {cell.idx_}{' (' + flags + ')' if flags else ''}: imports mixed with other code, so "
                    f"nbdev-docs executes the whole cell; put its imports in a cell of their own: {first!r}")
                src = "\n".join(ast.unparse(t) for t in trees if isinstance(t, _imports))
                if src: self.k.run(src)
                self.k.exc = None
                return
            stored = copy.deepcopy(cell.get("outputs", []))
            self.k.cell(cell)
            if self.k.exc:
                e, self.k.exc = self.k.exc, None
                cell.outputs = stored
                self.nb.docs_problems_.append(f"cell {cell.idx_}: raised {type(e).__name__}: {e} "
                                              f"(nbdev-docs stops here): {first!r}")
    return exec_show_docs_reporting

def nbdev_procs() -> list:
    "nbdev's docs processors (`FilterDefaults().procs()`), with `exec_show_docs` made to report problems."
    import nbdev.config                           # nbdev.config first: importing nbdev.process first is circular
    from nbdev.processors import FilterDefaults
    procs = list(FilterDefaults().procs())
    return [_exec_docs_proc() if getattr(p, "__name__", "") == "exec_show_docs" else p for p in procs]

def process_notebook(nb_path: str) -> dict:
    "nbdev's docs processing of one notebook, then Quarto's cell options applied; returns an nbformat notebook."
    nb_path, cwd = Path(nb_path).resolve(), os.getcwd()
    os.chdir(nb_path.parent)                      # notebooks read files relative to nbs/, as under nbdev-docs
    try: return _process(nb_path)
    finally: os.chdir(cwd)

def _process(nb_path: Path):
    import nbdev.config, nbformat                 # nbdev.config first: importing nbdev.process first is circular
    from fastcore.nbio import read_nb, nb2dict
    from nbdev.process import NBProcessor
    os.environ.setdefault("MPLBACKEND", "Agg")
    nb = read_nb(nb_path)
    procs = nbdev_procs()
    os.environ["IN_TEST"] = "1"                   # what nbdev's serve driver sets while processing
    try: NBProcessor(nb=nb, procs=procs, rm_directives="quarto").process()
    finally: del os.environ["IN_TEST"]
    fm = dict(getattr(nb, "frontmatter_", {}) or {})
    site = _site_url()
    cells = []
    for cell in nb2dict(nb)["cells"]:
        src = cell.get("source") or ""
        if isinstance(src, list): src = "".join(src)
        if cell["cell_type"] == "raw": continue                                # the YAML front matter
        if cell["cell_type"] == "markdown":
            src = _pandoc_md_to_html(src, site).strip()
            if src.startswith("<!-- WARNING: THIS FILE WAS AUTOGENERATED"): continue
            if src: cells.append(nbformat.v4.new_markdown_cell(src, attachments=cell.get("attachments")) \
                                 if cell.get("attachments") else nbformat.v4.new_markdown_cell(src))
            continue
        opts, code = _cell_options(src)
        if opts.get("include") == "false": continue
        outputs = [] if opts.get("output") == "false" else cell.get("outputs", [])
        for o in outputs:
            if isinstance(o.get("text"), list): o["text"] = "".join(o["text"])
            data = o.get("data", {})
            for k, v in data.items():
                if isinstance(v, list): data[k] = "".join(v)
            if "text/markdown" in data:
                md = data["text/markdown"]
                data["text/markdown"] = _pandoc_md_to_html("".join(md) if isinstance(md, list) else md, site)
                if opts.get("output") == "asis": data.pop("text/plain", None)
        tags = []
        if opts.get("echo") == "false" or not code.strip(): tags.append("remove_input")
        elif opts.get("code-fold") in ("show", "true"):                   # nbdev's add_fold (`#| exports`)
            tags.append("fold-show" if opts["code-fold"] == "show" else "fold-hide")
        if not code.strip() and not outputs: continue
        new = nbformat.v4.new_code_cell(code, outputs=[nbformat.from_dict(o) for o in outputs],
                                        metadata={"tags": tags} if tags else {})
        cells.append(new)
    title, desc = fm.get("title"), fm.get("description")
    if title:
        head = f"# {title}" + (f"\n\n> {desc}" if desc else "")
        cells.insert(0, nbformat.v4.new_markdown_cell(head))
    out = nbformat.v4.new_notebook(cells=cells, metadata=nb2dict(nb).get("metadata", {}))
    out.metadata["lect_docs"] = {"title": title or nb_path.stem, "description": desc or "",
                                 "problems": list(getattr(nb, "docs_problems_", []))}
    return out

# ---------------------------------------------------------------------------------------- HTML
def heading_id(text: str) -> str:
    """The identifier Pandoc (so Quarto) gives a heading with plain text `text` (its `auto_identifiers`):
    lowercase; keep letters, digits, `_`, `-`, `.`; runs of spaces become one `-`; drop everything
    before the first letter; `section` if nothing is left."""
    kept = "".join(c for c in text.lower() if c.isspace() or c.isalnum() or c in "_-.")
    ident = "-".join(kept.split())
    while ident and not ident[0].isalpha(): ident = ident[1:]
    return ident or "section"

_re_heading = re.compile(r"<h([1-6])([^>]*)>(.*?)</h\1>", re.S)
_re_anchor_link = re.compile(r'<a class="anchor-link" href="[^"]*">.*?</a>', re.S)

def quarto_heading_ids(page: str) -> str:
    """Give every heading nbconvert anchored (`<hN id=...>` with its `¶` link) the id Quarto gives it
    (`heading_id` of its text, `-1`, `-2`, ... for repeats, in page order), so that links written for the
    hosted site (nbdev's `page.html#name`, lowercase) find their target here too."""
    used: set[str] = set()
    def fix(m):
        level, attrs, inner = m.groups()
        if 'id="' not in attrs: return m[0]
        text = html.unescape(re.sub(r"<[^>]+>", "", _re_anchor_link.sub("", inner)))
        base = heading_id(text.replace("$", ""))
        ident, n = base, 0
        while ident in used: n += 1; ident = f"{base}-{n}"
        used.add(ident)
        attrs = re.sub(r'\sid="[^"]*"', f' id="{html.escape(ident)}"', attrs)
        inner = _re_anchor_link.sub(lambda a: f'<a class="anchor-link" href="#{quote(ident, safe="-_.")}">'
                                              + a[0].split(">", 1)[1], inner)
        return f"<h{level}{attrs}>{inner}</h{level}>"
    return _re_heading.sub(fix, page)

_re_tex = re.compile(r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|(?<![\\$\w])\$(?![\s$])([^$\n]+?)(?<!\s)\$(?![\w$])|\\\((.+?)\\\)", re.S)
_re_skip = re.compile(r"<(code|pre|script|style|textarea)\b.*?</\1>", re.S | re.I)

def tex_to_mathml(page: str) -> str:
    """`$$..$$`/`\\[..\\]` (display) and `$..$`/`\\(..\\)` (inline) TeX in the page's text -> MathML, which
    browsers render without a script; text inside `code`, `pre`, `script`, `style` is left alone."""
    from latex2mathml.converter import convert
    def conv(m):
        tex = html.unescape(next(g for g in m.groups() if g is not None)).strip()
        display = m[1] is not None or m[2] is not None
        try: return convert(tex, display="block" if display else "inline")
        except Exception: return m[0]           # not TeX after all (e.g. two prices): leave the text
    out, last = [], 0
    for m in _re_skip.finditer(page):
        out += [_re_tex.sub(conv, page[last:m.start()]), m[0]]
        last = m.end()
    return "".join(out + [_re_tex.sub(conv, page[last:])])

_CSS = """
body { margin: 0; }
#docs-nav { position: fixed; top: 0; left: 0; bottom: 0; width: 15rem; overflow-y: auto; padding: 1rem 0.8rem;
  box-sizing: border-box; background: #f7f7f9; border-right: 1px solid #ddd; font: 14px/1.45 system-ui, sans-serif; }
#docs-nav .site { font-weight: 600; font-size: 16px; margin: 0 0 .8rem .3rem; }
#docs-nav .site a { color: #222; text-decoration: none; }
#docs-nav ol { list-style: none; margin: 0; padding: 0; }
#docs-nav li a { display: block; padding: .25rem .4rem; border-radius: 4px; color: #2a5db0; text-decoration: none; }
#docs-nav li a:hover { background: #e8eef8; }
#docs-nav li a.current { background: #2a5db0; color: #fff; }
#docs-nav .num { color: #999; display: inline-block; min-width: 1.6em; }
#docs-nav li a.current .num { color: #dde; }
body > main.jp-Notebook, body.jp-Notebook { margin-left: 15rem !important; }
main { max-width: 60rem; padding: 1.5rem 2rem 4rem !important; box-sizing: border-box; }
/* long outputs scroll inside their box instead of filling the page */
.jp-OutputArea-output pre { max-height: 28em; overflow: auto; }
p.source-link { float: right; font-size: smaller; margin: .2em 0 0 1em; }
.jp-InputArea-editor .highlight pre, .jp-OutputArea-output pre { overflow-x: auto; }
/* code blocks inside prose (```sh ... ```): a box of their own, like Quarto's */
.jp-RenderedMarkdown div.highlight { background: #f5f5f7; border: 1px solid #e2e2e6; border-radius: 4px;
  padding: .5em .8em; margin: .6em 0 1em; overflow-x: auto; }
.jp-RenderedMarkdown div.highlight pre { margin: 0; }
.jp-RenderedMarkdown blockquote { border-left: 4px solid #ccd; margin-left: 0; padding-left: 1em; color: #555; }
.jp-RenderedImage img, .jp-OutputArea-output img { max-width: 100%; height: auto; }
details.code-fold > summary { cursor: pointer; color: #555; font-size: smaller; margin: .3em 0; }
math[display="block"] { margin: .8em 0; font-size: 1.15em; }
"""

_FOLD_JS = r"""
document.addEventListener('DOMContentLoaded', function () {   // Quarto's `code-fold`: a collapsible box
  document.querySelectorAll('.celltag_fold-show, .celltag_fold-hide').forEach(function (cell) {
    var input = cell.querySelector('.jp-InputArea');
    if (!input) return;
    var d = document.createElement('details'), s = document.createElement('summary');
    d.className = 'code-fold'; d.open = cell.classList.contains('celltag_fold-show');
    s.textContent = 'Exported source'; d.appendChild(s);
    input.parentNode.insertBefore(d, input); d.appendChild(input);
  });
});
"""

def to_html(nb, resources_path: Path, title: str) -> str:
    "One self-contained page (images as data: URIs, no prompts) from a processed notebook."
    from nbconvert import HTMLExporter
    from traitlets.config import Config
    c = Config()
    c.TagRemovePreprocessor.enabled = True
    c.TagRemovePreprocessor.remove_input_tags = {"remove_input"}
    c.HTMLExporter.exclude_input_prompt = True
    c.HTMLExporter.exclude_output_prompt = True
    c.HTMLExporter.embed_images = True            # markdown images too, not only outputs
    exp = HTMLExporter(config=c, template_name="lab")
    body, _ = exp.from_notebook_node(nb, resources={"metadata": {"name": title,
                                                                  "path": str(resources_path)}})
    body = re.sub(r"\s*<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", "", body, flags=re.S)
    body = tex_to_mathml(quarto_heading_ids(body))
    # show_doc's "[source](...)" link floats right of the heading, as on the Quarto site
    return re.sub(r'<p><a href="([^"]+)">source</a></p>', r'<p class="source-link"><a href="\1">source</a></p>', body)

def _render_one(nb_path: str) -> tuple[str, str, str, list[str]]:
    nb = process_notebook(nb_path)
    meta = nb.metadata.pop("lect_docs")
    return page_name(Path(nb_path)), meta["title"], to_html(nb, Path(nb_path).parent, meta["title"]), meta["problems"]

def _nav(pages: list[tuple[str, str, str]], current: str, site_title: str) -> str:
    items = []
    for i, (name, title, stem) in enumerate(pages):
        num = re.match(r"^(\d+)_", stem)
        cls = ' class="current"' if name == current else ""
        items.append(f'<li><a href="{name}"{cls}><span class="num">{num[1] if num else ""}</span>'
                     f'{html.escape(title)}</a></li>')
    return (f'<nav id="docs-nav"><div class="site"><a href="index.html">{html.escape(site_title)}</a></div>'
            f'<ol>{"".join(items)}</ol></nav>')

def render(out: Path, nbs_path: Path | None = None, workers: int | None = None) -> list[Path]:
    "Render every notebook of `nbs_path` into `out`; returns the pages written, in sidebar order."
    from nbdev.config import get_config
    cfg = get_config()
    nbs_path = Path(nbs_path or cfg.nbs_path)
    nbs = notebooks(nbs_path)
    if not nbs: raise FileNotFoundError(f"no notebooks in {nbs_path}")
    workers = max(1, min(workers or os.cpu_count() or 1, len(nbs)))
    jobs = [str(p.resolve()) for p in nbs]
    # workers find this file as the module `render_docs` (not `__main__`, which spawned processes lack)
    if str(Path(__file__).parent) not in sys.path: sys.path.insert(0, str(Path(__file__).parent))
    import render_docs
    if workers == 1: results = [render_docs._render_one(j) for j in jobs]
    else:
        # one fresh interpreter per worker (spawn): notebooks import torch and execute exported cells
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as ex:
            results = list(ex.map(render_docs._render_one, jobs))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pages = [(name, title, p.stem) for (name, title, _, _), p in zip(results, nbs)]
    head = f"<style>{_CSS}</style>\n<script>{_FOLD_JS}</script>\n</head>"
    written = []
    problems = {}
    for (name, _, body, probs), p in zip(results, nbs):
        if probs: problems[p.name] = probs
        body = body.replace("</head>", head, 1)
        body = re.sub(r"(<body[^>]*>)", lambda m: m[1] + _nav(pages, name, cfg.title), body, count=1)
        (out / name).write_text(body, encoding="utf-8")
        written.append(out / name)
    (out / "pages.json").write_text(json.dumps(
        [dict(notebook=f"{stem}.ipynb", page=name, title=title) for name, title, stem in pages], indent=1))
    (out / "problems.json").write_text(json.dumps(problems, indent=1))
    for nb, probs in problems.items():
        for pr in probs: print(f"WARNING {nb}: {pr}", file=sys.stderr)
    return written

_re_urls = re.compile(r'^(\[project\.urls\]\n)(?:(?:Repository|Documentation)\s*=\s*"[^"\n]*"\n)+', re.M)

def set_project_urls(repo: str, pyproject: Path = ROOT / "pyproject.toml") -> str:
    """Point `[project.urls]` at GitHub repository `repo` ("owner/name") and its Pages site; returns the new text.
    nbdev derives `git_url` (source links), `doc_host` and `doc_baseurl` from these two URLs."""
    m = re.fullmatch(r"([A-Za-z0-9-]+)/([\w.-]+)", repo.strip())
    if not m: raise ValueError(f"expected a GitHub repository as owner/name, got {repo!r}")
    owner, name = m.groups()
    txt = Path(pyproject).read_text()
    if not _re_urls.search(txt): raise ValueError(f"{pyproject}: no [project.urls] with Repository/Documentation")
    new = _re_urls.sub(lambda mm: f'{mm[1]}Repository = "https://github.com/{owner}/{name}"\n'
                                  f'Documentation = "https://{owner.lower()}.github.io/{name}/"\n', txt, count=1)
    Path(pyproject).write_text(new)
    return new

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set-project-urls", metavar="OWNER/REPO",
                    help="only rewrite pyproject.toml's [project.urls] for this GitHub repository, then exit")
    ap.add_argument("--out", default=str(ROOT / "docs_html"), help="output folder (default: docs_html/)")
    ap.add_argument("--workers", type=int, default=1, help="processes (default 1: one interpreter imports torch once)")
    a = ap.parse_args(argv)
    if a.set_project_urls:
        set_project_urls(a.set_project_urls)
        print(f"[project.urls] now point at {a.set_project_urls}", file=sys.stderr)
        return
    written = render(Path(a.out), workers=a.workers)
    print(f"{len(written)} pages written to {a.out}: open {Path(a.out) / 'index.html'}", file=sys.stderr)

if __name__ == "__main__": main()
