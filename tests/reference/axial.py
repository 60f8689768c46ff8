"""Axial attention written out (Ho et al. 2019; Axial-DeepLab): explicit multi-head attention along every
column (height axis), then along every row (width axis) of the result, each with its output projection."""

from __future__ import annotations

import torch


def mha(layer, t):
    """t: L×C tokens of one axis line → L×C (explicit softmax(q kᵀ/√d) v per head, then the projection)."""
    heads, d = layer.heads, layer.dim_head
    qkv = t @ layer.to_qkv.weight.t()
    if layer.to_qkv.bias is not None:
        qkv = qkv + layer.to_qkv.bias
    q, k, v = qkv.split(heads * d, -1)
    outs = []
    for hd in range(heads):
        sl = slice(hd * d, (hd + 1) * d)
        a = (q[:, sl] @ k[:, sl].t() * d**-0.5).softmax(-1)
        outs.append(a @ v[:, sl])
    return torch.cat(outs, -1) @ layer.to_out.weight.t() + layer.to_out.bias


def axial(m, x):
    b, _, h, w = x.shape
    y = torch.empty_like(x)
    for s in range(b):
        for j in range(w):  # height axis: every column
            y[s, :, :, j] = mha(m.attn_h, x[s, :, :, j].t()).t()
    z = torch.empty_like(x)
    for s in range(b):
        for i in range(h):  # width axis: every row of the result
            z[s, :, i, :] = mha(m.attn_w, y[s, :, i, :].t()).t()
    return z
