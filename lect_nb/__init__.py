__version__ = "0.1.0"

# Written by hand (nbdev exports no notebook here): timm's top-level names, imported on first use so
# that `import lect_nb` (and `lect-train --help`) import no torch. Their source: nbs/04a_api.ipynb.
_LAZY = {"create_model": "lect_nb.api", "list_models": "lect_nb.api", "count_params": "lect_nb.api"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lect_nb' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])
