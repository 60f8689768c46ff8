"""EMO's inverted residual mobile block (iRMB): windowed multi-head attention and a depthwise conv in one
inverted residual, any H×W.

Paper: Rethinking Mobile Block for Efficient Attention-based Models (Zhang et al.; ICCV 2023),
https://arxiv.org/abs/2301.01146.  Official code: zhangzjn/EMO (no licence file): written from the paper and
its equations; docs/provenance/irmb.md lists how the official code differs.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..capture import capture_target
from ..layers import (
    KERNEL_BOUND,
    RATIO_BOUND,
    AttnModule,
    SizeBound,
    attention,
    check_arg,
    check_choice,
    check_nchw,
    get_act,
    positive_int,
)
from ..layers.batchnorm import PooledBatchNorm2d
from ..registry import register
from ..tracing import PortableForm, fx_leaf, portable, traced_size

__all__ = ["InvertedResidualMobileBlock"]

_PARTITIONS = ("grid", "window")


def _to_windows(t: torch.Tensor, w: int, partition: str) -> torch.Tensor:
    """B×C×H'×W' (H', W' multiples of w) → (B·n)×C×w×w: contiguous w×w windows, or the strided grids of the
    official code (window (a, b) holds the pixels (a + n₁·i, b + n₂·j), n₁ = H'/w, n₂ = W'/w)."""
    b, c, hp, wp = t.shape
    n1, n2 = hp // w, wp // w
    if partition == "window":
        t = t.reshape(b, c, n1, w, n2, w).permute(0, 2, 4, 1, 3, 5)
    else:
        t = t.reshape(b, c, w, n1, w, n2).permute(0, 3, 5, 1, 2, 4)
    return t.reshape(b * n1 * n2, c, w, w)


def _from_windows(t: torch.Tensor, b: int, hp: int, wp: int, partition: str) -> torch.Tensor:
    """The inverse of :func:`_to_windows`: (B·n)×C×w×w → B×C×H'×W'."""
    c, w = t.shape[1], t.shape[-1]
    n1, n2 = hp // w, wp // w
    t = t.reshape(b, n1, n2, c, w, w)
    if partition == "window":
        return t.permute(0, 3, 1, 4, 2, 5).reshape(b, c, hp, wp)
    return t.permute(0, 3, 4, 1, 5, 2).reshape(b, c, hp, wp)


def _to_window_heads(t: torch.Tensor, w: int, heads: int, partition: str) -> torch.Tensor:
    """B×C×H'×W' → B×(n·heads)×w²×d with at most 5 axes and the batch never folded (ncnn): the same windows and
    head layout as :func:`_to_windows`."""
    b, c, hp, wp = t.shape
    n1, n2 = hp // w, wp // w
    if partition == "grid":  # h = i·n1 + a, x = j·n2 + b
        t = t.reshape(b, c, w, n1, wp).permute(0, 3, 1, 2, 4).reshape(b, n1, c * w, w, n2).permute(0, 1, 4, 2, 3)
    else:  # h = a·w + i, x = b·w + j
        t = t.reshape(b, c, n1, w, wp).permute(0, 2, 1, 3, 4).reshape(b, n1, c * w, n2, w).permute(0, 1, 3, 2, 4)
    t = t.reshape(b, n1 * n2 * heads, c // heads, w * w)  # (a, b, head) × d × (i, j)
    return t.transpose(-1, -2)


def _from_window_heads(t: torch.Tensor, w: int, hp: int, wp: int, partition: str) -> torch.Tensor:
    """The inverse of :func:`_to_window_heads` for B×(n·heads)×w²×d_v → B×C_v×H'×W'."""
    b = t.shape[0]
    n1, n2 = hp // w, wp // w
    c = t.shape[1] // (n1 * n2) * t.shape[-1]
    t = t.transpose(-1, -2).reshape(b, n1, n2, c * w, w)
    if partition == "grid":
        t = t.permute(0, 1, 3, 4, 2).reshape(b, n1, c, w, wp).permute(0, 2, 3, 1, 4)
    else:
        t = t.permute(0, 1, 3, 2, 4).reshape(b, n1, c, w, wp).permute(0, 2, 1, 3, 4)
    return t.reshape(b, c, hp, wp)


def window_attention_portable(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, window: int, partition: str, module: nn.Module | None
) -> torch.Tensor:
    h, w = traced_size(q)
    ph, pw = (window - h % window) % window, (window - w % window) % window
    hp, wp = h + ph, w + pw
    tq, tk, tv = (_to_window_heads(F.pad(t, (0, pw, 0, ph)), window, heads, partition) for t in (q, k, v))
    scale = (q.shape[1] // heads) ** -0.5
    mask = None
    if ph or pw:  # padded keys get a large negative logit through one extra q/k column (no boolean mask in ncnn)
        pad = F.pad(torch.zeros_like(q[:, :1]), (0, pw, 0, ph), value=-1e9 / scale).repeat(1, heads, 1, 1)
        tq = torch.cat([tq, torch.ones_like(tq[..., :1])], -1)
        tk = torch.cat([tk, _to_window_heads(pad, window, heads, partition)], -1)
    out = attention(tq, tk, tv, mask=mask, scale=scale, module=module)
    return _from_window_heads(out, window, hp, wp, partition)[:, :, :h, :w]


@fx_leaf
def window_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    heads: int,
    window: int,
    partition: str,
    module: nn.Module | None = None,
) -> torch.Tensor:
    """Multi-head attention of B×C×H×W q, k (C channels) and v (C_v channels) inside w×w windows (padded to whole
    windows; padded keys masked); B×C_v×H×W out."""
    if portable("ncnn"):
        return window_attention_portable(q, k, v, heads, window, partition, module)
    b = q.shape[0]
    h, w = traced_size(q)
    ph, pw = (window - h % window) % window, (window - w % window) % window
    hp, wp = h + ph, w + pw

    def heads_of(t: torch.Tensor) -> torch.Tensor:  # → (B·n)×heads×w²×d
        t = _to_windows(F.pad(t, (0, pw, 0, ph)) if ph or pw else t, window, partition)
        return t.reshape(t.shape[0], heads, -1, window * window).transpose(-1, -2)

    mask = None
    if ph or pw:
        valid = F.pad(torch.ones(1, 1, h, w, device=q.device, dtype=torch.bool), (0, pw, 0, ph))
        mask = _to_windows(valid, window, partition).reshape(-1, 1, 1, window * window).repeat(b, 1, 1, 1)
    out = attention(heads_of(q), heads_of(k), heads_of(v), mask=mask, module=module)  # (B·n)×heads×w²×d_v
    out = out.transpose(-1, -2).reshape(out.shape[0], -1, window, window)
    return _from_windows(out, b, hp, wp, partition)[:, :, :h, :w]


@register(
    "irmb",
    family="local",
    paper="Rethinking Mobile Block for Efficient Attention-based Models (Zhang et al.; ICCV 2023)",
    url="https://arxiv.org/abs/2301.01146",
    complexity="O(N·w^2)",
    summary="EMO's iRMB: BN, window attention (q, k from x; v expanded), depthwise conv with an inner skip, 1×1, residual.",
    test_kwargs={"dim_head": 8, "window_size": 3},
    maps=("attn",),
    forms=(
        PortableForm(
            targets=("ncnn",),
            marker="aten::cat",
            reason="ncnn holds at most 4 axes besides the batch and no batch folding: the windows and heads share "
            "one axis next to the batch, reached by 5-axis permutes; padded keys are masked by an extra q/k column",
            cases=({}, {"partition": "window"}, {"window_size": 4, "expansion": 2.0}),
        ),
    ),
)
class InvertedResidualMobileBlock(AttnModule):
    """EMO's inverted residual mobile block; B×C×H×W → B×C×H×W.

    ``z = BN(x)``; ``q, k = W_qk z`` (1×1, C → 2C), ``v = act(W_v z)`` (1×1, C → C·expansion); multi-head
    attention (C / dim_head heads) inside w×w windows (``window_size``) gives ``y``; ``y = y + DW_k(y)``
    (depthwise k×k conv + BN + SiLU); ``out = x + W_p y`` (1×1 back to C).

    ``partition="grid"`` (default) is what the official code computes: its reshape makes each "window" a strided
    grid of w×w pixels spread over the whole map (rows a, a + n₁, a + 2n₁, …), a dilated sparse global
    attention; ``"window"`` takes contiguous w×w windows, as the paper's text describes.  Any H×W: the map is
    zero-padded to whole windows and padded keys are masked (the official code attends them).

    Args:
        channels: C (a multiple of ``dim_head``).
        dim_head: width of each head (heads = C / dim_head).
        window_size: w.
        expansion: width ratio of v and the depthwise conv (C·expansion, a multiple of the heads).
        kernel_size: k of the depthwise conv.
        partition: ``"grid"`` or ``"window"``.
        qkv_bias: biases in the q/k and v convs.
        act: activation after the v conv (``"relu"``, as the official default, or any ``get_act`` name).

    Captured map: ``"attn"`` (B·windows)×heads×w²×w².
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "window_size": SizeBound(64, "a window's w⁴ attention logits"),
        "kernel_size": SizeBound(KERNEL_BOUND, "kernel side"),
        "expansion": SizeBound(RATIO_BOUND, "expansion ratio"),
    }

    def __init__(
        self,
        channels: int,
        dim_head: int = 64,
        window_size: int = 7,
        expansion: float = 1.0,
        kernel_size: int = 3,
        partition: str = "grid",
        qkv_bias: bool = False,
        act: str = "relu",
    ) -> None:
        super().__init__()
        owner = self.owner
        positive_int(channels, owner, "channels")
        positive_int(dim_head, owner, "dim_head")
        check_arg(channels % dim_head == 0, owner, "dim_head", f"a divisor of channels ({channels})", dim_head)
        self.heads = channels // dim_head
        positive_int(window_size, owner, "window_size")
        check_arg(window_size <= 64, owner, "window_size", "at most 64 (a window's w⁴ attention logits)", window_size)
        ok = isinstance(expansion, (int, float)) and not isinstance(expansion, bool) and 0 < expansion <= 16
        check_arg(ok, owner, "expansion", "a number in (0, 16]", expansion)
        mid = int(channels * expansion)
        check_arg(
            mid >= self.heads and mid % self.heads == 0,
            owner,
            "expansion",
            f"a ratio giving a width that the {self.heads} heads divide (C·expansion = {mid})",
            expansion,
        )
        positive_int(kernel_size, owner, "kernel_size")
        check_arg(kernel_size % 2 == 1, owner, "kernel_size", "an odd number", kernel_size)
        self.partition = check_choice(partition, _PARTITIONS, owner, "partition")
        check_arg(isinstance(qkv_bias, bool), owner, "qkv_bias", "a bool", qkv_bias)
        self.channels, self.dim_head, self.window_size, self.expansion = channels, dim_head, window_size, expansion
        self.kernel_size, self.qkv_bias, self.act_name = kernel_size, qkv_bias, act
        self.norm = PooledBatchNorm2d(channels)
        self.qk = nn.Conv2d(channels, 2 * channels, 1, bias=qkv_bias)
        self.v = nn.Sequential(nn.Conv2d(channels, mid, 1, bias=qkv_bias), get_act(act, owner))
        self.conv_local = nn.Sequential(
            nn.Conv2d(mid, mid, kernel_size, padding=kernel_size // 2, groups=mid, bias=False),
            PooledBatchNorm2d(mid),
            nn.SiLU(),
        )
        self.proj = nn.Conv2d(mid, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        z = self.norm(x)
        q, k = self.qk(z).chunk(2, 1)
        y = window_attention(q, k, self.v(z), self.heads, self.window_size, self.partition, capture_target(self))
        y = y + self.conv_local(y)
        return x + self.proj(y)
