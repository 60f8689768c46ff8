"""Concurrent Spatial and Channel Squeeze & Excitation in Fully Convolutional Networks (Roy, Navab, Wachinger;
MICCAI 2018).  Paper: https://arxiv.org/abs/1803.02579"""

from __future__ import annotations

from typing import cast

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
    get_act,
    hidden_width,
    inplace_ok,
)
from ..registry import register

__all__ = ["SCSE"]


@register(
    "scse",
    family="spatial",
    paper="Concurrent Spatial and Channel Squeeze & Excitation in Fully Convolutional Networks (Roy et al.; MICCAI 2018)",
    url="https://arxiv.org/abs/1803.02579",
    complexity="O(N)",
    summary="Channel SE gate and a 1×1-conv spatial gate applied concurrently, combined by sum (or max).",
    maps=("channel_gate", "spatial_gate"),
    test_kwargs={"reduction": 4},
    dims=(1, 2, 3),
)
class SCSE(AttnModule):
    """scSE; B×C×H×W → B×C×H×W (B×C×L or B×C×D×H×W with ``dims=1`` or ``3``, as the authors' 3-D code and
    fvcore's ``ChannelSpatialSqueezeExcitation(is_3d=True)``: cSE pools every spatial axis, sSE is a 1×…×1 conv).

    cSE ``c = σ(W2 ReLU(W1 GAP(x)))`` (B×C×1×1, 1×1 convs with bias), sSE ``s = σ(conv1×1(x))`` (B×1×H×W, with
    bias).  ``mode="add"``: ``y = x·c + x·s`` (the paper's and smp's scSE); ``"max"``: ``y = max(x·c, x·s)``
    (the official repo's max-out variant, elementwise on the products).  Layer names follow
    segmentation_models_pytorch's ``SCSEModule`` (``cSE.1``/``cSE.3``/``sSE.0``).

    Args:
        channels: C.  reduction / hidden_channels / min_hidden: cSE width (hidden = C // r).  mode: ``"add"``
        or ``"max"``.  act: cSE hidden activation.  dims: spatial rank of the maps (1, 2 or 3).

    Captured maps: ``"channel_gate"`` B×C×1×1, ``"spatial_gate"`` B×1×H×W (of rank ``dims`` + 2).
    See docs/provenance/scse.md.
    """

    def __init__(
        self,
        channels: int,
        reduction: float = 16,
        hidden_channels: int | None = None,
        min_hidden: int = 1,
        mode: str = "add",
        act: ActLayer = "relu",
        *,
        dims: int = 2,
    ) -> None:
        super().__init__()
        hidden = hidden_width(channels, reduction, hidden_channels, min_hidden, self.owner)
        check_choice(mode, ("add", "max"), self.owner, "mode")
        self.channels, self.reduction, self.mode = channels, reduction, mode
        self.dims = check_rank_arg(dims, self.owner)
        conv = conv_nd(dims)
        self.cSE = nn.Sequential()
        self.cSE.add_module("1", conv(channels, hidden, 1))
        self.cSE.add_module("2", get_act(act, self.owner))
        self.cSE.add_module("3", conv(hidden, channels, 1))
        self.sSE = nn.Sequential()
        self.sSE.add_module("0", conv(channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_spatial(x, self.channels, self.dims, self.owner)
        fc1, act, fc2 = cast(nn.Conv2d, self.cSE[0]), self.cSE[1], cast(nn.Conv2d, self.cSE[2])
        h = act(F.linear(spatial_mean(x, portable_form=False, dims=self.dims), fc1.weight.flatten(1), fc1.bias))
        c = as_map(torch.sigmoid(F.linear(h, fc2.weight.flatten(1), fc2.bias)), self.dims)
        conv = cast(nn.Conv2d, self.sSE[0])
        s = torch.sigmoid(conv_fn(self.dims)(x, conv.weight, conv.bias))
        record(self, "channel_gate", c)
        record(self, "spatial_gate", s)
        if self.mode == "max":
            return torch.maximum(x * c, x * s)
        # x·c + x·s as x·(c + s): one product, and its backward forms grad·x once (2× faster fwd+bwd than two
        # products); without autograd the sum buffer is reused for the output
        g = c + s
        if inplace_ok():
            return g.mul_(x)
        return x * g
