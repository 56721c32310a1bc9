"""Class names follow one scheme (CONTRIBUTING.md, Style); the names before it still resolve, warning."""

from __future__ import annotations

import re

import pytest

import lossgraph as lg
from lossgraph import modules

# the catalog name's words in CapWords, abbreviations in their usual capitals
ABBREVIATIONS = {"iou": "IoU", "giou": "GIoU", "diou": "DIoU", "ciou": "CIoU", "bce": "BCE", "ce": "CE",
                 "l1": "L1", "fcos": "FCOS", "xloss": "XLoss", "arcface": "ArcFace"}


def _class_name(catalog_name: str) -> str:
    return "".join(ABBREVIATIONS.get(w, w.capitalize()) for w in catalog_name.split("_"))


@pytest.mark.parametrize("name", lg.catalog.names())
def test_class_name_follows_the_scheme(name):
    module = lg.catalog.get(name).module.partition(":")[2]
    # matting's bce / focal carry the family in front, the box IoU its kind: the scheme applies to the words
    assert re.fullmatch(r"(Matting|Box)?" + _class_name(name.removeprefix("matting_").removeprefix("box_")),
                        module), (name, module)


@pytest.mark.parametrize("old,new", sorted(modules.RENAMED.items()))
def test_old_names_warn_and_resolve(old, new):
    with pytest.warns(DeprecationWarning, match=f"use lossgraph.{new}"):
        assert getattr(lg, old) is getattr(lg, new)
    with pytest.warns(DeprecationWarning):
        assert getattr(modules, old) is getattr(modules, new)


def _public_functions():
    import inspect

    from lossgraph import boxes, functional, reference

    seen = {}
    for module in (functional, reference, boxes):
        for name in getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]:
            obj = getattr(module, name)
            if inspect.isfunction(obj) and obj.__module__.startswith("lossgraph"):
                seen[f"{obj.__module__}.{name}"] = obj
    return sorted(seen.items())


@pytest.mark.parametrize("qualname,fn", _public_functions(), ids=lambda v: v if isinstance(v, str) else "")
def test_public_functions_are_annotated(qualname, fn):
    """Every parameter and the return of the functional forms, box functions and reference functions."""
    import inspect

    sig = inspect.signature(fn)
    missing = [p.name for p in sig.parameters.values() if p.annotation is inspect.Parameter.empty]
    assert not missing and sig.return_annotation is not inspect.Signature.empty, (qualname, missing)
