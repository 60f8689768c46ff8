"""Multipole attention (MANO; Colagrande, Caillon, Feillet, Allauzen; 2025): one local attention applied on a
hierarchy of down-sampled grids, merged by a V-cycle; linear cost with a global receptive field.

Paper: https://arxiv.org/abs/2507.02748
"""

from __future__ import annotations

from typing import ClassVar, cast

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from ..capture import capture_target
from ..layers import (
    KERNEL_BOUND,
    AttnModule,
    SizeBound,
    check_arg,
    check_nchw,
    check_window_args,
    fx_leaf,
    positive_int,
)
from ..layers.checks import check_choice
from ..registry import register
from ..tracing import PortableForm, portable, traced_size

__all__ = ["MultipoleAttention", "multipole_level_sizes"]

from .window import WINDOW_TARGETS, WindowSelfAttention, window_attention

_MANO_PAPER = "Linear Attention with Global Context: A Multipole Attention Mechanism for Vision and Physics (Colagrande, Caillon, Feillet, Allauzen; arXiv 2025)"
_MANO_URL = "https://arxiv.org/abs/2507.02748"


def multipole_level_sizes(
    h: int, w: int, kernel_size: int, sampling_rate: int, max_levels: int | None = None
) -> list[tuple[int, int]]:
    """Grid sizes of the multipole hierarchy for an H×W input, finest first.

    Level 0 is the input; while the current map is at least the window (max(h, w) ≥ k, and larger than 1×1)
    another level ⌈h/r⌉×⌈w/r⌉ is added, so the coarsest map fits in one window (global receptive field).
    ``max_levels`` caps the count.
    """
    sizes = [(h, w)]
    while max(h, w) >= kernel_size and max(h, w) > 1 and (max_levels is None or len(sizes) < max_levels):
        h, w = -(-h // sampling_rate), -(-w // sampling_rate)
        sizes.append((h, w))
    return sizes


def _downsample(x: torch.Tensor, conv: nn.Conv2d | None, rate: int) -> torch.Tensor:
    """B×C×h×w → B×C×⌈h/r⌉×⌈w/r⌉: average over the real pixels of each r×r cell, or a stride-r conv on the zero-padded map."""
    if conv is None:  # no padding: count_include_pad only matters to runtimes that count the ceil overhang (ncnn)
        return F.avg_pool2d(x, rate, rate, ceil_mode=True, count_include_pad=False)
    h, w = traced_size(x)  # constants of a traced graph: pnnx evaluated the padding arithmetic wrongly
    pad_h, pad_w = (rate - h % rate) % rate, (rate - w % rate) % rate
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    return conv(x)


def _repeat_portable(x: torch.Tensor, rate: int) -> torch.Tensor:
    """Each pixel repeated rate × rate times, by nearest interpolation (no 6-axis view)."""
    return F.interpolate(x, scale_factor=rate, mode="nearest")


def _upsample(x: torch.Tensor, deconv: nn.ConvTranspose2d | None, rate: int, h: int, w: int) -> torch.Tensor:
    """B×C×h'×w' → B×C×h×w: nearest (r× repeat) or a stride-r transposed conv, cropped to the finer level's size."""
    b, c, hc, wc = x.shape
    if deconv is None and portable(*WINDOW_TARGETS):  # the same r× repeat without a 6-axis view (at most 5)
        y = _repeat_portable(x, rate)
    elif deconv is None:
        y = x[:, :, :, None, :, None].expand(b, c, hc, rate, wc, rate).reshape(b, c, hc * rate, wc * rate)
    else:
        y = deconv(x)
    return y[:, :, :h, :w]


def _merge(o: torch.Tensor, res: torch.Tensor, up: nn.ConvTranspose2d | None, rate: int, weight: float) -> torch.Tensor:
    """V-cycle step ``o + weight · up(res)``; nearest up-sampling by broadcasting when the sizes divide."""
    b, c, h, w = o.shape
    hc, wc = res.shape[-2:]
    if up is None and hc * rate == h and wc * rate == w and o.is_contiguous() and not portable(*WINDOW_TARGETS):
        merged = torch.add(o.view(b, c, hc, rate, wc, rate), res[:, :, :, None, :, None], alpha=weight)
        return merged.view(b, c, h, w)
    return torch.add(o, _upsample(res, up, rate, h, w), alpha=weight)


@fx_leaf
def _multipole(
    x: torch.Tensor,
    bodies: nn.ModuleList,
    down: nn.Conv2d | None,
    up: nn.ConvTranspose2d | None,
    kernel: int,
    stride: int,
    rate: int,
    max_levels: int | None,
    owner: nn.Module | None,
) -> torch.Tensor:
    b, c, h, w = x.shape
    sizes = multipole_level_sizes(h, w, kernel, rate, max_levels)
    cur = x
    outs = []
    for level in range(len(sizes)):
        if level > 0:
            cur = _downsample(cur, down, rate)
        body = bodies[min(level, len(bodies) - 1)]
        outs.append(window_attention(cur, cast(WindowSelfAttention, body), kernel, stride, owner, f"attn_level{level}"))
    # V-cycle: res = o_l + up(res) / (i + 1), i counted from the coarse end (first merge weight 1)
    res = outs.pop()
    for i in range(len(outs)):
        o = outs.pop()  # finer level; dropping the list's reference lets inference free it after the merge
        res = _merge(o, res, up, rate, 1.0 / (i + 1))
        del o
    return res


@register(
    "multipole",
    family="local",
    paper=_MANO_PAPER,
    url=_MANO_URL,
    complexity="O(N)",
    summary="MANO multipole attention: shared window attention on a down-sampled hierarchy merged by a V-cycle (global, linear).",
    test_kwargs={"heads": 2, "dim_head": 8, "kernel_size": 3, "downsampling": "conv", "upsampling": "conv_transpose"},
    maps=("attn_level*",),
    forms=(
        PortableForm(
            targets=WINDOW_TARGETS,
            marker="aten::chunk",
            reason="the eager form folds the windows into the batch and repeats nearest up-sampling through 6-axis "
            "views; ncnn has no batch axis and at most 5 axes (the windows' portable form of local_window, and "
            "F.interpolate for the repeat)",
            cases=(
                {},
                {"kernel_size": 4, "stride": 2},
                {"downsampling": "avg_pool", "upsampling": "nearest"},
                {
                    "kernel_size": 2,
                    "downsampling": "avg_pool",
                    "upsampling": "nearest",
                    "shared": False,
                    "max_levels": 3,
                },
            ),
        ),
    ),
)
class MultipoleAttention(AttnModule):
    """Multipole attention (MANO, Colagrande et al., 2025); B×C×H×W → B×C×H×W.

    Fast-multipole-style hierarchy: level 0 is the input, level l+1 = down(level l) with rate r; the *same*
    local window attention (:class:`LocalWindowAttention`'s computation) runs on every level, and the outputs
    are merged coarse to fine by the reference V-cycle ``res = o_l + up(res) / (i + 1)`` (i counted from the
    coarse end: weight 1 for the first merge, 1/(L-1) for the finest).  The number of levels is computed from
    the actual input at forward time: keep down-sampling while the map is at least the window, so the
    coarsest map fits in one window and every output depends on every input pixel (global receptive field) at
    a cost linear in H·W (N·(1 + 1/r² + 1/r⁴ + …)·k²).  No residual inside (as the reference).

    Any H×W: down-sampling handles sizes that do not divide by r (``avg_pool``: ceil mode, average over the
    valid pixels of each cell; ``conv``: zero-pad to a multiple of r), up-sampling is cropped back to the finer
    level's size, and each level's windows pad and mask as :class:`LocalWindowAttention`.

    Differences from the reference / community code (``Multipole_Attention2D``): the number of levels
    is fixed at construction from ``image_size`` (reference: ``int(log_r(image_size))``, which can build levels
    smaller than the window and has float-log off-by-ones; seed: one level fewer than it can, often losing the
    global field) — here it follows the input; ``channel_scale`` (accepted but unused there) is dropped; the
    up-sampling options are named ``"nearest"``/``"conv_transpose"`` (the community code's ``"avg_pool"``/``"conv"``
    spellings are accepted); sizes need not divide; B×C×H×W instead of B×H×W×C.

    Args:
        channels: input channels C.
        kernel_size: window k of the local attention (default 7).
        stride: window stride (default k: non-overlapping).
        sampling_rate: down/up-sampling factor r ≥ 2 (default 2).
        heads, dim_head: attention heads and width per head (reference defaults 8 and 64; ``dim_head=None`` =
            C // heads).
        downsampling: ``"avg_pool"`` (default) or ``"conv"`` (r×r stride-r conv without bias, shared by levels).
        upsampling: ``"nearest"`` (default) or ``"conv_transpose"`` (r×r stride-r, no bias, shared).
        dropout: attention / projection dropout (train mode only).
        shared: one local attention for all levels (the reference); ``False`` gives each level its own.
        max_levels: cap on the number of levels (``None`` = as many as the input needs).  With
            ``shared=False`` it is required: it is the number of attention modules built; the hierarchy then
            stops at that depth (the receptive field is global only while the input needs no more levels).

    Attention maps: ``"attn_level{l}"`` per level, (B·windows)×heads×k²×k².
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "kernel_size": SizeBound(KERNEL_BOUND, "window side"),
        "max_levels": SizeBound(16, "levels, each halves the map"),
        "sampling_rate": SizeBound(16, "down-sampling factor per level"),
    }

    def __init__(
        self,
        channels: int,
        kernel_size: int = 7,
        stride: int | None = None,
        sampling_rate: int = 2,
        heads: int = 8,
        dim_head: int | None = 64,
        downsampling: str = "avg_pool",
        upsampling: str = "nearest",
        dropout: float = 0.0,
        shared: bool = True,
        max_levels: int | None = None,
    ) -> None:
        super().__init__()
        name = self.owner
        stride, heads, dim_head = check_window_args(name, channels, kernel_size, stride, heads, dim_head, dropout)
        check_arg(
            isinstance(sampling_rate, int) and not isinstance(sampling_rate, bool) and sampling_rate >= 2,
            name,
            "sampling_rate",
            "an integer ≥ 2",
            sampling_rate,
        )
        check_choice(downsampling, ("avg_pool", "conv"), name, "downsampling")
        up_kind = {
            "nearest": "nearest",
            "conv_transpose": "conv_transpose",
            "avg_pool": "nearest",
            "conv": "conv_transpose",
        }
        check_arg(
            upsampling in up_kind,
            name,
            "upsampling",
            "'nearest' or 'conv_transpose' (or the community code's 'avg_pool' / 'conv' spellings)",
            upsampling,
        )
        check_arg(isinstance(shared, bool), name, "shared", "a bool", shared)
        if max_levels is not None:
            positive_int(max_levels, name, "max_levels")
        check_arg(
            shared or max_levels is not None,
            name,
            "max_levels",
            "an integer (the number of per-level attention modules) when shared=False",
            max_levels,
        )
        self.channels, self.kernel_size, self.stride, self.sampling_rate = channels, kernel_size, stride, sampling_rate
        self.heads, self.dim_head, self.shared, self.max_levels = heads, dim_head, shared, max_levels
        self.downsampling, self.upsampling = downsampling, up_kind[upsampling]
        n_bodies = 1 if shared or max_levels is None else max_levels
        self.attention = nn.ModuleList(
            WindowSelfAttention(channels, heads, dim_head, float(dropout)) for _ in range(n_bodies)
        )
        self.down = (
            nn.Conv2d(channels, channels, sampling_rate, sampling_rate, bias=False) if downsampling == "conv" else None
        )
        self.up = (
            nn.ConvTranspose2d(channels, channels, sampling_rate, sampling_rate, bias=False)
            if self.upsampling == "conv_transpose"
            else None
        )

    def level_sizes(self, h: int, w: int) -> list[tuple[int, int]]:
        """The grid sizes this module uses for an H×W input, finest first."""
        return multipole_level_sizes(h, w, self.kernel_size, self.sampling_rate, self.max_levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        return _multipole(
            x,
            self.attention,
            self.down,
            self.up,
            self.kernel_size,
            self.stride,
            self.sampling_rate,
            self.max_levels,
            capture_target(self),
        )

    def extra_repr(self) -> str:
        return (
            f"{self.channels}, kernel_size={self.kernel_size}, stride={self.stride}, sampling_rate={self.sampling_rate}, "
            f"heads={self.heads}, dim_head={self.dim_head}, downsampling={self.downsampling!r}, "
            f"upsampling={self.upsampling!r}, shared={self.shared}, max_levels={self.max_levels}"
        )
