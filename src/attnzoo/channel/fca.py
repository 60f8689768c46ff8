"""FcaNet: Frequency Channel Attention Networks (Qin, Zhang, Wu, Li; ICCV 2021).  Paper: https://arxiv.org/abs/2012.11879"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .. import tracing
from ..functional.gating import BATCH_AXIS
from ..layers import TABLE_BOUND, Gate, SizeBound, check_arg, check_choice, fx_leaf, hidden_width
from ..registry import register

__all__ = ["MultiSpectralAttention", "dct_basis", "fca_frequencies"]

# The frequency orders of the paper's 7×7 ablation (Fig. 4; the official ``get_freq_indices``): (u, v) pairs.
_ORDERS = {
    "top": (
        [0, 0, 6, 0, 0, 1, 1, 4, 5, 1, 3, 0, 0, 0, 3, 2, 4, 6, 3, 5, 5, 2, 6, 5, 5, 3, 3, 4, 2, 2, 6, 1],
        [0, 1, 0, 5, 2, 0, 2, 0, 0, 6, 0, 4, 6, 3, 5, 2, 6, 3, 3, 3, 5, 1, 1, 2, 4, 2, 1, 1, 3, 0, 5, 3],
    ),
    "low": (
        [0, 0, 1, 1, 0, 2, 2, 1, 2, 0, 3, 4, 0, 1, 3, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 6, 1, 2, 3, 4],
        [0, 1, 0, 1, 2, 0, 1, 2, 2, 3, 0, 0, 4, 3, 1, 5, 4, 3, 2, 1, 0, 6, 5, 4, 3, 2, 1, 0, 6, 5, 4, 3],
    ),
    "bot": (
        [6, 1, 3, 3, 2, 4, 1, 2, 4, 4, 5, 1, 4, 6, 2, 5, 6, 1, 6, 2, 2, 4, 3, 3, 5, 5, 6, 2, 5, 5, 3, 6],
        [6, 4, 4, 6, 6, 3, 1, 4, 4, 5, 6, 5, 2, 2, 5, 1, 4, 3, 5, 0, 3, 1, 1, 2, 4, 2, 1, 1, 5, 3, 3, 3],
    ),
}
FREQ_SELS = tuple(f"{o}{n}" for o in ("top", "low", "bot") for n in (1, 2, 4, 8, 16, 32))


def fca_frequencies(freq_sel: str, dct_size: int = 7) -> list[tuple[int, int]]:
    """The selected (u, v) frequencies on a ``dct_size``² grid: the 7×7 picks scaled by ``dct_size // 7``."""
    order, n = freq_sel[:3], int(freq_sel[3:])
    us, vs = _ORDERS[order]
    s = dct_size // 7
    return [(u * s, v * s) for u, v in zip(us[:n], vs[:n])]


def dct_basis(freqs: list[int], size: int) -> torch.Tensor:
    """Orthonormal DCT-II rows ``B[k, i] = c_k cos(π f_k (i + ½) / size)``, ``c = √(1/size)`` (f = 0) or ``√(2/size)``."""
    i = torch.arange(size, dtype=torch.float64) + 0.5
    f = torch.tensor(freqs, dtype=torch.float64)[:, None]
    scale = torch.where(f == 0, math.sqrt(1.0 / size), math.sqrt(2.0 / size))
    return (scale * torch.cos(math.pi * f * i / size)).float()


def _adaptive_pool_matrix(n: int, d: int, like: torch.Tensor) -> torch.Tensor:
    """``P`` (d×n) with ``P @ v`` = ``adaptive_avg_pool1d(v, d)``: bin i averages [⌊i·n/d⌋, ⌈(i+1)·n/d⌉)."""
    i = torch.arange(d, device=like.device)[:, None]
    j = torch.arange(n, device=like.device)[None, :]
    start = (i * n) // d
    end = ((i + 1) * n + d - 1) // d
    inside = (j >= start) & (j < end)
    return inside.to(like.dtype) / (end - start).to(like.dtype)


@fx_leaf
def _spatial_filters(basis_h: torch.Tensor, basis_w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-frequency filters on the input's own H×W: the DCT basis pulled back through the official adaptive
    average pooling to dct_size×dct_size (a linear map), so ``Σ_hw x·F`` = the official pool-then-DCT.  K×H×W."""
    h, w, d = x.shape[2], x.shape[3], basis_h.shape[1]
    # at H = d the pooling matrix is the identity (exact), so no shape branch is needed
    ah = basis_h.to(x.dtype) @ _adaptive_pool_matrix(h, d, x)  # K×H
    aw = basis_w.to(x.dtype) @ _adaptive_pool_matrix(w, d, x)  # K×W
    return ah[:, :, None] * aw[:, None, :]


_POOLED_FORM = tracing.PortableForm(
    targets=("ncnn",),
    marker="aten::adaptive_avg_pool2d",
    reason="the weighted sums by matmul over B×C/K rows; " + BATCH_AXIS,
)


@register(
    "fca",
    family="channel",
    paper="FcaNet: Frequency Channel Attention Networks (Qin et al.; ICCV 2021)",
    url="https://arxiv.org/abs/2012.11879",
    complexity="O(N)",
    summary="Multi-spectral channel pooling with fixed 2-D DCT filters (one frequency per channel group) → FC → ReLU → FC → sigmoid.",
    maps=("gate",),
    forms=(_POOLED_FORM,),
)
class MultiSpectralAttention(Gate):
    """FcaNet multi-spectral channel attention; B×C×H×W → B×C×H×W.

    The C channels are split into K equal groups (K = the number of selected frequencies, ``freq_sel="top16"``:
    the 16 best single frequencies of the paper's 7×7 ablation; ``"low*"``/``"bot*"``: the low/bottom orders);
    group k is pooled with the 2-D DCT-II basis function (u_k, v_k) on a ``dct_size``² grid (the 7×7 picks scaled
    by ``dct_size // 7``, as the official code).  ``y = x · σ(W2 ReLU(W1 Freq(x)))`` (FCs without bias, as the
    official code).  An input of another size is treated as the official code does (adaptive average pooling
    to dct_size², then the DCT), computed as one exportable weighted sum: the pooling matrix is folded into
    the filters (K×H×W built from the shape, no adaptive pooling op).  The DCT bases are non-persistent buffers
    (derived from the arguments; the state_dict holds only ``fc1``/``fc2``).

    Args:
        channels: C, divisible by K.  reduction / hidden_channels / min_hidden: FC width (hidden = C // r).
        freq_sel: ``"top|low|bot" + "1|2|4|8|16|32"``.  dct_size: side of the DCT grid (≥ 7).

    Captured map: ``"gate"`` B×C×1×1.  See docs/provenance/fca.md.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "dct_size": SizeBound(TABLE_BOUND, "DCT grid side"),
    }

    def __init__(
        self,
        channels: int,
        reduction: float = 16,
        hidden_channels: int | None = None,
        min_hidden: int = 1,
        freq_sel: str = "top16",
        dct_size: int = 7,
    ) -> None:
        super().__init__()
        hidden = hidden_width(channels, reduction, hidden_channels, min_hidden, self.owner)
        check_choice(freq_sel, FREQ_SELS, self.owner, "freq_sel", "one of " + ", ".join(FREQ_SELS))
        check_arg(
            isinstance(dct_size, int) and not isinstance(dct_size, bool) and dct_size >= 7,
            self.owner,
            "dct_size",
            "an integer ≥ 7",
            dct_size,
        )
        freqs = fca_frequencies(freq_sel, dct_size)
        k = len(freqs)
        check_arg(
            channels % k == 0, self.owner, "channels", f"a multiple of the {k} frequencies of {freq_sel!r}", channels
        )
        self.channels, self.reduction, self.freq_sel, self.dct_size = channels, reduction, freq_sel, dct_size
        self.num_freq = k
        self.register_buffer("basis_h", dct_basis([u for u, _ in freqs], dct_size), persistent=False)
        self.register_buffer("basis_w", dct_basis([v for _, v in freqs], dct_size), persistent=False)
        self.fc1 = nn.Linear(channels, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, channels, bias=False)

    basis_h: torch.Tensor
    basis_w: torch.Tensor

    def dct_filters(self) -> torch.Tensor:
        """The official per-channel filters on the dct_size² grid, C×d×d (for inspection and tests)."""
        f = self.basis_h[:, :, None] * self.basis_w[:, None, :]
        return f.repeat_interleave(self.channels // self.num_freq, dim=0)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The multi-spectral descriptor Freq(x), B×C."""
        filt = _spatial_filters(self.basis_h, self.basis_w, x)  # K×H×W
        if tracing.portable(*_POOLED_FORM.targets):
            return self._pooled_portable(x, filt)
        # per group: (C/K × HW) @ (HW) — one read of x
        b, k = x.shape[0], self.num_freq
        y = torch.matmul(x.reshape(b, k, self.channels // k, -1), filt.reshape(k, -1, 1))
        return y.reshape(b, self.channels)

    def _pooled_portable(self, x: torch.Tensor, filt: torch.Tensor) -> torch.Tensor:
        """:meth:`pooled` as a product and a global average pool (a depthwise convolution with this computed H×W
        kernel would not compile in OpenVINO)."""
        weight = filt.repeat_interleave(self.channels // self.num_freq, dim=0) * (x.shape[2] * x.shape[3])  # C×H×W
        return F.adaptive_avg_pool2d(x * weight, 1).flatten(1)

    def gate_map(self, x: torch.Tensor) -> torch.Tensor:
        """The gate, B×C×1×1."""
        s = self.pooled(x)
        return torch.sigmoid(self.fc2(F.relu(self.fc1(s))))[:, :, None, None]
