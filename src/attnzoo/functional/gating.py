"""Global average pooling for channel gates ``x * g(mean(x))``: a leaner eager backward, and a portable form.

With autograd, the backward of ``x.mean((2, 3))`` materialises ``expand(g) / (H·W)`` as a new full-size tensor
(one full write), which autograd then adds to the gradient of ``x * s`` (a second full pass).
``spatial_mean`` divides the B×C gradient first and returns a stride-0 expanded view: the accumulation into
the input's gradient is then the only full-size pass (same values).  It reduces every spatial axis of a map of
any rank (B×C×L, B×C×H×W, B×C×D×H×W); ``axis_mean`` any given axes.

(A batched-dot ``bmm`` for the gate gradient ``Σ_hw grad·x`` was measured too: 4-5× slower than
``(grad * x).sum((2, 3))`` on CPU for B·C rows of H·W, so the product keeps autograd's own backward.)

The autograd function runs only in plain eager mode with autograd enabled (``tracing.eager_only``): graphs
(FX, ``torch.compile``, ``torch.export``, traces) record the plain ``mean``.  Under the export targets of
:data:`SPATIAL_MEAN_FORM` the mean is :func:`spatial_mean_portable` (docs/exports.md).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .. import tracing

__all__ = ["BATCH_AXIS", "SPATIAL_MEAN_FORM", "axis_mean", "axis_gates", "spatial_mean", "spatial_mean_portable"]

#: Why a module needs a batch-axis hint for ncnn (the end of a :class:`~attnzoo.tracing.PortableForm` reason):
#: ncnn has no batch axis, and pnnx finds the batch only from operators that keep it first; without one it takes
#: the batch for a data axis.
BATCH_AXIS = "pnnx places ncnn's batch axis only from a pooling or a convolution"

#: The portable form of :func:`spatial_mean`, declared by every module whose gate pools with it.
SPATIAL_MEAN_FORM = tracing.PortableForm(
    targets=("ncnn",),
    marker="aten::adaptive_avg_pool2d",
    reason="a gate of mean and linear on B×C vectors; " + BATCH_AXIS,
)


_ADAPTIVE_AVG = {3: F.adaptive_avg_pool1d, 4: F.adaptive_avg_pool2d, 5: F.adaptive_avg_pool3d}


def _mean_grad(g: torch.Tensor, shape: torch.Size, dims: tuple[int, ...]) -> torch.Tensor:
    """The gradient of ``x.mean(dims)`` (``dims`` ascending) as a stride-0 expanded view of the divided ``g``."""
    n = 1
    for d in dims:
        n *= shape[d]
    g = g / n
    for d in dims:  # ascending: each unsqueeze puts the reduced axis back where it was
        g = g.unsqueeze(d)
    return g.expand(shape)


class _SpatialMean(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.shape, ctx.dims = x.shape, tuple(range(2, x.dim()))
        return x.mean(ctx.dims)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
        return _mean_grad(g, ctx.shape, ctx.dims)


class _AxisMean(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
        ctx.shape, ctx.dims = x.shape, dims
        return x.mean(dims)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _mean_grad(g, ctx.shape, ctx.dims), None


def _axes(x: torch.Tensor, dim: int | tuple[int, ...]) -> tuple[int, ...]:
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    return tuple(sorted(d % x.dim() for d in dims))


def axis_mean(x: torch.Tensor, dim: int | tuple[int, ...]) -> torch.Tensor:
    """``x.mean(dim)`` (one axis or several) whose eager backward returns a stride-0 expanded view instead of a
    new full-size tensor: added into the input's gradient, it costs no full-size buffer of its own."""
    if torch.is_grad_enabled() and tracing.eager_only(x):
        return _AxisMean.apply(x, _axes(x, dim))
    return x.mean(dim)


def spatial_mean_portable(x: torch.Tensor, dims: int = 2) -> torch.Tensor:
    """The mean over every spatial axis of a map of spatial rank ``dims`` as ``adaptive_avg_pool{dims}d(x, 1)``
    flattened (same values), for pnnx / ncnn (which also rejects a multi-axis mean of a 5-D map)."""
    return _ADAPTIVE_AVG[dims + 2](x, 1).flatten(1)


def spatial_mean(x: torch.Tensor, *, portable_form: bool = True, dims: int = 2) -> torch.Tensor:
    """The mean over every spatial axis of a B×C×L, B×C×H×W or B×C×D×H×W map (spatial rank ``dims``: 1, 2, 3),
    B×C, with the lean backward in eager autograd.  (``dims`` is passed, not read from ``x``: under FX tracing
    the rank of ``x`` is unknown.)

    Under the targets of :data:`SPATIAL_MEAN_FORM` :func:`spatial_mean_portable`, unless ``portable_form=False``
    (a module whose graph names the batch axis by itself, e.g. with a convolution, converts without it)."""
    if portable_form and tracing.portable(*SPATIAL_MEAN_FORM.targets):
        return spatial_mean_portable(x, dims)
    if torch.is_grad_enabled() and tracing.eager_only(x):
        return _SpatialMean.apply(x)
    return x.mean(tuple(range(2, dims + 2)))


class _AxisGates(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, a_h: torch.Tensor, a_w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, a_h, a_w)
        return x * a_h * a_w

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, a_h, a_w = ctx.saved_tensors
        g = g.contiguous()  # a broadcast gradient (of a sum, say) makes every product below a slow strided loop
        b, c, h, w = x.shape
        need_x, need_h, need_w = ctx.needs_input_grad
        dh = dw = None
        if need_h or need_w:
            gx = g * x  # one full-size temporary, reduced against the other gate (batched matrix-vector products)
            if need_h:
                dh = torch.matmul(gx, a_w.expand(b, c, 1, w).transpose(2, 3)).sum_to_size(a_h.shape)
            if need_w:
                dw = torch.matmul(a_h.expand(b, c, h, 1).transpose(2, 3), gx).sum_to_size(a_w.shape)
            del gx
        dx = (g * a_h).mul_(a_w) if need_x else None
        return dx, dh, dw


def axis_gates(x: torch.Tensor, a_h: torch.Tensor, a_w: torch.Tensor) -> torch.Tensor:
    """``x ⊙ a_h ⊙ a_w`` for x: B×C×H×W, a_h: B×C×H×1, a_w: B×C×1×W (coordinate-style gates) with a lean eager
    backward: autograd keeps the full-size ``x ⊙ a_h`` for the gradient of ``a_w``; this saves only x and the
    two gates (same values, each gate's gradient as one batched matrix-vector product)."""
    if torch.is_grad_enabled() and tracing.eager_only(x):
        return _AxisGates.apply(x, a_h, a_w)
    y = x * a_h
    return y.mul_(a_w) if tracing.inplace_ok() else y * a_w
