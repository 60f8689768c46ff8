"""Local aggregation kernels: position-specific k×k aggregation (CoTNet) and DANet's channel affinity."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..tracing import fx_leaf

__all__ = ["local_aggregation", "cam_attention"]


def local_aggregation(v: torch.Tensor, w: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Position-specific k×k aggregation with kernels shared over channel groups (CoTNet ``LocalConvolution``).

    ``out[b, c, h, w] = Σ_{i,j} w[b, c mod G, i·k + j, h, w] · v[b, c, h + i − k//2, w + j − k//2]`` with zero
    padding, stride 1, dilation 1; v: B×C×H×W, w: B×G×k²×H×W with G dividing C (channels c, c + G, c + 2G, …
    share one kernel, the official interleaved sharing).  Returns B×C×H×W.
    """
    b, c, h, wd = v.shape
    g = w.shape[1]
    p = kernel_size // 2
    vp = F.pad(v.reshape(b, c // g, g, h, wd), (p, p, p, p))  # B×(C/G)×G×(H+2p)×(W+2p)
    w = w.unsqueeze(1)  # B×1×G×k²×H×W, broadcast over the C/G sharing copies
    out = vp[..., 0:h, 0:wd] * w[:, :, :, 0]
    for idx in range(1, kernel_size * kernel_size):
        i, j = divmod(idx, kernel_size)
        out = out + vp[..., i : i + h, j : j + wd] * w[:, :, :, idx]
    return out.reshape(b, c, h, wd)


@fx_leaf
def cam_attention(flat: torch.Tensor) -> torch.Tensor:
    """CAM's ``softmax(rowmax(E) − E)`` with ``E = X Xᵀ`` for X: B×C×N, in float32 or better.

    E grows with N (hundreds to thousands), so its rounding in bfloat16 would reorder the softmax: under
    autocast the energy and the softmax still run in float32 (float64 inputs stay float64).
    """
    with torch.autocast(device_type=flat.device.type, enabled=False):
        xf = flat if flat.dtype == torch.float64 else flat.float()
        energy = torch.bmm(xf, xf.transpose(1, 2))  # B×C×C
        return (energy.amax(-1, keepdim=True) - energy).softmax(-1)
