"""SAGAN self-attention as the official PyTorch and TensorFlow code compute it."""

from __future__ import annotations

import torch

from reference.common import conv, pool_ceil


def ref_sagan_pytorch(m, x):
    """Self-Attention-GAN ``Self_Attn`` (the common PyTorch form)."""
    b, c, h, w = x.shape
    n = h * w
    proj_query = conv(x, m.query).view(b, -1, n).permute(0, 2, 1)
    proj_key = conv(x, m.key).view(b, -1, n)
    attention = torch.softmax(torch.bmm(proj_query, proj_key), dim=-1)
    proj_value = conv(x, m.value).view(b, -1, n)
    out = torch.bmm(proj_value, attention.permute(0, 2, 1)).view(b, c, h, w)
    return m.gamma * out + x


def ref_sagan_tf(m, x):
    """brain-research ``sn_non_local_block_sim`` (NHWC, without spectral norm): pool after the convs."""
    b, c, h, w = x.shape
    xh = x.permute(0, 2, 3, 1)

    def c1(t, layer):  # NHWC 1×1 conv
        out = t @ layer.weight[:, :, 0, 0].t()
        return out if layer.bias is None else out + layer.bias

    def pool(t):
        return pool_ceil(t.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    theta = c1(xh, m.query).reshape(b, h * w, -1)
    phi = pool(c1(xh, m.key))
    phi = phi.reshape(b, -1, phi.shape[-1])
    attn = torch.softmax(theta @ phi.transpose(1, 2), dim=-1)
    g = pool(c1(xh, m.value))
    g = g.reshape(b, -1, g.shape[-1])
    attn_g = (attn @ g).reshape(b, h, w, -1)
    attn_g = c1(attn_g, m.out)
    return x + m.gamma * attn_g.permute(0, 3, 1, 2)

