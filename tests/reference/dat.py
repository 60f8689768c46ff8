"""Deformable attention (DAT) written out from the paper: the offset network read from the module's layers,
reference points and sampling positions computed per point, bilinear sampling by hand (zero outside, pixel
centres at integers), the position bias per (query, sample) pair (DAT's table read by hand-made bilinear
interpolation, or DAT++'s log-spaced MLP), explicit softmax.
Takes a ``DeformableAttention`` and reads its weights."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .dcn import bilinear


def positions(m, q: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """Sampling positions in pixels, (B·G)×Ns×2 (y, x), with the key grid size."""
    b, c, h, w = q.shape
    g, s = m.groups, m.stride
    t = F.conv2d(q.reshape(b * g, c // g, h, w), m.conv_offset.weight, m.conv_offset.bias, s, m.kernel_size // 2, groups=c // g)
    t = F.gelu(F.layer_norm(t.permute(0, 2, 3, 1), (c // g,), m.offset_norm.weight, m.offset_norm.bias, m.offset_norm.eps))
    off = F.conv2d(t.permute(0, 3, 1, 2), m.offset_proj.weight)  # (B·G)×2×Hk×Wk
    hk, wk = off.shape[2:]
    pos = torch.zeros(b * g, hk * wk, 2, dtype=q.dtype)
    for i in range(hk):
        cy = (i * s + min((i + 1) * s, h) - 1) / 2  # centre of the i-th cell (cut at the border)
        for j in range(wk):
            cx = (j * s + min((j + 1) * s, w) - 1) / 2
            dy, dx = off[:, 0, i, j], off[:, 1, i, j]
            if m.offset_range_factor >= 0:
                amp = m.offset_range_factor * s / 2
                py, px = cy + amp * torch.tanh(dy), cx + amp * torch.tanh(dx)
            else:
                py, px = (cy + dy).clamp(0, h - 1), (cx + dx).clamp(0, w - 1)
            pos[:, i * wk + j, 0], pos[:, i * wk + j, 1] = py, px
    return pos, hk, wk


@torch.no_grad()
def dat_ref(m, x: torch.Tensor, pos: torch.Tensor | None = None, sampled: torch.Tensor | None = None) -> torch.Tensor:
    """The whole module; ``pos`` ((B·G)×Ns×2 pixels, y x) overrides the predicted sampling positions and
    ``sampled`` (B×C×Ns) the bilinear samples of x at them."""
    b, c, h, w = x.shape
    g, heads = m.groups, m.heads
    hg, cg = heads // g, c // g
    q = F.conv2d(x, m.proj_q.weight, m.proj_q.bias)
    if pos is None:
        pos, _, _ = positions(m, q)
    ns = pos.shape[1]
    if sampled is None:
        sampled = torch.zeros(b, c, ns, dtype=x.dtype)
        for n in range(b):
            for gi in range(g):
                for p in range(ns):
                    y, xx = float(pos[n * g + gi, p, 0]), float(pos[n * g + gi, p, 1])
                    sampled[n, gi * cg:(gi + 1) * cg, p] = bilinear(x[n, gi * cg:(gi + 1) * cg], y, xx)
    k = torch.einsum("oc,bcn->bon", m.proj_k.weight[:, :, 0, 0], sampled) + m.proj_k.bias[None, :, None]
    v = torch.einsum("oc,bcn->bon", m.proj_v.weight[:, :, 0, 0], sampled) + m.proj_v.bias[None, :, None]
    d = c // heads
    qh = q.reshape(b, heads, d, h * w)
    kh, vh = k.reshape(b, heads, d, ns), v.reshape(b, heads, d, ns)
    logits = torch.einsum("bhdm,bhdn->bhmn", qh, kh) * d**-0.5
    if getattr(m, "rpe_table", None) is not None:  # DAT: bilinear read of the table at Δ/2 (align_corners=True)
        gy = [(2 * i + 1) / h - 1 for i in range(h)]
        gx = [(2 * j + 1) / w - 1 for j in range(w)]
        side = m.rpe_table.shape[-1]
        bias = torch.zeros(b, heads, h * w, ns, dtype=x.dtype)
        for n in range(b):
            for gi in range(g):
                table = m.rpe_table[gi * hg:(gi + 1) * hg]
                for qi in range(h * w):
                    for p in range(ns):
                        py = (2 * float(pos[n * g + gi, p, 0]) + 1) / h - 1
                        px = (2 * float(pos[n * g + gi, p, 1]) + 1) / w - 1
                        ty = ((gy[qi // w] - py) * 0.5 + 1) / 2 * (side - 1)
                        tx = ((gx[qi % w] - px) * 0.5 + 1) / 2 * (side - 1)
                        bias[n, gi * hg:(gi + 1) * hg, qi, p] = bilinear(table, ty, tx)
        logits = logits + bias
    if m.rpe is not None:
        gy = torch.tensor([(2 * i + 1) / h - 1 for i in range(h)], dtype=x.dtype)
        gx = torch.tensor([(2 * j + 1) / w - 1 for j in range(w)], dtype=x.dtype)
        qpos = torch.stack(torch.meshgrid(gy, gx, indexing="ij"), -1).reshape(h * w, 2)
        npos = torch.stack(((2 * pos[..., 0] + 1) / h - 1, (2 * pos[..., 1] + 1) / w - 1), -1)  # (B·G)×Ns×2
        disp = (qpos[None, :, None] - npos[:, None]) * 4.0
        disp = torch.sign(disp) * torch.log2(disp.abs() + 1.0) / math.log2(8.0)
        bias = m.rpe(disp)  # (B·G)×N×Ns×hg
        logits = logits + bias.reshape(b, g, h * w, ns, hg).permute(0, 1, 4, 2, 3).reshape(b, heads, h * w, ns)
    out = torch.einsum("bhmn,bhdn->bhdm", logits.softmax(-1), vh).reshape(b, c, h, w)
    return F.conv2d(out, m.proj_out.weight, m.proj_out.bias)
