"""GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond (Cao, Xu, Lin, Wei, Hu; ICCV Workshops
2019; TPAMI 2020).  Paper: https://arxiv.org/abs/1904.11492"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..capture import record
from ..functional.gating import spatial_mean
from ..layers import (
    ActLayer,
    AttnModule,
    as_map,
    check_choice,
    check_rank_arg,
    check_spatial,
    conv_fn,
    conv_nd,
    fx_leaf,
    get_act,
    hidden_width,
    softmax_fp32,
    unit_shape,
)
from ..registry import register

__all__ = ["GlobalContextBlock"]

_FUSIONS = ("add", "mul", "add_mul")


_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


@fx_leaf
def _weighted_sum(x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    """``Σ_j attn[b, j] x[b, :, j]``: B×C.  One batched matrix-vector product on a free view of ``x`` (B×C×N
    for a contiguous map of any rank, B×N×C for channels-last)."""
    b, c = x.shape[0], x.shape[1]
    fmt = _CHANNELS_LAST.get(x.dim())
    if fmt is not None and x.is_contiguous(memory_format=fmt) and not x.is_contiguous():
        return torch.bmm(attn.unsqueeze(1), x.movedim(1, -1).reshape(b, -1, c)).squeeze(1)
    return torch.bmm(x.reshape(b, c, -1), attn.unsqueeze(2)).squeeze(2)


class _Transform(nn.Module):
    """1×1 conv → LayerNorm over (hidden, 1, 1) → act → 1×1 conv on a pooled context.

    Parameters keep the official shapes (conv weights C'×C×1×1, LayerNorm affine hidden×1×1), so the official
    ``channel_add_conv`` / mmcv ``ContextBlock`` weights load after renaming ``0./1./3.`` to ``conv1./norm./conv2.``.
    The product runs on the B×C vector with ``F.linear`` (the same arithmetic as the 1×1 convs, without their
    per-call overhead on a 1×1 map).
    """

    def __init__(self, channels: int, hidden: int, act: ActLayer, owner: str, dims: int = 2) -> None:
        super().__init__()
        self.conv1 = conv_nd(dims)(channels, hidden, 1)
        self.norm = nn.LayerNorm([hidden, *unit_shape(dims)])
        self.act = get_act(act, owner)
        self.conv2 = conv_nd(dims)(hidden, channels, 1)

    def forward(self, s: torch.Tensor) -> torch.Tensor:  # s: B×C
        h = F.linear(s, self.conv1.weight.flatten(1), self.conv1.bias)
        h = F.layer_norm(h, h.shape[-1:], self.norm.weight.flatten(), self.norm.bias.flatten(), self.norm.eps)
        return F.linear(self.act(h), self.conv2.weight.flatten(1), self.conv2.bias)


@register(
    "gc",
    family="channel",
    paper="GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond (Cao et al.; ICCVW 2019)",
    url="https://arxiv.org/abs/1904.11492",
    complexity="O(N)",
    summary="Softmax attention pooling → 1×1 conv → LayerNorm → ReLU → 1×1 conv, added to every position (residual inside).",
    maps=("attn",),
    identity_at_init=True,
    dims=(1, 2, 3),
)
class GlobalContextBlock(AttnModule):
    """Global context (GC) block; B×C×H×W → B×C×H×W (B×C×L or B×C×D×H×W with ``dims=1`` or ``3``: the softmax
    pools over every position, the LayerNorm is over [C′, 1, …, 1]), the residual is inside.

    ``c = Σ_j softmax_j(W_k x_j) x_j`` (``pooling="attention"``; ``"avg"``: the mean), ``t(c) = W2 ReLU(LN(W1 c))``;
    ``fusion="add"``: ``y = x + t_add(c)``; ``"mul"``: ``y = x · σ(t_mul(c))``; ``"add_mul"``: both (multiply first,
    then add, as the official block).  As the official code the last conv of each transform is zero-initialised
    (so ``"add"`` is the identity at init; ``"mul"`` starts at ``0.5·x``) and the attention-pooling conv is
    Kaiming-normal (fan-in).  Hidden width ``C // reduction``, at least ``min(min_hidden, C)`` (the official
    ``int(C/16)`` for C ≥ 128; a LayerNorm over one hidden value would be constant and cut the block off).

    Args:
        channels: C.  reduction: ratio r (hidden = C // r).  hidden_channels: explicit hidden width.
        min_hidden: floor of the hidden width.  pooling: ``"attention"`` or ``"avg"``.
        fusion: ``"add"``, ``"mul"`` or ``"add_mul"``.  act: transform activation.
        dims: spatial rank of the maps (1, 2 or 3).

    Captured map: ``"attn"`` B×1×H×W (of rank ``dims`` + 2), the pooling weights (``pooling="attention"`` only).
    Differences from the community copies: see docs/provenance/gc.md.
    """

    def __init__(
        self,
        channels: int,
        reduction: float = 16,
        hidden_channels: int | None = None,
        min_hidden: int = 8,
        pooling: str = "attention",
        fusion: str = "add",
        act: ActLayer = "relu",
        *,
        dims: int = 2,
    ) -> None:
        super().__init__()
        hidden = hidden_width(channels, reduction, hidden_channels, min_hidden, self.owner)
        check_choice(pooling, ("attention", "avg"), self.owner, "pooling")
        check_choice(fusion, _FUSIONS, self.owner, "fusion")
        self.channels, self.reduction, self.pooling, self.fusion = channels, reduction, pooling, fusion
        self.dims = check_rank_arg(dims, self.owner)
        self.conv_mask = conv_nd(dims)(channels, 1, 1) if pooling == "attention" else None
        self.mul = _Transform(channels, hidden, act, self.owner, dims) if "mul" in fusion else None
        self.add = _Transform(channels, hidden, act, self.owner, dims) if "add" in fusion else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The official init: Kaiming-normal (fan-in, ReLU gain) pooling conv with zero bias, zero last convs."""
        if self.conv_mask is not None:
            nn.init.kaiming_normal_(self.conv_mask.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(self.conv_mask.bias)  # type: ignore[arg-type]
        for t in (self.mul, self.add):
            if t is not None:
                nn.init.zeros_(t.conv2.weight)
                nn.init.zeros_(t.conv2.bias)  # type: ignore[arg-type]

    def context(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled context, B×C."""
        if self.conv_mask is None:
            return spatial_mean(x, portable_form=False, dims=self.dims)
        logits = conv_fn(self.dims)(x, self.conv_mask.weight, self.conv_mask.bias)  # B×1×H×W
        attn = softmax_fp32(logits.flatten(1), 1).to(x.dtype)  # over the H·W (L, D·H·W) positions
        record(self, "attn", attn.view_as(logits))
        return _weighted_sum(x, attn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_spatial(x, self.channels, self.dims, self.owner)
        c = self.context(x)
        out = x
        if self.mul is not None:
            out = out * as_map(torch.sigmoid(self.mul(c)), self.dims)
        if self.add is not None:
            out = out + as_map(self.add(c), self.dims)
        return out
