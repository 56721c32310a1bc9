"""The docstring examples of every module of the package run as doctests (kornia's habit): an
example that stops matching the code fails here."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import lossgraph
import lossgraph.export
import lossgraph.reference

# lossgraph.reference and lossgraph.export live in their own folders (setuptools package-dir)
PACKAGES = (lossgraph, lossgraph.reference, lossgraph.export)


def _modules() -> list[str]:
    names = {p.__name__ for p in PACKAGES}
    for package in PACKAGES:
        names.update(info.name for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."))
    return sorted(names)


def test_the_package_has_examples():
    """Guards the collection below: all three trees are found, and ten modules carry examples."""
    finder = doctest.DocTestFinder()
    with_examples = [n for n in _modules() if any(t.examples for t in finder.find(importlib.import_module(n)))]
    assert {"lossgraph.reference.lovasz", "lossgraph.export.runner"} <= set(_modules())
    assert "lossgraph.lovasz" in with_examples and len(with_examples) >= 10, with_examples


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    module = importlib.import_module(name)
    globs = {"torch": importlib.import_module("torch"), "np": importlib.import_module("numpy")}
    result = doctest.testmod(module, extraglobs=globs, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             verbose=False, report=False)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} doctest examples failed (run with -s)"
