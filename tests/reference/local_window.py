"""Local window attention with ``F.unfold`` and with explicit loops over windows."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference.common import window_starts


def ref_block(tokens: torch.Tensor, body: nn.Module) -> torch.Tensor:
    """AttentionBlock after LocalAttention2D's norm: LN → LN → qkv → softmax(q kᵀ / √d) v → to_out.  n×L×C → n×L×C."""
    c = tokens.shape[-1]
    t = F.layer_norm(tokens, (c,), body.norm.weight, body.norm.bias, body.norm.eps)
    t = F.layer_norm(t, (c,), body.attn_norm.weight, body.attn_norm.bias, body.attn_norm.eps)
    q, k, v = F.linear(t, body.to_qkv.weight).chunk(3, dim=-1)
    heads = body.heads

    def split(z):  # "b n (h d) -> b h n d"
        return z.reshape(z.shape[0], z.shape[1], heads, -1).transpose(1, 2)

    q, k, v = split(q), split(k), split(v)
    attn = (q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5).softmax(dim=-1)
    out = (attn @ v).transpose(1, 2).reshape(tokens.shape[0], tokens.shape[1], -1)
    if isinstance(body.to_out, nn.Linear):
        out = F.linear(out, body.to_out.weight, body.to_out.bias)
    return out


def ref_unfold_window(x: torch.Tensor, body: nn.Module, k: int, s: int) -> torch.Tensor:
    """The seed's LocalAttention2D: nn.Unfold windows → attention → nn.Fold, divided by the overlap count (B×C×H×W)."""
    b, c, h, w = x.shape
    patches = F.unfold(x, k, stride=s)  # B×(C·k·k)×L
    n = patches.shape[-1]
    tokens = patches.view(b, c, k * k, n).permute(0, 3, 2, 1).reshape(b * n, k * k, c)  # (B L)(K1 K2) C
    out = ref_block(tokens, body).view(b, n, k * k, c).permute(0, 3, 2, 1).reshape(b, c * k * k, n)
    summed = F.fold(out, (h, w), k, stride=s)
    count = F.fold(F.unfold(torch.ones(1, 1, h, w, dtype=x.dtype), k, stride=s), (h, w), k, stride=s)
    return summed / count


def ref_loop_window(x: torch.Tensor, body: nn.Module, k: int, s: int) -> torch.Tensor:
    """Window attention by an explicit loop: border windows are *cropped* (only real pixels), outputs averaged."""
    b, c, h, w = x.shape
    total = torch.zeros_like(x)
    count = torch.zeros(1, 1, h, w, dtype=x.dtype)
    for y0 in window_starts(h, k, s):
        for x0 in window_starts(w, k, s):
            crop = x[:, :, y0 : y0 + k, x0 : x0 + k]
            wh, ww = crop.shape[-2:]
            out = ref_block(crop.flatten(2).transpose(1, 2), body).transpose(1, 2).reshape(b, c, wh, ww)
            total[:, :, y0 : y0 + wh, x0 : x0 + ww] += out
            count[:, :, y0 : y0 + wh, x0 : x0 + ww] += 1
    assert (count > 0).all()
    return total / count

