"""Attention U-Net's gate as the official ``_GridAttentionBlockND._concatenation`` computes it (MIT; re-typed):
θ a 2×2 stride-2 conv of x (zero-padded to even first: attnzoo's documented rule at odd sizes), φ(g) bilinearly
resized to θ(x)'s size, ReLU, ψ, sigmoid, bilinear back to x's size, x·α, then the output transform W."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .common import bn_eval


def attention_gate(m, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    xp = F.pad(x, (0, w % 2, 0, h % 2))
    theta_x = F.conv2d(xp, m.theta.weight, None, stride=2)
    phi_g = F.interpolate(F.conv2d(g, m.phi.weight, m.phi.bias), size=theta_x.shape[2:], mode="bilinear", align_corners=False)
    f = F.relu(theta_x + phi_g)
    sigm_psi_f = torch.sigmoid(F.conv2d(f, m.psi.weight, m.psi.bias))
    sigm_psi_f = F.interpolate(sigm_psi_f, size=(h, w), mode="bilinear", align_corners=False)
    y = sigm_psi_f.expand_as(x) * x
    if m.W is None:
        return y
    return bn_eval(m.W[1], F.conv2d(y, m.W[0].weight, m.W[0].bias))
