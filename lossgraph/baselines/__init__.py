"""The source documents' original formulations (per-image / per-class Python loops, boolean indexing).

Not export-friendly on purpose: they are the semantics our vectorised losses must equal (tests) and
the baseline our speed is measured against (benchmarks). One module per family, like ``lossgraph/``.

Convention: a family module lists its formulations in a plain mapping ``BASELINES = {catalog name:
function}``; each function is called like the functional form (torch inputs in catalog order, then
the catalog parameters as keywords). The benchmarks find them with :func:`baseline_of`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def baseline_of(family: str, name: str) -> Callable | None:
    """The source formulation of catalog loss ``name`` of ``family``, or None where there is none."""
    try:
        module = importlib.import_module(f"{__name__}.{family}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{family}":
            raise
        return None
    found: dict[str, Callable] = getattr(module, "BASELINES", {})
    return found.get(name)
