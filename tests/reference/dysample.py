"""DySample written from the paper (Sec. 3, eqs. 1-4) and tiny-smart/dysample ``dysample.py``: offsets
O = 0.25·linear(X) (static scope; dynamic: 0.5·σ(linear₂(X))·linear₁(X)), sampling set S = G + O with G the
bilinear positions (``init_pos``, the official formula), then bilinear sampling with border clamping written
out pixel by pixel (no ``grid_sample``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def official_init_pos(scale, groups):
    """The official ``_init_pos``: stack(meshgrid([h, h])).transpose(1, 2).repeat(1, groups, 1).reshape(1, -1, 1, 1)."""
    h = torch.arange((-scale + 1) / 2, (scale - 1) / 2 + 1) / scale
    return torch.stack(torch.meshgrid([h, h], indexing="ij")).transpose(1, 2).repeat(1, groups, 1).reshape(1, -1, 1, 1)


def offsets(module, x):
    s = module.scale

    def lin(conv, t):
        return F.conv2d(t, conv.weight, conv.bias)

    src = F.pixel_shuffle(x, s) if module.style == "pl" else x
    o = lin(module.offset, src)
    o = o * torch.sigmoid(lin(module.scope, src)) * 0.5 if module.dyscope else o * 0.25
    if module.style == "pl":
        o = F.pixel_unshuffle(o, s)
    return o + official_init_pos(s, module.groups).to(x.dtype)


def bilinear_border(img, py, px):
    """img: C×H×W sampled at continuous pixel index (py, px) (pixel centres at integers), coordinates clamped."""
    H, W = img.shape[1:]
    py, px = min(max(py, 0.0), H - 1.0), min(max(px, 0.0), W - 1.0)
    y0, x0 = int(py // 1), int(px // 1)
    y1, x1 = min(y0 + 1, H - 1), min(x0 + 1, W - 1)
    dy, dx = py - y0, px - x0
    return (img[:, y0, x0] * (1 - dy) * (1 - dx) + img[:, y0, x1] * (1 - dy) * dx
            + img[:, y1, x0] * dy * (1 - dx) + img[:, y1, x1] * dy * dx)


@torch.no_grad()
def dysample_reference(module, x):
    """What ``DySample`` must return, output pixel by output pixel."""
    B, C, H, W = x.shape
    s, g = module.scale, module.groups
    o = offsets(module, x).double()  # B×2·g·s²×H×W, (x then y) · group · sub-pixel (a·s + b)
    cg = C // g
    out = torch.zeros(B, C, s * H, s * W, dtype=torch.float64)
    xd = x.double()
    for b in range(B):
        for gi in range(g):
            for r in range(s * H):
                for c in range(s * W):
                    i, a, j, bb = r // s, r % s, c // s, c % s
                    ch = gi * s * s + a * s + bb
                    # position in input pixel units with centres at k + 0.5, minus 0.5 → continuous index
                    px = j + 0.5 + float(o[b, ch, i, j]) - 0.5
                    py = i + 0.5 + float(o[b, g * s * s + ch, i, j]) - 0.5
                    out[b, gi * cg : (gi + 1) * cg, r, c] = bilinear_border(xd[b, gi * cg : (gi + 1) * cg], py, px)
    return out.to(x.dtype)
