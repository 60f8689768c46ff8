"""Spatial gates A: SimAM, EMA, SA-Net shuffle attention, SGE, BAM, polarized self-attention against
External-Attention-pytorch (fightingcv-attention) — timm ships none of them — at 8×256×28×28 and 2×64×56×56,
plus each gate's forward time over one ``x * s`` pass at 2×256×112×112 (the floor rows).

EMA has no packaged peer: it is compared with the official computation (YOLOonMe/EMA-attention-module, the code
the YOLO zoos copy) as re-written in tests/reference/ema.py, on the attnzoo module's weights.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from peers import Comparison, Impl, az, copy_weights, fcv

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from reference.ema import ema as ema_official


class OfficialEMA(nn.Module):
    """The official EMA computation on the weights of an attnzoo ``EfficientMultiScaleAttention``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ema_official(self.module, x)


def batch(b: int, c: int, h: int, w: int) -> Callable[[torch.Generator], tuple]:
    return lambda g: (torch.randn(b, c, h, w, generator=g),)


def comparisons() -> list[Comparison]:
    comps: list[Comparison] = []
    for suffix, b, c, s in (("_28", 8, 256, 28), ("_56", 2, 64, 56)):
        shape = f"{b}×{c}×{s}×{s}"
        inp = batch(b, c, s, s)
        groups_sa = 64 if c % 128 == 0 else c // 2
        groups_sge = 64

        def simam_fcv(a: nn.Module) -> tuple[nn.Module, Any]:
            return fcv("SimAM", "SimAM")(), a

        def ema_official_impl(a: nn.Module) -> tuple[nn.Module, Any]:
            return OfficialEMA(a), a

        def sa_fcv(a: nn.Module, g: int = groups_sa, c: int = c) -> tuple[nn.Module, Any]:
            p = fcv("ShuffleAttention", "ShuffleAttention")(c, G=g)
            copy_weights(a, p, [])
            return p, a

        def sge_fcv(a: nn.Module, g: int = groups_sge) -> tuple[nn.Module, Any]:
            p = fcv("SGE", "SpatialGroupEnhance")(g)
            copy_weights(a, p, [])
            return p, a

        def bam_fcv(a: nn.Module, c: int = c) -> tuple[nn.Module, Any]:
            return fcv("BAM", "BAMBlock")(c, reduction=16, dia_val=1), None

        def psa_fcv(a: nn.Module, c: int = c, name: str = "ParallelPolarizedSelfAttention") -> tuple[nn.Module, Any]:
            p = fcv("PolarizedSelfAttention", name)(c)
            copy_weights(a, p, [])
            return p, a

        comps += [
            Comparison("simam" + suffix, "simam", shape, az("simam", c), inp,
                       [Impl("fightingcv", simam_fcv, True, "SimAM(): same math (the official code; NaN on 1×1 maps)")]),
            Comparison("ema" + suffix, "ema", f"{shape}, factor 32", az("ema", c), inp,
                       [Impl("official", ema_official_impl, True, "the official EMA forward (YOLOonMe), as in "
                             "tests/reference/ema.py, on the same weights: no packaged peer ships EMA")]),
            Comparison("shuffle_attention" + suffix, "shuffle_attention", f"{shape}, groups {groups_sa}",
                       az("shuffle_attention", c), inp,
                       [Impl("fightingcv", sa_fcv, True, f"ShuffleAttention({c}, G={groups_sa}): same math "
                             "(its default G=8, official 64)")]),
            Comparison("sge" + suffix, "sge", f"{shape}, groups {groups_sge}", az("sge", c), inp,
                       [Impl("fightingcv", sge_fcv, True, f"SpatialGroupEnhance({groups_sge}): same math once the "
                             "weights are copied (its bias starts at 0, official 1; NaN on 1×1 maps)")]),
            Comparison("bam" + suffix, "bam", f"{shape}, r 16, dilation 4", az("bam", c), inp,
                       [Impl("fightingcv", bam_fcv, False, "BAMBlock(dia_val=1): not the same function — its "
                             "default dia_val=2 with padding 1 shrinks the map and crashes at 28×28 and 56×56, so "
                             "it runs with dilation 1; 3 hidden FC+BN layers and 3 convs (paper: 1 and 2)")]),
            Comparison("polarized" + suffix, "polarized", f"{shape}, parallel, qkv_bias", az("polarized", c, qkv_bias=True),
                       inp, [Impl("fightingcv", psa_fcv, True, "ParallelPolarizedSelfAttention: same math with "
                                  "attnzoo's qkv_bias=True (its convs all have biases)")]),
        ]
        if suffix == "_28":
            def psa_seq(a: nn.Module, c: int = c) -> tuple[nn.Module, Any]:
                return psa_fcv(a, c, "SequentialPolarizedSelfAttention")

            comps.append(Comparison("polarized_seq" + suffix, "polarized", f"{shape}, sequential, qkv_bias",
                                    az("polarized", c, mode="sequential", qkv_bias=True), inp,
                                    [Impl("fightingcv", psa_seq, True, "SequentialPolarizedSelfAttention: same math "
                                          "with qkv_bias=True")]))
    floor_shape = (2, 256, 112, 112)
    for name in ("simam", "ema", "shuffle_attention", "sge", "bam", "polarized"):
        comps.append(Comparison(f"{name}_floor", name, "2×256×112×112 (floor)", az(name, 256), batch(*floor_shape), [],
                                gate=True))
    return comps
