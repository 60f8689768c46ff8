"""Gated Channel Transformation (Yang et al., CVPR 2020), written from the paper (Eq. 1-4) and the official ``GCT``:

    s_c = α_c (Σ_ij x_cij² + ε)^½                      (ℓ2;  ℓ1: α_c Σ_ij |x_cij|)
    ŝ_c = √C s_c / (Σ_c s_c² + ε)^½ ≈ s_c / (mean_c s_c² + ε)^½     (the official form; ℓ1: s_c / (mean_c |s_c| + ε))
    y   = x (1 + tanh(γ_c ŝ_c + β_c))

Per-sample, per-channel loops; reads alpha, gamma, beta and eps from the module.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def gct(module, x: torch.Tensor) -> torch.Tensor:
    b, c = x.shape[:2]
    eps = module.eps
    a, g, be = (p.flatten() for p in (module.alpha, module.gamma, module.beta))
    out = torch.empty_like(x)
    for i in range(b):
        if module.mode == "l2":
            s = torch.stack([a[k] * torch.sqrt((x[i, k] ** 2).sum() + eps) for k in range(c)])
            denom = torch.sqrt((s ** 2).sum() / c + eps)
        else:
            s = torch.stack([a[k] * x[i, k].abs().sum() for k in range(c)])
            denom = s.abs().sum() / c + eps
        for k in range(c):
            out[i, k] = x[i, k] * (1 + torch.tanh(g[k] * s[k] / denom + be[k]))
    return out
