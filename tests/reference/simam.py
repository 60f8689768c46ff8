"""SimAM (Yang et al., ICML 2021), written from the paper's energy function (Eq. 3-5): for each neuron t of a
channel with M = H·W neurons, μ̂ and σ̂² over the other neurons' spread (σ̂² = Σ(x_i − μ̂)² / (M − 1)),
the minimal energy e_t* = 4(σ̂² + λ) / ((t − μ̂)² + 2σ̂² + 2λ), and the refined feature X̃ = sigmoid(1/E) ⊙ X.
A 1×1 channel has no spread: the divisor M − 1 is kept at 1 (σ̂² = 0, e* = 2, output x·σ(0.5))."""

from __future__ import annotations

import torch


def simam(module, x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    lam = module.lambda_
    out = torch.empty_like(x)
    m = h * w
    for i in range(b):
        for k in range(c):
            v = x[i, k].reshape(-1)
            mu = v.sum() / m
            var = ((v - mu) ** 2).sum() / max(m - 1, 1)
            energy = 4 * (var + lam) / ((v - mu) ** 2 + 2 * var + 2 * lam)
            out[i, k] = (v * torch.sigmoid(1 / energy)).reshape(h, w)
    return out
