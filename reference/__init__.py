"""NumPy + Numba reference ("oracle") for every catalog loss: float64, value and gradient, no torch.

Every function takes numpy arrays and the same keyword parameters as the torch loss of the same
name, and returns the value (float, array, or dict for loss sets). With ``grad=True`` it returns
``(value, grad)`` where ``grad`` is the gradient of the (summed) value with respect to the prediction
(a dict ``{input_name: array}`` for losses with several differentiable inputs).
"""

from .focal import sigmoid_focal
from .lovasz import lovasz_hinge, lovasz_softmax
from .matting import gradient_penalty, known_l1, known_smooth_l1, laplacian, matting_bce, matting_focal, smooth_l1, unknown_l1, matting_set, seg_matting_set

__all__ = [
    "gradient_penalty",
    "known_l1",
    "known_smooth_l1",
    "laplacian",
    "lovasz_hinge",
    "lovasz_softmax",
    "matting_bce",
    "matting_focal",
    "matting_set",
    "seg_matting_set",
    "sigmoid_focal",
    "smooth_l1",
    "unknown_l1",
]
