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

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from .checks import fx_leaf

__all__ = ["PooledBatchNorm2d", "one_value_per_channel"]


@fx_leaf
def one_value_per_channel(x: torch.Tensor) -> bool:
    """True when ``x`` (B×C×...) holds a single value per channel (B = 1 and every spatial size 1)."""
    return x.numel() == x.shape[1]


class PooledBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` that, in training on one value per channel, uses (and keeps) its running statistics."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if not isinstance(input, torch.fx.Proxy):  # FX traces into this subclass (not a torch.nn leaf)
            super()._check_input_dim(input)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ``is True``: under torch.fx.symbolic_trace the check is a proxy, so the traced graph is the usual BN.
        if self.training and self.running_mean is not None and one_value_per_channel(x) is True:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)
