"""lossgraph: training losses as export-friendly PyTorch, ONNX graphs, and a NumPy/Numba reference.

Importing ``lossgraph`` (and ``lossgraph.catalog``, ``lossgraph.reference``, ``lossgraph.export.OnnxLoss``)
does not import torch: the torch modules load on first use (PEP 562)::

    import lossgraph as lg
    loss = lg.LovaszSoftmax(per_image=True)        # imports torch here
    lg.functional.lovasz_softmax(probas, labels)
"""

from __future__ import annotations

import importlib
from typing import Any

from ._checks import InputError, InputTypeError
from ._version import __version__

_SUBMODULES = ("catalog", "functional", "modules", "parity", "reference", "export", "cli")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name[:1].isupper():
        modules = importlib.import_module(f"{__name__}.modules")
        if name in modules.__all__ or name in modules.RENAMED:
            return getattr(modules, name)
    raise AttributeError(f"module 'lossgraph' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_SUBMODULES])


__all__ = ["InputError", "InputTypeError", "__version__", *_SUBMODULES]
