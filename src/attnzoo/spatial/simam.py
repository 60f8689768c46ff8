"""SimAM: A Simple, Parameter-Free Attention Module for Convolutional Neural Networks (Yang, Zhang, Li, Xie; ICML 2021).

Paper: https://proceedings.mlr.press/v139/yang21o.html
"""

from __future__ import annotations

import torch

from ..capture import is_capturing, record
from ..layers import (
    AttnModule,
    check_rank_arg,
    check_spatial,
    fx_leaf,
    inplace_ok,
    positive_int,
    positive_number,
)
from ..registry import register
from ..tracing import traced_dim

__all__ = ["SimAM"]


@fx_leaf
def _gn_constants(x: torch.Tensor, channels: int, lambda_: float) -> tuple[torch.Tensor, float]:
    """GroupNorm weight (sqrt(n/m) / 2 per channel) and eps (λn/m) that turn a per-channel GroupNorm into
    SimAM's ``(x − μ) / (2·sqrt(σ² + λ))``, with m = H·W (L, D·H·W: every spatial position) and n = max(m − 1, 1)."""
    m = 1
    for axis in range(2, x.dim()):  # plain ints under torch.jit.trace: constants of the graph
        m *= traced_dim(x, axis)
    n = max(m - 1, 1)
    return torch.full((channels,), 0.5 * (n / m) ** 0.5, dtype=x.dtype, device=x.device), lambda_ * n / m


@register(
    "simam",
    family="spatial",
    paper="SimAM: A Simple, Parameter-Free Attention Module for Convolutional Neural Networks (Yang, Zhang, Li, Xie; ICML 2021)",
    url="https://proceedings.mlr.press/v139/yang21o.html",
    complexity="O(N)",
    summary="Parameter-free 3-D gate: sigmoid of the inverse minimal energy of each neuron in its channel.",
    maps=("gate",),
    dims=(1, 2, 3),
)
class SimAM(AttnModule):
    """SimAM; B×C×H×W → B×C×H×W (B×C×L or B×C×D×H×W with ``dims=1`` or ``3``: the statistics are over every
    position of the channel), no parameters.  (The paper's "3-D attention" means C×H×W weights, one per neuron,
    not volumes.)

    Per channel, with μ the mean over H×W, ``d = (x − μ)²`` and ``σ² = Σd / n`` (n = H·W − 1):
    ``1/e* = d / (4(σ² + λ)) + 0.5`` and ``y = x ⊙ sigmoid(1/e*)``, as the paper's energy and the official
    ``simam_module``.  A 1×1 map has no spread: n = max(H·W − 1, 1), so the output is ``x·σ(0.5)`` where the
    official code divides 0 by 0 (NaN).  See docs/provenance/simam.md.

    Args:
        channels: input channels C (checked, no weights depend on it).
        lambda_: the energy's regulariser λ (1e-4).
        dims: spatial rank of the maps (1, 2 or 3).

    Captured map: ``"gate"`` of the input's shape.
    """

    def __init__(self, channels: int, lambda_: float = 1e-4, *, dims: int = 2) -> None:
        super().__init__()
        self.channels = positive_int(channels, self.owner, "channels")
        self.lambda_ = float(positive_number(lambda_, self.owner, "lambda_"))
        self.dims = check_rank_arg(dims, self.owner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_spatial(x, self.channels, self.dims, self.owner)
        # d / (4(σ² + λ)) = t² with t = (x − μ) / (2·sqrt(σ² + λ)), σ² = Σd / n.  With the biased variance
        # v = Σd / m (m = H·W) of a per-channel GroupNorm: sqrt(v + λn/m) = sqrt(n/m)·sqrt(σ² + λ), so
        # t = GN_{eps=λn/m}(x) · sqrt(n/m) / 2 (one fused statistics + normalisation pass).
        # (an explicit zero bias: pnnx cannot convert a group_norm without one, and the kernel folds it for free)
        weight, eps = _gn_constants(x, self.channels, self.lambda_)
        t = torch.group_norm(x, self.channels, weight, torch.zeros_like(weight), eps)
        if inplace_ok() and not is_capturing(self):
            return t.square_().add_(0.5).sigmoid_().mul_(x)  # one buffer, in place
        gate = t.square().add_(0.5).sigmoid_()
        record(self, "gate", gate)
        return x * gate
