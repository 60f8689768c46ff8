"""DySample: Learning to Upsample by Learning to Sample (Liu, Lu, Fu, Cao; ICCV 2023).
Paper: https://arxiv.org/abs/2308.15085"""

from __future__ import annotations

from typing import ClassVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..capture import record
from ..layers import AttnModule, SizeBound, check_arg, check_choice, check_nchw, positive_int
from ..registry import ShapeRule, register, upsampled
from ..tracing import PortableForm, portable

__all__ = ["DySample"]


@register(
    "dysample",
    family="resample",
    paper="Learning to Upsample by Learning to Sample (Liu, Lu, Fu, Cao; ICCV 2023)",
    url="https://arxiv.org/abs/2308.15085",
    complexity="O(N)",
    summary="Dynamic upsampler: a 1×1 conv predicts per-sub-pixel offsets around the bilinear sampling "
    "positions, then grid_sample; bilinear upsampling when the offsets are 0.",
    shape=ShapeRule(size=upsampled("scale"), text="upsamples H×W by `scale`"),
    test_kwargs={"groups": 2},
    maps=("offsets",),
    forms=(
        PortableForm(
            targets=("ncnn",),
            marker="aten::chunk",
            reason="not a conversion failure but latency: the eager form folds the channel groups into the batch "
            "(B·G) for grid_sample, which ncnn (no batch axis) runs ~1000× slower (1×64×13×11, 4 groups: 107 ms "
            "against 0.08 ms with 1 group); each group is sampled on its own channel slice instead",
            cases=({}, {"groups": 4, "style": "pl"}),
        ),
    ),
)
class DySample(AttnModule):
    """DySample upsampler (official ``tiny-smart/dysample``); B×C×H×W → B×C×sH×sW.

    ``style="lp"`` (linear, then pixel-shuffle): ``O = 0.25·Conv1×1(x)`` (B×2·g·s²×H×W; with ``dyscope``
    ``O = 0.5·σ(Conv1×1_scope(x))·Conv1×1(x)``); ``style="pl"`` computes the same convs on
    ``pixel_shuffle(x)`` (C/s² channels at sH×sW) and ``pixel_unshuffle``s the result.  Output pixel
    ``(s·i + a, s·j + b)`` of channel group ``g`` samples x (bilinear, border padding) at
    ``((s·i + a + 0.5)/s − 0.5 + O_y, (s·j + b + 0.5)/s − 0.5 + O_x)`` in input pixels: the bilinear
    upsampling position plus the predicted offset.  With the offset conv at 0 it is exactly
    ``F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)``.  Init as the official code:
    offset conv N(0, 0.001), scope conv 0.  The ``init_pos`` buffer (the sub-pixel positions, folded into the
    sampling grid here) is kept so official state_dicts load.

    Args:
        channels: input channels C (divisible by ``groups``; by s² for ``"pl"``).
        scale: upsampling factor s.
        style: ``"lp"`` or ``"pl"``.
        groups: channel groups sharing one offset field (4).
        dyscope: dynamic scope factor (DySample+ / "-S+" variants).

    Captured map: ``"offsets"`` B×2g×sH×sW (x then y offsets in input pixels, init position excluded).
    See docs/provenance/dysample.md.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "scale": SizeBound(16, "upsampling factor: 2·g·s² offset channels"),
    }

    def __init__(
        self, channels: int, scale: int = 2, style: str = "lp", groups: int = 4, dyscope: bool = False
    ) -> None:
        super().__init__()
        self.channels = positive_int(channels, self.owner, "channels")
        self.scale = positive_int(scale, self.owner, "scale")
        check_arg(scale <= 16, self.owner, "scale", "an integer in 1..16", scale)
        self.style = check_choice(style, ("lp", "pl"), self.owner, "style")
        self.groups = positive_int(groups, self.owner, "groups")
        check_arg(channels % groups == 0, self.owner, "groups", f"a divisor of channels={channels}", groups)
        check_arg(isinstance(dyscope, bool), self.owner, "dyscope", "a bool", dyscope)
        self.dyscope = dyscope
        s2 = scale * scale
        if style == "pl":
            check_arg(
                channels % s2 == 0, self.owner, "channels", f"a multiple of scale²={s2} with style='pl'", channels
            )
            cin, cout = channels // s2, 2 * groups
        else:
            cin, cout = channels, 2 * groups * s2
        self.offset = nn.Conv2d(cin, cout, 1)
        nn.init.normal_(self.offset.weight, 0.0, 0.001)
        nn.init.zeros_(cast(torch.Tensor, self.offset.bias))
        if dyscope:
            self.scope = nn.Conv2d(cin, cout, 1)
            nn.init.zeros_(self.scope.weight)
            nn.init.zeros_(cast(torch.Tensor, self.scope.bias))
        self.register_buffer("init_pos", self._init_pos())

    def _init_pos(self) -> torch.Tensor:
        """Sub-pixel positions relative to the input pixel centre, (x, y) × groups × s × s, official order."""
        s = self.scale
        h = (torch.arange(s, dtype=torch.float32) - (s - 1) / 2) / s
        px = h.view(1, s).expand(s, s)  # x offset varies with the column sub-pixel b
        py = h.view(s, 1).expand(s, s)
        pos = torch.stack([px, py]).unsqueeze(1).expand(2, self.groups, s, s)
        return pos.reshape(1, -1, 1, 1).clone()

    def _offsets(self, x: torch.Tensor) -> torch.Tensor:
        """B×2·g·s²×H×W offsets in input pixels (channel = xy·g·s² + group·s² + a·s + b)."""
        if self.style == "pl":
            x = F.pixel_shuffle(x, self.scale)
        off = self.offset(x)
        if self.dyscope:
            off = off * torch.sigmoid(self.scope(x)) * 0.5
        else:
            off = off * 0.25
        if self.style == "pl":
            off = F.pixel_unshuffle(off, self.scale)
        return off

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        b, c, h, w = x.shape
        s, g = self.scale, self.groups
        off = self._offsets(x)
        off = off.to(torch.promote_types(off.dtype, torch.float32))
        off = F.pixel_shuffle(off, s)  # B×2g×sH×sW: (x, y) offsets of every output pixel, in input pixels
        record(self, "offsets", off)
        # bilinear sampling position of output pixel r: (r + 0.5)/s input pixels (= i + 0.5 + init_pos), then
        # normalised for align_corners=False: 2·p/size − 1
        ry = ((torch.arange(s * h, device=x.device, dtype=off.dtype) + 0.5) / s).view(1, 1, s * h, 1)
        rx = ((torch.arange(s * w, device=x.device, dtype=off.dtype) + 0.5) / s).view(1, 1, 1, s * w)
        gx = (off[:, :g] + rx) * (2.0 / w) - 1.0
        gy = (off[:, g:] + ry) * (2.0 / h) - 1.0
        if g > 1 and portable("ncnn"):
            return self._sample_portable(x, gx, gy)
        grid = torch.stack([gx, gy], -1).reshape(b * g, s * h, s * w, 2)
        out = F.grid_sample(
            x.reshape(b * g, c // g, h, w),
            grid.to(x.dtype),
            mode="bilinear",
            padding_mode="border",
            align_corners=False,
        )
        return out.reshape(b, c, s * h, s * w)

    def _sample_portable(self, x: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
        """The ncnn form of the sampling: each of the g channel groups sampled on its own slice of x (gx, gy:
        B×g×sH×sW normalised positions), concatenated; the same values without folding groups into the batch."""
        outs = [
            F.grid_sample(
                xg,
                torch.stack([gx[:, i], gy[:, i]], -1).to(x.dtype),
                mode="bilinear",
                padding_mode="border",
                align_corners=False,
            )
            for i, xg in enumerate(x.chunk(self.groups, 1))
        ]
        return torch.cat(outs, 1)
