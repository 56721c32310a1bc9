"""Parameter rules shared by the whole catalog: one rule per parameter name, checked by
``Spec.resolve`` (so by ``spec.build()``, ``to_onnx()`` and the CLI's ``--param``) with one-line
errors naming the parameter. Torch-free.

Parameter names are shared across the catalog (DESIGN.md), so one table serves every entry; an
entry whose parameter means something else gives its own rule (``Spec.param_rules``).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._checks import InputError, InputTypeError, any_nonfinite, nan_like

Check = Callable[[str, str, Any], None]


@dataclass(frozen=True)
class Rule:
    """What a parameter accepts: ``check(fn, name, value)`` raises, ``what`` says it in words."""

    what: str
    check: Check

    def __call__(self, fn: str, name: str, value: Any) -> None:
        self.check(fn, name, value)


def _show(v: Any) -> str:
    """A value as the message shows it: numbers the same whether given as 2, 2.0 or JSON (``2``)."""
    return f"{v:g}" if isinstance(v, float) else repr(v)


def _type_error(fn: str, name: str, what: str, value: Any) -> InputTypeError:
    return InputTypeError(f"{fn}: {name} must be {what}; got {_show(value)}")


def _value_error(fn: str, name: str, what: str, value: Any) -> InputError:
    return InputError(f"{fn}: {name} must be {what}; got {_show(value)}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def boolean() -> Rule:
    what = "true or false (a JSON boolean)"

    def check(fn: str, name: str, v: Any) -> None:
        if not isinstance(v, bool):
            raise _type_error(fn, name, what, v)

    return Rule(what, check)


def number(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, also: Sequence[float] = (),
           optional: bool = False, integer: bool = False) -> Rule:
    """A finite number (an integer with ``integer``) in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``),
    or one of ``also``, or None with ``optional``."""
    kind = "an integer" if integer else "a number"
    rng = ""
    if lo is not None and hi is not None:
        rng = f" in {'(' if lo_open else '['}{lo:g}, {hi:g}]"
    elif lo is not None:
        rng = f" {'>' if lo_open else '>='} {lo:g}"
    elif hi is not None:
        rng = f" <= {hi:g}"
    what = kind + rng + "".join(f" or {a:g}" for a in also) + (" or null" if optional else "")

    def check(fn: str, name: str, v: Any) -> None:
        if v is None and optional:
            return
        if not (_is_int(v) if integer else _is_number(v)):
            raise _type_error(fn, name, what, v)
        if v in also:
            return
        if not math.isfinite(v) or (lo is not None and (v <= lo if lo_open else v < lo)) or (hi is not None and v > hi):
            raise _value_error(fn, name, what, v)

    return Rule(what, check)


def choice(*options: str) -> Rule:
    what = "one of " + ", ".join(map(repr, options))

    def check(fn: str, name: str, v: Any) -> None:
        if v not in options or not isinstance(v, str):
            raise _value_error(fn, name, what, v)

    return Rule(what, check)


def per_class(optional: bool = True, scalar: Rule | None = None) -> Rule:
    """A non-empty list of finite numbers >= 0, one per class (its length is checked against C by
    :func:`check_class_lists` where C is known); or None; or a number ``scalar`` accepts."""
    what = "a list of per-class numbers >= 0" + (f" or {scalar.what}" if scalar else "") + (" or null" if optional else "")

    def check(fn: str, name: str, v: Any) -> None:
        if v is None and optional:
            return
        if scalar is not None and _is_number(v):
            try:
                scalar(fn, name, v)
            except InputError:
                raise _value_error(fn, name, what, v) from None
            return
        if not isinstance(v, (list, tuple)) or not v or not all(_is_number(x) for x in v):
            raise _type_error(fn, name, what, v)
        if not all(math.isfinite(x) and x >= 0 for x in v):
            raise _value_error(fn, name, what, v)

    return Rule(what, check)


def class_ids() -> Rule:
    what = "'present', 'all' or a non-empty list of class ids >= 0"

    def check(fn: str, name: str, v: Any) -> None:
        if v in ("present", "all"):
            return
        if isinstance(v, str):
            raise _value_error(fn, name, what, v)
        if not isinstance(v, (list, tuple)) or not all(_is_int(x) for x in v):
            raise _type_error(fn, name, what, v)
        if not v or min(v) < 0:
            raise _value_error(fn, name, what, v)

    return Rule(what, check)


def names() -> Rule:
    """A list of term names (the module checks which names it knows)."""
    what = "a list of loss names"

    def check(fn: str, name: str, v: Any) -> None:
        if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
            raise _type_error(fn, name, what, v)

    return Rule(what, check)


UNIT = number(0, 1)
#: every parameter of the catalog, by name
RULES: dict[str, Rule] = {
    "add_centerness": boolean(),
    "alpha": number(0, 1, also=(-1,)),  # torchvision: alpha < 0 disables the weighting; -1 is the spelling
    "area": number(0, lo_open=True, optional=True),
    "centers_from": choice("parameter", "input"),
    "classes": class_ids(),
    "easy_margin": boolean(),
    "empty": number(),
    "eps": number(0),
    "feat_dim": number(1, integer=True),
    "from_logits": boolean(),
    "gamma": number(0),
    "ignore_index": number(integer=True, optional=True),
    "lambda_c": number(0),
    "levels": number(1, integer=True),
    "losses": names(),
    "m": number(0, math.pi),
    "matting": names(),
    "num_classes": number(1, integer=True),
    "output": choice("loss", "value"),
    "pairwise": boolean(),
    "per_class": boolean(),
    "per_image": boolean(),
    "reduction": choice("none", "mean", "sum"),
    "reg_loss": choice("giou", "iou"),
    "route": choice("binary", "constant"),
    "s": number(0, lo_open=True),
    "seed": number(integer=True),
    "seg": names(),
    "smooth": number(0),
    "squared": boolean(),
    "threshold": number(),
    "weight": per_class(),
    "weight_from": choice("parameter", "input"),
}
#: losses whose parameter of a shared name means something else
OVERRIDES: dict[str, dict[str, Rule]] = {
    # the softmax focal loss: no alpha, one number ([α, 1-α, ...] over classes) or one weight per class
    "focal": {"alpha": per_class(scalar=UNIT)},
}
#: parameters holding one value per class (their length must equal C)
PER_CLASS = ("weight", "alpha")


def check_params(fn: str, params: Mapping[str, Any]) -> None:
    """Check every parameter of loss ``fn`` against its rule (:data:`OVERRIDES`, then :data:`RULES`)."""
    overrides = OVERRIDES.get(fn, {})
    for name, value in params.items():
        rule = overrides.get(name) or RULES.get(name)
        if rule is None:
            raise RuntimeError(f"{fn}: parameter {name!r} has no rule in lossgraph._params.RULES")
        rule(fn, name, value)


def checked(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a functional or reference loss: its parameters (the arguments that have a rule and are
    not arrays) are checked on every call, with the same messages as ``spec.build()``, and a NaN or
    inf in a prediction (a differentiable input) makes every output NaN (as :class:`~lossgraph._functional.LossModule` and
    the graphs' ``InputGuard`` do)."""
    sig = inspect.signature(fn)
    names = [n for n in sig.parameters if n in RULES]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = sig.bind_partial(*args, **kwargs).arguments
        params = {n: given[n] for n in names if n in given and not hasattr(given[n], "shape")}
        check_params(fn.__name__, params)
        out = fn(*args, **kwargs)
        from lossgraph import catalog  # the catalog imports this module

        spec = catalog.get(fn.__name__)
        grads = set(spec.grad_inputs(params))
        predictions: list[Any] = []
        for n, p in sig.parameters.items():
            if n in params or n == "grad" or n not in given:
                continue
            if p.kind is p.VAR_POSITIONAL:  # the reference FCOS: every input, in input order
                predictions.extend(spec.predictions(given[n], params))
            elif isinstance(given[n], (list, tuple)):  # torch FCOS: the levels of a prediction
                predictions.extend(given[n])
            elif n in grads:
                predictions.append(given[n])
        if not any_nonfinite(predictions):
            return out
        # a NaN or inf in a prediction makes the value NaN (never a finite number from it, even where
        # the loss masks it out: an ignored pixel, a negative FCOS location, a term not taken)
        if kwargs.get("grad"):
            return nan_like(out[0]), out[1]
        return nan_like(out)

    return wrapper


def check_class_lists(fn: str, params: Mapping[str, Any], num_classes: int | None) -> None:
    """Per-class lists (``weight``, a list ``alpha``) must have C entries, where C is known."""
    if num_classes is None:
        return
    for key in PER_CLASS:
        values = params.get(key)
        if isinstance(values, (list, tuple)) and len(values) != num_classes:
            raise InputError(f"{fn}: {key} must have one value per class (C = {num_classes}); got {len(values)}")
