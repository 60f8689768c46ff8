"""EMA (Ouyang et al., ICASSP 2023), written from the paper's Fig. 2 and the official ``EMA`` module
(YOLOonMe/EMA-attention-module): groups folded into the batch, a 1×1 branch over [pool_h; pool_w]
(concatenated, one shared 1×1 conv, split), GroupNorm, a 3×3 branch, and the cross-spatial matrix products of
the softmaxed pooled descriptors.  Every intermediate is built as in the official code."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ema(module, x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    g = module.factor
    cg = c // g
    gx = x.reshape(b * g, cg, h, w)
    x_h = gx.mean(3, keepdim=True)  # pool over W: (BG, cg, H, 1)
    x_w = gx.mean(2, keepdim=True).permute(0, 1, 3, 2)  # pool over H: (BG, cg, W, 1)
    hw = module.conv1x1(torch.cat([x_h, x_w], dim=2))
    x_h, x_w = torch.split(hw, [h, w], dim=2)
    x1 = F.group_norm(gx * x_h.sigmoid() * x_w.permute(0, 1, 3, 2).sigmoid(), cg, module.gn.weight, module.gn.bias,
                      module.gn.eps)
    x2 = module.conv3x3(gx)
    x11 = torch.softmax(x1.mean((2, 3)), dim=-1)[:, None, :]  # (BG, 1, cg)
    x21 = torch.softmax(x2.mean((2, 3)), dim=-1)[:, None, :]
    weights = x11 @ x2.reshape(b * g, cg, h * w) + x21 @ x1.reshape(b * g, cg, h * w)  # (BG, 1, HW)
    return (gx * weights.reshape(b * g, 1, h, w).sigmoid()).reshape(b, c, h, w)


def ema_loops(module, x: torch.Tensor) -> torch.Tensor:
    """The same, one (sample, group) at a time with explicit sums (for small inputs)."""
    b, c, _h, _w = x.shape
    g = module.factor
    cg = c // g
    out = torch.empty_like(x)
    w1 = module.conv1x1.weight[:, :, 0, 0]
    for i in range(b):
        for k in range(g):
            t = x[i, k * cg:(k + 1) * cg]  # (cg, H, W)
            ah = torch.sigmoid(w1 @ t.mean(2) + module.conv1x1.bias[:, None])  # (cg, H)
            aw = torch.sigmoid(w1 @ t.mean(1) + module.conv1x1.bias[:, None])  # (cg, W)
            z = t * ah[:, :, None] * aw[:, None, :]
            mu = z.mean((1, 2), keepdim=True)
            var = ((z - mu) ** 2).mean((1, 2), keepdim=True)
            x1 = (z - mu) / torch.sqrt(var + module.gn.eps) * module.gn.weight[:, None, None] + module.gn.bias[:, None, None]
            x2 = F.conv2d(t[None], module.conv3x3.weight, module.conv3x3.bias, padding=1)[0]
            p1 = torch.softmax(x1.mean((1, 2)), 0)
            p2 = torch.softmax(x2.mean((1, 2)), 0)
            a = (p1[:, None, None] * x2).sum(0) + (p2[:, None, None] * x1).sum(0)
            out[i, k * cg:(k + 1) * cg] = t * torch.sigmoid(a)
    return out
