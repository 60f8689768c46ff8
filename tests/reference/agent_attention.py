"""Agent attention (Han et al., ECCV 2024) written from the paper's equations with explicit matrices.

A = the √n×√n average pooling of the query map, each bin [⌊i·H/s⌋, ⌈(i+1)·H/s⌉) written out;
V_A = softmax(A Kᵀ/√d + B₁) V; O = softmax(Q Aᵀ/√d + B₂) V_A + DWC(V); out = proj(O).
B₁ / B₂: the per-agent s×s grid resized bilinearly to H×W plus the row and column terms (the official layout,
which fixes H = W = table_size; other sizes resize the row / column terms linearly).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def pooled_agents(q_map: torch.Tensor, s: int) -> torch.Tensor:
    """B×C×H×W → B×(s·s)×C, the mean over each adaptive bin, row-major."""
    h, w = q_map.shape[-2:]
    rows = [(i * h // s, math.ceil((i + 1) * h / s)) for i in range(s)]
    cols = [(j * w // s, math.ceil((j + 1) * w / s)) for j in range(s)]
    out = [q_map[:, :, r0:r1, c0:c1].mean((2, 3)) for r0, r1 in rows for c0, c1 in cols]
    return torch.stack(out, 1)


def _bias(grid, row, col, h, w):
    g = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)
    if row.shape[-1] != h:
        row = F.interpolate(row, size=h, mode="linear", align_corners=False)
    if col.shape[-1] != w:
        col = F.interpolate(col, size=w, mode="linear", align_corners=False)
    return (g + row[..., :, None] + col[..., None, :]).flatten(2)  # heads×n×N


def agent_attention(m, x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    heads, d = m.heads, c // m.heads
    tokens = x.flatten(2).transpose(1, 2)  # B×N×C
    qkv = tokens @ m.qkv.weight.T + (m.qkv.bias if m.qkv.bias is not None else 0)
    q, k, v = qkv[..., :c], qkv[..., c : 2 * c], qkv[..., 2 * c :]
    agents = pooled_agents(q.transpose(1, 2).reshape(b, c, h, w), m.pool_size)  # B×n×C
    b1 = _bias(m.an_bias, m.ah_bias, m.aw_bias, h, w)
    b2 = _bias(m.na_bias, m.ha_bias, m.wa_bias, h, w).transpose(1, 2)
    out = torch.zeros_like(q)
    for hd in range(heads):
        sl = slice(hd * d, (hd + 1) * d)
        qh, kh, vh, ah = q[..., sl], k[..., sl], v[..., sl], agents[..., sl]
        agent_attn = torch.softmax(ah @ kh.transpose(1, 2) / math.sqrt(d) + b1[hd], -1)  # B×n×N
        agent_v = agent_attn @ vh  # B×n×d
        query_attn = torch.softmax(qh @ ah.transpose(1, 2) / math.sqrt(d) + b2[hd], -1)  # B×N×n
        out[..., sl] = query_attn @ agent_v
    v_map = v.transpose(1, 2).reshape(b, c, h, w)
    out = out + F.conv2d(v_map, m.dwc.weight, m.dwc.bias, padding=1, groups=c).flatten(2).transpose(1, 2)
    out = out @ m.proj.weight.T + m.proj.bias
    return out.transpose(1, 2).reshape(b, c, h, w)
