"""The top level gives timm's three entry points, `lect_nb.create_model`, `lect_nb.list_models` and
`lect_nb.count_params`, imported on first use: `import lect_nb` alone imports no torch, and building a model
imports neither matplotlib nor the speed layer. Each check runs in a fresh interpreter."""
import json, os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _run(code: str):
    "Run `code` in a new interpreter (repository root on the path); the JSON it prints last."
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_import_lect_nb_imports_no_torch():
    out = _run("import json, sys, lect_nb\n"
               "print(json.dumps(['torch' in sys.modules, lect_nb.__version__, "
               "[n in dir(lect_nb) for n in ('create_model', 'list_models', 'count_params')]]))")
    assert out == [False, "0.1.0", [True, True, True]]


def test_top_level_create_model_builds_without_plotting_or_speed_code():
    out = _run("import json, sys, lect_nb\n"
               "m = lect_nb.create_model('lect_cifar', num_classes=10)\n"
               "import lect_nb.api as api\n"
               "print(json.dumps([m.num_classes, m.pretrained_cfg['input_size'], lect_nb.count_params(m),\n"
               "    api.count_params(m), 'lect_cifar' in lect_nb.list_models('lect*'),\n"
               "    lect_nb.create_model is api.create_model,\n"
               "    sorted(k for k in sys.modules if k.split('.')[0] == 'matplotlib' or\n"
               "           k.startswith('lect_nb.speed') or k.startswith('lect_nb.training'))]))")
    n_classes, size, n, n_api, listed, same, heavy = out
    assert (n_classes, size, listed, same, heavy) == (10, [3, 32, 32], True, True, [])
    assert n == n_api > 0


def test_unknown_top_level_names_are_attribute_errors():
    out = _run("import json, lect_nb\n"
               "try: lect_nb.build_model\n"
               "except AttributeError as e: print(json.dumps(str(e)))")
    assert out == "module 'lect_nb' has no attribute 'build_model'"
