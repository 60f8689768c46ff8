"""Peer rows for ceca, lcbam, parnet_sse, splat and epsa (and bat / scsa when registered).

Peers that ship them: timm (``CecaModule``, ``LightCbamModule``, ``SplitAttn``; same math, weights copied).
fightingcv-attention (External-Attention's PyPI copy) ships ``ParNetAttention`` (the whole three-branch ParNet
block; its SSE branch has no BN: the row runs that branch alone, another function) and ``PSA`` (another
computation than EPSANet's: it splits the input channels, no conv groups, one SE per branch; its parameters are
unregistered and it writes into its input in place, so fwd+bwd with an input gradient fails).  No installed
package ships EPSANet's own ``PSAModule`` or ParNet's SSE with its BN: the "official" rows run the official
forward (written from the official code's structure, attnzoo's weights), as the ``ema`` row of gates_channel.

Shapes: 8×256×28×28 and 2×64×56×56 against the peers; 2×256×112×112 for the gate floor of the three new gates
(forward time over one ``x * s`` pass).

    python benchmarks/peers.py --config 1:cpu --runs 1 --only ceca_8x256x28,... \\
        --output benchmarks/results/gates_timm.md
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from peers import Call, Comparison, Impl, az, copy_weights, fcv, timm_layer

SHAPES = {"8x256x28": (8, 256, 28, 28), "2x64x56": (2, 64, 56, 56)}
FLOOR_SHAPE = (2, 256, 112, 112)


def _input(shape: tuple[int, ...]) -> Callable[[torch.Generator], tuple]:
    return lambda g: (torch.randn(*shape, generator=g),)


class OfficialSSE(nn.Module):
    """ParNet's SSE as the official block writes it: BN, then nn.Sequential(AdaptiveAvgPool2d, Conv2d 1×1, Sigmoid)."""

    def __init__(self, a: nn.Module) -> None:
        super().__init__()
        c = a.channels
        self.bn = copy.deepcopy(a.bn)
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c, 1), nn.Sigmoid())
        self.se[1].load_state_dict(a.fc.state_dict())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.bn(x)
        return u * self.se(u)


class OfficialPSA(nn.Module):
    """EPSANet's ``PSAModule`` forward as the official code computes it (four convs, one SE module per call,
    cat → 5-D view → softmax over dim 1 → product → the branches concatenated last first in a loop)."""

    def __init__(self, a: nn.Module) -> None:
        super().__init__()
        self.convs = copy.deepcopy(a.convs)
        se = a.se
        w = a.channels // 4
        h = se.fc1.out_channels
        self.fc1, self.fc2 = nn.Conv2d(w, h, 1), nn.Conv2d(h, w, 1)
        self.fc1.load_state_dict(se.fc1.state_dict())
        self.fc2.load_state_dict(se.fc2.state_dict())
        self.split = w

    def se(self, f: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(f, 1)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        xs = [conv(x) for conv in self.convs]
        feats = torch.cat(xs, dim=1).view(b, 4, self.split, xs[0].shape[2], xs[0].shape[3])
        att = torch.cat([self.se(f) for f in xs], dim=1).view(b, 4, self.split, 1, 1).softmax(dim=1)
        fw = feats * att
        out = fw[:, 0]
        for i in range(1, 4):
            out = torch.cat((fw[:, i], out), 1)
        return out


def _rows(tag: str, shape: tuple[int, ...]) -> list[Comparison]:
    b, c, h, w = shape
    cfg = f"{b}×{c}×{h}×{w}"
    inp = _input(shape)

    def ceca_timm(a: nn.Module) -> tuple[nn.Module, nn.Module]:
        p = timm_layer("eca", "CecaModule")(channels=c)
        copy_weights(a, p, [])
        return p, a

    def lcbam_timm(a: nn.Module) -> tuple[nn.Module, nn.Module]:
        p = timm_layer("cbam", "LightCbamModule")(c)
        copy_weights(a, p, [("channel.", ""), ("spatial.conv.conv.", "spatial.conv."),
                            ("spatial.conv.bn.", "spatial.bn.")])
        return p, a

    def sse_official(a: nn.Module) -> tuple[nn.Module, nn.Module]:
        return OfficialSSE(a), a

    def sse_fcv(a: nn.Module) -> tuple[nn.Module, None]:
        p = fcv("ParNetAttention", "ParNetAttention")(c)
        return Call(p, lambda m, x: m.sse(x) * x), None

    def splat_timm(a: nn.Module) -> tuple[nn.Module, nn.Module]:
        p = timm_layer("split_attn", "SplitAttn")(c, norm_layer=nn.BatchNorm2d)
        copy_weights(a, p, [("conv.", "conv.conv."), ("bn0.", "conv.norm.")])
        return p, a

    def epsa_official(a: nn.Module) -> tuple[nn.Module, nn.Module]:
        return OfficialPSA(a), a

    def epsa_fcv(a: nn.Module) -> tuple[nn.Module, None]:
        return fcv("PSA", "PSA")(c, reduction=4), None

    k = timm_layer("eca", "CecaModule")(channels=c).conv.weight.shape[-1]
    return [
        Comparison(f"ceca_{tag}", "ceca", f"{cfg}, k = ψ({c}) = {k}", az("ceca", c), inp,
                   [Impl("timm", ceca_timm, True, "CecaModule: same math")]),
        Comparison(f"lcbam_{tag}", "lcbam", f"{cfg}, hidden {max(int(c / 16 + 0.5), 1)}, k 7", az("lcbam", c), inp,
                   [Impl("timm", lcbam_timm, True, "LightCbamModule: same math")]),
        Comparison(f"parnet_sse_{tag}", "parnet_sse", cfg, az("parnet_sse", c), inp,
                   [Impl("official", sse_official, True, "BN + Sequential(AdaptiveAvgPool2d, Conv2d, Sigmoid), the "
                         "official block's SSE: same math"),
                    Impl("fightingcv", sse_fcv, False, "ParNetAttention's SSE branch alone (sse(x) * x): no BN")]),
        Comparison(f"splat_{tag}", "splat", f"{cfg}, radix 2, inner {max(c * 2 // 4, 32)}", az("splat", c), inp,
                   [Impl("timm", splat_timm, True, "SplitAttn(norm_layer=BatchNorm2d): same math (C·R/4 a "
                         "multiple of 8)")]),
        Comparison(f"epsa_{tag}", "epsa", f"{cfg}, k 3/5/7/9, groups 1/4/8/16", az("epsa", c), inp,
                   [Impl("official", epsa_official, True, "EPSANet PSAModule's forward (loop of concatenations): "
                         "same math"),
                    Impl("fightingcv", epsa_fcv, False, "PSA(reduction=4): another computation (input channels "
                         "split, no groups, per-branch SE, unregistered parameters, writes into its input)")]),
    ]


def comparisons() -> list[Comparison]:
    rows: list[Comparison] = []
    for tag, shape in SHAPES.items():
        rows += _rows(tag, shape)
    c = FLOOR_SHAPE[1]
    rows += [Comparison(f"{n}_floor", n, "2×256×112×112", az(n, c), _input(FLOOR_SHAPE), [], gate=True)
             for n in ("ceca", "lcbam", "parnet_sse")]
    return rows
