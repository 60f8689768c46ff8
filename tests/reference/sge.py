"""Spatial Group-wise Enhance (Li, Hu, Yang 2019), written from the paper's Eq. 1-5 and the official
``SpatialGroupEnhance`` (implus/PytorchInsight, classification/models/imagenet/resnet_sge.py): one sample and
one group at a time, the similarity c_i = g · x_i as an explicit sum over the group's channels."""

from __future__ import annotations

import torch


def sge(module, x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    g = module.groups
    cpg = c // g
    out = torch.empty_like(x)
    for i in range(b):
        for k in range(g):
            xs = x[i, k * cpg:(k + 1) * cpg].reshape(cpg, h * w)  # the group's features x_1..x_m (columns)
            gvec = xs.mean(1)  # g = F_gp(X)
            ci = (gvec[:, None] * xs).sum(0)  # c_i = g · x_i
            mu = ci.mean()
            n = h * w
            # unbiased std (torch.std in the official code); a single position has no spread: std 0.
            std = torch.sqrt(((ci - mu) ** 2).sum() / (n - 1)) if n > 1 else torch.zeros((), dtype=x.dtype)
            chat = (ci - mu) / (std + 1e-5)
            a = chat * module.weight[0, k, 0, 0] + module.bias[0, k, 0, 0]
            out[i, k * cpg:(k + 1) * cpg] = (xs * torch.sigmoid(a)[None, :]).reshape(cpg, h, w)
    return out
