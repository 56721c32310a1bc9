"""Input validation shared by the torch losses, the reference and the ONNX runner.

Torch-free: it reads ``.shape`` and ``.dtype`` only, so numpy arrays and torch tensors both work.
One message format everywhere::

    lovasz_softmax: labels must have shape (B, H, W) matching probas (B, C, H, W); got (2, 9) and (2, 5, 9, 13)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

Dim = "str | int"


class InputError(ValueError):
    """A bad input or parameter value (shape, label range, domain, option): the same one-line message in
    the torch losses, the reference and the ONNX runner. The CLI prints it as ``lossgraph: error: ...``."""


class InputTypeError(TypeError):
    """An input or parameter of the wrong type (a float tensor where labels go, a list as a tensor)."""


def fmt_shape(shape: Iterable[Any]) -> str:
    """``(B, C, H, W)`` / ``(2, 5, 9, 13)``; a 1-tuple keeps its comma."""
    items = [str(d) for d in shape]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def check_shapes(
    fn: str, inputs: Sequence[tuple[str, Any, Sequence[Any] | None]], allow_empty: Sequence[str] = ()
) -> dict[str, int]:
    """Check ranks and shared dimensions of named inputs; return the bound symbol sizes.

    ``inputs`` is ``[(name, array, symbolic_shape), ...]``. A symbolic shape holds dimension names
    (``"B"``) or fixed ints (``4``); ``None`` means "same shape as the first input". Symbols are bound
    by the first input that has them; a later mismatch names both inputs.

    A dimension of size 0 is an error (:func:`empty_message`) unless its name is in ``allow_empty``
    (box losses take N = 0 boxes); symbolic sizes (under ``torch.export``) are not compared.

    Raises:
        InputError: naming the input, the expected and the actual shape.
    """
    bound: dict[str, int] = {}
    owner: dict[str, tuple[str, Sequence[Any], tuple[int, ...]]] = {}
    first_name, first = inputs[0][0], inputs[0][1]
    # Sizes stay as given (no int()): under torch.export they are symbolic and int() would freeze them.
    for name, x, sym in inputs:
        shape = tuple(x.shape)
        if sym is None:
            want = tuple(first.shape)
            if shape != want:
                raise InputError(
                    f"{fn}: {name} must have the same shape as {first_name}; "
                    f"got {fmt_shape(shape)} and {fmt_shape(want)}"
                )
            continue
        clash = len(shape) != len(sym)
        other = None
        if not clash:
            for d, s in zip(shape, sym):
                if isinstance(s, int):
                    clash = clash or d != s
                elif s in bound and bound[s] != d:
                    clash, other = True, owner[s]
                    break
        if clash:
            if other is None and owner:
                other = next(iter(owner.values()))
            if other is None or other[0] == name:
                raise InputError(f"{fn}: {name} must have shape {fmt_shape(sym)}; got {fmt_shape(shape)}")
            raise InputError(
                f"{fn}: {name} must have shape {fmt_shape(sym)} matching {other[0]} {fmt_shape(other[1])}; "
                f"got {fmt_shape(shape)} and {fmt_shape(other[2])}"
            )
        for d, s in zip(shape, sym):
            if isinstance(s, str) and s not in bound:
                bound[s] = d
                owner[s] = (name, sym, shape)
    for name, x, sym in inputs:
        check_not_empty(fn, name, tuple(x.shape), inputs[0][2] if sym is None else sym, allow_empty)
    return bound


def check_not_empty(fn: str, name: str, shape: Sequence[Any], sym: Sequence[Any] | None, allow_empty: Sequence[str] = ()) -> None:
    """An input with a dimension of size 0: ``fcos: reg_targets is empty: shape (2, 0, 4); N must be >= 1``."""
    for k, d in enumerate(shape):
        if type(d) is int and d == 0:  # a plain 0; symbolic sizes are left alone
            dim = str(sym[k]) if sym is not None and k < len(sym) else f"dimension {k}"
            if dim not in allow_empty:
                raise InputError(f"{fn}: {name} is empty: shape {fmt_shape(shape)}; the loss needs at least one element")


def check_min_size(fn: str, name: str, x: Any, dims: Sequence[int], minimum: int, why: str) -> None:
    """Raise InputError when any of ``x.shape[d] for d in dims`` is below ``minimum``."""
    shape = tuple(x.shape)
    small = [shape[d] for d in dims if shape[d] < minimum]
    if small:
        raise InputError(f"{fn}: {name} is too small: {why} needs at least {minimum}; got shape {fmt_shape(shape)}")


def dtype_kind(dtype: Any) -> str:
    """'f' float, 'i' signed/unsigned integer, 'b' bool, '?' other; for numpy and torch dtypes."""
    s = str(dtype).replace("torch.", "")
    if s.startswith(("float", "bfloat", "half", "double")):
        return "f"
    if s.startswith(("int", "uint", "long", "short")):
        return "i"
    if s == "bool":
        return "b"
    return "?"


def check_dtype(fn: str, name: str, x: Any, kinds: str, what: str) -> None:
    """Raise InputTypeError unless ``x`` has a ``dtype`` of one of the kinds (``'f'``, ``'i'``, ``'b'``)."""
    if not hasattr(x, "dtype") or not hasattr(x, "shape"):
        raise InputTypeError(f"{fn}: {name} must be {what}; got a {type(x).__name__}")
    if dtype_kind(x.dtype) not in kinds:
        raise InputTypeError(f"{fn}: {name} must be {what}; got dtype {str(x.dtype).replace('torch.', '')}")


def to_numpy(x: Any) -> Any:
    """A numpy array from a numpy array, a torch tensor (bfloat16 as float32) or a nested list; never
    imports torch. Anything else is returned as it is, for :func:`check_dtype` to name."""
    if type(x).__module__.startswith("torch"):
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()
        return x.numpy()
    if isinstance(x, (list, tuple, int, float)):
        import numpy as np

        return np.asarray(x)
    return x


def _fmt(v: Any) -> str:
    v = float(v)
    return str(int(v)) if v.is_integer() else f"{v:g}"


def label_range_message(fn: str, name: str, lo: Any, hi: Any, num_classes: Any, ignore_index: int | None) -> str:
    ign = "" if ignore_index is None else f" or ignore_index={ignore_index}"
    return f"{fn}: {name} must be in [0, {num_classes}){ign}; got values in [{_fmt(lo)}, {_fmt(hi)}]"


def check_whole(fn: str, name: str, x: Any) -> None:
    """Float class ids must be whole numbers (NaN and inf are not)."""
    frac = x != x.round()
    if bool(frac.any()):
        raise InputError(f"{fn}: {name} must hold whole class ids; got {_fmt(x[frac].reshape(-1)[0])}")


def _isfinite(x: Any) -> Any:
    """``isfinite`` of a numpy array or a torch tensor (both have the method under this name or numpy's)."""
    if hasattr(x, "isfinite"):
        return x.isfinite()
    import numpy as np

    return np.isfinite(x)


def all_finite(x: Any) -> bool:
    """Whether a float array or tensor holds no NaN and no inf, in one reduction when it does: a sum
    with a NaN or inf among its terms is not finite, so a finite sum proves every element finite
    (one read pass, no temporaries; ``isfinite(x).all()`` costs 4-5 passes over ``x``: 55 ms of a
    165 ms cross-entropy step at 8x21x256x256). A sum that is not finite (a NaN or inf, or finite
    values whose sum overflows) is decided element by element."""
    if hasattr(x, "detach"):
        x = x.detach()
    if math.isfinite(float(x.sum())):
        return True
    return not bool((~_isfinite(x)).any())


def any_nonfinite(values: Any) -> bool:
    """True when a float array or tensor among ``values`` (numpy or torch, eager) holds a NaN or inf."""
    for x in values:
        if isinstance(x, (tuple, list)) and any_nonfinite(x):  # *inputs of FCOS, lists of levels
            return True
        if hasattr(x, "dtype") and dtype_kind(x.dtype) == "f" and not all_finite(x):
            return True
    return False


def nan_like(out: Any) -> Any:
    """``out`` (a float, array, tensor, tuple or dict of them) with every float value NaN; a torch
    tensor stays on the autograd graph (``out * nan``), so its gradient is NaN too."""
    if isinstance(out, dict):
        return {k: nan_like(v) for k, v in out.items()}
    if isinstance(out, tuple):
        return tuple(nan_like(v) for v in out)
    if hasattr(out, "dtype"):
        return out * float("nan") if dtype_kind(out.dtype) == "f" else out
    return float("nan") if isinstance(out, float) else out


def check_label_dtype(fn: str, name: str, x: Any, allow_float: bool = False, noun: str = "tensor") -> None:
    """Class ids: an integer dtype, or with ``allow_float`` also a float one (whole values checked later)."""
    check_dtype(fn, name, x, "if" if allow_float else "i",
                f"an integer or 0/1 float {noun}" if allow_float else f"an integer {noun}")


def check_labels(fn: str, name: str, labels: Any, num_classes: Any, ignore_index: int | None,
                 allow_float: bool = False) -> None:
    """Class ids: any integer dtype (uint8 PNG masks included), or with ``allow_float`` a float array
    holding integral values (binary 0/1 targets); each in ``[0, num_classes)`` or ``ignore_index``.

    Torch-free: numpy arrays and torch tensors alike (``min``/``max``/boolean indexing).

    Raises:
        InputTypeError: another dtype.
        InputError: a value out of range, or a non-integral float, with the range of the values given.
    """
    check_label_dtype(fn, name, labels, allow_float)
    if labels.shape and 0 in tuple(labels.shape):
        return
    if dtype_kind(labels.dtype) == "f":
        check_whole(fn, name, labels)
    # ignored pixels read 0 (in range) for the min and max: elementwise passes, no boolean compaction
    # (which cost 9 ms of a 100 ms cross-entropy step at 8x256x256); the message compacts
    masked = labels if ignore_index is None else labels * (labels != ignore_index)
    lo, hi = masked.aminmax() if hasattr(masked, "aminmax") else (masked.min(), masked.max())  # torch: one pass
    if lo < 0 or hi >= num_classes:
        valid = labels if ignore_index is None else labels[labels != ignore_index]
        raise InputError(label_range_message(fn, name, valid.min(), valid.max(), num_classes, ignore_index))


def check_unit_interval(fn: str, name: str, x: Any, what: str = "in [0, 1]", extra: float | None = None) -> None:
    """Float values in ``[0, 1]`` (masks, alpha mattes, probabilities, soft targets); ``extra`` is one
    more allowed value (FCOS centerness targets use -1 for negatives). NaN passes (it propagates)."""
    if x.shape and 0 in tuple(x.shape):
        return
    out = (x < 0) | (x > 1)
    if extra is not None:
        out = out & (x != extra)
    if bool(out.any()):
        bad = x[out]
        ext = "" if extra is None else f" or {_fmt(extra)}"
        raise InputError(
            f"{fn}: {name} must be {what}{ext}; got values in [{_fmt(bad.min())}, {_fmt(bad.max())}] outside it"
        )


def check_choice(fn: str, name: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise InputError(f"{fn}: {name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
