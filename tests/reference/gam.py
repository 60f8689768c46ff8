"""Reference for the Global Attention Mechanism (GAM, arXiv 2112.05561), from the paper's figure and text.

Channel submodule: permute x to B×H×W×C, a two-layer MLP (C → C/r, ReLU, C/r → C) on every position's channel
vector, permute back, sigmoid; F2 = x · M_c.  Spatial submodule: 7×7 conv (C → C/r), BN, ReLU, 7×7 conv (C/r →
C), BN, sigmoid; y = F2 · M_s.  Community variants: "grouped" — both convs with r groups and a channel shuffle
(r groups) of the sigmoid map; "yoloair" — the same without the channel sigmoid.  BN in eval (running
statistics).  Convs as explicit tap loops; the shuffle as an explicit index map.
"""

from __future__ import annotations

import torch
from torch import nn

from .caa import bn_eval
from .van import conv_ref


def shuffle_loop(t: torch.Tensor, groups: int) -> torch.Tensor:
    """out channel i·groups + g = in channel g·(C/groups) + i."""
    c = t.shape[1]
    n = c // groups
    out = torch.empty_like(t)
    for g in range(groups):
        for i in range(n):
            out[:, i * groups + g] = t[:, g * n + i]
    return out


@torch.no_grad()
def gam(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    xp = x.permute(0, 2, 3, 1)  # B×H×W×C
    h = torch.relu(xp @ module.fc1.weight.T + module.fc1.bias)
    mc = (h @ module.fc2.weight.T + module.fc2.bias).permute(0, 3, 1, 2)
    if module.variant != "yoloair":
        mc = torch.sigmoid(mc)
    f2 = x * mc
    s = torch.relu(bn_eval(module.bn1, conv_ref(module.conv1, f2)))
    ms = torch.sigmoid(bn_eval(module.bn2, conv_ref(module.conv2, s)))
    if module.variant != "paper":
        ms = shuffle_loop(ms, module.groups)
    return f2 * ms
