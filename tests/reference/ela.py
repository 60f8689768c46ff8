"""Reference for Efficient Local Attention (ELA, arXiv 2403.01123), from the paper's equations and listing.

Strip pooling: z_h[c, i] = (1/W) Σ_j x[c, i, j], z_w[c, j] = (1/H) Σ_i x[c, i, j].  One 1-D conv (zero
padding k//2, no bias, ``groups`` of the preset) and one GroupNorm shared by both axes, each axis normalised on
its own (statistics over the C/G channels of a group and the whole strip, biased variance), sigmoid;
y[c, i, j] = x[c, i, j] · a_h[c, i] · a_w[c, j].  Written with explicit loops over channels and taps.

The paper's presets (its table of ELA-T/B/S/L): kernel 5/7/5/7, conv groups C/C/C÷8/C÷8, GroupNorm groups
32/16/16/16.
"""

from __future__ import annotations

import torch
from torch import nn

PRESETS = {"T": (5, "C", 32), "B": (7, "C", 16), "S": (5, "C/8", 16), "L": (7, "C/8", 16)}


def conv1d_loop(z: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, n = z.shape
    k = weight.shape[-1]
    p = k // 2
    zp = torch.zeros(b, c, n + 2 * p, dtype=z.dtype)
    zp[:, :, p:p + n] = z
    cg = c // groups
    out = torch.zeros(b, c, n, dtype=z.dtype)
    for o in range(c):
        g = o // cg
        for ci in range(cg):
            for t in range(k):
                out[:, o] += weight[o, ci, t] * zp[:, g * cg + ci, t:t + n]
    return out


def group_norm_loop(z: torch.Tensor, gn: nn.GroupNorm) -> torch.Tensor:
    b, c = z.shape[:2]
    cg = c // gn.num_groups
    out = torch.empty_like(z)
    for bi in range(b):
        for g in range(gn.num_groups):
            block = z[bi, g * cg:(g + 1) * cg]
            mean = block.mean()
            var = ((block - mean) ** 2).mean()
            out[bi, g * cg:(g + 1) * cg] = (block - mean) / torch.sqrt(var + gn.eps)
    return out * gn.weight[None, :, None] + gn.bias[None, :, None]


@torch.no_grad()
def ela(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    k, rule, gn_groups = PRESETS[module.variant]
    c = x.shape[1]
    groups = c if rule == "C" else c // 8
    assert module.conv.weight.shape[-1] == k and module.gn.num_groups == gn_groups
    w = module.conv.weight.detach()
    z_h = x.mean(dim=3)
    z_w = x.mean(dim=2)
    a_h = torch.sigmoid(group_norm_loop(conv1d_loop(z_h, w, groups), module.gn))
    a_w = torch.sigmoid(group_norm_loop(conv1d_loop(z_w, w, groups), module.gn))
    return x * a_h[:, :, :, None] * a_w[:, :, None, :]
