"""A²-Nets double attention written out per sample (Chen et al., NeurIPS 2018, eqs. 1-4 and Fig. 2).

A = φ(x) (c_m maps), B = θ(x), V = ρ(x) (c_n maps); gather g_j = Σ_i A_i · softmax_i(B_j) (softmax over all
positions, per map j); distribute z_i = Σ_j g_j · softmax_j(V_i) (softmax over the c_n maps, per position i);
output x + W_out z (1×1 conv).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def double_attention(m, x):
    cm, cn = m.c_m, m.c_n
    y = F.conv2d(x, m.proj.weight, m.proj.bias)
    out = []
    for s in range(x.shape[0]):
        a = y[s, :cm].flatten(1)  # c_m×N
        bmaps = y[s, cm : cm + cn].flatten(1)
        vmaps = y[s, cm + cn :].flatten(1)
        n = a.shape[1]
        att = torch.exp(bmaps - bmaps.max(1, keepdim=True).values)
        att = att / att.sum(1, keepdim=True)  # each of the c_n maps sums to 1 over positions
        g = torch.stack([sum(a[:, i] * att[j, i] for i in range(n)) for j in range(cn)], 1)  # c_m×c_n
        vec = torch.exp(vmaps - vmaps.max(0, keepdim=True).values)
        vec = vec / vec.sum(0, keepdim=True)  # each position's c_n weights sum to 1
        z = torch.stack([sum(g[:, j] * vec[j, i] for j in range(cn)) for i in range(n)], 1)  # c_m×N
        out.append(z.reshape(cm, *x.shape[2:]))
    z = torch.stack(out)
    return x + F.conv2d(z, m.out.weight, m.out.bias)
