"""Triplet attention as the official code (permute, Z-pool, conv, BN, sigmoid)."""

from __future__ import annotations

import torch
import torch.nn as nn


class OfficialTriplet(nn.Module):
    """Slow reference written from landskape-ai/triplet-attention: permute, Z-pool [max, mean], conv+BN, σ, permute back."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    @staticmethod
    def gate(g, x):
        pooled = torch.cat([x.max(1, keepdim=True)[0], x.mean(1, keepdim=True)], 1)
        return x * g(pooled)

    def forward(self, x):
        out_cw = self.gate(self.m.cw, x.permute(0, 2, 1, 3).contiguous()).permute(0, 2, 1, 3)
        out_hc = self.gate(self.m.hc, x.permute(0, 3, 2, 1).contiguous()).permute(0, 3, 2, 1)
        if self.m.hw is None:
            return 0.5 * (out_cw + out_hc)
        return (self.gate(self.m.hw, x) + out_cw + out_hc) / 3

