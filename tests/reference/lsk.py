"""Reference for the LSK selection block (LSKNet, ICCV 2023, arXiv 2303.09030), written from the paper's
equations only (the official code is CC BY-NC 4.0 and was not read).

U1 = DW5×5(X); U2 = DW7×7,dilation 3(U1); Ũi = Conv1×1(Ui) (C → C/2 each); Ũ = [Ũ1; Ũ2] (concatenated);
SA_avg = mean over the channels of Ũ, SA_max = max over the channels of Ũ; SA = σ(Conv7×7([SA_avg; SA_max]))
(2 → 2 maps); S = Conv1×1(SA_1 · Ũ1 + SA_2 · Ũ2) (C/2 → C); Y = X · S.  Convs as explicit tap loops.
"""

from __future__ import annotations

import torch
from torch import nn

from .van import conv_ref


@torch.no_grad()
def lsk(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Y, SA)."""
    u1 = conv_ref(module.conv0, x)
    u2 = conv_ref(module.conv_spatial, u1)
    t1 = conv_ref(module.reduce1, u1)
    t2 = conv_ref(module.reduce2, u2)
    u = torch.cat([t1, t2], dim=1)
    pooled = torch.stack([u.mean(dim=1), u.max(dim=1).values], dim=1)
    sa = torch.sigmoid(conv_ref(module.select, pooled))
    s = conv_ref(module.proj, t1 * sa[:, 0:1] + t2 * sa[:, 1:2])
    return x * s, sa
