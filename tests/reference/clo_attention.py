"""Slow reference of CloFormer's attention (``EfficientAttention``), written from the paper's equations with explicit
loops over groups and heads, an explicit softmax matrix and explicit pooling bins (PyTorch's adaptive bins; the
official AvgPool2d(w) windows when w divides H and W)."""

import torch
import torch.nn.functional as F

from attnzoo.functional.pooling import pool_bins


def _pool(x, oh, ow):
    rows = [x[:, :, a:b].mean(2, keepdim=True) for a, b in pool_bins(x.shape[2], oh)]
    x = torch.cat(rows, 2)
    cols = [x[:, :, :, a:b].mean(3, keepdim=True) for a, b in pool_bins(x.shape[3], ow)]
    return torch.cat(cols, 3)


def clo_attention_reference(m, x):
    b, c, h, w = x.shape
    d = m.dim_head
    outs = []
    for i, (g, k) in enumerate(m.local_groups):
        qkv = F.conv2d(x, m.qkvs[i].weight, m.qkvs[i].bias)
        conv = m.convs[i]
        qkv = F.conv2d(qkv, conv.weight, conv.bias, padding=k // 2, groups=conv.groups)
        q, kk, v = qkv[:, : g * d], qkv[:, g * d : 2 * g * d], qkv[:, 2 * g * d :]
        c1, c2 = m.act_blocks[i].act_block[0], m.act_blocks[i].act_block[2]
        t = F.conv2d(q * kk, c1.weight, c1.bias)
        t = F.conv2d(t * torch.sigmoid(t), c2.weight, c2.bias)
        outs.append(torch.tanh(t * d**-0.5) * v)
    if m.global_heads:
        gh = m.global_heads
        q = F.conv2d(x, m.global_q.weight, m.global_q.bias)
        s = m.window_size
        pooled = _pool(x, -(-h // s), -(-w // s)) if s > 1 else x
        kv = F.conv2d(pooled, m.global_kv.weight, m.global_kv.bias).flatten(2)
        heads = []
        for j in range(gh):
            qj = q[:, j * d : (j + 1) * d].flatten(2)  # B×d×N
            kj = kv[:, j * d : (j + 1) * d]
            vj = kv[:, (gh + j) * d : (gh + j + 1) * d]
            p = torch.softmax(qj.transpose(1, 2) @ kj * d**-0.5, dim=-1)  # B×N×N'
            heads.append((vj @ p.transpose(1, 2)).reshape(b, d, h, w))
        outs.append(torch.cat(heads, 1))
    return F.conv2d(torch.cat(outs, 1), m.proj.weight, m.proj.bias)
