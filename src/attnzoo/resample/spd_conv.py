"""SPD-Conv: No More Strided Convolutions or Pooling: A New CNN Building Block for Low-Resolution Images and
Small Objects (Sunkara, Luo; ECML-PKDD 2022).  Paper: https://arxiv.org/abs/2208.03641"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from .. import tracing
from ..layers import (
    AttnModule,
    ConvNormAct,
    SizeBound,
    check_arg,
    check_nchw,
    pad_to_multiple,
    positive_int,
)
from ..layers.checks import output_width
from ..registry import ShapeRule, register, strided

__all__ = ["SPDConv", "space_to_depth"]


def space_to_depth(x: torch.Tensor, scale: int = 2) -> torch.Tensor:
    """B×C×H×W → B×s²C×(H/s)×(W/s) in the paper's (and official code's) order: sub-maps
    ``f_{a,b} = X[a::s, b::s]`` concatenated with the row offset ``a`` varying fastest (for s = 2:
    ``[x[::2, ::2], x[1::2, ::2], x[::2, 1::2], x[1::2, 1::2]]``).  H and W must be multiples of ``s``."""
    if tracing.portable(*_SPACE_TO_DEPTH_FORM.targets):
        return space_to_depth_portable(x, scale)
    return torch.cat([x[..., a::scale, b::scale] for b in range(scale) for a in range(scale)], 1)


def space_to_depth_portable(x: torch.Tensor, scale: int = 2) -> torch.Tensor:
    """:func:`space_to_depth` without strided slices (ncnn has none): ``pixel_unshuffle`` of the transposed map
    puts sub-map (a, b) of channel c at c·s² + b·s + a; one transpose makes the offset the outer index."""
    n, c, h, w = x.shape
    y = F.pixel_unshuffle(x.transpose(2, 3), scale).transpose(2, 3)
    return y.reshape(n, c, scale * scale, h // scale, w // scale).transpose(1, 2).flatten(1, 2)


_SPACE_TO_DEPTH_FORM = tracing.PortableForm(
    targets=("ncnn",),
    marker="aten::pixel_unshuffle",
    reason="ncnn has no strided slice (x[..., a::s, b::s])",
)


@register(
    "spd_conv",
    family="resample",
    paper="No More Strided Convolutions or Pooling: A New CNN Building Block for Low-Resolution Images and Small "
    "Objects (Sunkara, Luo; ECML-PKDD 2022)",
    url="https://arxiv.org/abs/2208.03641",
    complexity="O(N)",
    summary="Space-to-depth (C → s²C at H/s × W/s, no information dropped) then a non-strided 3×3 conv + BN + SiLU.",
    shape=ShapeRule("out_channels", strided("scale"), "C → `out_channels`, H×W → ⌈H/`scale`⌉×⌈W/`scale`⌉"),
    test_kwargs={"out_channels": 24},
    forms=(_SPACE_TO_DEPTH_FORM,),
)
class SPDConv(AttnModule):
    """SPD-Conv downsampler: ``y = SiLU(BN(Conv3×3_s1(space_to_depth_s(x))))``; B×C×H×W → B×C'×⌈H/s⌉×⌈W/s⌉.

    Space-to-depth stacks the s² sub-maps ``x[a::s, b::s]`` on the channel axis (paper order, row offset
    fastest), so no pixel is dropped as by a strided conv or pooling; the 3×3 conv (stride 1, no bias) + BN +
    SiLU is YOLOv5's ``Conv``.  Odd sizes are zero-padded at the bottom / right to a multiple of s.

    Differences: the official YOLOv5 configs put the non-strided conv *before* ``space_to_depth`` (the next
    layer then sees 4C channels); this is the paper's SPD → conv order.  See docs/provenance/spd_conv.md.

    Args:
        channels: input channels C.
        out_channels: output channels C' (default C).
        scale: downsampling factor s (2 in the paper).
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "scale": SizeBound(16, "space-to-depth factor: s²·C channels"),
    }

    def __init__(self, channels: int, out_channels: int | None = None, scale: int = 2) -> None:
        super().__init__()
        self.channels, self.out_channels = channels, output_width(channels, out_channels, self.owner)
        self.scale = positive_int(scale, self.owner, "scale")
        check_arg(scale <= 16, self.owner, "scale", "an integer in 1..16", scale)
        self.conv = ConvNormAct(channels * scale * scale, self.out_channels, 3, 1, "bn", "silu", self.owner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        if self.scale > 1:
            x = space_to_depth(pad_to_multiple(x, self.scale), self.scale)
        return self.conv(x)
