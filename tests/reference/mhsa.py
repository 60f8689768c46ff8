"""Multi-head attention with explicit probabilities (masks, weights)."""

from __future__ import annotations

import torch

from reference.common import heads_of


def ref_attention(q, k, v, h, scale, mask=None, weights=None, key_padding_mask=None):
    """The seed's formula on projected B×N×(h·d) tensors: masked_fill(-inf) / additive mask, softmax, matmul."""
    qh, kh, vh = heads_of(q, h), heads_of(k, h), heads_of(v, h)
    att = torch.matmul(qh, kh.transpose(-2, -1)) * scale
    if weights is not None:
        att = att * weights
    if mask is not None:
        att = att.masked_fill(mask, float("-inf")) if mask.dtype == torch.bool else att + mask
    if key_padding_mask is not None:
        kpm = key_padding_mask[:, None, None, :]
        att = att.masked_fill(kpm, float("-inf")) if kpm.dtype == torch.bool else att + kpm
    att = torch.softmax(att, -1)
    out = torch.matmul(att, vh)
    return out.permute(0, 2, 1, 3).reshape(q.shape[0], q.shape[1], -1), att


def ref_mhsa(m, q, k=None, v=None, **kw):
    k = q if k is None else k
    v = k if v is None else v
    lin = lambda x, layer: x @ layer.weight.t() + (0 if layer.bias is None else layer.bias)  # noqa: E731
    out, att = ref_attention(lin(q, m.fc_q), lin(k, m.fc_k), lin(v, m.fc_v), m.heads, m.d_k**-0.5, **kw)
    return lin(out, m.fc_o), att


def ref_simplified(m, q, k=None, v=None, **kw):
    k = q if k is None else k
    v = k if v is None else v
    out, att = ref_attention(q, k, v, m.heads, (m.channels // m.heads) ** -0.5, **kw)
    return out @ m.fc_o.weight.t() + m.fc_o.bias, att

