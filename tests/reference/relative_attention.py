"""2-D relative self-attention written out: BoTNet's MHSA (Srinivas et al., CVPR 2021) and the attention half of
attention-augmented convolution (Bello et al., ICCV 2019).

For a query at (y, x) and a key at (y', x'), per head:
logit = s·q·k + s_pos·q·(R_h[y' − y + H − 1] + R_w[x' − x + W − 1]), with (H, W) the size the tables were built
for (a smaller map uses their centre rows), s = d^-½ and s_pos = 1 (BoT, timm) or d^-½ (AA-conv, both terms
scaled).  Explicit N×N matrices, offsets by explicit index arithmetic: clarity over speed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def relative_attention(q, k, v, height_rel, width_rel, h, w, scale, pos_scale):
    """q, k: B×heads×N×d, v: B×heads×N×dv (N = h·w row-major) → B×heads×N×dv."""
    big_h, big_w = (height_rel.shape[0] + 1) // 2, (width_rel.shape[0] + 1) // 2
    ys = [p // w for p in range(h * w)]
    xs = [p % w for p in range(h * w)]
    n = h * w
    rel = torch.stack(
        [
            torch.stack([height_rel[ys[j] - ys[i] + big_h - 1] + width_rel[xs[j] - xs[i] + big_w - 1] for j in range(n)])
            for i in range(n)
        ]
    )  # N(query)×N(key)×d
    logits = scale * q @ k.transpose(-1, -2) + pos_scale * torch.einsum("bhid,ijd->bhij", q, rel)
    return logits.softmax(-1) @ v


def bot_mhsa(m, x):
    b, _, h, w = x.shape
    heads, d, dv = m.heads, m.dim_head, m.dim_head_v
    qkv = F.conv2d(x, m.qkv.weight, m.qkv.bias).flatten(2)
    q, k, v = qkv[:, : heads * d], qkv[:, heads * d : 2 * heads * d], qkv[:, 2 * heads * d :]
    q, k = (t.reshape(b, heads, d, h * w).transpose(-1, -2) for t in (q, k))
    v = v.reshape(b, heads, dv, h * w).transpose(-1, -2)
    pos = d**-0.5 if m.scale_pos_embed else 1.0
    out = relative_attention(q, k, v, m.height_rel, m.width_rel, h, w, d**-0.5, pos)
    out = out.transpose(-1, -2).reshape(b, heads * dv, h, w)
    if m.stride == 2:  # 2×2 average of the positions inside the map (odd sizes: the last row/column alone)
        out = torch.stack(
            [
                torch.stack(
                    [out[:, :, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].mean((2, 3)) for j in range((w + 1) // 2)], -1
                )
                for i in range((h + 1) // 2)
            ],
            -2,
        )
    return out


def aa_conv(m, x):
    """concat(Conv_k(x), W_O · MHA_rel(x)) with q scaled before both the content and the relative logits."""
    b, _, h, w = x.shape
    heads, dk, dv = m.heads, m.key_channels, m.value_channels
    parts = []
    if m.conv is not None:
        parts.append(F.conv2d(x, m.conv.weight, m.conv.bias, padding=m.kernel_size // 2))
    if dv > 0:
        qkv = F.conv2d(x, m.qkv.weight, m.qkv.bias).flatten(2)
        q, k, v = qkv[:, :dk], qkv[:, dk : 2 * dk], qkv[:, 2 * dk :]
        d = dk // heads
        q = q.reshape(b, heads, d, h * w).transpose(-1, -2) * d**-0.5  # the paper's listing: q *= dkh ** -0.5
        k = k.reshape(b, heads, d, h * w).transpose(-1, -2)
        v = v.reshape(b, heads, dv // heads, h * w).transpose(-1, -2)
        o = relative_attention(q, k, v, m.height_rel, m.width_rel, h, w, 1.0, 1.0)
        parts.append(F.conv2d(o.transpose(-1, -2).reshape(b, dv, h, w), m.proj.weight, m.proj.bias))
    return torch.cat(parts, 1)
