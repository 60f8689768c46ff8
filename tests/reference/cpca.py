"""CPCA as the official CPCANet ``RepBlock`` computes it (Apache-2.0; re-typed): F.adaptive pools, the shared
MLP applied to each pooled vector, the seven depthwise convs by ``F.conv2d`` with the module's weights, the one
1×1 conv used three times."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _c(conv, t):
    return F.conv2d(t, conv.weight, conv.bias, padding=conv.padding, groups=conv.groups)


def cpca(m, x: torch.Tensor) -> torch.Tensor:
    u = F.gelu(_c(m.conv, x))

    def mlp(v):
        return torch.sigmoid(_c(m.ca.fc2, F.relu(_c(m.ca.fc1, v))))

    u = (mlp(F.adaptive_avg_pool2d(u, 1)) + mlp(F.adaptive_max_pool2d(u, 1))) * u
    z = _c(m.dconv5_5, u)
    x1 = _c(m.dconv7_1, _c(m.dconv1_7, z))
    x2 = _c(m.dconv11_1, _c(m.dconv1_11, z))
    x3 = _c(m.dconv21_1, _c(m.dconv1_21, z))
    return _c(m.conv, _c(m.conv, x1 + x2 + x3 + z) * u)
