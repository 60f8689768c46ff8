"""MLCA written from the paper and attnzoo's reference notes (the official code is GPL-3.0: not read): PyTorch's
adaptive average pooling to s×s and back, the 1-D convs as explicit tap sums over zero-padded sequences (the
local one over the position-major sequence of the s×s cells, C values per cell)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def conv1d_taps(seq: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """y[i] = Σ_t w[t] · seq[i + t − k//2] over a B×L sequence, zero outside."""
    k, length = w.numel(), seq.shape[-1]
    out = torch.zeros_like(seq)
    for t in range(k):
        d = t - k // 2
        lo, hi = max(0, -d), min(length, length - d)
        out[:, lo:hi] += w.flatten()[t] * seq[:, lo + d : hi + d]
    return out


def mlca_gate(m, x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    s, lam = m.local_size, m.local_weight
    local = F.adaptive_avg_pool2d(x, s)
    glob = local.mean((2, 3))
    a_g = torch.sigmoid(conv1d_taps(glob, m.conv.weight))[:, :, None, None].expand(b, c, s, s)
    seq = torch.stack([local[:, :, i, j] for i in range(s) for j in range(s)], 1).reshape(b, s * s * c)
    y = torch.sigmoid(conv1d_taps(seq, m.conv_local.weight)).reshape(b, s * s, c)
    a_l = torch.stack([torch.stack([y[:, i * s + j] for j in range(s)], -1) for i in range(s)], -2)
    return F.adaptive_avg_pool2d((1 - lam) * a_g + lam * a_l, (h, w))
