"""Reference for Context Anchor Attention (PKINet, CVPR 2024, arXiv 2403.06258), from the paper's equations
and the official code (NUST-Machine-Intelligence-Laboratory/PKINet, Apache-2.0, ``CAA`` in
mmrotate/models/backbones/pkinet.py): ``nn.AvgPool2d(7, 1, 3)`` (zero padding counted: every window is
divided by 49), 1×1 conv, depthwise 1×k and k×1 strips, 1×1 conv, sigmoid; the official block multiplies
the input by the returned factor.  ``variant="bn_silu"`` puts BN (eval statistics) + SiLU after each 1×1.
"""

from __future__ import annotations

import torch
from torch import nn

from .van import conv_ref


def avg_pool7_loop(x: torch.Tensor) -> torch.Tensor:
    """7×7 average, stride 1, zero padding 3, divided by 49 everywhere (count_include_pad=True)."""
    b, c, h, w = x.shape
    xp = torch.zeros(b, c, h + 6, w + 6, dtype=x.dtype)
    xp[:, :, 3:3 + h, 3:3 + w] = x
    out = torch.zeros_like(x)
    for i in range(7):
        for j in range(7):
            out += xp[:, :, i:i + h, j:j + w]
    return out / 49.0


def bn_eval(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return (x - bn.running_mean[None, :, None, None]) * scale[None, :, None, None] + bn.bias[None, :, None, None]


@torch.no_grad()
def caa(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    a = conv_ref(module.conv1, avg_pool7_loop(x))
    if module.variant == "bn_silu":
        a = bn_eval(module.bn1, a)
        a = a * torch.sigmoid(a)
    a = conv_ref(module.conv2, conv_ref(module.v_conv, conv_ref(module.h_conv, a)))
    if module.variant == "bn_silu":
        a = bn_eval(module.bn2, a)
        a = a * torch.sigmoid(a)
    return x * torch.sigmoid(a)
