"""Swin Transformer block: (shifted) window multi-head self-attention with a relative position bias, any H×W.

Paper: Swin Transformer: Hierarchical Vision Transformer using Shifted Windows (Liu et al.; ICCV 2021),
https://arxiv.org/abs/2103.14030.  Official code: microsoft/Swin-Transformer (MIT); timm's
``swin_transformer.SwinTransformerBlock`` (Apache-2.0) has the same state-dict keys as this block.  Written from
the paper; docs/provenance/swin.md lists how the copies differ.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..capture import capture_target
from ..functional.relative_position import gather_bias, signed_offset_index
from ..functional.windows import (
    merge_windows_last,
    partition_windows_last,
    roll_shift,
    shifted_window_mask,
)
from ..layers import (
    RATIO_BOUND,
    AttnModule,
    SizeBound,
    attention,
    check_arg,
    check_nchw,
    fx_leaf,
    non_negative_int,
    positive_int,
    positive_number,
)
from ..layers.checks import check_attention_args
from ..registry import register
from ..tracing import traced_size

__all__ = ["SwinBlock", "SwinWindowAttention"]


def default_heads(channels: int) -> int:
    """Swin's head width 32: ``max(1, C // 32)`` heads."""
    return max(1, channels // 32)


class SwinWindowAttention(nn.Module):
    """The attention of a Swin block (timm ``WindowAttention``'s parameters and keys): ``qkv`` and ``proj``
    Linears and the ``relative_position_bias_table`` of (2M−1)² × heads entries (init N(0, 0.02) truncated)."""

    def __init__(
        self, channels: int, heads: int, window_size: int, qkv_bias: bool, attn_drop: float, proj_drop: float
    ) -> None:
        super().__init__()
        self.heads, self.window_size, self.attn_drop = heads, window_size, attn_drop
        self.dim_head = channels // heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.qkv = nn.Linear(channels, 3 * channels, bias=qkv_bias)
        self.proj = nn.Linear(channels, channels)
        self.proj_drop = nn.Dropout(proj_drop)
        for lin in (self.qkv, self.proj):  # the official model's init of every Linear
            nn.init.trunc_normal_(lin.weight, std=0.02)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)

    def bias(self) -> torch.Tensor:
        """heads×M²×M²: the relative position bias of one window (gathered on every call, never cached)."""
        m = self.window_size
        return gather_bias(self.relative_position_bias_table, signed_offset_index(m, m, self.qkv.weight.device))


class _Mlp(nn.Module):
    """Linear → GELU → Linear (timm ``Mlp``'s keys ``fc1``, ``fc2``)."""

    def __init__(self, channels: int, hidden: int, drop: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, channels)
        self.drop = nn.Dropout(drop)
        for lin in (self.fc1, self.fc2):
            nn.init.trunc_normal_(lin.weight, std=0.02)
            nn.init.zeros_(lin.bias)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(t)))))


@fx_leaf
def shifted_window_attention(
    y: torch.Tensor, attn: SwinWindowAttention, shift: int, owner: nn.Module | None
) -> torch.Tensor:
    """(S)W-MSA on channels-last tokens y: B×H×W×C → B×H×W×C.

    Zero-pad to whole M×M windows (bottom / right), roll the padded grid by −shift, attend inside each window
    with the relative bias plus the mask of :func:`~attnzoo.functional.windows.shifted_window_mask` (padding
    and other shift regions get the dtype's most negative finite value), roll back and crop.  Windows and heads
    share one axis next to the batch (at most 5 axes, the batch never folded: ncnn)."""
    b, c = y.shape[0], y.shape[-1]
    h, w = traced_size(y.permute(0, 3, 1, 2))
    m, heads = attn.window_size, attn.heads
    ph, pw = (m - h % m) % m, (m - w % m) % m
    if ph or pw:
        y = F.pad(y, (0, 0, 0, pw, 0, ph))
    hp, wp = h + ph, w + pw
    nh, nw = hp // m, wp // m
    g, length = nh * nw, m * m
    if shift:
        y = roll_shift(y, shift, (1, 2))
    bias = attn.bias().to(y.dtype)  # heads×L×L
    # heads before windows on the shared axis: q, k and v come out of the qkv projection with one copy
    if shift or ph or pw:
        region = shifted_window_mask(hp, wp, h, w, m, shift, y.dtype, y.device)  # G×L×L
        mask = (bias[:, None] + region[None]).reshape(1, heads * g, length, length)
    else:
        mask = bias[:, None].expand(-1, g, -1, -1).reshape(1, heads * g, length, length)
    d = attn.dim_head
    qkv = attn.qkv(partition_windows_last(y, m).reshape(b, g * length, c))
    qkv = qkv.reshape(b, g, length, 3 * heads, d).permute(0, 3, 1, 2, 4).reshape(b, 3 * heads * g, length, d)
    q, k, v = qkv.chunk(3, dim=1)  # B×(heads·G)×L×d each
    p = attn.attn_drop if attn.training else 0.0
    out = attention(q, k, v, mask=mask, scale=d**-0.5, dropout_p=p, module=owner)
    out = out.reshape(b, heads, g, length, d).permute(0, 2, 3, 1, 4).reshape(b, g * length, c)
    out = attn.proj_drop(attn.proj(out))
    out = merge_windows_last(out.reshape(b, g, length, c), m, nh, nw)
    if shift:
        out = roll_shift(out, shift, (1, 2), reverse=True)
    return out[:, :h, :w] if ph or pw else out


@register(
    "swin",
    family="local",
    paper="Swin Transformer: Hierarchical Vision Transformer using Shifted Windows (Liu et al.; ICCV 2021)",
    url="https://arxiv.org/abs/2103.14030",
    complexity="O(N·M^2)",
    summary="Swin block: pre-norm (shifted) M×M window attention with a (2M−1)² relative bias, then an MLP; "
    "padding and shifted regions masked, any H×W.",
    test_kwargs={"window_size": 3, "shift_size": 1},
    maps=("attn",),
)
class SwinBlock(AttnModule):
    """Swin Transformer block; B×C×H×W → B×C×H×W.

    ``t = x + (S)W-MSA(LN(x))``, ``out = t + MLP(LN(t))`` (MLP: C → C·mlp_ratio → C with GELU), on the
    channels-last tokens.  (S)W-MSA: multi-head self-attention inside M×M windows with logits
    ``q·kᵀ/√d + B[Δy + M − 1, Δx + M − 1]`` from a learned (2M−1)²×heads table; with ``shift_size`` s > 0
    the map is rolled by −s first (windows offset by s) and rolled back after, and pairs that the roll
    brought together from opposite borders are masked.  Swin alternates blocks with s = 0 and s = M // 2.

    Any H×W: the map is zero-padded to whole windows (bottom / right) and padded keys are masked, as are the
    other shift regions, with the dtype's most negative finite value (the official code and timm fill −100,
    not −inf, and timm pads after rolling so its regions do not match the padded grid: see
    docs/provenance/swin.md).  Maps smaller than the window keep the window and the shift (the official
    code shrinks the window to the map and drops the shift).  State-dict keys are timm's
    ``SwinTransformerBlock``'s (``norm1``, ``attn.qkv``, ``attn.proj``, ``attn.relative_position_bias_table``,
    ``norm2``, ``mlp.fc1``, ``mlp.fc2``): its weights load as they are.

    Args:
        channels: C (a multiple of ``heads``).
        window_size: M.
        shift_size: s in [0, M) (0: W-MSA; M // 2: the shifted SW-MSA block).
        heads: attention heads; ``None`` = max(1, C // 32) (Swin's head width 32).
        mlp_ratio: hidden width of the MLP as a ratio of C.
        qkv_bias: bias in the qkv projection.
        attn_drop: dropout on the attention probabilities.
        proj_drop: dropout after the attention projection and in the MLP.

    Captured map: ``"attn"`` B×(heads·windows)×M²×M² (head-major).
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "window_size": SizeBound(32, "M⁴ attention logits per window"),
        "mlp_ratio": SizeBound(RATIO_BOUND, "MLP ratio"),
    }

    def __init__(
        self,
        channels: int,
        window_size: int = 7,
        shift_size: int = 0,
        heads: int | None = None,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        owner = self.owner
        heads = default_heads(positive_int(channels, owner, "channels")) if heads is None else heads
        _, attn_drop, proj_drop = check_attention_args(
            owner, channels, heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop
        )
        positive_int(window_size, owner, "window_size")
        check_arg(window_size <= 32, owner, "window_size", "at most 32 (M⁴ attention logits per window)", window_size)
        non_negative_int(shift_size, owner, "shift_size")
        check_arg(shift_size < window_size, owner, "shift_size", f"less than window_size ({window_size})", shift_size)
        positive_number(mlp_ratio, owner, "mlp_ratio")
        hidden = int(channels * mlp_ratio)
        check_arg(hidden >= 1, owner, "mlp_ratio", f"a ratio giving at least 1 hidden channel of {channels}", mlp_ratio)
        self.channels, self.window_size, self.shift_size, self.heads = channels, window_size, shift_size, heads
        self.mlp_ratio, self.qkv_bias = mlp_ratio, qkv_bias
        self.norm1 = nn.LayerNorm(channels)
        self.attn = SwinWindowAttention(channels, heads, window_size, qkv_bias, attn_drop, proj_drop)
        self.norm2 = nn.LayerNorm(channels)
        self.mlp = _Mlp(channels, hidden, proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        t = x.permute(0, 2, 3, 1)
        t = t + shifted_window_attention(self.norm1(t), self.attn, self.shift_size, capture_target(self))
        t = t + self.mlp(self.norm2(t))
        return t.permute(0, 3, 1, 2)
