"""Global Attention Mechanism: Retain Information to Enhance Channel-Spatial Interactions (Liu, Shao, Hoffmann;
arXiv 2021).

Paper: https://arxiv.org/abs/2112.05561 (no official code)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..capture import record
from ..layers import (
    AttnModule,
    check_arg,
    check_bn_values,
    check_choice,
    check_nchw,
    hidden_width,
    inplace_ok,
)
from ..registry import register

__all__ = ["GlobalAttentionMechanism"]

_VARIANTS = ("paper", "grouped", "yoloair")


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle: channel g·(C/groups) + i moves to i·groups + g."""
    return x.unflatten(1, (groups, x.shape[1] // groups)).transpose(1, 2).flatten(1, 2)


@register(
    "gam",
    family="spatial",
    paper="Global Attention Mechanism: Retain Information to Enhance Channel-Spatial Interactions (Liu et al.; arXiv 2021)",
    url="https://arxiv.org/abs/2112.05561",
    complexity="O(N)",
    summary="Per-pixel channel MLP gate (no pooling), then a 7×7 conv–BN–ReLU–7×7 conv–BN spatial gate.",
    maps=("channel", "spatial"),
)
class GlobalAttentionMechanism(AttnModule):
    """Global Attention Mechanism (GAM); B×C×H×W → B×C×H×W.

    Channel gate without pooling: the permuted B×H×W×C map goes through an MLP C → C/r → C (biases, ReLU) at
    every position, ``M_c = σ(MLP)``, ``x' = x ⊙ M_c``.  Spatial gate:
    ``M_s = σ(BN(Conv7×7(ReLU(BN(Conv7×7(x'))))))`` with C → C/r → C channels, ``y = x' ⊙ M_s``.  r = 4.

    ``variant="paper"`` (default) is the above.  ``"grouped"``: both 7×7 convs grouped (groups = r) and a
    channel shuffle (r groups) of the spatial gate, the paper's optional parameter-saving form (and
    YOLOAir's ``GAMAttention(group=True)``).  ``"yoloair"``: ``"grouped"`` without the channel sigmoid
    (``x' = x ⊙ MLP(x)``), as YOLOAir's copy — the other "GAM" in circulation.  In train mode the spatial
    BatchNorms need more than one value per channel: B·H·W = 1 raises ``ValueError``.

    Args:
        channels: input channels C.
        reduction: r (hidden = C // r, floored at ``min_hidden``); an integer for the grouped variants.
        hidden_channels: explicit hidden width.
        min_hidden: floor of the hidden width.
        variant: ``"paper"``, ``"grouped"`` or ``"yoloair"``.

    Captured maps: ``"channel"`` and ``"spatial"``, both B×C×H×W.  See docs/provenance/gam.md.
    """

    def __init__(
        self,
        channels: int,
        reduction: float = 4,
        hidden_channels: int | None = None,
        min_hidden: int = 1,
        variant: str = "paper",
    ) -> None:
        super().__init__()
        hidden = hidden_width(channels, reduction, hidden_channels, min_hidden, self.owner)
        self.variant = check_choice(variant, _VARIANTS, self.owner, "variant")
        self.channels, self.reduction = channels, reduction
        groups = 1
        if variant != "paper":
            check_arg(
                isinstance(reduction, int) and not isinstance(reduction, bool),
                self.owner,
                "reduction",
                f"an integer for variant {variant!r} (it is also the number of conv groups)",
                reduction,
            )
            groups = int(reduction)
            for what, n in (("channels", channels), ("hidden width", hidden)):
                check_arg(
                    n % groups == 0,
                    self.owner,
                    what,
                    f"a multiple of the conv groups = reduction = {groups} for variant {variant!r}",
                    n,
                )
        self.groups = groups
        self.channel_sigmoid = variant != "yoloair"
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)
        self.conv1 = nn.Conv2d(channels, hidden, 7, padding=3, groups=groups)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, channels, 7, padding=3, groups=groups)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_bn_values(check_nchw(x, self.channels, self.owner), self.training, self.owner)
        # The per-position MLP as two 1×1 convs (the same matrices as the Linear layers, no permuted copies).
        # Intermediates are dropped as soon as they are used (a full-size map each) and, without autograd,
        # activations run in place on this module's own buffers.
        inplace = inplace_ok()
        mc = F.conv2d(
            F.relu(F.conv2d(x, self.fc1.weight[:, :, None, None], self.fc1.bias), inplace=True),
            self.fc2.weight[:, :, None, None],
            self.fc2.bias,
        )
        if self.channel_sigmoid:
            mc = mc.sigmoid_() if inplace else torch.sigmoid(mc)
        record(self, "channel", mc)
        x = x * mc
        del mc
        ms = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)), inplace=True)))
        ms = ms.sigmoid_() if inplace else torch.sigmoid(ms)
        if self.groups > 1:
            ms = channel_shuffle(ms, self.groups)
        record(self, "spatial", ms)
        return x.mul_(ms) if inplace else x * ms
