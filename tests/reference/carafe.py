"""CARAFE written from the paper (Sec. 3, eqs. 1-4: kernel prediction ψ, content-aware reassembly φ) and
mmcv's ``CARAFEPack`` / ``carafe`` CUDA kernel semantics: kernels pixel-shuffled to the output resolution and
softmax-normalised over k_up², then every output pixel l' = (i', j') gathers the k_up×k_up neighbourhood of
l = (⌊i'/s⌋, ⌊j'/s⌋) from an explicit ``F.unfold`` of the zero-padded input."""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def carafe_reference(module, x):
    B, C, H, W = x.shape
    s, k, G = module.scale, module.k_up, module.groups
    enc = module.content_encoder
    m = F.conv2d(F.conv2d(x, module.channel_compressor.weight, module.channel_compressor.bias), enc.weight, enc.bias,
                 padding=(module.k_enc - 1) // 2)
    m = F.pixel_shuffle(m, s)  # B×(G·k²)×sH×sW
    m = torch.softmax(m.view(B, G, k * k, s * H, s * W), 2)
    cols = F.unfold(x, k, padding=k // 2).view(B, C, k * k, H, W)  # neighbourhoods at the input resolution
    out = torch.zeros(B, C, s * H, s * W, dtype=x.dtype)
    cg = C // G
    for i2 in range(s * H):
        for j2 in range(s * W):
            nb = cols[:, :, :, i2 // s, j2 // s]  # B×C×k²
            for g in range(G):
                w = m[:, g, :, i2, j2]  # B×k²
                out[:, g * cg : (g + 1) * cg, i2, j2] = (nb[:, g * cg : (g + 1) * cg] * w[:, None]).sum(-1)
    return out
