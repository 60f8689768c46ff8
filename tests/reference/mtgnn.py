"""MTGNN's dilated inception: per-branch valid convolutions and the official module."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ref_branch(x, weight, bias, d):
    """Valid dilated 1×k convolution by explicit taps: y[t] = b + Σ_j W[:, :, 0, j] · x[t + j·d]."""
    k = weight.shape[-1]
    length = x.shape[-1] - (k - 1) * d
    y = bias[None, :, None, None].expand(x.shape[0], -1, x.shape[2], length).clone()
    for j in range(k):
        y += torch.einsum("oc,bcnt->bont", weight[:, :, 0, j], x[..., j * d : j * d + length])
    return y


def ref_inception(m, x, causal=False):
    """Official dilated_inception: every branch valid, cut to the last T − 6d steps, concatenated (kernel order)."""
    d = m.dilation
    if causal:
        x = F.pad(x, (6 * d, 0))
    outs = [ref_branch(x, conv.weight, conv.bias, d) for conv in m.tconv]
    keep = outs[-1].shape[-1]
    assert keep == x.shape[-1] - 6 * d
    return torch.cat([o[..., -keep:] for o in outs], dim=1)


def official_inception(m, x):
    """The same with the module's own per-branch Conv2d layers, as the official forward."""
    outs = [conv(x) for conv in m.tconv]
    return torch.cat([o[..., -outs[-1].size(3) :] for o in outs], dim=1)

