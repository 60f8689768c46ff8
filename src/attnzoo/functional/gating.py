"""Global average pooling with a leaner eager backward, for channel gates ``x * g(mean(x))``.

With autograd, the backward of ``x.mean((2, 3))`` materialises ``expand(g) / (H·W)`` as a new full-size tensor
(one full write), which autograd then adds to the gradient of ``x * s`` (a second full pass).
``spatial_mean`` divides the B×C gradient first and returns a stride-0 expanded view: the accumulation into
the input's gradient is then the only full-size pass (same values).

(A batched-dot ``bmm`` for the gate gradient ``Σ_hw grad·x`` was measured too: 4-5× slower than
``(grad * x).sum((2, 3))`` on CPU for B·C rows of H·W, so the product keeps autograd's own backward.)

Used only in eager mode with autograd enabled: under ``torch.fx`` (and without autograd) the plain ``mean`` is
recorded, so graphs see a standard operator.  Under a tracer, exporter or compiler (``layers.exporting()``) the
mean is ``adaptive_avg_pool2d(x, 1)`` flattened (same values): pnnx places ncnn's batch axis only from operators
it knows to keep the batch first (pooling, convolutions, …), and a gate whose only ops are ``mean`` and
``F.linear`` on B×C vectors (pnnx turns those into batch-agnostic ``nn.Linear``) would otherwise be converted
as if the batch were a channel axis.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..layers.helpers import exporting

__all__ = ["fused_autograd", "spatial_mean"]


def fused_autograd(x: Any) -> bool:
    """True in eager mode with autograd enabled on a real tensor (not an FX proxy, trace or compile)."""
    return (
        isinstance(x, torch.Tensor)
        and torch.is_grad_enabled()
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
        and not torch.compiler.is_compiling()
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


def spatial_mean(x: torch.Tensor) -> torch.Tensor:
    """``x.mean((2, 3))`` (B×C) with the lean backward in eager autograd."""
    if fused_autograd(x):  # (never under a tracer, exporter or compiler)
        return _SpatialMean.apply(x)
    if exporting():
        return F.adaptive_avg_pool2d(x, 1).flatten(1)
    return x.mean((2, 3))
