"""Global average pooling for channel gates ``x * g(mean(x))``: a leaner eager backward, and a portable form.

With autograd, the backward of ``x.mean((2, 3))`` materialises ``expand(g) / (H·W)`` as a new full-size tensor
(one full write), which autograd then adds to the gradient of ``x * s`` (a second full pass).
``spatial_mean`` divides the B×C gradient first and returns a stride-0 expanded view: the accumulation into
the input's gradient is then the only full-size pass (same values).

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

__all__ = ["BATCH_AXIS", "SPATIAL_MEAN_FORM", "spatial_mean", "spatial_mean_portable"]

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


class _SpatialMean(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.shape = x.shape
        return x.mean((2, 3))

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
        b, c, h, w = ctx.shape
        return (g / (h * w))[:, :, None, None].expand(b, c, h, w)


def spatial_mean_portable(x: torch.Tensor) -> torch.Tensor:
    """``x.mean((2, 3))`` as ``adaptive_avg_pool2d(x, 1)`` flattened (same values), for pnnx / ncnn."""
    return F.adaptive_avg_pool2d(x, 1).flatten(1)


def spatial_mean(x: torch.Tensor, *, portable_form: bool = True) -> torch.Tensor:
    """``x.mean((2, 3))`` (B×C) with the lean backward in eager autograd.

    Under the targets of :data:`SPATIAL_MEAN_FORM` :func:`spatial_mean_portable`, unless ``portable_form=False``
    (a module whose graph names the batch axis by itself, e.g. with a convolution, converts without it)."""
    if portable_form and tracing.portable(*SPATIAL_MEAN_FORM.targets):
        return spatial_mean_portable(x)
    if torch.is_grad_enabled() and tracing.eager_only(x):
        return _SpatialMean.apply(x)
    return x.mean((2, 3))
