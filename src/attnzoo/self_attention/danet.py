"""Dual Attention Network for Scene Segmentation (Fu et al.; CVPR 2019): position (PAM), channel (CAM) and dual attention.

Paper: https://arxiv.org/abs/1809.02983
"""

from __future__ import annotations

import functools

import torch
import torch.fx
import torch.nn as nn

from ..capture import record
from ..functional import (
    cam_attention,
)
from ..layers import (
    AttnModule,
    attention,
    check_channels_rank,
    check_spatial,
    conv_nd,
    heads_to_map,
    hidden_width,
    map_to_heads,
)
from ..registry import register

__all__ = ["DANetPositionAttention", "DANetChannelAttention", "DANetAttention"]


_PAPER = "Dual Attention Network for Scene Segmentation (Fu et al.; CVPR 2019)"
_URL = "https://arxiv.org/abs/1809.02983"
#: What the three DANet modules register alike.
_register = functools.partial(
    register, family="self_attention", paper=_PAPER, url=_URL, identity_at_init=True, dims=(1, 2, 3)
)


class _Branch(AttnModule):
    """A DANet branch: ``x + s·term(x)``, its learnable scale ``s`` (PAM's γ, CAM's β) zero at init."""

    channels: int
    dims: int

    def scale(self) -> torch.Tensor:
        raise NotImplementedError

    def term(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_spatial(x, self.channels, self.dims, self.owner)
        return x + self.scale() * self.term(x)


@_register(
    "danet_position",
    complexity="O(N^2)",
    summary="DANet position attention (PAM): C/8 query/key, softmax over positions, γ residual (γ=0 at init).",
    maps=("attn",),
)
class DANetPositionAttention(_Branch):
    """DANet position attention module, PAM (Fu et al., CVPR 2019); B×C×H×W → B×C×H×W.

    As the official ``PAM_Module``: ``Q, K = Conv1×1(C → C/8)`` and ``V = Conv1×1(C → C)``, all with bias;
    ``S = softmax_j(Q_iᵀ K_j)`` with **no** 1/√d scale; ``E = γ·(V Sᵀ) + x`` with γ = 0 at init.  Works at any
    H×W; ``dims=1`` / ``dims=3`` attend over all positions of a B×C×L signal or a B×C×D×H×W volume (1 / 1×1×1
    convs, an attnzoo extension: the paper is 2-D).  The community ``DANet.py`` instead uses full-width linear q/k/v with a 1/√d scale, an output
    linear layer, dropout and no γ/residual, and its ``DAModule`` is hard-wired to 512 channels at 7×7.

    Args:
        channels: input channels C.
        reduction: query/key width ``max(1, C // reduction)`` (official 8).
        qk_channels: explicit query/key width.
        dims: spatial rank of the input (1, 2 or 3).

    Attention maps: ``"attn"``, B×1×N×N.
    """

    def __init__(self, channels: int, reduction: int = 8, qk_channels: int | None = None, *, dims: int = 2) -> None:
        super().__init__()
        owner = self.owner
        self.channels, self.dims = check_channels_rank(channels, dims, owner)
        qk = hidden_width(channels, reduction, qk_channels, 0, owner, "qk_channels")
        self.qk_channels = qk
        conv = conv_nd(dims)
        self.query = conv(channels, qk, 1)
        self.key = conv(channels, qk, 1)
        self.value = conv(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def term(self, x: torch.Tensor) -> torch.Tensor:
        """The attention output ``V Sᵀ`` (before γ and the residual), shaped as x; ``x`` is not checked."""
        size = [x.shape[2 + i] for i in range(self.dims)]
        q, k, v = self.query(x), self.key(x), self.value(x)
        return heads_to_map(attention(map_to_heads(q), map_to_heads(k), map_to_heads(v), scale=1.0, module=self), *size)

    def scale(self) -> torch.Tensor:
        return self.gamma


@_register(
    "danet_channel",
    complexity="O(N)",
    summary="DANet channel attention (CAM): softmax(rowmax(E) − E) over channels, β residual (β=0 at init).",
    maps=("attn",),
)
class DANetChannelAttention(_Branch):
    """DANet channel attention module, CAM (Fu et al., CVPR 2019); B×C×H×W → B×C×H×W.

    As the official ``CAM_Module``, parameter-free except β: ``X = x`` as B×C×N, ``E = X Xᵀ`` (B×C×C),
    ``A = softmax(rowmax(E) − E)`` over channels, ``out = β·(A X) + x`` with β = 0 at init.  Note
    ``softmax(rowmax(E) − E) = softmax(−E)``: the official code flips the sign of the paper's ``softmax(E)``
    (channels attend to dissimilar channels; the authors kept it, DANet issues #9, #48, #106) — reproduced
    here for parity.  ``dims=1`` / ``dims=3``: N is all positions of a signal or a volume.  The energy and the softmax are computed in float32 (E grows with H·W).  The C×C map is
    small, so it is computed explicitly (and always recorded).  The community ``DANet.py`` CAM is a scaled
    softmax of ``X Xᵀ/√(HW)`` with an ``HW × HW`` output linear layer, which ties it to one input size.

    Args:
        channels: input channels C (checked; CAM has no weights apart from β).
        dims: spatial rank of the input (1, 2 or 3).

    Attention maps: ``"attn"``, B×C×C.
    """

    def __init__(self, channels: int, *, dims: int = 2) -> None:
        super().__init__()
        self.channels, self.dims = check_channels_rank(channels, dims, self.owner)
        self.beta = nn.Parameter(torch.zeros(1))

    def term(self, x: torch.Tensor) -> torch.Tensor:
        """The attention output ``A X`` (before β and the residual), shaped as x; ``x`` is not checked."""
        flat = x.flatten(2)  # B×C×N
        attn = cam_attention(flat)
        record(self, "attn", attn)
        return torch.bmm(attn.to(flat.dtype), flat).view(x.shape)

    def scale(self) -> torch.Tensor:
        return self.beta


@_register(
    "danet",
    complexity="O(N^2)",
    summary="DANet dual attention: x + γ_p·PAM-term + γ_c·CAM-term, parallel on the same input (identity at init).",
)
class DANetAttention(AttnModule):
    """DANet dual attention (Fu et al., CVPR 2019); B×C×H×W → B×C×H×W.

    Position and channel attention in parallel on the same map, summed as one residual:
    ``y = x + γ_p·PAM-term(x) + γ_c·CAM-term(x)`` = ``PAM(x) + CAM(x) − x``, with γ_p = γ_c = 0 at init
    (identity).  ``position`` and ``channel`` are the :class:`DANetPositionAttention` and
    :class:`DANetChannelAttention` modules (their ``gamma`` / ``beta`` are γ_p / γ_c).  The official
    ``DANetHead`` also has 3×3 conv-BN-ReLU reductions around each branch and a classifier: those belong to
    the segmentation head, not to the attention block.  The community ``DAModule`` ignores its arguments
    (always 512 channels, 7×7 input) and drops γ and the residual.

    Args:
        channels: input channels C.
        reduction: PAM query/key width ``max(1, C // reduction)``.
        qk_channels: explicit PAM query/key width.
        dims: spatial rank of the input (1, 2 or 3).
    """

    def __init__(self, channels: int, reduction: int = 8, qk_channels: int | None = None, *, dims: int = 2) -> None:
        super().__init__()
        self.channels, self.dims = check_channels_rank(channels, dims, self.owner)
        try:  # the branches validate the arguments; errors name this class too
            self.position = DANetPositionAttention(channels, reduction, qk_channels, dims=dims)
            self.channel = DANetChannelAttention(channels, dims=dims)
        except (ValueError, TypeError) as e:
            raise type(e)(f"{self.owner}: {e}") from None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_spatial(x, self.channels, self.dims, self.owner)
        return x + self.position.scale() * self.position.term(x) + self.channel.scale() * self.channel.term(x)
