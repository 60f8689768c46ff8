"""CCNet criss-cross attention written out (Huang et al., ICCV 2019; speedinghzl/CCNet ``cc_attention``).

Per position (i, j): one softmax over the logits q_ij·k_u for u in column j without (i, j) itself (the official
code's −∞ diagonal) followed by row i (with (i, j)); output γ·Σ_u a_u v_u + x.  Explicit loops: clarity over speed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def qkv(m, x):
    c = m.hidden_channels
    w, b = m.qkv_weight, m.qkv_bias
    conv = lambda s: F.conv2d(x, w[s, :, None, None], b[s])
    return conv(slice(0, c)), conv(slice(c, 2 * c)), conv(slice(2 * c, None))


def cca(m, x):
    """One criss-cross step; returns (output, attention B×H×W×(H+W−1): column without self, then row)."""
    q, k, v = qkv(m, x)
    bsz, _, h, w = x.shape
    out = torch.zeros_like(x)
    attn = torch.zeros(bsz, h, w, h + w - 1, dtype=x.dtype)
    for i in range(h):
        for j in range(w):
            keys = [(r, j) for r in range(h) if r != i] + [(i, c) for c in range(w)]
            kk = torch.stack([k[:, :, r, c] for r, c in keys], -1)  # B×c×L
            vv = torch.stack([v[:, :, r, c] for r, c in keys], -1)  # B×C×L
            a = torch.einsum("bc,bcl->bl", q[:, :, i, j], kk).softmax(-1)
            attn[:, i, j] = a
            out[:, :, i, j] = torch.einsum("bl,bcl->bc", a, vv)
    return x + m.gamma * out, attn


def criss_cross(m, x):
    for _ in range(m.recurrence):
        x, _ = cca(m, x)
    return x
