"""VOLO: Vision Outlooker for Visual Recognition (Yuan et al.; TPAMI 2022) — outlook attention.

Paper: https://arxiv.org/abs/2106.13112.  ``F.unfold``/``F.fold`` are replaced by shifted strided views and shifted adds.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from ..capture import capture_target, record
from ..functional import (
    fold_shifts,
    gather_shifts,
)
from ..layers import (
    KERNEL_BOUND,
    AttnModule,
    SizeBound,
    check_arg,
    check_nchw,
    fx_leaf,
    odd_kernel,
    positive_int,
)
from ..layers.checks import check_attention_args
from ..registry import register
from ..tracing import PortableForm, portable

__all__ = ["OutlookAttention"]

#: The export targets that take the portable form (:func:`_outlook_portable`): ncnn cannot hold the eager form,
#: OpenVINO runs it ~20× slower (1×64×13×11: 39 ms against 1.7 ms for the F.unfold / F.fold form, eager 0.9 ms).
_TARGETS: tuple[str, ...] = ("ncnn", "openvino")


class _Outlook(NamedTuple):
    """The layers and sizes of one :class:`OutlookAttention` (one FX-leaf argument: FX records its layers)."""

    v: nn.Linear
    attn: nn.Linear
    proj: nn.Linear
    attn_drop: nn.Dropout
    kernel_size: int
    padding: int
    stride: int
    heads: int
    scale: float


@fx_leaf
def _outlook(x: torch.Tensor, m: _Outlook, owner: nn.Module | None) -> torch.Tensor:
    """The outlook attention ``m`` on ``x`` (before the output dropout); ``owner`` records the map."""
    if portable(*_TARGETS) and owner is None:
        return _outlook_portable(x, m)
    kernel, padding, stride, heads, scale = m.kernel_size, m.padding, m.stride, m.heads, m.scale
    b, c, h, w = x.shape
    d = c // heads
    k2 = kernel * kernel
    gh, gw = (
        (h + stride - 1) // stride,
        (w + stride - 1) // stride,
    )  # window grid ⌈H/s⌉×⌈W/s⌉, as the official unfold and ceil-mode pool
    xl = x.permute(0, 2, 3, 1)
    centre = xl if stride == 1 else F.avg_pool2d(x, stride, stride, ceil_mode=True).permute(0, 2, 3, 1)
    a = m.attn(centre).reshape(b, gh * gw, heads, k2, k2)
    a = m.attn_drop((a * scale).softmax(dim=-1))  # B×N'×heads×k²(out)×k²(source)
    if owner is not None:
        record(owner, "attn", a.permute(0, 2, 1, 3, 4))  # official layout B×heads×N'×k²×k²
    # zero-pad v as the official unfold does (p on top/left; bottom/right so that the last window fits and the
    # buffer also holds the p + H rows the fold crops from); intermediates are dropped as soon as they are used,
    # so that inference keeps at most the gathered v and the product alive
    hb, wb = max(stride * (gh - 1) + kernel, padding + h), max(stride * (gw - 1) + kernel, padding + w)
    vp = F.pad(m.v(xl), (0, 0, padding, wb - padding - w, padding, hb - padding - h)).unflatten(-1, (heads, d))
    vu = gather_shifts(vp, kernel, stride, gh, gw)  # B×gh×gw×heads×k²×d (the official unfold)
    del vp
    y = a @ vu.view(b, gh * gw, heads, k2, d)  # B×N'×heads×k²(out)×d
    del a, vu
    out = fold_shifts(y.view(b, gh, gw, heads, k2, d), kernel, stride, hb, wb)  # the official F.fold
    del y
    out = out[:, padding : padding + h, padding : padding + w].reshape(b, h, w, c)
    return m.proj(out).permute(0, 3, 1, 2)


def _outlook_portable(x: torch.Tensor, m: _Outlook) -> torch.Tensor:
    """:func:`_outlook` in the portable form, the official ``F.unfold`` / ``F.fold`` with at most 4 axes besides
    the batch (ncnn): the window grid and the heads share one axis, never the batch's."""
    kernel, padding, stride, heads, scale = m.kernel_size, m.padding, m.stride, m.heads, m.scale
    b, c, h, w = x.shape
    d, k2 = c // heads, kernel * kernel
    centre = x if stride == 1 else F.avg_pool2d(x, stride, stride, ceil_mode=True, count_include_pad=False)
    n = centre.shape[2] * centre.shape[3]
    a = m.attn(centre.permute(0, 2, 3, 1).reshape(b, n, c)).reshape(b, n * heads, k2, k2)
    a = m.attn_drop((a * scale).softmax(dim=-1))  # B×(N'·heads)×k²(out)×k²(source)
    # the projections on B×N×C tokens (a Linear on 4 axes costs ncnn a slow shape-referencing reshape)
    v = m.v(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, c, h, w)
    vu = F.unfold(v, kernel, padding=padding, stride=stride).reshape(b, heads, d, k2, n)
    vu = vu.permute(0, 4, 1, 3, 2).reshape(b, n * heads, k2, d)
    y = (a @ vu).reshape(b, n, heads, k2, d).permute(0, 2, 4, 3, 1).reshape(b, c * k2, n)
    out = F.fold(y, (h, w), kernel, padding=padding, stride=stride)  # B×C×H×W
    return m.proj(out.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, c, h, w)


@register(
    "outlook",
    family="local",
    paper="VOLO: Vision Outlooker for Visual Recognition (Yuan, Hou, Jiang, Feng, Yan; TPAMI 2022)",
    url="https://arxiv.org/abs/2106.13112",
    complexity="O(N·k⁴)",
    summary="VOLO outlook attention: k²×k² weights generated from each centre token, aggregate and sum overlapping windows.",
    test_kwargs={"heads": 2},
    maps=("attn",),
    forms=(
        PortableForm(
            targets=("ncnn",),
            marker="aten::col2im",
            reason="the eager form gathers and sums the windows by step slices on 6-axis views; ncnn has no step "
            "slices and at most 5 axes (F.unfold / F.fold instead, as the official code)",
            cases=({}, {"stride": 2}, {"kernel_size": 5}),
        ),
        PortableForm(
            targets=("openvino",),
            marker="aten::col2im",
            reason="not a conversion failure but latency: OpenVINO runs the eager form's k² shifted slices and adds "
            "on 6-axis views ~20× slower than F.unfold / F.fold (1×64×13×11: 39 ms against 1.7 ms; eager 0.9 ms)",
            cases=({}, {"stride": 2}),
        ),
    ),
)
class OutlookAttention(AttnModule):
    """Outlook attention (VOLO, Yuan et al., TPAMI 2022); B×C×H×W → B×C×H×W.

    The official ``OutlookAttention`` (sail-sg/volo ``models/volo.py``; also ``timm.models.volo``):
    ``v = Linear(C→C)(x)``; for each window centre on the ⌈H/s⌉×⌈W/s⌉ grid, weights ``a = softmax(Linear(C →
    k⁴·heads)(AvgPool_s(x)) · d^-0.5)`` (k²×k² per head, generated from the pooled centre token, no q·k
    product); the window's k² outputs ``a @ v_window`` are placed back and **summed** where windows overlap
    (the official ``F.fold``), then ``Linear(C→C)``.  The output is H×W for every stride: with stride 2
    (VOLO's Outlooker setting) the attention runs on the ⌈H/2⌉×⌈W/2⌉ grid (ceil-mode pooling) and the fold
    scatters each window back at stride 2 to full resolution, exactly as the official code.  Odd sizes work as
    the official (zero padding of v takes part as zero values, as in the official unfold).

    Parameters are named as the official / timm module (``v``, ``attn``, ``proj``), so their state dicts
    load directly.  Internally channels-last; ``F.fold`` is replaced by k² shifted adds (same sum).

    Differences from the community code (External-Attention ``OutlookAttention``): that one passes padding and
    stride positionally to ``nn.Unfold`` (they land on dilation and padding), so stride 2 crashes for every
    shape; it reuses ``attn_drop`` (default 0.1) as projection dropout; it takes B×H×W×C.

    Args:
        channels: input channels C.
        kernel_size: window k (odd).
        padding: must be (k - 1) / 2 (default): the official code only works when the unfold grid equals the
            ⌈H/s⌉×⌈W/s⌉ pooled grid, which is the case exactly for this padding.
        stride: window stride s (1, or 2 as in VOLO).
        heads: heads (must divide C).
        qkv_bias: bias of the v projection.
        qk_scale: attention scale (default head_dim^-0.5).
        attn_drop, proj_drop: dropout rates (0 by default, as the official).

    Attention maps: ``"attn"``, B×heads×N'×k²×k² (N' = ⌈H/s⌉·⌈W/s⌉).
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "kernel_size": SizeBound(15, "heads·k⁴ attention weights per pixel"),
        "stride": SizeBound(KERNEL_BOUND, "stride"),
    }

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        padding: int | None = None,
        stride: int = 1,
        heads: int = 1,
        qkv_bias: bool = False,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        name = self.owner
        check_attention_args(name, channels, heads, attn_drop=attn_drop, proj_drop=proj_drop)
        odd_kernel(kernel_size, name)
        padding = kernel_size // 2 if padding is None else padding
        check_arg(
            padding == kernel_size // 2,
            name,
            "padding",
            f"(kernel_size - 1) / 2 = {kernel_size // 2} (the only padding for which the official unfold "
            f"grid matches the ⌈H/stride⌉ attention grid)",
            padding,
        )
        positive_int(stride, name, "stride")
        check_arg(
            qk_scale is None
            or (isinstance(qk_scale, (int, float)) and not isinstance(qk_scale, bool) and 0 < qk_scale < float("inf")),
            name,
            "qk_scale",
            "None or a positive float",
            qk_scale,
        )
        self.channels, self.kernel_size, self.padding, self.stride, self.heads = (
            channels,
            kernel_size,
            padding,
            stride,
            heads,
        )
        self.scale = float(qk_scale) if qk_scale is not None else (channels // heads) ** -0.5
        self.v = nn.Linear(channels, channels, bias=qkv_bias)
        self.attn = nn.Linear(channels, kernel_size**4 * heads)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(channels, channels)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        m = _Outlook(
            self.v,
            self.attn,
            self.proj,
            self.attn_drop,
            self.kernel_size,
            self.padding,
            self.stride,
            self.heads,
            self.scale,
        )
        return self.proj_drop(_outlook(x, m, capture_target(self)))

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}, padding={self.padding}, stride={self.stride}, heads={self.heads}"
