"""Peer rows for the large-kernel and strip gates: gam, ela, caa, lka, lska, lsk.

No peer package ships these as modules except timm's ``EfficientLocalAttn`` (ELA; compared with the paper's
settings: GroupNorm(16), no extra activation, the shared conv copied into its two per-axis convs).
fightingcv-attention (External-Attention-pytorch) has none of the six.  Every gate is therefore also compared
with a plain implementation written here the way the circulating copies write it (labelled "copy-style":
``x.clone()`` before the convs as in VAN/LSKA, ``nn.AvgPool2d`` + ``nn.Sequential`` layers, permute + view +
``nn.Linear`` for GAM's MLP, ``torch.cat`` before LSK's channel pooling); weights are copied from the attnzoo
module and the outputs compared in the same run.

Inputs: 8×256×28×28 and 2×64×56×56 (forward and forward+backward, memory); 2×256×112×112 for the floor
(forward time over one ``x * s`` pass).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from peers import Comparison, Impl, az, copy_weights, nchw, timm_layer

# ------------------------------------------------------------------------------- copy-style implementations


class GAMCopy(nn.Module):
    """GAM as the YOLO zoos write it (the form with the channel sigmoid)."""

    def __init__(self, c: int, rate: int = 4) -> None:
        super().__init__()
        self.channel_attention = nn.Sequential(nn.Linear(c, c // rate), nn.ReLU(inplace=True), nn.Linear(c // rate, c))
        self.spatial_attention = nn.Sequential(
            nn.Conv2d(c, c // rate, 7, padding=3), nn.BatchNorm2d(c // rate), nn.ReLU(inplace=True),
            nn.Conv2d(c // rate, c, 7, padding=3), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        xp = x.permute(0, 2, 3, 1).reshape(b, -1, c)
        att = self.channel_attention(xp).view(b, h, w, c).permute(0, 3, 1, 2).sigmoid()
        x = x * att
        return x * self.spatial_attention(x).sigmoid()


class ELACopy(nn.Module):
    """ELA as the paper's listing (ELA-B): views, one Conv1d and one GroupNorm for both axes."""

    def __init__(self, c: int, k: int = 7, gn: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c, c, k, padding=k // 2, groups=c, bias=False)
        self.gn = nn.GroupNorm(gn, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x_h = torch.mean(x, dim=3, keepdim=True).view(b, c, h)
        x_w = torch.mean(x, dim=2, keepdim=True).view(b, c, w)
        x_h = torch.sigmoid(self.gn(self.conv(x_h))).view(b, c, h, 1)
        x_w = torch.sigmoid(self.gn(self.conv(x_w))).view(b, c, 1, w)
        return x * x_h * x_w


class CAACopy(nn.Module):
    """CAA as PKINet uses it (plain 1×1 convs), multiplied into the input as the copies do."""

    def __init__(self, c: int, k: int = 11) -> None:
        super().__init__()
        self.avg_pool = nn.AvgPool2d(7, 1, 3)
        self.conv1 = nn.Conv2d(c, c, 1)
        self.h_conv = nn.Conv2d(c, c, (1, k), 1, (0, k // 2), groups=c)
        self.v_conv = nn.Conv2d(c, c, (k, 1), 1, (k // 2, 0), groups=c)
        self.conv2 = nn.Conv2d(c, c, 1)
        self.act = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.act(self.conv2(self.v_conv(self.h_conv(self.conv1(self.avg_pool(x))))))


class LKACopy(nn.Module):
    """VAN's LKA as circulated (``u = x.clone()``)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(c, c, 5, padding=2, groups=c)
        self.conv_spatial = nn.Conv2d(c, c, 7, padding=9, groups=c, dilation=3)
        self.conv1 = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.clone()
        return u * self.conv1(self.conv_spatial(self.conv0(x)))


class LSKACopy(nn.Module):
    """LSKA as circulated (``u = x.clone()``), kernel 23: 1×5, 5×1, 1×7 d3, 7×1 d3, 1×1."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv0h = nn.Conv2d(c, c, (1, 5), padding=(0, 2), groups=c)
        self.conv0v = nn.Conv2d(c, c, (5, 1), padding=(2, 0), groups=c)
        self.conv_spatial_h = nn.Conv2d(c, c, (1, 7), padding=(0, 9), groups=c, dilation=3)
        self.conv_spatial_v = nn.Conv2d(c, c, (7, 1), padding=(9, 0), groups=c, dilation=3)
        self.conv1 = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.clone()
        a = self.conv_spatial_v(self.conv_spatial_h(self.conv0v(self.conv0h(x))))
        return u * self.conv1(a)


class LSKCopy(nn.Module):
    """The LSK selection written from the paper in the popular style: concatenate the two reduced branches,
    pool over channels, concatenate [mean, max], 7×7 conv, sigmoid, weighted sum, 1×1."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(c, c, 5, padding=2, groups=c)
        self.conv_spatial = nn.Conv2d(c, c, 7, padding=9, groups=c, dilation=3)
        self.conv1 = nn.Conv2d(c, c // 2, 1)
        self.conv2 = nn.Conv2d(c, c // 2, 1)
        self.conv_squeeze = nn.Conv2d(2, 2, 7, padding=3)
        self.conv = nn.Conv2d(c // 2, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a1 = self.conv0(x)
        a2 = self.conv_spatial(a1)
        a1, a2 = self.conv1(a1), self.conv2(a2)
        a = torch.cat([a1, a2], dim=1)
        agg = torch.cat([a.mean(dim=1, keepdim=True), a.max(dim=1, keepdim=True).values], dim=1)
        sig = self.conv_squeeze(agg).sigmoid()
        return x * self.conv(a1 * sig[:, 0:1] + a2 * sig[:, 1:2])


# ------------------------------------------------------------------------------------------- comparisons


def _inputs(b: int, c: int, s: int) -> Callable[[torch.Generator], tuple]:
    if b == 2:
        return nchw(c, s, s)
    return lambda g: (torch.randn(b, c, s, s, generator=g),)


def _copy(cls: type, rename: list[tuple[str, str]], **kw: Any) -> Callable[[nn.Module], tuple[nn.Module, nn.Module]]:
    def build(a: nn.Module) -> tuple[nn.Module, nn.Module]:
        p = cls(a.channels, **kw)
        copy_weights(a, p, rename)
        return p, a

    return build


def _ela_timm(a: nn.Module) -> tuple[nn.Module, nn.Module]:
    p = timm_layer("coord_attn", "EfficientLocalAttn")(a.channels, kernel_size=7, act_layer=nn.Identity,
                                                     norm_layer=lambda c, **kw: nn.GroupNorm(16, c))
    w = a.conv.weight.detach()
    p.load_state_dict({"conv_h.weight": w[:, :, :, None].clone(), "conv_w.weight": w[:, :, None, :].clone(),
                       "norm_h.weight": a.gn.weight.detach().clone(), "norm_h.bias": a.gn.bias.detach().clone(),
                       "norm_w.weight": a.gn.weight.detach().clone(), "norm_w.bias": a.gn.bias.detach().clone()})
    return p, a


GAM_RENAME = [("channel_attention.0.", "fc1."), ("channel_attention.2.", "fc2."), ("spatial_attention.0.", "conv1."),
              ("spatial_attention.1.", "bn1."), ("spatial_attention.3.", "conv2."), ("spatial_attention.4.", "bn2.")]
LSK_RENAME = [("conv1.", "reduce1."), ("conv2.", "reduce2."), ("conv_squeeze.", "select."), ("conv.", "proj.")]

SHAPES = [(8, 256, 28, "_b8"), (2, 64, 56, ""), (2, 256, 112, "_floor")]


def comparisons() -> list[Comparison]:
    out: list[Comparison] = []
    for b, c, s, suffix in SHAPES:
        shape = f"{b}×{c}×{s}×{s}"
        gate = suffix == "_floor"
        inp = _inputs(b, c, s)
        out += [
            Comparison("gam" + suffix, "gam", f"{shape}, r 4", az("gam", c), inp,
                       [Impl("copy-style", _copy(GAMCopy, GAM_RENAME), True,
                             "GAM as the YOLO zoos write it (permute + view + nn.Linear MLP, sigmoid, nn.Sequential "
                             "spatial branch); same math")], gate=gate),
            Comparison("ela" + suffix, "ela", f"{shape}, ELA-B (k 7, depthwise, GN 16)", az("ela", c), inp,
                       [Impl("timm", _ela_timm, True, "timm EfficientLocalAttn(kernel_size=7, GroupNorm(16), "
                             "act Identity), shared conv copied into conv_h/conv_w: same math (timm's defaults "
                             "differ: GroupNorm(1), SiLU before the sigmoid, two convs)"),
                        Impl("copy-style", _copy(ELACopy, []), True, "the paper's listing (ELA-B): same math")],
                       gate=gate),
            Comparison("caa" + suffix, "caa", f"{shape}, k 11", az("caa", c), inp,
                       [Impl("copy-style", _copy(CAACopy, []), True, "CAA as built inside PKINet (norm and act "
                             "None), nn.AvgPool2d(7, 1, 3), x * factor: same math")], gate=gate),
            Comparison("lka" + suffix, "lka", shape, az("lka", c), inp,
                       [Impl("copy-style", _copy(LKACopy, []), True, "VAN's LKA with u = x.clone(): same math")],
                       gate=gate),
            Comparison("lska" + suffix, "lska", f"{shape}, k 23", az("lska", c, kernel_size=23), inp,
                       [Impl("copy-style", _copy(LSKACopy, []), True, "LSKA k=23 with u = x.clone(): same math")],
                       gate=gate),
            Comparison("lsk" + suffix, "lsk", shape, az("lsk", c), inp,
                       [Impl("copy-style", _copy(LSKCopy, LSK_RENAME), True, "LSK written from the paper in the "
                             "popular style (torch.cat of the branches, then of [mean, max]): same math")],
                       gate=gate),
        ]
    return out
