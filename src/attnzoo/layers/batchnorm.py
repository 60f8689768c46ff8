"""BatchNorm that also trains at batch 1 on one value per channel (pooled vectors, 1×1 maps).

A BatchNorm on a globally pooled B×C×1×1 vector (SK's and CoT's attention MLPs) sees one value per channel when
the batch holds one image, and PyTorch's BatchNorm then stops training with "Expected more than 1 value per
channel when training" (batch 1 is common in detection and segmentation).  :class:`PooledBatchNorm2d` is
``nn.BatchNorm2d`` (same parameters, buffers and state-dict keys) except in that one case: in training with a
single value per channel it normalises with its running statistics, as in eval, and leaves them unchanged
(one value gives no variance to learn from).  Gradients still reach its weight and bias.  The library builds
every BatchNorm2d of its modules with it (``make_norm("bn")``, ``zero_bn``, CBAM/Triplet gates, ...), so batch 1
in training never stops on PyTorch's bare "Expected more than 1 value per channel" (1×1 maps included).
"""

from __future__ import annotations

from typing import cast

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from ..tracing import fx_leaf, is_tracing

__all__ = [
    "PooledBatchNorm2d",
    "PooledBatchNorm3d",
    "PooledBatchNormMap1d",
    "PooledBatchNorm1d",
    "one_value_per_channel",
    "check_bn_values",
]


@fx_leaf
def one_value_per_channel(x: torch.Tensor) -> bool:
    """True when ``x`` (B×C×...) holds a single value per channel (B = 1 and every spatial size 1)."""
    return x.numel() == x.shape[1]


class _OneValueRunningStats(nn.modules.batchnorm._BatchNorm):
    """The forward of the pooled BatchNorms: in training on one value per channel, the running statistics."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if not isinstance(input, torch.fx.Proxy):  # FX traces into this subclass (not a torch.nn leaf)
            super()._check_input_dim(input)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ``is True``: under torch.fx.symbolic_trace the check is a proxy, so the traced graph is the usual BN.
        if self.training and self.running_mean is not None and one_value_per_channel(x) is True:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


class PooledBatchNorm2d(_OneValueRunningStats, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` that, in training on one value per channel, uses (and keeps) its running statistics."""


class PooledBatchNorm3d(_OneValueRunningStats, nn.BatchNorm3d):
    """``nn.BatchNorm3d`` (B×C×D×H×W) that, in training on one value per channel, uses its running statistics."""


class PooledBatchNormMap1d(_OneValueRunningStats, nn.BatchNorm1d):
    """``nn.BatchNorm1d`` on B×C×L maps that, in training on one value per channel, uses its running statistics
    (:class:`PooledBatchNorm1d` is the one for pooled B×C vectors)."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if not isinstance(input, torch.fx.Proxy) and input.dim() != 3:
            raise ValueError(f"{type(self).__name__}: expected a 3-D input B×C×L, got shape {tuple(input.shape)}")


@fx_leaf
def _pooled_batch_norm(
    v: torch.Tensor,
    mean: torch.Tensor,
    var: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    training: bool,
    momentum: float,
    eps: float,
) -> torch.Tensor:
    if training and v.shape[0] > 1:
        return F.batch_norm(v, mean, var, weight, bias, True, momentum, eps)
    return F.batch_norm(v, mean, var, weight, bias, False, 0.0, eps)


class PooledBatchNorm1d(nn.BatchNorm1d):
    """``BatchNorm1d`` on a pooled B×C vector that also trains at batch 1: a single sample has no batch statistics
    (PyTorch raises "Expected more than 1 value per channel"), so in training with B = 1 it normalises with the
    running statistics and leaves them unchanged (as in eval); with B ≥ 2 it is ``nn.BatchNorm1d`` with a fixed
    ``momentum`` (``momentum=None``, the cumulative average, is not supported: it counts as 0)."""

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return _pooled_batch_norm(
            v,
            cast(torch.Tensor, self.running_mean),
            cast(torch.Tensor, self.running_var),
            self.weight,
            self.bias,  # type: ignore[arg-type]
            self.training,
            self.momentum or 0.0,
            self.eps,
        )


@fx_leaf
def check_bn_values(x: torch.Tensor, training: bool, owner: str) -> torch.Tensor:
    """In train mode a BatchNorm on the B×·×H×W map needs B·H·W > 1: a ``ValueError`` naming the module and the
    remedy instead of PyTorch's bare "Expected more than 1 value per channel"."""
    if training and not is_tracing() and x.shape[0] * x.shape[2] * x.shape[3] == 1:
        raise ValueError(
            f"{owner}: expected more than one value per channel for the BatchNorm in train mode "
            f"(batch × H × W > 1), got shape {tuple(x.shape)}; use eval(), a larger batch or a larger map"
        )
    return x
