#!/usr/bin/env python
"""Execute the notebooks top to bottom, save what they print, and check that saved outputs are still
what the code prints.

    python scripts/run_notebooks.py write [NB ...]   # execute, save the outputs, nbdev-clean
    python scripts/run_notebooks.py check [NB ...]   # execute a copy, compare with the saved outputs
    python scripts/run_notebooks.py write --slow NB  # also run its `#| slow` cells, which then
                                                     # write their results to nbs/results/

With no NB, every notebook in nbs/. Cells flagged `#| slow`, `#| cuda`, `#| notest` or
`#| eval: false` are skipped (as `nbdev-test` skips them) and saved without outputs: what such a
cell computes is written to nbs/results/ when it is run on purpose (`--slow`, which sets
LECT_NB_WRITE_RESULTS=1), and a fast cell below it shows those results. A notebook run any other way
(a student's Run All) writes no tracked file.

The check compares the text of every output (streams, results, markdown; images by their type
only) after masking what legitimately changes from run to run and machine to machine: timings and
speeds, memory addresses, and numbers in scientific notation (rounding errors such as 2.2e-06,
which differ between CPUs). Cells whose numbers depend on the CPU beyond that are named in
`VARIES`, with the reason.
"""
from __future__ import annotations
import argparse, difflib, json, os, re, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
SKIP_FLAGS = re.compile(r"^#\|\s*(slow|cuda|notest|eval:\s*false)\s*$", re.M)

# notebook -> {cell id: (mode, reason)}; mode "numbers" masks every number of the cell's output,
# "skip" leaves the cell out of the comparison
VARIES: dict[str, dict[str, tuple[str, str]]] = {
    "09_train.ipynb": {"6bd5b9be": ("numbers", "a loss after 60 training steps: rounding differences "
                                   "between CPUs grow over the steps (0.248 on AVX-512, 0.319 on AVX2)")},
    "13a_gpu.ipynb": {"7a19dff3": ("numbers", "the rows of a small sweep on the CPU: step times")},
    "14_kernels.ipynb": {"6b9a2097": ("numbers", "a speed ratio measured in the cell")},
}

_SANITIZE = [
    (re.compile(r"0x[0-9a-fA-F]+"), "0x?"),
    (re.compile(r"/tmp/tmp[\w-]+"), "/tmp/<tempdir>"),  # tempfile's random directory names
    (re.compile(r"[-+]?\d+(?:\.\d+)?[eE][-+]?\d+"), "<sci>"),
    (re.compile(r"\d+(?:[.,]\d+)*\s*(?:ms|µs|us|ns|s|sec|secs|seconds|min|minutes|img/s|it/s|"
                r"images/s|steps/s)\b"), "<time>"),
]
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)*%?")


def skipped(cell) -> bool:
    return cell["cell_type"] == "code" and bool(SKIP_FLAGS.search("".join(cell["source"])))


def notebooks(names) -> list[Path]:
    if not names: return sorted(p for p in NBS.glob("*.ipynb") if not p.name.startswith("_"))
    out = []
    for n in names:
        p = Path(n)
        p = p if p.exists() else NBS / p
        if not p.exists() or p.suffix != ".ipynb":
            raise SystemExit(f"run_notebooks: no notebook {n!r}")
        out.append(p.resolve())
    return out


def execute(path: Path, slow: bool = False, timeout: int = 1800, failed_slow: list | None = None):
    """Run the notebook at `path` in a fresh kernel (cwd nbs/); returns the executed notebook.
    With `slow`, a failing slow cell (data that are not on this machine, say) is reported in
    `failed_slow` and the run goes on; any other failing cell stops it."""
    import nbformat
    return execute_nb(nbformat.read(path, as_version=4), path.parent, slow, timeout, failed_slow,
                      path.name)


def execute_nb(nb, cwd: Path, slow: bool = False, timeout: int = 1800,
               failed_slow: list | None = None, name: str = "notebook"):
    "Execute the notebook object `nb` in place with `cwd` as working directory (see `execute`)."
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    env_before = {k: os.environ.get(k) for k in ("LECT_NB_WRITE_RESULTS", "MPLBACKEND")}
    if slow: os.environ["LECT_NB_WRITE_RESULTS"] = "1"
    else: os.environ.pop("LECT_NB_WRITE_RESULTS", None)
    # figures inline, as in JupyterLab (a caller's MPLBACKEND=Agg would turn them into text)
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(cwd)}})
        with client.setup_kernel():
            for i, cell in enumerate(nb.cells):
                if cell.cell_type != "code": continue
                is_slow = bool(re.search(r"^#\|\s*slow\s*$", cell.source, re.M))
                if skipped(cell) and not (slow and is_slow):
                    cell.outputs, cell.execution_count = [], None
                    continue
                try:
                    client.execute_cell(cell, i)
                except CellExecutionError as e:
                    if not (slow and is_slow and failed_slow is not None): raise
                    failed_slow.append(f"{name} cell {i} (id {cell.get('id')}): "
                                       + _ANSI.sub("", str(e)).strip().splitlines()[-1][-300:])
    finally:
        for k, v in env_before.items():
            if v is None: os.environ.pop(k, None)
            else: os.environ[k] = v
    if slow:  # slow cells' outputs are shown from nbs/results/ by fast cells, not saved
        for cell in nb.cells:
            if skipped(cell): cell.outputs, cell.execution_count = [], None
    return nb


def _text(t) -> str: return "".join(t) if isinstance(t, list) else t


def output_text(cell) -> str:
    "The text a reader sees under a code cell (images by their type)."
    parts, merged = [], []
    for o in cell.get("outputs", []):  # a stream may arrive in several pieces: one text per run
        if o["output_type"] == "stream" and merged and merged[-1]["output_type"] == "stream" \
                and merged[-1]["name"] == o["name"]:
            merged[-1] = dict(merged[-1], text=_text(merged[-1]["text"]) + _text(o["text"]))
        else:
            merged.append(o)
    for o in merged:
        t = o["output_type"]
        if t == "stream":
            text = _text(o["text"])
            parts.append("\n".join(l.rsplit("\r", 1)[-1] for l in text.split("\n")))
        elif t in ("execute_result", "display_data"):
            d = o.get("data", {})
            if "text/html" in d and "progress" in "".join(d["text/html"]): continue  # live bars
            for k in ("text/markdown", "text/plain"):
                if k in d and not any(i.startswith("image/") for i in d):
                    v = d[k]; parts.append("".join(v) if isinstance(v, list) else v); break
            parts += [f"<{k}>" for k in sorted(d) if k.startswith("image/")]
        elif t == "error":
            parts.append(f"ERROR {o['ename']}: {o['evalue']}")
    return "\n".join(parts)


def sanitize(text: str, mode: str | None = None) -> str:
    for pat, sub in _SANITIZE: text = pat.sub(sub, text)
    if mode == "numbers": text = _NUMBER.sub("<n>", text)
    return text


def compare(saved, fresh, name: str) -> list[str]:
    "Differences between the saved and the fresh outputs of one notebook, cell by cell."
    varies, problems = VARIES.get(name, {}), []
    for i, (a, b) in enumerate(zip(saved.cells, fresh.cells)):
        if a.cell_type != "code" or skipped(a): continue
        mode, _ = varies.get(a.get("id"), (None, ""))
        if mode == "skip": continue
        sa, sb = sanitize(output_text(a), mode), sanitize(output_text(b), mode)
        if sa != sb:
            diff = "\n".join(difflib.unified_diff(sa.splitlines(), sb.splitlines(), "saved",
                                                  "fresh run", lineterm="", n=1))
            problems.append(f"{name} cell {i} (id {a.get('id')}):\n{diff}")
    return problems


def check(path: Path) -> list[str]:
    import nbformat
    saved = nbformat.read(path, as_version=4)
    fresh = execute(path)
    if len(saved.cells) != len(fresh.cells): return [f"{path.name}: cell count changed"]
    return compare(saved, fresh, path.name)


def write(path: Path, slow: bool = False) -> list[str]:
    "Execute and save `path`; returns the slow cells that failed (they saved no result)."
    import nbformat
    failed_slow: list[str] = []
    nb = execute(path, slow=slow, failed_slow=failed_slow)
    nbformat.write(nb, path)
    subprocess.run(["nbdev-clean", "--fname", str(path)], check=True, cwd=ROOT)
    return failed_slow


def main(argv=None) -> int:
    p = argparse.ArgumentParser("run_notebooks", description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=["write", "check"], help="save the outputs, or compare with them")
    p.add_argument("notebooks", nargs="*", help="notebooks (default: every one in nbs/)")
    p.add_argument("--slow", action="store_true",
                   help="write: also run the `#| slow` cells, which write their results to "
                        "nbs/results/ (LECT_NB_WRITE_RESULTS=1); their outputs are not saved")
    a = p.parse_intermixed_args(argv)
    if a.slow and a.mode != "write": p.error("--slow goes with write")
    failed = []
    for path in notebooks(a.notebooks):
        t = time.monotonic()
        try:
            if a.mode == "write":
                bad = write(path, a.slow); failed += bad
                msg = "written" + (f"; {len(bad)} slow cell(s) failed" if bad else "")
            else:
                probs = check(path); failed += probs
                msg = "outputs match" if not probs else f"{len(probs)} cell(s) differ"
        except Exception as e:  # a failing cell: report it, go on with the next notebook
            failed.append(f"{path.name}: {type(e).__name__}: {str(e)[-2000:]}")
            msg = "FAILED"
        print(f"{path.name}: {msg} ({time.monotonic() - t:.0f} s)", flush=True)
    for f in failed: print("\n" + f, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
