"""Polarized self-attention (Liu et al., arXiv 2107.00782), written from the paper's Eq. 1-5 (channel-only
branch: softmax over the positions, W_z, LayerNorm, sigmoid; spatial-only branch: global pooling of the query,
softmax over the channels; parallel sum or sequential composition), with every 1×1 conv applied to the whole map
and every value map built, as the official PSA_p / PSA_s and External-Attention's copy do."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def channel_only(module, x: torch.Tensor) -> torch.Tensor:
    """A_ch(x): B×C×1×1."""
    b, c, h, w = x.shape
    wv = module.ch_wv(x).reshape(b, c // 2, h * w)  # σ1(W_v(x))
    wq = torch.softmax(module.ch_wq(x).reshape(b, h * w, 1), dim=1)  # F_SM(σ2(W_q(x))), over the positions
    z = module.ch_wz((wv @ wq).unsqueeze(-1))  # B×C×1×1
    return torch.sigmoid(module.ln(z.reshape(b, c)).reshape(b, c, 1, 1))


def spatial_only(module, x: torch.Tensor) -> torch.Tensor:
    """A_sp(x): B×1×H×W."""
    b, c, h, w = x.shape
    q = module.sp_wq(x).mean((2, 3))  # F_GP(W_q(x)): B×C/2
    q = torch.softmax(q, dim=1)[:, None, :]  # softmax over the channels
    v = module.sp_wv(x).reshape(b, c // 2, h * w)
    return torch.sigmoid((q @ v).reshape(b, 1, h, w))


def psa(module, x: torch.Tensor) -> torch.Tensor:
    if module.mode == "parallel":
        return x * channel_only(module, x) + x * spatial_only(module, x)
    y = x * channel_only(module, x)
    return y * spatial_only(module, y)


def psa_loops(module, x: torch.Tensor) -> torch.Tensor:
    """Parallel PSA for one sample at a time with explicit position loops (small inputs)."""
    assert module.mode == "parallel"
    b, c, h, w = x.shape
    out = torch.empty_like(x)
    wq_ch = module.ch_wq.weight[0, :, 0, 0]
    wv_ch = module.ch_wv.weight[:, :, 0, 0]
    wz = module.ch_wz.weight[:, :, 0, 0]
    wq_sp = module.sp_wq.weight[:, :, 0, 0]
    wv_sp = module.sp_wv.weight[:, :, 0, 0]
    bias = (lambda conv: 0 if conv.bias is None else conv.bias)
    for i in range(b):
        cols = [x[i, :, r, s] for r in range(h) for s in range(w)]
        logits = torch.stack([wq_ch @ v + bias(module.ch_wq) for v in cols]).reshape(-1)
        p = torch.exp(logits - logits.max())
        p = p / p.sum()
        ctx = sum(p[k] * (wv_ch @ v + bias(module.ch_wv)) for k, v in enumerate(cols))
        z = wz @ ctx + bias(module.ch_wz)
        a_ch = torch.sigmoid(F.layer_norm(z, (c,), module.ln.weight, module.ln.bias, module.ln.eps))
        gq = sum(wq_sp @ v + bias(module.sp_wq) for v in cols) / len(cols)
        qs = torch.softmax(gq, 0)
        a_sp = torch.stack([torch.sigmoid(qs @ (wv_sp @ v + bias(module.sp_wv))) for v in cols]).reshape(h, w)
        out[i] = x[i] * a_ch[:, None, None] + x[i] * a_sp[None]
    return out
