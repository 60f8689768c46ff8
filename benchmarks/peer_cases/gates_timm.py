"""Peer rows for ceca, lcbam, parnet_sse, splat, epsa, bat and scsa.

Peers that ship them: timm (``CecaModule``, ``LightCbamModule``, ``SplitAttn``, ``BatNonLocalAttn``; same math,
weights copied; BAT at sizes 7 divides, its dropout set to attnzoo's 0).
fightingcv-attention (External-Attention's PyPI copy) ships ``ParNetAttention`` (the whole three-branch ParNet
block; its SSE branch has no BN: the row runs that branch alone, another function) and ``PSA`` (another
computation than EPSANet's: it splits the input channels, no conv groups, one SE per branch; its parameters are
unregistered and it writes into its input in place, so fwd+bwd with an input gradient fails).  No installed
package ships EPSANet's own ``PSAModule`` or ParNet's SSE with its BN: the "official" rows run the official
forward (written from the official code's structure, attnzoo's weights), as the ``ema`` row of gates_channel;
likewise SCSA (no installed package ships it; the official class needs mmcv / mmengine): its official forward at
sizes 7 divides (AvgPool2d(7) floors), einops' rearrange written as reshapes.

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


class OfficialSCSA(nn.Module):
    """SCSA's official forward: four depthwise Conv1d on the channel quarters (rows, then columns), GroupNorm,
    sigmoid; AvgPool2d(7); GroupNorm(1); depthwise q/k/v convs; per-head d×d attention over all pooled positions
    (explicit softmax); attn @ v; the mean over positions; sigmoid."""

    def __init__(self, a: nn.Module) -> None:
        super().__init__()
        self.m = copy.deepcopy(a)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.m
        b, c, h, w = x.shape
        gc = c // 4

        def smsa(s: torch.Tensor, norm: nn.Module) -> torch.Tensor:
            parts = torch.split(s, gc, dim=1)
            return torch.sigmoid(norm(torch.cat([conv(p) for conv, p in zip(m.dwcs, parts)], dim=1)))

        x = x * smsa(x.mean(3), m.norm_h).view(b, c, h, 1) * smsa(x.mean(2), m.norm_w).view(b, c, 1, w)
        y = m.norm(F.avg_pool2d(x, m.window_size, m.window_size))
        heads, d = m.heads, c // m.heads
        q, k, v = (conv(y).reshape(b, heads, d, -1) for conv in (m.q, m.k, m.v))
        attn = (q @ k.transpose(-2, -1) * d**-0.5).softmax(dim=-1)
        out = (attn @ v).reshape(b, c, -1).mean(-1)
        return torch.sigmoid(out)[:, :, None, None] * x


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

    def bat_timm(a: nn.Module) -> tuple[nn.Module, nn.Module]:
        p = timm_layer("non_local_attn", "BatNonLocalAttn")(c, drop_rate=0.0)
        p.load_state_dict({key.replace(".norm.", ".bn."): v for key, v in a.state_dict().items()})
        return p, a

    def scsa_official(a: nn.Module) -> tuple[nn.Module, nn.Module]:
        return OfficialSCSA(a), a

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
        Comparison(f"bat_{tag}", "bat", f"{cfg}, block 7, groups 2", az("bat", c), inp,
                   [Impl("timm", bat_timm, True, "BatNonLocalAttn(drop_rate=0): same math (7 divides H and W)")]),
        Comparison(f"scsa_{tag}", "scsa", f"{cfg}, heads 8, window 7", az("scsa", c), inp,
                   [Impl("official", scsa_official, True, "SCSA's official forward (AvgPool2d(7), explicit "
                         "softmax, the four Conv1d separately): same math (7 divides H and W)")]),
    ]


def comparisons() -> list[Comparison]:
    rows: list[Comparison] = []
    for tag, shape in SHAPES.items():
        rows += _rows(tag, shape)
    c = FLOOR_SHAPE[1]
    rows += [Comparison(f"{n}_floor", n, "2×256×112×112", az(n, c), _input(FLOOR_SHAPE), [], gate=True)
             for n in ("ceca", "lcbam", "parnet_sse", "scsa", "strip_pooling", "mlca", "cpca")]  # the wave's x·g gates
    return rows
