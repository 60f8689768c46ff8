"""VOLO outlook attention as the official code (unfold / fold)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnzoo.local import OutlookAttention


def ref_outlook(x_bhwc: torch.Tensor, m: OutlookAttention) -> torch.Tensor:
    """The official VOLO OutlookAttention computation (nn.Unfold + F.fold), channels-last, weights from ``m``."""
    b, h, w, c = x_bhwc.shape
    k, p, s, heads = m.kernel_size, m.padding, m.stride, m.heads
    v = F.linear(x_bhwc, m.v.weight, m.v.bias).permute(0, 3, 1, 2)
    gh, gw = math.ceil(h / s), math.ceil(w / s)
    v = nn.Unfold(kernel_size=k, padding=p, stride=s)(v).reshape(b, heads, c // heads, k * k, gh * gw).permute(0, 1, 4, 3, 2)
    a = nn.AvgPool2d(kernel_size=s, stride=s, ceil_mode=True)(x_bhwc.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    a = F.linear(a, m.attn.weight, m.attn.bias).reshape(b, gh * gw, heads, k * k, k * k).permute(0, 2, 1, 3, 4)
    a = (a * m.scale).softmax(dim=-1)
    y = (a @ v).permute(0, 1, 4, 3, 2).reshape(b, c * k * k, gh * gw)
    y = F.fold(y, output_size=(h, w), kernel_size=k, padding=p, stride=s)
    return F.linear(y.permute(0, 2, 3, 1), m.proj.weight, m.proj.bias)

