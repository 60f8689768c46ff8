"""ACmix: a mix of 7×7 local self-attention and a shift convolution sharing one set of 1×1 projections.

Paper: On the Integration of Self-Attention and Convolution (Pan et al.; CVPR 2022), https://arxiv.org/abs/2111.14556.
Official code: LeapLabTHU/ACmix — no licence file: written from the paper and its equations; nothing was copied.
docs/provenance/acmix.md lists how the official code and its copies differ.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers import KERNEL_BOUND, AttnModule, SizeBound, check_nchw, fx_leaf, odd_kernel
from ..layers.checks import check_attention_args
from ..registry import register
from ..tracing import traced_size

__all__ = ["ACmix"]


def _reflect_index(n: int, pad: int, device: torch.device) -> torch.Tensor:
    """Indices of an axis of length n reflected by ``pad`` on both sides, for any n ≥ 1 (mirrored repeatedly when
    pad ≥ n, where ``F.pad(mode='reflect')`` refuses; a length-1 axis repeats its value)."""
    i = torch.arange(-pad, n + pad, device=device)
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    j = torch.remainder(i, period)
    return torch.where(j < n, j, period - j)


def reflect_pad(t: torch.Tensor, pad: int) -> torch.Tensor:
    """Reflection padding of the last two axes by ``pad`` at any size (``F.pad`` reflect when it can)."""
    h, w = traced_size(t)
    if pad < h and pad < w:
        return F.pad(t, (pad, pad, pad, pad), mode="reflect")
    t = t.index_select(-2, _reflect_index(h, pad, t.device))
    return t.index_select(-1, _reflect_index(w, pad, t.device))


def coordinates(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """1×2×H×W: x then y, each ``linspace(-1, 1)`` along its axis (ACmix's position map)."""
    xs = torch.linspace(-1.0, 1.0, w, device=device, dtype=dtype)[None, :].expand(h, w)
    ys = torch.linspace(-1.0, 1.0, h, device=device, dtype=dtype)[:, None].expand(h, w)
    return torch.stack([xs, ys])[None]


@fx_leaf
def local_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pe: torch.Tensor, heads: int, kernel: int
) -> torch.Tensor:
    """ACmix's attention path: for each pixel p and each offset o of the k×k window around it (reflection
    padding), ``logit = q_p · (k_{p+o} + pe_p − pe_{p+o}) / √d`` per head, softmax over the k² offsets, and
    ``Σ_o a_o v_{p+o}``.  The pe_p term is the same for every offset of p, so it cancels in the softmax and
    ``k − pe`` is padded once.  One shifted view per offset (no k²-fold im2col copy); at most 5 axes.
    q, k, v: B×C×H×W, pe: 1×d×H×W → B×C×H×W."""
    b, c = q.shape[0], q.shape[1]
    h, w = traced_size(q)
    d = c // heads
    p = kernel // 2
    q5 = (q * d**-0.5).reshape(b, heads, d, h, w)
    kp = reflect_pad((k.reshape(b, heads, d, h, w) - pe[:, None]).reshape(b, c, h, w), p).reshape(
        b, heads, d, h + 2 * p, w + 2 * p
    )
    vp = reflect_pad(v, p).reshape(b, heads, d, h + 2 * p, w + 2 * p)
    offsets = [(dy, dx) for dy in range(kernel) for dx in range(kernel)]
    logits = torch.stack([(q5 * kp[:, :, :, dy : dy + h, dx : dx + w]).sum(2) for dy, dx in offsets], dim=2)
    att = logits.softmax(dim=2)  # B×heads×k²×H×W
    out = att[:, :, :1] * vp[:, :, :, :h, :w]
    for i, (dy, dx) in enumerate(offsets[1:], start=1):
        out = out + att[:, :, i : i + 1] * vp[:, :, :, dy : dy + h, dx : dx + w]
    return out.reshape(b, c, h, w)


@register(
    "acmix",
    family="local",
    paper="On the Integration of Self-Attention and Convolution (Pan et al.; CVPR 2022)",
    url="https://arxiv.org/abs/2111.14556",
    complexity="O(N·k^2)",
    summary="ACmix: shared 1×1 q/k/v feed a 7×7 local attention with a coordinate position term and a learned "
    "shift convolution; α·attention + β·conv (0.5 each); any device, any H×W.",
    test_kwargs={"heads": 2, "kernel_att": 3},
)
class ACmix(AttnModule):
    """ACmix; B×C×H×W → B×C×H×W.

    Stage I: ``q, k, v`` = three 1×1 convs (C → C, bias).  Attention path: per head (d = C / heads), for each
    pixel the k_att×k_att window around it (reflection padding) with ``logit = q_p·(k_{p+o} + r_p − r_{p+o})/√d``,
    r = 1×1 conv (2 → d) of the [x, y] coordinate map in [−1, 1]; softmax over the window; ``Σ a v``.  Conv
    path: a 1×1 ``fc`` (3·heads → k_conv², no bias) mixes the heads of q, k, v into k_conv² feature groups, and a
    grouped k_conv×k_conv ``dep_conv`` (groups = d, no bias) initialised to one-hot kernels sums them shifted
    (a shift-and-sum at init).  ``out = α·att + β·conv`` with α = β = 0.5 learnable (``rate1``, ``rate2``).

    Differences from the official code: its position map is built with ``.cuda()`` by a flag (any device
    here), its ``ReflectionPad2d(3)`` fails for H or W ≤ 3 (here the reflection is repeated), ``dep_conv``
    padding is 1 for any kernel (here k_conv // 2), and it im2cols k, v and the position map 49-fold (here one
    shifted view per offset).  The official init sets ``dep_conv.bias`` to None: no bias, as here.  The
    official state-dict keys.

    Args:
        channels: C (a multiple of ``heads``).
        heads: attention heads.
        kernel_att: side of the attention window (odd).
        kernel_conv: kernel of the shift convolution (odd).
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "kernel_att": SizeBound(KERNEL_BOUND, "attention window side"),
        "kernel_conv": SizeBound(15, "the shift conv has k⁴·C weights"),
    }

    def __init__(self, channels: int, heads: int = 4, kernel_att: int = 7, kernel_conv: int = 3) -> None:
        super().__init__()
        owner = self.owner
        check_attention_args(owner, channels, heads)
        odd_kernel(kernel_att, owner, "kernel_att")
        odd_kernel(kernel_conv, owner, "kernel_conv")
        self.channels, self.heads, self.kernel_att, self.kernel_conv = channels, heads, kernel_att, kernel_conv
        self.head_dim = d = channels // heads
        self.rate1 = nn.Parameter(torch.full((1,), 0.5))
        self.rate2 = nn.Parameter(torch.full((1,), 0.5))
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.conv2 = nn.Conv2d(channels, channels, 1)
        self.conv3 = nn.Conv2d(channels, channels, 1)
        self.conv_p = nn.Conv2d(2, d, 1)
        k2 = kernel_conv * kernel_conv
        self.fc = nn.Conv2d(3 * heads, k2, 1, bias=False)
        self.dep_conv = nn.Conv2d(k2 * d, channels, kernel_conv, padding=kernel_conv // 2, groups=d, bias=False)
        with torch.no_grad():  # one-hot kernels: input channel i of each group is shifted by offset i
            one_hot = torch.zeros(k2, kernel_conv, kernel_conv)
            one_hot.view(k2, k2)[torch.arange(k2), torch.arange(k2)] = 1.0
            self.dep_conv.weight.copy_(one_hot.repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        b = x.shape[0]
        h, w = traced_size(x)
        q, k, v = self.conv1(x), self.conv2(x), self.conv3(x)
        pe = self.conv_p(coordinates(h, w, x.device, x.dtype))
        out_att = local_attention(q, k, v, pe, self.heads, self.kernel_att)
        heads, d = self.heads, self.head_dim
        f_all = self.fc(torch.cat([t.reshape(b, heads, d, h * w) for t in (q, k, v)], dim=1))  # B×k²×d×N
        f_conv = f_all.permute(0, 2, 1, 3).reshape(b, -1, h, w)  # B×(d·k²)×H×W
        return self.rate1 * out_att + self.rate2 * self.dep_conv(f_conv)
