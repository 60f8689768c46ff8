"""EPSANet's PSA module written out from the paper (arXiv 2105.14447, eqs. 1–8) and the official code's choices
(murufeng/EPSANet ``PSAModule``: one SE module for all branches, the branches concatenated last first)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def se_weight(se, f):
    """SEWeight(F) = σ(fc₂ ReLU(fc₁ AvgPool(F))) with 1×1 convs: B×c×1×1."""
    z = F.adaptive_avg_pool2d(f, 1)
    z = F.relu(F.conv2d(z, se.fc1.weight, se.fc1.bias))
    return torch.sigmoid(F.conv2d(z, se.fc2.weight, se.fc2.bias))


def epsa_reference(m, x):
    """The module's weights, evaluated branch by branch; softmax across branches as an explicit exp / sum."""
    feats = [F.conv2d(x, conv.weight, padding=conv.kernel_size[0] // 2, groups=conv.groups) for conv in m.convs]
    ses = [m.se] * len(feats) if m.shared_se else list(m.se)
    z = [se_weight(se, f) for se, f in zip(ses, feats)]
    e = [torch.exp(zi) for zi in z]
    total = sum(e)
    out = [f * (ei / total) for f, ei in zip(feats, e)]  # Y_i = F_i ⊙ att_i
    if m.order == "official":
        out = out[::-1]
    return torch.cat(out, dim=1)
