"""FcaNet multi-spectral channel attention (Qin et al., ICCV 2021), written from the paper (Eq. 6-10) and the
official ``MultiSpectralAttentionLayer``.

The 2-D DCT-II basis function of frequency (u, v) on an H×W grid (paper Eq. 6, with the orthonormal scaling the
official ``build_filter`` uses):

    B[u, v, i, j] = c_u c_v cos(π u (i + ½) / H) cos(π v (j + ½) / W),   c_0 = √(1/N), c_k = √(2/N)

Channel group k of C/K channels is pooled with the basis of its frequency: Freq_c = Σ_ij x_cij B[u_k, v_k, i, j].
Inputs of another size are first adaptive-average-pooled to dct_size² (the official code).  Then
σ(W2 ReLU(W1 Freq)) gates x.  The frequency tables are the paper's 7×7 ablation orders (Fig. 4).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# (u, v) pairs of the 7×7 grid in the paper's orders; "top": the 32 best single frequencies of the ablation,
# "low": the zig-zag from the lowest frequency, "bot": the worst single frequencies first.
TOP = list(zip([0, 0, 6, 0, 0, 1, 1, 4, 5, 1, 3, 0, 0, 0, 3, 2, 4, 6, 3, 5, 5, 2, 6, 5, 5, 3, 3, 4, 2, 2, 6, 1],
               [0, 1, 0, 5, 2, 0, 2, 0, 0, 6, 0, 4, 6, 3, 5, 2, 6, 3, 3, 3, 5, 1, 1, 2, 4, 2, 1, 1, 3, 0, 5, 3]))
LOW = list(zip([0, 0, 1, 1, 0, 2, 2, 1, 2, 0, 3, 4, 0, 1, 3, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 6, 1, 2, 3, 4],
               [0, 1, 0, 1, 2, 0, 1, 2, 2, 3, 0, 0, 4, 3, 1, 5, 4, 3, 2, 1, 0, 6, 5, 4, 3, 2, 1, 0, 6, 5, 4, 3]))
BOT = list(zip([6, 1, 3, 3, 2, 4, 1, 2, 4, 4, 5, 1, 4, 6, 2, 5, 6, 1, 6, 2, 2, 4, 3, 3, 5, 5, 6, 2, 5, 5, 3, 6],
               [6, 4, 4, 6, 6, 3, 1, 4, 4, 5, 6, 5, 2, 2, 5, 1, 4, 3, 5, 0, 3, 1, 1, 2, 4, 2, 1, 1, 5, 3, 3, 3]))


def frequencies(freq_sel: str, dct_size: int) -> list[tuple[int, int]]:
    table = {"top": TOP, "low": LOW, "bot": BOT}[freq_sel[:3]]
    s = dct_size // 7  # (2, 2) on a 14×14 grid is (1, 1) on the 7×7 grid
    return [(u * s, v * s) for u, v in table[: int(freq_sel[3:])]]


def basis_1d(pos: int, freq: int, n: int) -> float:
    v = math.cos(math.pi * freq * (pos + 0.5) / n) / math.sqrt(n)
    return v if freq == 0 else v * math.sqrt(2)


def dct_filters(channels: int, freq_sel: str, dct_size: int) -> torch.Tensor:
    """C×d×d: channel group k gets the basis of frequency k (loops, float64)."""
    freqs = frequencies(freq_sel, dct_size)
    part = channels // len(freqs)
    out = torch.zeros(channels, dct_size, dct_size, dtype=torch.float64)
    for k, (u, v) in enumerate(freqs):
        for i in range(dct_size):
            for j in range(dct_size):
                out[k * part:(k + 1) * part, i, j] = basis_1d(i, u, dct_size) * basis_1d(j, v, dct_size)
    return out


@torch.no_grad()
def fca(module, x: torch.Tensor) -> torch.Tensor:
    d = module.dct_size
    pooled = x if x.shape[-2:] == (d, d) else F.adaptive_avg_pool2d(x, (d, d))
    filt = dct_filters(module.channels, module.freq_sel, d).to(x.dtype)
    freq = (pooled * filt).sum((2, 3))
    s = torch.sigmoid(module.fc2(torch.relu(module.fc1(freq))))
    return x * s[:, :, None, None]
