"""Input validation shared by the torch losses, the reference and the ONNX runner.

Torch-free: it reads ``.shape`` and ``.dtype`` only, so numpy arrays and torch tensors both work.
One message format everywhere::

    lovasz_softmax: labels must have shape (B, H, W) matching probas (B, C, H, W); got (2, 9) and (2, 5, 9, 13)
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

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


def check_shapes(fn: str, inputs: Sequence[tuple[str, Any, Sequence[Any] | None]]) -> dict[str, int]:
    """Check ranks and shared dimensions of named inputs; return the bound symbol sizes.

    ``inputs`` is ``[(name, array, symbolic_shape), ...]``. A symbolic shape holds dimension names
    (``"B"``) or fixed ints (``4``); ``None`` means "same shape as the first input". Symbols are bound
    by the first input that has them; a later mismatch names both inputs.

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
    return bound


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
    """Raise InputTypeError unless ``x.dtype`` has one of the kinds (``'f'``, ``'i'``, ``'b'``)."""
    if dtype_kind(x.dtype) not in kinds:
        raise InputTypeError(f"{fn}: {name} must be {what}; got dtype {str(x.dtype).replace('torch.', '')}")


def label_range_message(fn: str, name: str, lo: int, hi: int, num_classes: int, ignore_index: int | None) -> str:
    ign = "" if ignore_index is None else f" or ignore_index={ignore_index}"
    return f"{fn}: {name} must be in [0, {num_classes}){ign}; got values in [{lo}, {hi}]"


def check_choice(fn: str, name: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise InputError(f"{fn}: {name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
