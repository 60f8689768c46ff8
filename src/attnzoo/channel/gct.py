"""Gated Channel Transformation for Visual Recognition (Yang, Zhu, Wu, Yang; CVPR 2020).
Paper: https://arxiv.org/abs/1909.11519"""

from __future__ import annotations

import torch
from torch import nn

from .. import tracing
from ..functional.gating import BATCH_AXIS
from ..layers import (
    Gate,
    adaptive_avg_pool_fn,
    as_map,
    check_arg,
    check_choice,
    check_rank_arg,
    positive_int,
    spatial_axes,
    unit_shape,
)
from ..registry import register

__all__ = ["GatedChannelTransform"]


_SUMS_FORM = tracing.PortableForm(
    targets=("ncnn",),
    marker="aten::adaptive_avg_pool2d",
    reason="the channel sums by vector_norm; " + BATCH_AXIS,
    cases=({}, {"mode": "l1"}),
)


@register(
    "gct",
    family="channel",
    paper="Gated Channel Transformation for Visual Recognition (Yang et al.; CVPR 2020)",
    url="https://arxiv.org/abs/1909.11519",
    complexity="O(N)",
    summary="Per-channel ℓ2 (or ℓ1) embedding · α, channel normalisation · γ, gate 1 + tanh(· + β).",
    maps=("gate",),
    identity_at_init=True,
    forms=(_SUMS_FORM,),
    dims=(1, 2, 3),
)
class GatedChannelTransform(Gate):
    """GCT gate; B×C×H×W → B×C×H×W (B×C×L or B×C×D×H×W with ``dims=1`` or ``3``: the embedding sums over every
    spatial axis).

    ``s_c = α_c (‖x_c‖₂² + ε)^½`` (``mode="l1"``: ``α_c Σ|x_c|``),
    ``ŝ_c = √C · s_c / (‖s‖₂² + ε)^½`` written as ``s_c / (mean_c s_c² + ε)^½`` (``"l1"``: ``s_c / (mean_c |s_c| + ε)``),
    ``y = x · (1 + tanh(γ_c ŝ_c + β_c))``.  As the official code α = 1, γ = β = 0 at init (the block is the
    identity) and ε = 1e-5.

    Args:
        channels: C.  mode: ``"l2"`` or ``"l1"``.  eps: ε.  dims: spatial rank of the maps (1, 2 or 3).

    Parameters ``alpha``, ``gamma``, ``beta`` of shape 1×C×1×1 (the official names and shapes; 1×C×1 and
    1×C×1×1×1 in 1-D and 3-D).  Captured map: ``"gate"`` B×C×1×1 (B×C×1 / B×C×1×1×1).  See docs/provenance/gct.md.
    """

    def __init__(self, channels: int, mode: str = "l2", eps: float = 1e-5, *, dims: int = 2) -> None:
        super().__init__()
        positive_int(channels, self.owner, "channels")
        check_choice(mode, ("l2", "l1"), self.owner, "mode")
        ok = isinstance(eps, (int, float)) and not isinstance(eps, bool) and 0 <= eps < float("inf")
        check_arg(ok, self.owner, "eps", "a non-negative finite number", eps)
        self.channels, self.mode, self.eps = channels, mode, float(eps)
        self.dims = check_rank_arg(dims, self.owner)
        shape = (1, channels) + unit_shape(dims)
        self.alpha = nn.Parameter(torch.ones(shape))
        self.gamma = nn.Parameter(torch.zeros(shape))
        self.beta = nn.Parameter(torch.zeros(shape))

    def channel_sums(self, x: torch.Tensor) -> torch.Tensor:
        """``Σ_hw x²`` (``"l2"``) or ``Σ_hw |x|`` (``"l1"``) per channel (over every spatial axis), B×C."""
        if tracing.portable(*_SUMS_FORM.targets):
            return self._channel_sums_portable(x)
        # vector_norm is one pass without the x² temporary (accumulating in float32 for half inputs)
        axes = spatial_axes(self.dims)
        if self.mode == "l2":
            n = torch.linalg.vector_norm(x, 2, dim=axes)
            return n * n
        return torch.linalg.vector_norm(x, 1, dim=axes)

    def _channel_sums_portable(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`channel_sums` as H·W × a global average pool of x² (or |x|): 1.5–2.8× slower in eager PyTorch
        (benchmarks/export_forms.py)."""
        t = x * x if self.mode == "l2" else x.abs()
        first, *rest = spatial_axes(self.dims)
        n = x.shape[first]
        for axis in rest:
            n = n * x.shape[axis]
        return adaptive_avg_pool_fn(self.dims)(t, 1).flatten(1) * n

    def gate_map(self, x: torch.Tensor) -> torch.Tensor:
        """The gate, B×C×1×1."""
        alpha, gamma, beta = (p.flatten() for p in (self.alpha, self.gamma, self.beta))
        if self.mode == "l2":
            # sqrt(Σx² + ε) is the official (Σx² + ε)^½
            emb = (self.channel_sums(x) + self.eps).sqrt() * alpha
            norm = gamma * (emb.pow(2).mean(1, keepdim=True) + self.eps).rsqrt()
        else:
            emb = self.channel_sums(x) * alpha
            norm = gamma / (emb.abs().mean(1, keepdim=True) + self.eps)
        return as_map((1.0 + torch.tanh(emb * norm + beta)).to(x.dtype), self.dims)
