"""Exact adaptive pooling: PyTorch's bins at every size, in a form every runtime holds.

``F.adaptive_avg_pool2d`` / ``F.adaptive_max_pool2d`` split an axis of length ``n`` into ``o`` bins
``[⌊i·n/o⌋, ⌈(i+1)·n/o⌉)`` (overlapping when ``o`` does not divide ``n``; one or two elements each when ``o > n``).
Runtimes disagree with that where ``o`` does not divide ``n``: the TorchScript ONNX exporter refuses it
("output size that are not factor of input size"), the dynamo ONNX exporter has no adaptive max pool, and the
popular copies (Gold-YOLO's ``onnx_AdaptiveAvgPool2d``, MLCA, the mixed-pooling pyramid) replace it by a
fixed-kernel pool whose bins differ.  The ONNX portable form here writes the same bins as static slices (one
pooling op where ``o`` divides ``n``), so the exported graph equals eager PyTorch at every size.  Measured on this
stack: OpenVINO and ncnn (via pnnx) convert the eager operators exactly, so only ONNX takes the slices.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..tracing import PortableForm, portable, traced_size

__all__ = ["pool_bins", "adaptive_pool2d", "unpool", "EXACT_POOL_FORM"]

#: The portable form of a module that pools with :func:`adaptive_pool2d` (declare it in its registration).
EXACT_POOL_FORM = PortableForm(
    targets=("onnx",),
    marker="aten::narrow",
    reason="adaptive pooling to a size that does not divide the input: the TorchScript ONNX exporter refuses "
    "average pooling there and the dynamo exporter has no adaptive max pooling; the same bins as static slices",
)

_POOL_MODES = ("avg", "max")


def pool_bins(n: int, o: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive-pooling bins of an axis of length ``n`` pooled to ``o``: ``[(⌊i·n/o⌋, ⌈(i+1)·n/o⌉)]``."""
    return [((i * n) // o, ((i + 1) * n + o - 1) // o) for i in range(o)]


def _pool_axis(x: torch.Tensor, dim: int, n: int, o: int, mode: str) -> torch.Tensor:
    """Adaptive pooling of one axis (``dim`` = -2 or -1) of length ``n`` to ``o`` with static slices."""
    if n == o:
        return x
    if n % o == 0:  # equal, non-overlapping bins: one pooling op
        k = (n // o, 1) if dim == -2 else (1, n // o)
        return F.avg_pool2d(x, k, k) if mode == "avg" else F.max_pool2d(x, k, k)
    parts = []
    for s, e in pool_bins(n, o):
        part = x.narrow(dim, s, e - s)
        if e - s > 1:  # a bin of one element (pooling up) is that element
            part = part.mean(dim, keepdim=True) if mode == "avg" else part.amax(dim, keepdim=True)
        parts.append(part)
    return torch.cat(parts, dim)


def adaptive_pool2d_portable(x: torch.Tensor, oh: int, ow: int, mode: str) -> torch.Tensor:
    """The ONNX portable form: the same bins as static slices, one axis after the other."""
    h, w = traced_size(x)
    return _pool_axis(_pool_axis(x, -2, int(h), oh, mode), -1, int(w), ow, mode)


def adaptive_pool2d(x: torch.Tensor, output_size: int | tuple[int, int], mode: str = "avg") -> torch.Tensor:
    """``F.adaptive_avg_pool2d`` (``mode="avg"``) or ``F.adaptive_max_pool2d`` (``"max"``) of B×C×H×W to
    ``output_size``, with PyTorch's exact bins in every runtime (see the module docstring).

    Larger outputs than inputs work (bins of one or two elements), so this is also the exact "unpool" of MLCA.
    """
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
    if mode not in _POOL_MODES:
        raise ValueError(f"adaptive_pool2d: mode must be one of {_POOL_MODES}, got {mode!r}")
    if portable(*EXACT_POOL_FORM.targets):
        return adaptive_pool2d_portable(x, oh, ow, mode)
    return F.adaptive_avg_pool2d(x, (oh, ow)) if mode == "avg" else F.adaptive_max_pool2d(x, (oh, ow))


def unpool(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Back from a pooled map to ``size`` (each side ≥ the input's) as PyTorch's adaptive average pooling does
    it: an integer ratio repeats each cell; otherwise an output cell whose bin straddles two input cells
    averages them.  Exact in every runtime (:func:`adaptive_pool2d`)."""
    h, w = x.shape[-2], x.shape[-1]
    if size[0] < h or size[1] < w:
        raise ValueError(f"unpool: size must be at least the input's {(h, w)} on each side, got {tuple(size)}")
    return adaptive_pool2d(x, size, "avg")
