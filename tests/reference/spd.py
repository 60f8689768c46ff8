"""SPD-Conv written from the paper (Sec. 3.1: sub-maps f_{x,y} = X[x:S:scale, y:S:scale], concatenated in the
order f_{0,0}, f_{1,0}, …, f_{scale−1,0}, f_{0,1}, …) and LabSAINT/SPD-Conv's ``space_to_depth`` (scale 2:
``cat([x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]], 1)``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def space_to_depth_loops(x, scale):
    """Element by element: out[b, (y·scale + x_)·C + c, i, j] = X[b, c, i·scale + x_, j·scale + y]."""
    B, C, H, W = x.shape
    out = torch.zeros(B, scale * scale * C, H // scale, W // scale, dtype=x.dtype)
    for yy in range(scale):  # column offset (slowest)
        for xx in range(scale):  # row offset
            k = yy * scale + xx
            for i in range(H // scale):
                for j in range(W // scale):
                    out[:, k * C : (k + 1) * C, i, j] = x[:, :, i * scale + xx, j * scale + yy]
    return out


def space_to_depth_official(x):
    return torch.cat([x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]], 1)


@torch.no_grad()
def spd_reference(module, x, official=False):
    """What ``SPDConv`` (eval mode) must return: zero-pad to a multiple of the scale, SPD, conv 3×3 + BN + SiLU."""
    s = module.scale
    H, W = x.shape[-2:]
    x = F.pad(x, (0, -W % s, 0, -H % s))
    f = space_to_depth_official(x) if official else space_to_depth_loops(x, s)
    conv, bn = module.conv.conv, module.conv.norm
    y = F.conv2d(f, conv.weight, None, 1, 1)
    y = (y - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(bn.running_var.view(1, -1, 1, 1) + bn.eps)
    y = y * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
    return y * torch.sigmoid(y)
