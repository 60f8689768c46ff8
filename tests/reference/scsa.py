"""SCSA written out as the official computation (HZAI-ZJNU/SCSA ``SCSA.forward``, Apache-2.0; structure only):
four depthwise 1-D convs on the channel quarters of the row / column means, GroupNorm, sigmoid; then
AvgPool2d(window) (floor: the official pooling), GroupNorm(1), depthwise q/k/v, per-head channel attention over
all pooled positions with explicit softmax, mean over positions, sigmoid."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def scsa_reference(m, x, floor_pool=True):
    b, c, h, w = x.shape
    quarter = c // 4

    def smsa(s, norm):
        parts = torch.split(s, quarter, dim=1)
        out = [
            F.conv1d(p, conv.weight, conv.bias, padding=conv.kernel_size[0] // 2, groups=quarter)
            for p, conv in zip(parts, m.dwcs)
        ]
        return torch.sigmoid(norm(torch.cat(out, dim=1)))

    gh = smsa(x.mean(3), m.norm_h).view(b, c, h, 1)
    gw = smsa(x.mean(2), m.norm_w).view(b, c, 1, w)
    z = x * gh * gw
    r = m.window_size
    if floor_pool:
        y = F.avg_pool2d(z, r, r)
    else:  # partial windows averaged over their valid pixels, written as explicit window means
        rows = [(i, min(i + r, h)) for i in range(0, h, r)]
        cols = [(j, min(j + r, w)) for j in range(0, w, r)]
        y = torch.stack([torch.stack([z[:, :, a:e, p:q].mean((2, 3)) for p, q in cols], -1) for a, e in rows], -2)
    y = m.norm(y)
    q, k, v = (F.conv2d(y, conv.weight, conv.bias, groups=c) for conv in (m.q, m.k, m.v))
    heads, d = m.heads, c // m.heads
    q, k, v = (t.reshape(b, heads, d, -1) for t in (q, k, v))
    attn = torch.softmax(q @ k.transpose(-2, -1) * d**-0.5, dim=-1)
    out = (attn @ v).reshape(b, c, -1).mean(-1)
    return z * torch.sigmoid(out)[:, :, None, None]
