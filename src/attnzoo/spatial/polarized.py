"""Polarized Self-Attention: Towards High-quality Pixel-wise Regression (Liu, Liu, Fan, Huang; arXiv 2021).

Paper: https://arxiv.org/abs/2107.00782
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..capture import is_capturing, record
from ..layers import (
    AttnModule,
    check_arg,
    check_choice,
    check_nchw,
    inplace_ok,
    positive_int,
    softmax_fp32,
)
from ..registry import register

__all__ = ["PolarizedSelfAttention"]


@register(
    "polarized",
    family="spatial",
    paper="Polarized Self-Attention: Towards High-quality Pixel-wise Regression (Liu, Liu, Fan, Huang; arXiv 2021)",
    url="https://arxiv.org/abs/2107.00782",
    complexity="O(N)",
    summary="Channel-only (softmax over space) and spatial-only (softmax over channels) self-attention gates, in parallel or in sequence.",
    maps=("channel", "spatial"),
)
class PolarizedSelfAttention(AttnModule):
    """Polarized self-attention; B×C×H×W → B×C×H×W.

    Channel-only branch: ``A_ch = σ(LN(W_z(W_v(x) · softmax_N(W_q(x)))))`` (W_v: C → C/2, W_q: C → 1, softmax
    over the H·W positions, W_z: C/2 → C, LayerNorm over C), B×C×1×1.  Spatial-only branch:
    ``A_sp = σ(softmax_C(GAP(W_q'(x)))ᵀ W_v'(x))`` (both C → C/2, softmax over the C/2 channels), B×1×H×W.
    ``mode="parallel"``: ``y = x ⊙ A_ch + x ⊙ A_sp``; ``"sequential"``: ``x' = x ⊙ A_ch(x)``, ``y = x' ⊙ A_sp(x')``.
    All projections are 1×1 convs (Kaiming fan-in init of the query/value convs as the official code, no biases
    unless ``qkv_bias``); layer names as External-Attention's copy, whose weights load with ``qkv_bias=True``.
    The 1×1 convs are linear, so each branch is computed from matrix-vector products with x (the C/2×H×W value
    maps are never built): same values, a few reads of x.  See docs/provenance/polarized.md.

    Args:
        channels: input channels C (≥ 2).
        mode: ``"parallel"`` (PSA_p) or ``"sequential"`` (PSA_s).
        qkv_bias: biases on the five 1×1 convs (False as the official code; True as External-Attention's copy).

    Captured maps: ``"channel"`` A_ch B×C×1×1 and ``"spatial"`` A_sp B×1×H×W.
    """

    def __init__(self, channels: int, mode: str = "parallel", qkv_bias: bool = False) -> None:
        super().__init__()
        self.channels = positive_int(channels, self.owner, "channels")
        check_arg(channels >= 2, self.owner, "channels", "at least 2 (the branches use C // 2 channels)", channels)
        self.mode = check_choice(mode, ("parallel", "sequential"), self.owner, "mode")
        check_arg(isinstance(qkv_bias, bool), self.owner, "qkv_bias", "a bool", qkv_bias)
        self.qkv_bias = qkv_bias
        inner = channels // 2
        self.ch_wv = nn.Conv2d(channels, inner, 1, bias=qkv_bias)
        self.ch_wq = nn.Conv2d(channels, 1, 1, bias=qkv_bias)
        self.ch_wz = nn.Conv2d(inner, channels, 1, bias=qkv_bias)
        self.ln = nn.LayerNorm(channels)
        self.sp_wv = nn.Conv2d(channels, inner, 1, bias=qkv_bias)
        self.sp_wq = nn.Conv2d(channels, inner, 1, bias=qkv_bias)
        for conv in (self.ch_wv, self.ch_wq, self.sp_wv, self.sp_wq):  # official reset_parameters
            nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)

    @staticmethod
    def _mat(conv: nn.Conv2d) -> torch.Tensor:
        return conv.weight[:, :, 0, 0]

    def _add_bias(self, t: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
        return t if conv.bias is None else t + conv.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        b, c, h, w = x.shape
        xf = x.flatten(2)  # B×C×N
        # Channel-only: W_v(x)·p = W_v (x·p) + b_v, since the softmax weights p sum to 1.
        q = torch.matmul(self._mat(self.ch_wq).expand(b, 1, c), xf)  # B×1×N (a batched product: no copy of x)
        p = softmax_fp32(self._add_bias(q, self.ch_wq), 2)  # softmax over the positions
        pooled = torch.matmul(
            xf, torch.cat([p.to(xf.dtype), torch.full_like(p, 1.0 / (h * w)).to(xf.dtype)], 1).transpose(1, 2)
        )
        ctx, mean = pooled[..., 0], pooled[..., 1]  # B×C each: x·p and GAP(x)
        v = self._add_bias(F.linear(ctx, self._mat(self.ch_wv)), self.ch_wv)
        z = self._add_bias(F.linear(v, self._mat(self.ch_wz)), self.ch_wz)
        a_ch = torch.sigmoid(F.layer_norm(z.to(self.ln.weight.dtype), (c,), self.ln.weight, self.ln.bias, self.ln.eps))
        a_ch = a_ch.to(x.dtype)  # B×C
        # Spatial-only (on x, or on x' = x ⊙ A_ch in sequence): GAP(W_q'(x')) = W_q' GAP(x'), and
        # softmax(·)ᵀ W_v'(x') = (softmax(·)ᵀ W_v' diag(A_ch)) x + softmax(·)ᵀ b_v'.
        seq = self.mode == "sequential"
        m = mean * a_ch if seq else mean
        qs = softmax_fp32(self._add_bias(F.linear(m, self._mat(self.sp_wq)), self.sp_wq), 1)  # B×C/2
        u = torch.matmul(qs.to(x.dtype), self._mat(self.sp_wv))  # B×C
        if seq:
            u = u * a_ch
        s = torch.matmul(u[:, None, :], xf)  # B×1×N
        if self.sp_wv.bias is not None:
            s = s + (qs.to(x.dtype) * self.sp_wv.bias).sum(1)[:, None, None]
        a_sp = torch.sigmoid(s).view(b, 1, h, w)
        a_ch = a_ch.view(b, c, 1, 1)
        record(self, "channel", a_ch)
        record(self, "spatial", a_sp)
        if seq:
            y = x * a_ch
            return y.mul_(a_sp) if inplace_ok() and not is_capturing(self) else y * a_sp
        t = a_ch + a_sp  # x ⊙ A_ch + x ⊙ A_sp = x ⊙ (A_ch + A_sp)
        return t.mul_(x) if inplace_ok() else x * t
