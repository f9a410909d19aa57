"The package's layout: layers as folders, imports pointing down, small functions, short positional calls."
import ast
from pathlib import Path
import pytest

PKG = Path(__file__).resolve().parents[1] / "lect_nb"
# The layers, lowest first. A module may import from its own layer and the layers below it.
LAYERS = ["lesson", "baselines", "speed", "training", "studies"]
MAX_FUNCTION_LINES = 60
MAX_POSITIONAL = 6

def _layer(mod: str) -> str:
    "The layer of a dotted module name inside lect_nb (`lect_nb.training.runs` -> training)."
    parts = mod.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in LAYERS else "lesson"

def _modules():
    for f in sorted(PKG.rglob("*.py")):
        if f.name == "_modidx.py": continue
        rel = f.relative_to(PKG.parent).with_suffix("")
        yield f, ".".join(p for p in rel.parts if p != "__init__")

def _imports(tree: ast.AST, mod: str, is_pkg: bool) -> set[str]:
    "Every lect_nb module imported anywhere in `tree` (inside functions too), resolved to dotted names."
    out = set()
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = base[:len(base) - node.level + 1]
                name = ".".join(pkg + ([node.module] if node.module else []))
            else: name = node.module or ""
            if name.startswith("lect_nb"):
                out.add(name)
                out.update(f"{name}.{a.name}" for a in node.names if (PKG.parent / f"{name}.{a.name}".replace(".", "/")).with_suffix(".py").exists())
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("lect_nb"))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith("lect_nb"):
                out.add(node.args[0].value)
    return out

def test_layers_are_folders():
    top = sorted(p.name for p in PKG.glob("*.py"))
    assert len(top) <= 12, f"{len(top)} modules at the top level: {top}"
    for layer in LAYERS[1:]:
        assert (PKG / layer / "__init__.py").exists(), f"lect_nb/{layer}/ is not a package"

def test_imports_point_down():
    up = []
    for f, mod in _modules():
        tree = ast.parse(f.read_text())
        for imp in _imports(tree, mod, f.name == "__init__.py"):
            if LAYERS.index(_layer(imp)) > LAYERS.index(_layer(mod)) and mod != "lect_nb":
                up.append(f"{mod} imports {imp}")
    assert not up, "imports running up a layer:\n" + "\n".join(up)

def test_layout_checker_finds_an_upward_import():
    tree = ast.parse("from ..training.runs import train\nimport importlib\nimportlib.import_module('lect_nb.studies.x')")
    found = _imports(tree, "lect_nb.baselines.vit", False)
    assert found == {"lect_nb.training.runs", "lect_nb.studies.x"}
    assert _layer("lect_nb.training.runs") == "training" and _layer("lect_nb.models") == "lesson"

def import_graph(sources: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    "Module -> the modules of `sources` it imports (module level and inside functions); `sources`: module -> (code, is package)."
    return {mod: {i for i in _imports(ast.parse(code), mod, is_pkg) if i in sources and i != mod}
            for mod, (code, is_pkg) in sources.items()}

def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    "Every group of modules that import each other, directly or around a circle (Tarjan's strongly connected components)."
    index, low, stack, on, out = {}, {}, [], set(), []
    def visit(v):
        index[v] = low[v] = len(index); stack.append(v); on.add(v)
        for w in sorted(graph[v]):
            if w not in index: visit(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop(); on.discard(w); group.append(w)
                if w == v: break
            if len(group) > 1: out.append(sorted(group))
    for v in sorted(graph):
        if v not in index: visit(v)
    return out

def test_no_import_cycle():
    graph = import_graph({mod: (f.read_text(), f.name == "__init__.py") for f, mod in _modules()})
    assert "lect_nb.studies.bench" in graph["lect_nb.studies.commands"]     # function-level imports count
    assert import_cycles(graph) == [], f"modules importing each other in a circle: {import_cycles(graph)}"

def test_cycle_checker_finds_a_cycle():
    sources = {"lect_nb.studies.a": ("from .b import f", False),                      # module level
               "lect_nb.studies.b": ("def f():\n    from lect_nb.studies.c import g", False),   # inside a function
               "lect_nb.studies.c": ("import lect_nb.studies.a", False),
               "lect_nb.studies.d": ("from .a import x", False)}                       # imports into the circle, not part of it
    graph = import_graph(sources)
    assert graph == {"lect_nb.studies.a": {"lect_nb.studies.b"}, "lect_nb.studies.b": {"lect_nb.studies.c"},
                     "lect_nb.studies.c": {"lect_nb.studies.a"}, "lect_nb.studies.d": {"lect_nb.studies.a"}}
    assert import_cycles(graph) == [["lect_nb.studies.a", "lect_nb.studies.b", "lect_nb.studies.c"]]
    graph["lect_nb.studies.c"] = set()
    assert import_cycles(graph) == []

def _long_functions(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            if n > MAX_FUNCTION_LINES: yield node.name, node.lineno, n

def _positional_only(node: ast.Call) -> bool:
    """Calls that take their arguments by position only: into C through ctypes (`lib.fn(...)`,
    `load_kernels().fn(...)`), `torch.autograd.Function.apply`, and `nn.Sequential(*layers)`."""
    f = node.func
    if isinstance(f, ast.Attribute) and f.attr == "apply": return True
    if ast.unparse(f) in {"nn.Sequential", "torch.nn.Sequential"}: return True
    while isinstance(f, (ast.Attribute, ast.Call)): f = f.value if isinstance(f, ast.Attribute) else f.func
    return isinstance(f, ast.Name) and f.id in {"lib", "_lib", "ctypes", "load_kernels"}

def _positional_calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and not _positional_only(node):
            n = sum(1 for a in node.args if not isinstance(a, ast.Starred))
            if n > MAX_POSITIONAL: yield ast.unparse(node.func), node.lineno, n

def test_functions_are_short():
    long = [f"{mod}.{name} (line {line}): {n} lines" for f, mod in _modules()
            for name, line, n in _long_functions(ast.parse(f.read_text()))]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)

def test_calls_name_their_arguments():
    calls = [f"{mod} line {line}: {fn}(...) with {n} positional arguments" for f, mod in _modules()
             for fn, line, n in _positional_calls(ast.parse(f.read_text()))]
    assert not calls, f"calls with more than {MAX_POSITIONAL} positional arguments:\n" + "\n".join(calls)

def test_checkers_catch_what_they_look_for():
    body = "\n".join(f"    x = {i}" for i in range(MAX_FUNCTION_LINES))
    assert [n for _, _, n in _long_functions(ast.parse(f"def f():\n{body}"))] == [MAX_FUNCTION_LINES + 1]
    assert list(_long_functions(ast.parse("def f():\n    return 1"))) == []
    assert [n for _, _, n in _positional_calls(ast.parse("f(1, 2, 3, 4, 5, 6, 7)"))] == [7]
    exempt = "f(1, 2, 3, 4, 5, 6, a=7)\nlib.k(1, 2, 3, 4, 5, 6, 7, 8)\nload_kernels().k(1, 2, 3, 4, 5, 6, 7)\nFn.apply(1, 2, 3, 4, 5, 6, 7)"
    assert list(_positional_calls(ast.parse(exempt))) == []


# Downloads never belong in the repository: a wheel or an archive committed by accident bloats every clone
# and hides what the project really depends on (data travels in ignored folders, see data/README.md).
DOWNLOAD_SUFFIXES = (".whl", ".tar.gz", ".tgz", ".tar", ".zip", ".tar.bz2", ".tar.xz", ".7z", ".rar")

def downloads_in(paths: list[str]) -> list[str]:
    "The paths among `paths` that name a wheel or an archive."
    return [p for p in paths if p.lower().endswith(DOWNLOAD_SUFFIXES)]

def test_no_wheel_or_archive_is_tracked():
    import subprocess
    r = subprocess.run(["git", "ls-files"], cwd=PKG.parent, capture_output=True, text=True)
    if r.returncode != 0: pytest.skip("not a git checkout")
    tracked = r.stdout.splitlines()
    assert "pyproject.toml" in tracked   # the listing is real
    assert downloads_in(tracked) == [], f"wheels or archives are tracked: {downloads_in(tracked)}"

def test_download_check_finds_archives():
    paths = ["README.md", "pandoc-2.4.tar.gz", "ply-3.11-py2.py3-none-any.whl", "nbs/00_core.ipynb",
             "lect_nb/assets/lect_cifar.fashion_mnist.npz", "data/x.ZIP"]
    assert downloads_in(paths) == ["pandoc-2.4.tar.gz", "ply-3.11-py2.py3-none-any.whl", "data/x.ZIP"]


# timm is used through its public API only (`timm.list_models`, `timm.models.is_model`, `register_model`, ...):
# a private name (`timm.models._registry`, `_model_entrypoints`) may change in any timm release.
def _private(name: str) -> bool: return any(p.startswith("_") and not p.endswith("__") for p in name.split("."))

def timm_privates(tree: ast.AST) -> list[str]:
    "The private timm names `tree` imports or reads (`from timm.models._registry import x`, `timm._x`)."
    found, bound = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "timm":
            found += [node.module] if _private(node.module) else []
            found += [f"{node.module}.{a.name}" for a in node.names if _private(a.name)]
            bound.update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "timm":
                    found += [a.name] if _private(a.name) else []
                    bound.add(a.asname or "timm")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            root = node.value
            while isinstance(root, ast.Attribute): root = root.value
            if isinstance(root, ast.Name) and root.id in bound: found.append(ast.unparse(node))
    return found

def test_no_private_timm_name():
    found = [f"{mod}: {n}" for f, mod in _modules() for n in timm_privates(ast.parse(f.read_text()))]
    assert not found, "private timm names:\n" + "\n".join(found)

def test_private_timm_checker_finds_them():
    code = ("import timm\nfrom timm.models._registry import _model_entrypoints\nfrom timm.models import _helpers, is_model\n"
            "import timm.models._builder as b\ntimm.models._registry.x\nis_model.__name__\ntimm.list_models()\n"
            "obj._private")
    assert timm_privates(ast.parse(code)) == ["timm.models._registry", "timm.models._registry._model_entrypoints",
                                              "timm.models._helpers", "timm.models._builder", "timm.models._registry"]
