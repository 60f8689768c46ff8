"""Peer rows for the channel gates gc, ese, ge, fca, gct, scse (and se / eca at 8×256×28×28).

Peers that ship these gates: timm (``GlobalContext``, ``EffectiveSEModule``, ``GatherExcite``),
segmentation_models_pytorch (``SCSEModule``); fightingcv-attention (External-Attention's PyPI copy) ships
``SEAttention`` and ``ECAAttention`` but none of the six (its GC/FCA/GCT live in an unmerged PR).  ``fca`` and
``gct`` have no installed peer: their rows measure the gate against the ``x * s`` floor only.

Shapes: 8×256×28×28 and 2×64×56×56 (forward and forward+backward against the peers), and 2×256×112×112 for the
gate floor (forward time over one ``x * s`` pass).
"""

from __future__ import annotations

import copy
import types
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from attnzoo.channel.eca import eca_kernel_size
from peers import Comparison, Impl, az, copy_weights, fcv, timm_layer

SHAPES = {"8x256x28": (8, 256, 28, 28), "2x64x56": (2, 64, 56, 56)}
FLOOR_SHAPE = (2, 256, 112, 112)


def _input(shape: tuple[int, ...]) -> Callable[[torch.Generator], tuple]:
    return lambda g: (torch.randn(*shape, generator=g),)


def _patched_timm_ge() -> type:
    """timm 1.0.31's GatherExcite passes ``*dd`` positionally to its children and fails to construct: drop
    those extra positional arguments in the three factories it calls (the benchmark's forked child only)."""
    from timm.layers import gather_excite as ge_mod

    if not getattr(ge_mod, "_attnzoo_patched", False):
        real_conv, real_mlp = ge_mod.create_conv2d, ge_mod.ConvMlp
        fake_nn = types.SimpleNamespace(**{k: getattr(nn, k) for k in dir(nn) if not k.startswith("__")})
        fake_nn.BatchNorm2d = lambda c, *extra, **kw: nn.BatchNorm2d(c, **kw)
        ge_mod.create_conv2d = lambda cin, cout, *extra, **kw: real_conv(cin, cout, **kw)
        ge_mod.ConvMlp = lambda cin, hidden, *extra, **kw: real_mlp(cin, hidden, **kw)
        ge_mod.nn = fake_nn
        ge_mod._attnzoo_patched = True
    return ge_mod.GatherExcite


def _zero_bias(m: nn.Module) -> nn.Module:
    m = copy.deepcopy(m)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("bias"):
                p.zero_()
    return m


def _gate_rows(tag: str, shape: tuple[int, ...], gate: bool) -> list[Comparison]:
    b, c, h, w = shape
    hid_gc = max(c // 16, min(8, c))
    cfg = f"{b}×{c}×{h}×{w}"

    def gc_timm(a: nn.Module) -> tuple[nn.Module, nn.Module]:
        p = timm_layer("global_context", "GlobalContext")(c, use_attn=True, fuse_add=True, fuse_scale=False,
                                                          rd_channels=hid_gc)
        copy_weights(a, p, [("conv_attn.", "conv_mask."), ("mlp_add.fc1.", "add.conv1."),
                            ("mlp_add.norm.", "add.norm."), ("mlp_add.fc2.", "add.conv2.")])
        return p, a

    def ese_timm(a: nn.Module) -> tuple[nn.Module, nn.Module]:
        p = timm_layer("squeeze_excite", "EffectiveSEModule")(c)
        copy_weights(a, p, [])
        return p, a

    def ge_timm(**kw: Any) -> Callable[[nn.Module], tuple[nn.Module, nn.Module]]:
        def build(a: nn.Module) -> tuple[nn.Module, nn.Module]:
            p = _patched_timm_ge()(c, **kw)
            copy_weights(a, p, [])
            return p, a

        return build

    def scse_smp(a: nn.Module) -> tuple[nn.Module, nn.Module]:
        from segmentation_models_pytorch.base.modules import SCSEModule

        p = SCSEModule(c, reduction=16)
        copy_weights(a, p, [])
        return p, a

    inp = _input(shape)
    rows = [
        Comparison(f"gc_{tag}", "gc", f"{cfg}, attention pooling, add, hidden {hid_gc}",
                   az("gc", c, hidden_channels=hid_gc), inp,
                   [Impl("timm", gc_timm, True, f"GlobalContext(fuse_add=True, fuse_scale=False, rd_channels={hid_gc}): "
                         "same math (LayerNorm2d on the 1×1 context)")], gate=gate),
        Comparison(f"ese_{tag}", "ese", cfg, az("ese", c), inp,
                   [Impl("timm", ese_timm, True, "EffectiveSEModule: same math")], gate=gate),
        Comparison(f"ge_{tag}", "ge", f"{cfg}, extent 0, MLP (timm's default)", az("ge", c), inp,
                   [Impl("timm", ge_timm(), True, "GatherExcite() (constructor patched): same math")], gate=gate),
        Comparison(f"scse_{tag}", "scse", f"{cfg}, reduction 16, add", az("scse", c), inp,
                   [Impl("smp", scse_smp, True, "segmentation_models_pytorch SCSEModule: same math")], gate=gate),
    ]
    if gate and b == 2 and c == 256:  # no installed peer ships fca or gct: floor rows only
        rows += [Comparison(f"fca_{tag}", "fca", f"{cfg}, top16, dct 7", az("fca", c), inp, [], gate=True),
                 Comparison(f"gct_{tag}", "gct", f"{cfg}, l2", az("gct", c), inp, [], gate=True)]
    if tag == "8x256x28":
        rows.append(Comparison(f"ge_e8_{tag}", "ge", f"{cfg}, extent 8, extra params, MLP (GE-θ⁺)",
                               az("ge", c, extent=8, extra_params=True), inp,
                               [Impl("timm", ge_timm(extent=8, extra_params=True), True,
                                     "GatherExcite(extent=8, extra_params=True) (constructor patched): same math")]))
    return rows


def _se_eca_rows(tag: str, shape: tuple[int, ...]) -> list[Comparison]:
    b, c, h, w = shape
    hidden, k = c // 16, eca_kernel_size(c)
    cfg = f"{b}×{c}×{h}×{w}"

    def se_timm(a: nn.Module) -> tuple[nn.Module, nn.Module]:
        p = timm_layer("squeeze_excite", "SEModule")(c, rd_channels=hidden)
        copy_weights(a, p, [])
        return p, a

    def se_fcv(a: nn.Module) -> tuple[nn.Module, nn.Module]:
        ref = _zero_bias(a)
        p = fcv("SEAttention", "SEAttention")(c, reduction=c // hidden)
        copy_weights(ref, p, [("fc.0.", "fc1."), ("fc.2.", "fc2.")])
        return p, ref

    def eca_timm(a: nn.Module) -> tuple[nn.Module, nn.Module]:
        p = timm_layer("eca", "EcaModule")(channels=c)
        copy_weights(a, p, [])
        return p, a

    def eca_fcv(a: nn.Module) -> tuple[nn.Module, nn.Module]:
        p = fcv("ECAAttention", "ECAAttention")(kernel_size=k)
        copy_weights(a, p, [], {"conv.bias": lambda s: torch.zeros(1)})
        return p, a

    def before(a: nn.Module) -> tuple[nn.Module, nn.Module]:
        """attnzoo before this change: autograd's own ``x.mean((2, 3))`` backward (forked child only) and, for
        ``eca``, the ``F.conv1d`` over the channel axis."""
        from attnzoo.functional import gating

        class PlainMean:  # spatial_mean's autograd function replaced by the plain mean (autograd's backward)
            @staticmethod
            def apply(x: torch.Tensor) -> torch.Tensor:
                return x.mean((2, 3))

        gating._SpatialMean = PlainMean  # type: ignore[misc,assignment]
        m = copy.deepcopy(a)
        if type(a).__name__ == "EfficientChannelAttention":
            def old_gate_map(x: torch.Tensor) -> torch.Tensor:
                b, k = x.shape[0], m.kernel_size
                y = nn.functional.conv1d(x.mean((2, 3)).view(b, 1, m.channels), m.conv.weight, padding=(k - 1) // 2)
                return torch.sigmoid(y).view(b, m.channels, 1, 1)

            m.gate_map = old_gate_map
        return m, a

    note_before = ("attnzoo before this change (autograd's own mean backward; eca: F.conv1d over the channels): "
                   "same math")
    inp = _input(shape)
    return [
        Comparison(f"se_{tag}", "se", f"{cfg}, hidden {hidden}", az("se", c, hidden_channels=hidden), inp,
                   [Impl("timm", se_timm, True, "SEModule: same math"),
                    Impl("fightingcv", se_fcv, True, "SEAttention: bias-free FCs (attnzoo's biases zeroed)"),
                    Impl("before", before, True, note_before)]),
        Comparison(f"eca_{tag}", "eca", f"{cfg}, k = {k}", az("eca", c), inp,
                   [Impl("timm", eca_timm, True, "EcaModule: same math"),
                    Impl("fightingcv", eca_fcv, True, "ECAAttention: conv bias set to 0"),
                    Impl("before", before, True, note_before)]),
    ]


def comparisons() -> list[Comparison]:
    rows: list[Comparison] = []
    for tag, shape in SHAPES.items():
        rows += _gate_rows(tag, shape, gate=shape[0] == 2)
    rows += [r for r in _gate_rows("floor", FLOOR_SHAPE, gate=True) if not r.key.startswith("ge_e8")]
    rows += _se_eca_rows("8x256x28", SHAPES["8x256x28"])
    return rows
