"""FreqFusion written from the paper and attnzoo's reference notes (the official code has no licence: not read):
compressed maps fused at the fine resolution (nearest ×2 of the coarse one, cropped), two content encoders,
kernels normalised by an explicit softmax, times the Hamming window and renormalised (low-pass), and the
reassembly gathered from explicit ``F.unfold`` neighbourhoods of the zero-padded maps."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _conv(c, t):
    return F.conv2d(t, c.weight, c.bias, padding=c.padding)


def _up2(t, h, w):
    return t.repeat_interleave(2, -2).repeat_interleave(2, -1)[..., :h, :w]


def _normalise(logits, g, k, window=None):
    b, _, h, w = logits.shape
    p = torch.softmax(logits.view(b, g, k * k, h, w), 2)
    if window is not None:
        p = p * window.reshape(1, 1, k * k, 1, 1)
        p = p / p.sum(2, keepdim=True)
    return p  # B×G×k²×H×W


def _reassemble(x, p, k, up):
    """Σ_taps p · (k×k zero-padded neighbourhood of x), the neighbourhood of fine pixel (i, j) taken around
    (i // 2, j // 2) of x when ``up``."""
    b, c, _, _ = x.shape
    g, h, w = p.shape[1], p.shape[-2], p.shape[-1]
    cols = F.unfold(x, k, padding=k // 2).view(b, c, k * k, x.shape[-2], x.shape[-1])
    if up:
        cols = _up2(cols, h, w)
    cols = cols.view(b, g, c // g, k * k, h, w)
    return (cols * p[:, :, None]).sum(3).reshape(b, c, h, w)


def hamming2d(k: int) -> torch.Tensor:
    return torch.from_numpy(np.outer(np.hamming(k), np.hamming(k)))


def freqfusion(m, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
    h, w = fine.shape[-2:]
    z = _conv(m.fine_compressor, fine) + _up2(_conv(m.coarse_compressor, coarse), h, w)
    window = hamming2d(m.k_lp).to(fine.dtype) if m.hamming else None
    p_lp = _normalise(_conv(m.lowpass_encoder, z), m.groups, m.k_lp, window)
    p_hp = _normalise(_conv(m.highpass_encoder, z), m.groups, m.k_hp)
    fine2 = fine + (fine - _reassemble(fine, p_hp, m.k_hp, False))
    return fine2 + _reassemble(coarse, p_lp, m.k_lp, True)
