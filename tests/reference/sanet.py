"""SA-Net shuffle attention (Zhang & Yang, ICASSP 2021), written from the paper's Eq. 1-6 and the official
``sa_layer`` (wofmanaf/SA-Net, models/sa_resnet.py): one group and one channel at a time, then the channel
shuffle as an explicit index map."""

from __future__ import annotations

import torch


def shuffle_attention(module, x: torch.Tensor) -> torch.Tensor:
    _b, c, _h, _w = x.shape
    g = module.groups
    cpg = c // g
    half = cpg // 2
    gated = torch.empty_like(x)
    for k in range(g):
        for j in range(cpg):
            ch = k * cpg + j
            v = x[:, ch]  # (B, H, W)
            if j < half:  # channel attention: s = GAP(x); x * σ(W1 s + b1)
                s = v.mean((1, 2), keepdim=True)
                gated[:, ch] = v * torch.sigmoid(module.cweight[0, j, 0, 0] * s + module.cbias[0, j, 0, 0])
            else:  # spatial attention: x * σ(W2 GN(x) + b2), GN over this single channel
                i = j - half
                mu = v.mean((1, 2), keepdim=True)
                var = ((v - mu) ** 2).mean((1, 2), keepdim=True)
                gn = (v - mu) / torch.sqrt(var + module.gn.eps) * module.gn.weight[i] + module.gn.bias[i]
                gated[:, ch] = v * torch.sigmoid(module.sweight[0, i, 0, 0] * gn + module.sbias[0, i, 0, 0])
    out = torch.empty_like(x)
    for m in range(c // 2):  # channel shuffle with 2 groups: (2, C/2) -> (C/2, 2)
        for s in range(2):
            out[:, 2 * m + s] = gated[:, s * (c // 2) + m]
    return out
