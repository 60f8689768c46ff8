"""Modulated deformable convolution (DCNv2) written out: per output pixel and kernel tap, the bilinear sample
of the input at p0 + p_k + Δp_k (zero outside the map, as the official CUDA kernel), times Δm_k, contracted
with the weight.  Explicit loops; takes the raw tensors (layouts of ``torchvision.ops.deform_conv2d``)."""

from __future__ import annotations

import math

import torch


def bilinear(img: torch.Tensor, y: float, x: float) -> torch.Tensor:
    """img: C×H×W; value at (y, x) (pixel centres at integers), zero outside, corners outside count as zero."""
    c, h, w = img.shape
    out = torch.zeros(c, dtype=img.dtype)
    if y <= -1 or y >= h or x <= -1 or x >= w:
        return out
    y0, x0 = math.floor(y), math.floor(x)
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                out = out + wy * wx * img[:, yy, xx]
    return out


@torch.no_grad()
def deform_conv2d_ref(x, offset, weight, bias=None, stride=1, padding=0, dilation=1, mask=None) -> torch.Tensor:
    b, c = x.shape[:2]
    o, _, kh, kw = weight.shape
    ho, wo = offset.shape[2:]
    groups = offset.shape[1] // (2 * kh * kw)
    cg = c // groups
    out = torch.zeros(b, o, ho, wo, dtype=x.dtype)
    for n in range(b):
        for i in range(ho):
            for j in range(wo):
                col = torch.zeros(c, kh, kw, dtype=x.dtype)
                for g in range(groups):
                    for a in range(kh):
                        for bb in range(kw):
                            t = a * kw + bb
                            dy = float(offset[n, 2 * (g * kh * kw + t), i, j])
                            dx = float(offset[n, 2 * (g * kh * kw + t) + 1, i, j])
                            y = i * stride - padding + a * dilation + dy
                            xx = j * stride - padding + bb * dilation + dx
                            val = bilinear(x[n, g * cg:(g + 1) * cg], y, xx)
                            if mask is not None:
                                val = val * mask[n, g * kh * kw + t, i, j]
                            col[g * cg:(g + 1) * cg, a, bb] = val
                out[n, :, i, j] = (weight * col[None]).sum((1, 2, 3))
    if bias is not None:
        out = out + bias[None, :, None, None]
    return out


@torch.no_grad()
def dcnv2_ref(m, x: torch.Tensor) -> torch.Tensor:
    """The whole ``ModulatedDeformConv``: offset/mask conv (first 2·G·k² channels offsets, rest σ → mask)."""
    om = torch.nn.functional.conv2d(x, m.conv_offset.weight, m.conv_offset.bias, m.stride, m.padding, m.dilation)
    taps = m.deform_groups * m.kernel_size**2
    return deform_conv2d_ref(x, om[:, :2 * taps], m.weight, m.bias, m.stride, m.padding, m.dilation, om[:, 2 * taps:].sigmoid())
