"""EANet external attention block written out (Guo et al., TPAMI 2022; MenghaoGuo/EANet ``External_attention``).

u = conv1(x); attn = M_k u (S×N); softmax over N; attn / (1e-9 + Σ_S attn); F = M_v attn;
y = ReLU(x + BN(conv2(F))) — BN in eval form with the running statistics.
"""

from __future__ import annotations

import torch


def memory_core(m, x):
    """conv1 → M_k → double normalisation → M_v (before conv2/BN), B×C×H×W; and the normalised attention B×S×N."""
    b, c, h, w = x.shape
    u = torch.einsum("oc,bchw->bohw", m.conv_in.weight[:, :, 0, 0], x) + m.conv_in.bias[None, :, None, None]
    u = u.reshape(b, c, h * w)
    logits = torch.einsum("sc,bcn->bsn", m.mk.weight[:, :, 0], u)
    attn = torch.exp(logits - logits.max(-1, keepdim=True).values)
    attn = attn / attn.sum(-1, keepdim=True)
    attn = attn / (1e-9 + attn.sum(1, keepdim=True))
    f = torch.einsum("cs,bsn->bcn", m.mv.weight[:, :, 0], attn).reshape(b, c, h, w)
    return f, attn


def external_attention(m, x):
    f, _ = memory_core(m, x)
    z = torch.einsum("oc,bchw->bohw", m.conv_out.weight[:, :, 0, 0], f)
    bn = m.norm
    z = (z - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + bn.eps)
    z = z * bn.weight[:, None, None] + bn.bias[:, None, None]
    return torch.relu(x + z)
