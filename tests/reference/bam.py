"""BAM (Park et al., BMVC 2018), written from the paper's Eq. 1-4 and the official ``BAM`` / ``ChannelGate`` /
``SpatialGate`` (Jongchan/attention-module, MODELS/bam.py): each branch expanded to the full B×C×H×W map as the
official ``expand_as`` does, then ``x * (1 + σ(Mc + Ms))`` (paper) or ``σ(Mc * Ms)`` (official code)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _bn(t, bn):  # eval-mode (running statistics) BatchNorm, written out
    shape = (1, -1) + (1,) * (t.dim() - 2)
    return (t - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps) * bn.weight.view(shape) \
        + bn.bias.view(shape)


def bam(module, x: torch.Tensor, fusion: str = "add") -> torch.Tensor:
    """Eval-mode BAM."""
    _b, _c, h, w = x.shape
    pooled = x.sum((2, 3)) / (h * w)  # global average pool
    hid = F.relu(_bn(pooled @ module.channel_fc1.weight.T, module.channel_bn))
    mc = (hid @ module.channel_fc2.weight.T + module.channel_fc2.bias)[:, :, None, None].expand_as(x)
    d = module.dilation
    s = F.relu(_bn(F.conv2d(x, module.spatial_reduce.weight), module.spatial_bn0))
    s = F.relu(_bn(F.conv2d(s, module.spatial_conv1.weight, None, padding=d, dilation=d), module.spatial_bn1))
    s = F.relu(_bn(F.conv2d(s, module.spatial_conv2.weight, None, padding=d, dilation=d), module.spatial_bn2))
    ms = F.conv2d(s, module.spatial_out.weight, module.spatial_out.bias).expand_as(x)
    att = 1 + torch.sigmoid(mc + ms if fusion == "add" else mc * ms)
    return att * x
