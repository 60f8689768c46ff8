"""Peer benchmark: attnzoo against External-Attention-pytorch (PyPI ``fightingcv-attention``), timm and
torchvision, side by side in one run.

    python benchmarks/peers.py                       # both runs, writes benchmarks/results/peers.{md,json}
    python benchmarks/peers.py --only se,cbam --runs 1 --output benchmarks/results/peers.md

For every shared module: the same input and configuration for both sides; where the computation is the
same, the peer's weights are copied from the attnzoo module (randomised first, so zero-initialised blocks are
not trivially the identity) and the outputs are compared in the same run.  Each implementation is measured
in its own freshly forked process (:func:`attnzoo.bench.worker.run_forked`, the same harness as
``attnzoo bench``): peak extra resident memory of one forward (``eval()``, ``no_grad``) and of one
forward+backward (``train()``, input and weight gradients), then ``torch.utils.benchmark`` medians.  Ratios
are attnzoo / peer: below 1 means attnzoo is faster or smaller.  The machine is shared, so the whole
comparison runs twice (``--runs 2``) and both runs are reported.

Also measured: each channel gate's forward time as a multiple of one elementwise ``x * s`` pass over the
same tensor (the memory-bandwidth floor), and a few inputs on which the peers fail.

Modules that are not registered in attnzoo yet are listed as pending (rerun the script when they land).
The parent process only imports libraries; every computation happens in a forked child.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

import attnzoo
from attnzoo.bench import measure
from attnzoo.bench.worker import run_forked
from attnzoo.channel.eca import eca_kernel_size
from attnzoo.testing import randomize

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
THREADS = 2
B = 2
#: "wall": wall-clock time (the default); "cpu": CPU time of the process (time.process_time), which a loaded
#: shared machine disturbs much less (with one thread it is the computation's own time).
CLOCK = "wall"
CLOCKS = {"wall": None, "cpu": time.process_time}

# --------------------------------------------------------------------------------------------- peer imports


PEER_MODULES = (
    "timm.layers.squeeze_excite", "timm.layers.eca", "timm.layers.cbam", "timm.layers.selective_kernel",
    "timm.layers.coord_attn", "timm.layers.non_local_attn", "torchvision.ops",
    *(f"fightingcv_attention.attention.{m}" for m in (
        "SEAttention", "ECAAttention", "CBAM", "SKAttention", "CoordAttention", "TripletAttention", "CoTAttention",
        "DANet", "SelfAttention", "OutlookAttention", "EMSA")),
)


def preload_peers() -> dict[str, str]:
    """Import every peer once in the parent (the forked children share them); return import errors."""
    import importlib

    errors = {}
    for mod in PEER_MODULES:
        try:
            importlib.import_module(mod)
        except Exception as exc:  # noqa: BLE001
            errors[mod] = f"{type(exc).__name__}: {exc}"
    return errors


def fcv(module: str, name: str) -> type:
    """A class of fightingcv-attention (External-Attention-pytorch's PyPI copy)."""
    import importlib

    return getattr(importlib.import_module(f"fightingcv_attention.attention.{module}"), name)


def timm_layer(module: str, name: str) -> type:
    import importlib

    return getattr(importlib.import_module(f"timm.layers.{module}"), name)


class Call(nn.Module):
    """Adapter giving a peer the single-tensor forward of the attnzoo module (negligible overhead)."""

    def __init__(self, inner: nn.Module, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.inner = inner
        self.fn = fn

    def forward(self, *args: Any) -> Any:
        return self.fn(self.inner, *args)


def self_attend(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return m(x, x, x)


def fpn_dict(m: nn.Module, feats: list) -> list:
    out = m(OrderedDict((str(i), f) for i, f in enumerate(feats)))
    return list(out.values())


# ------------------------------------------------------------------------------------------ weight copying


@torch.no_grad()
def copy_weights(src: nn.Module, dst: nn.Module, rename: list[tuple[str, str]],
                 special: dict[str, Callable[[dict], torch.Tensor]] | None = None) -> None:
    """Copy ``src``'s state into ``dst``: each dst key is mapped to a src key by the first matching
    (dst_prefix, src_prefix) rule; 1×1 conv ↔ linear reshapes are allowed; every dst tensor must be covered."""
    s, special = src.state_dict(), special or {}
    out = {}
    for key, t in dst.state_dict().items():
        if key in special:
            out[key] = special[key](s).reshape(t.shape)
            continue
        for dp, sp in rename:
            if key.startswith(dp):
                skey = sp + key[len(dp):]
                break
        else:
            skey = key
        if skey not in s:
            raise KeyError(f"copy_weights: no source for {key} (tried {skey})")
        if s[skey].numel() != t.numel():
            raise ValueError(f"copy_weights: {key} {tuple(t.shape)} vs {skey} {tuple(s[skey].shape)}")
        out[key] = s[skey].reshape(t.shape).clone()
    dst.load_state_dict(out)


# ------------------------------------------------------------------------------------------- comparisons


@dataclass
class Impl:
    label: str  # "attnzoo", "timm", "fightingcv", "torchvision"
    build: Callable[[nn.Module], tuple[nn.Module, nn.Module | None]]  # (attnzoo module) -> (module, reference)
    same_math: bool = False
    note: str = ""


@dataclass
class Comparison:
    key: str
    name: str  # attnzoo registry name
    config: str
    make_attnzoo: Callable[[], nn.Module]
    inputs: Callable[[torch.Generator], tuple]
    peers: list[Impl]
    peer_inputs: Callable[[tuple], tuple] | None = None  # attnzoo inputs -> the peer's native layout
    peer_output: Callable[[Any], Any] | None = None  # the peer's output -> attnzoo layout
    gate: bool = False  # report as a multiple of the x * s floor
    notes: list[str] = field(default_factory=list)


def nchw(c: int = 64, h: int = 56, w: int = 56) -> Callable[[torch.Generator], tuple]:
    return lambda g: (torch.randn(B, c, h, w, generator=g),)


def tokens(n: int, c: int = 64) -> Callable[[torch.Generator], tuple]:
    return lambda g: (torch.randn(B, n, c, generator=g),)


def pyramid(chs: list[int], size: int = 56) -> Callable[[torch.Generator], tuple]:
    def make(g: torch.Generator) -> tuple:
        feats, s = [], size
        for c in chs:
            feats.append(torch.randn(B, c, s, s, generator=g))
            s = (s + 1) // 2
        return (feats,)

    return make


def az(name: str, channels: Any, **kw: Any) -> Callable[[], nn.Module]:
    return lambda: attnzoo.create(name, channels, **kw)


def to_nhwc(args: tuple) -> tuple:
    return (args[0].permute(0, 2, 3, 1).contiguous(),)


def to_tokens(args: tuple) -> tuple:
    return (args[0].flatten(2).transpose(1, 2).contiguous(),)


def comparisons() -> list[Comparison]:
    def zero_bias(m: nn.Module) -> nn.Module:
        m = copy.deepcopy(m)
        with torch.no_grad():
            for p_name, p in m.named_parameters():
                if p_name.endswith("bias"):
                    p.zero_()
        return m

    # --- channel gates: 2×64×56×56 (the default input) and 2×256×112×112 (25 MiB: bandwidth-bound)
    def gates(c: int, h: int, key: str = "") -> list[Comparison]:
        hidden, k = c // 16 if c >= 128 else 8, eca_kernel_size(c)

        def se_timm(a):
            p = timm_layer("squeeze_excite", "SEModule")(c, rd_channels=hidden)
            copy_weights(a, p, [])
            return p, a

        def se_fcv(a):
            ref = zero_bias(a)  # the peer's FCs have no bias: same math once attnzoo's biases are zero
            p = fcv("SEAttention", "SEAttention")(c, reduction=c // hidden)
            copy_weights(ref, p, [("fc.0.", "fc1."), ("fc.2.", "fc2.")])
            return p, ref

        def eca_timm(a):
            p = timm_layer("eca", "EcaModule")(channels=c)
            copy_weights(a, p, [])
            return p, a

        def eca_fcv(a):
            p = fcv("ECAAttention", "ECAAttention")(kernel_size=k)  # conv with a bias (the official has none)
            copy_weights(a, p, [], {"conv.bias": lambda s: torch.zeros(1)})
            return p, a

        def cbam_timm(a):
            p = timm_layer("cbam", "CbamModule")(c, rd_channels=hidden, mlp_bias=True)
            swap = {"spatial.conv.conv.weight": lambda s: s["spatial_gate.gate.conv.weight"][:, [1, 0]]}  # [mean,max]
            copy_weights(a, p, [("channel.", "channel_gate."), ("spatial.conv.bn.", "spatial_gate.gate.bn.")], swap)
            return p, a

        def cbam_fcv(a):
            return fcv("CBAM", "CBAMBlock")(c, reduction=c // hidden, kernel_size=7), None

        shape = f"2×{c}×{h}×{h}"
        return [
            Comparison("se" + key, "se", f"{shape}, hidden {hidden}", az("se", c, hidden_channels=hidden), nchw(c, h, h),
                       [Impl("timm", se_timm, True, f"SEModule (rd {hidden}, biases): same math"),
                        Impl("fightingcv", se_fcv, True, f"SEAttention({c}, reduction={c // hidden}): Linear FCs without "
                             "bias (compared with attnzoo's biases zeroed); with C < 16 its hidden width is 0 (constant "
                             "0.5 gate)")], gate=True),
            Comparison("eca" + key, "eca", f"{shape}, k = ψ({c}) = {k}", az("eca", c), nchw(c, h, h),
                       [Impl("timm", eca_timm, True, f"EcaModule(channels={c}): same math"),
                        Impl("fightingcv", eca_fcv, True, f"ECAAttention({k}): fixed k (default 3), no channel "
                             "argument, conv with bias (set to 0 here)")], gate=True),
            Comparison("cbam" + key, "cbam", f"{shape}, hidden {hidden}, k 7", az("cbam", c, hidden_channels=hidden),
                       nchw(c, h, h),
                       [Impl("timm", cbam_timm, True, "CbamModule(mlp_bias=True): same math ([mean, max] channel "
                             "order, conv weights swapped)"),
                        Impl("fightingcv", cbam_fcv, False, "CBAMBlock(kernel_size=7): returns x + CBAM(x), no BN "
                             "in the spatial gate, conv bias; default k = 49 and even k crash")], gate=True),
        ]

    def sk_timm(a):
        p = timm_layer("selective_kernel", "SelectiveKernel")(64, kernel_size=[3, 5], groups=32, split_input=False,
                                                             rd_channels=32)
        copy_weights(a, p, [("paths.0.bn.", "paths.0.norm."), ("paths.1.bn.", "paths.1.norm."), ("attn.", "")])
        return p, a

    def sk_fcv(a):
        return fcv("SKAttention", "SKAttention")(64, kernels=[3, 5], reduction=16, group=32, L=32), None

    def coord_timm(a):
        p = timm_layer("coord_attn", "CoordAttn")(64, rd_channels=8, bias=True)
        copy_weights(a, p, [])
        return p, a

    def coord_fcv(a):
        p = fcv("CoordAttention", "CoordAtt")(64, 64, reduction=32)
        copy_weights(a, p, [])
        return p, a

    def triplet_fcv(a):
        p = fcv("TripletAttention", "TripletAttention")()
        copy_weights(a, p, [(f"{g}.conv.conv.", f"{g}.conv.") for g in ("cw", "hc", "hw")]
                     + [(f"{g}.conv.bn.", f"{g}.bn.") for g in ("cw", "hc", "hw")])
        return p, a

    def cot_fcv(a):
        return fcv("CoTAttention", "CoTAttention")(dim=64, kernel_size=3), None

    def danet_fcv(a):
        return fcv("DANet", "DAModule")(d_model=512, kernel_size=3, H=7, W=7), None

    def mhsa_fcv(a):
        inner = fcv("SelfAttention", "ScaledDotProductAttention")(d_model=64, d_k=8, d_v=8, h=8, dropout=0.0)
        copy_weights(a, inner, [])
        return Call(inner, self_attend), a

    def outlook_fcv(a):
        inner = fcv("OutlookAttention", "OutlookAttention")(64, num_heads=2, kernel_size=3, padding=1, stride=1,
                                                             attn_drop=0.0)
        copy_weights(a, inner, [("v_pj.", "v.")])
        return inner, a

    def emsa_fcv(a):
        inner = fcv("EMSA", "EMSA")(d_model=64, d_k=64, d_v=64, h=1, dropout=0.0, H=56, W=56, ratio=8)
        return Call(inner, self_attend), None

    def nonlocal_timm(a):
        p = timm_layer("non_local_attn", "NonLocalAttn")(64, rd_channels=64)
        copy_weights(a, p, [("t.", "theta."), ("p.", "phi."), ("z.", "out."), ("norm.", "bn.")])
        return p, a

    def fpn_tv(a):
        from torchvision.ops import FeaturePyramidNetwork

        inner = FeaturePyramidNetwork([64, 128, 256, 512], 256)
        rename = [(f"inner_blocks.{i}.0.", f"lateral.{i}.conv.") for i in range(4)]
        rename += [(f"layer_blocks.{i}.0.", f"output.{i}.conv.") for i in range(4)]
        copy_weights(a, inner, rename)
        return Call(inner, fpn_dict), a

    fcv_note_init = "init_weights() is never called"
    return [
        *gates(64, 56),
        *gates(256, 112, "_256"),
        Comparison("sk", "sk", "2×64×56×56, branches 3×3 and 3×3 dil 2, groups 32, d 32", az("sk", 64), nchw(),
                   [Impl("timm", sk_timm, True, "SelectiveKernel(split_input=False, groups 32, rd 32): same math "
                         "(timm's default split_input=True differs from the paper)")]),
        Comparison("sk_5x5", "sk", "2×64×56×56, branches 3×3 and 5×5, groups 32", az("sk", 64, keep_3x3=False), nchw(),
                   [Impl("fightingcv", sk_fcv, False, "SKAttention(kernels=[3,5], group=32): conv bias, no BN+ReLU in "
                         "the selector, stacks the branches; default groups=1 makes SK(1280) 138.7 M params")]),
        Comparison("coord", "coord", "2×64×56×56, mip 8", az("coord", 64), nchw(),
                   [Impl("timm", coord_timm, True, "CoordAttn(rd_channels=8, bias=True): same math"),
                    Impl("fightingcv", coord_fcv, True, "CoordAtt(64, 64): same math (the official code); "
                         "oup ≠ inp crashes")], gate=True),
        Comparison("triplet", "triplet", "2×64×56×56, k 7", az("triplet", 64), nchw(),
                   [Impl("fightingcv", triplet_fcv, True, "TripletAttention(): same math (official), four "
                         "permute().contiguous() copies")], gate=True),
        Comparison("cot", "cot", "2×64×56×56, k 3", az("cot", 64), nchw(),
                   [Impl("fightingcv", cot_fcv, False, "CoTAttention(64, 3): not CoTNet — k²·C attention channels "
                         "averaged, softmax over all H·W (global), plain k1 + k2")]),
        Comparison("danet", "danet", "2×512×7×7 (the only size the peer runs)", az("danet", 512), nchw(512, 7, 7),
                   [Impl("fightingcv", danet_fcv, False, "DAModule(): ignores its arguments (always 512 ch, 7×7); "
                         "PAM has full-width q/k/v and no γ residual; CAM is Linear(HW, HW)")]),
        Comparison("mhsa_196", "mhsa", "tokens 2×196×64, 8 heads", az("mhsa", 64, heads=8), tokens(196),
                   [Impl("fightingcv", mhsa_fcv, True, "ScaledDotProductAttention(64, 8, 8, 8, dropout=0): same "
                         f"math; materialises B×h×N×N, −inf masks give NaN rows, {fcv_note_init} (std 1e-3 init)")]),
        Comparison("mhsa_3136", "mhsa", "tokens 2×3136×64, 8 heads", az("mhsa", 64, heads=8), tokens(3136),
                   [Impl("fightingcv", mhsa_fcv, True, "same as above at N = 3136: the peer builds 2×8×3136² "
                         "scores")]),
        Comparison("outlook", "outlook", "2×64×28×28, k 3, stride 1, 2 heads", az("outlook", 64, heads=2),
                   nchw(64, 28, 28),
                   [Impl("fightingcv", outlook_fcv, True, "OutlookAttention(64, 2 heads): same math at stride 1 "
                         "(channels-last input); stride 2 crashes (positional nn.Unfold arguments)")],
                   peer_inputs=to_nhwc, peer_output=lambda y: y.permute(0, 3, 1, 2)),
        Comparison("efficient_sa", "efficient_self_attention", "2×64×56×56, 1 head, reduction 8",
                   az("efficient_self_attention", 64, heads=1, sr_ratio=8), nchw(),
                   [Impl("fightingcv", emsa_fcv, False, "EMSA (ResT, h=1, ratio 8): depthwise 9×9 stride-8 "
                         "reduction instead of PVT's 8×8 conv; H, W fixed at construction; keys/values arguments "
                         "ignored")],
                   peer_inputs=to_tokens),
        Comparison("nonlocal", "nonlocal", "2×64×56×56, inner 64, no subsampling (timm's scale C^-½ = d^-½)",
                   az("nonlocal", 64, inner_channels=64, subsample=False), nchw(),
                   [Impl("timm", nonlocal_timm, True, "NonLocalAttn(rd_channels=64): same math, builds the "
                         "B×N×N matrix with bmm")]),
        Comparison("fpn", "fpn", "pyramid 64…512 ch, 56×56…7×7, 256 out", az("fpn", [64, 128, 256, 512]),
                   pyramid([64, 128, 256, 512]),
                   [Impl("torchvision", fpn_tv, True, "torchvision.ops.FeaturePyramidNetwork: same math")]),
    ]


class Floor(nn.Module):
    """One elementwise pass ``x * s`` with a B×C×1×1 ``s``: the memory-bandwidth floor of a channel gate."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.s = nn.Parameter(torch.rand(B, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.s


# ---------------------------------------------------------------------------------------------- children


def build_pair(comp: Comparison, label: str) -> tuple[nn.Module, tuple, nn.Module | None, Impl | None]:
    """(module to measure, its inputs, attnzoo reference for the output check, peer Impl)."""
    torch.manual_seed(0)
    a = randomize(comp.make_attnzoo(), scale=0.2)
    args = comp.inputs(torch.Generator().manual_seed(2))
    if label == "attnzoo":
        return a, args, None, None
    impl = next(i for i in comp.peers if i.label == label)
    torch.manual_seed(0)
    module, ref = impl.build(a)
    if comp.peer_inputs is not None:
        args = comp.peer_inputs(args)
    return module, args, ref, impl


def case_child(comp: Comparison, label: str, memory: bool, min_time: float, max_time: float) -> dict:
    """One implementation (or the ``x * s`` floor) in a fresh process: peak memory (if asked), then latency."""
    torch.set_num_threads(THREADS)
    if label == "floor":
        args = comp.inputs(torch.Generator().manual_seed(2))
        module = Floor(args[0].shape[1])
    else:
        module, args, _, _ = build_pair(comp, label)
    row = measure.measure_module(module, args, threads=THREADS, min_time=min_time, max_time=max_time,
                                 memory=memory, flops=False, clock=CLOCKS[CLOCK])
    row.pop("traceback", None)
    return row


def check_child(comp: Comparison) -> dict:
    """Max |attnzoo − peer| of the eval-mode outputs for every same-math peer (weights copied)."""
    torch.set_num_threads(THREADS)
    out = {}
    for impl in comp.peers:
        try:
            module, args, ref, _ = build_pair(comp, impl.label)
            if ref is None:
                out[impl.label] = None
                continue
            a_args = comp.inputs(torch.Generator().manual_seed(2))
            with torch.no_grad():
                y_ref = ref.eval()(*a_args)
                y = module.eval()(*args)
            if comp.peer_output is not None:
                y = comp.peer_output(y)
            ys = y if isinstance(y, (list, tuple)) else [y]
            rs = y_ref if isinstance(y_ref, (list, tuple)) else [y_ref]
            diff = max(float((p - r).abs().max()) for p, r in zip(ys, rs))
            scale = max(float(r.abs().max()) for r in rs)
            out[impl.label] = {"max_abs_diff": diff, "max_abs": scale}
        except Exception as exc:  # noqa: BLE001
            out[impl.label] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
    return out


# Inputs on which the peers fail or compute something else; each runs in its own child.
def probes() -> list[tuple[str, str, Callable[[], str], Callable[[], str]]]:
    def run(m: nn.Module, *args: Any) -> Any:
        with torch.no_grad():
            return m.eval()(*args)

    def ok(fn: Callable[[], Any]) -> Callable[[], str]:
        def wrapped() -> str:
            fn()
            return "runs"

        return wrapped

    x56 = lambda c=64, h=56, w=56: torch.randn(B, c, h, w)  # noqa: E731

    def sdpa_masked() -> str:
        m = fcv("SelfAttention", "ScaledDotProductAttention")(64, 8, 8, 8, dropout=0.0)
        x = torch.randn(1, 5, 64)
        mask = torch.zeros(1, 1, 5, 5, dtype=torch.bool)
        mask[..., 2, :] = True
        y = run(m, x, x, x, mask)
        return f"NaN rows: {int(torch.isnan(y).any(-1).sum())} of 5"

    def az_masked() -> str:
        m = attnzoo.create("mhsa", 64, heads=8)
        x = torch.randn(1, 5, 64)
        mask = torch.zeros(5, 5, dtype=torch.bool)
        mask[2, :] = True
        with torch.no_grad():
            y = m.eval()(x, mask=mask)
        return f"NaN rows: {int(torch.isnan(y).any(-1).sum())} of 5"

    def se_small() -> str:
        m = fcv("SEAttention", "SEAttention")(8, reduction=16)
        x = torch.randn(2, 8, 7, 7)
        y = run(m, x)
        return f"hidden width {m.fc[0].out_features}; gate constant 0.5: {bool(torch.allclose(y, 0.5 * x))}"

    def sk_params() -> str:
        m = fcv("SKAttention", "SKAttention")(1280)
        return f"{sum(p.numel() for p in m.parameters()) / 1e6:.1f} M params"

    return [
        ("fightingcv CBAMBlock(kernel_size=H), the README usage, at 32×32",
         "kernel 32 → padding 16 → 33×33 map",
         ok(lambda: run(fcv("CBAM", "CBAMBlock")(64, 16, kernel_size=32), x56(64, 32, 32))),
         ok(lambda: run(attnzoo.create("cbam", 64), x56(64, 32, 32)))),
        ("fightingcv CoordAtt(64, oup=128)", "output channels ≠ input channels",
         ok(lambda: run(fcv("CoordAttention", "CoordAtt")(64, 128), x56())),
         ok(lambda: run(attnzoo.create("coord", 64), x56()))),
        ("fightingcv DAModule(d_model=64) at 2×64×56×56", "arguments ignored",
         ok(lambda: run(fcv("DANet", "DAModule")(d_model=64, H=56, W=56), x56())),
         ok(lambda: run(attnzoo.create("danet", 64), x56()))),
        ("fightingcv DAModule() at 2×512×14×14", "hard-wired 7×7",
         ok(lambda: run(fcv("DANet", "DAModule")(), x56(512, 14, 14))),
         ok(lambda: run(attnzoo.create("danet", 512), x56(512, 14, 14)))),
        ("fightingcv OutlookAttention(stride=2) at 2×28×28×64", "positional nn.Unfold arguments",
         ok(lambda: run(fcv("OutlookAttention", "OutlookAttention")(64, stride=2), torch.randn(B, 28, 28, 64))),
         ok(lambda: run(attnzoo.create("outlook", 64, stride=2), x56(64, 28, 28)))),
        ("fightingcv EMSA(H=56, W=56) on 28×28 tokens", "H, W fixed at construction",
         ok(lambda: (lambda m, t: run(m, t, t, t))(fcv("EMSA", "EMSA")(64, 64, 64, 1, H=56, W=56, ratio=8),
                                                  torch.randn(B, 784, 64))),
         ok(lambda: run(attnzoo.create("efficient_self_attention", 64, heads=1, sr_ratio=8), x56(64, 28, 28)))),
        ("fightingcv ScaledDotProductAttention, one query row fully masked", "−inf mask → NaN",
         sdpa_masked, az_masked),
        ("fightingcv SEAttention(8) (C < reduction)", "zero-width hidden layer", se_small,
         lambda: f"hidden width {attnzoo.create('se', 8).fc1.out_channels}"),
        ("fightingcv SKAttention(1280) defaults", "dense 1/3/5/7 convs", sk_params,
         lambda: f"{sum(p.numel() for p in attnzoo.create('sk', 1280).parameters()) / 1e6:.2f} M params"),
    ]


def probe_child(fn: Callable[[], str]) -> dict:
    torch.set_num_threads(1)
    try:
        return {"result": fn()}
    except Exception as exc:  # noqa: BLE001
        return {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:160]}"}


# -------------------------------------------------------------------------------------------------- main


def environment() -> dict:
    import timm
    import torchvision

    try:
        from importlib.metadata import version

        fcv_version = version("fightingcv-attention")
    except Exception:  # noqa: BLE001
        fcv_version = "?"
    cpu = subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True, text=True).stdout.strip()
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu.split(":", 1)[-1].strip() or platform.processor(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "torchvision": torchvision.__version__,
        "fightingcv_attention": fcv_version,
        "attnzoo": attnzoo.__version__,
        "commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True).stdout.strip(),
        "python": platform.python_version(),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return a / b


def fmt_ratio(values: list[float | None]) -> str:
    return " / ".join("–" if v is None else f"{v:.2f}" for v in values)


def fmt_ms(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.0f}"


def fmt_mib(v: int | None) -> str:
    return "–" if v is None else f"{v / 2**20:.2f}" if v < 10 * 2**20 else f"{v / 2**20:.1f}"


def run_all(comps: list[Comparison], configs: list[tuple[int, str]], runs: int, rounds: int, min_time: float,
            max_time: float, log: Callable[[str], None]) -> dict:
    global THREADS, CLOCK
    registered = set(attnzoo.list_modules())
    active = [c for c in comps if c.name in registered]
    pending = [c for c in comps if c.name not in registered]
    results: dict[str, Any] = {"configs": [], "checks": {}, "probes": [], "pending": [c.key for c in pending],
                               "rounds": rounds}
    for comp in active:
        results["checks"][comp.key] = run_forked(lambda emit, c=comp: check_child(c), timeout=600)
    for threads, clock in configs:
        THREADS, CLOCK = threads, clock  # the forked children read these
        load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
        started = time.perf_counter()
        cfg: dict[str, Any] = {"threads": threads, "clock": clock, "runs": []}
        for r in range(runs):
            rows: dict[str, dict] = {}
            for comp in active:
                labels = ["attnzoo"] + [i.label for i in comp.peers] + (["floor"] if comp.gate else [])
                got: dict[str, list[dict]] = {label: [] for label in labels}
                for k in range(rounds):  # each round: every implementation once, in a rotating order
                    for label in labels[k % len(labels):] + labels[: k % len(labels)]:
                        got[label].append(run_forked(
                            lambda emit, c=comp, lb=label, mem=(k == 0): case_child(c, lb, mem, min_time, max_time),
                            timeout=1800))
                for label, rs in got.items():
                    row = dict(rs[0])
                    for key in ("fwd_ms", "fwd_bwd_ms"):
                        vals = [x[key] for x in rs if x.get(key) is not None]
                        row[key] = min(vals) if vals else None
                        row[f"{key}_rounds"] = vals
                    errs = [x["error"] for x in rs if x.get("error")]
                    if errs:
                        row["error"] = errs[0]
                    rows[f"{comp.key}/{label}"] = row
                    if label != "floor":
                        log(f"{threads} thr {clock} run {r + 1}: {comp.key:<13} {label:<12} "
                            f"fwd {fmt_ms(row.get('fwd_ms')):>8} ms  fwd+bwd {fmt_ms(row.get('fwd_bwd_ms')):>8} ms  "
                            f"mem {fmt_mib(row.get('fwd_mem_bytes'))}/{fmt_mib(row.get('fwd_bwd_mem_bytes'))} MiB  "
                            f"{row.get('error') or ''}")
            cfg["runs"].append(rows)
        cfg["minutes"] = (time.perf_counter() - started) / 60
        cfg["loadavg"] = f"{load} → " + " / ".join(f"{v:.1f}" for v in os.getloadavg())
        results["configs"].append(cfg)
    for title, why, peer_fn, az_fn in probes():
        peer = run_forked(lambda emit, f=peer_fn: probe_child(f), timeout=300)
        ours = run_forked(lambda emit, f=az_fn: probe_child(f), timeout=300)
        results["probes"].append({"probe": title, "why": why, "peer": peer, "attnzoo": ours})
    return results


def _same_math(chk: Any) -> str:
    if isinstance(chk, dict) and "max_abs_diff" in chk:
        if chk["max_abs_diff"] > 1e-4 * max(chk["max_abs"], 1.0):
            return f"**outputs differ** (Δ {chk['max_abs_diff']:.2e})"
        return f"yes, Δ {chk['max_abs_diff'] / max(chk['max_abs'], 1e-30):.0e}"
    if isinstance(chk, dict) and "error" in chk:
        return f"check failed: {chk['error']}"
    return "no (differs, see notes)"


def render(comps: list[Comparison], res: dict, env: dict, command: str, seconds: float) -> str:
    active = [c for c in comps if c.key not in res["pending"]]
    L: list[str] = []
    L += ["# Peer benchmark: attnzoo vs External-Attention-pytorch (fightingcv-attention), timm, torchvision", ""]
    L += [f"- Date: {env['date']}; attnzoo commit `{env['commit']}`",
          f"- Machine: {env['cpu']}, {env['cores']} cores, load averages during the run "
          "below (2.0 = this benchmark alone on 2 cores)",
          f"- Versions: torch {env['torch']}, timm {env['timm']}, torchvision {env['torchvision']}, "
          f"fightingcv-attention {env['fightingcv_attention']}, Python {env['python']}",
          f"- Command: `{command}` ({seconds / 60:.1f} min)", ""]
    L += ["Same input and configuration on both sides. Every measurement runs in a freshly forked process (the "
          "same harness as `attnzoo bench`), one implementation at a time. **Memory**: extra peak resident memory "
          "of one call over the baseline after building module and inputs (high-water mark reset through "
          "`/proc/self/clear_refs`, after one warm-up call). **Latency**: `torch.utils.benchmark` "
          "`adaptive_autorange` median per call after warm-up; the implementations of a comparison take turns "
          f"for {res.get('rounds', '?')} rounds in a rotating order and the figure is the minimum over the rounds, "
          "so a burst of load from other jobs hits both sides alike. fwd = `eval()` under `no_grad`; fwd+bwd = `train()` forward + backward with input and weight "
          "gradients. **Ratios are attnzoo / peer** (< 1: attnzoo faster or smaller); each cell shows run 1 / "
          "run 2 (two complete measurements). \"same math\" = weights copied from the (randomised) attnzoo module "
          "into the peer and the outputs compared in the same run (max |Δ| / max |y|).", ""]
    for cfg in res["configs"]:
        runs = cfg["runs"]
        clock = "wall clock" if cfg["clock"] == "wall" else "CPU time of the process (`time.process_time`)"
        L += [f"## {cfg['threads']} thread{'s' if cfg['threads'] > 1 else ''}, {clock}", "",
              f"`torch.set_num_threads({cfg['threads']})`; {cfg['minutes']:.1f} min; load average (1/5/15 min) "
              f"{cfg['loadavg']}.", ""]
        L += ["| module | input / config | peer | same math | fwd time | fwd+bwd time | fwd mem | fwd+bwd mem |",
              "|---|---|---|---|---:|---:|---:|---:|"]
        for c in active:
            for impl in c.peers:
                cells = []
                for key in ("fwd_ms", "fwd_bwd_ms", "fwd_mem_bytes", "fwd_bwd_mem_bytes"):
                    vals = [ratio(r[f"{c.key}/attnzoo"].get(key), r[f"{c.key}/{impl.label}"].get(key)) for r in runs]
                    cells.append(fmt_ratio(vals))
                same = _same_math(res["checks"].get(c.key, {}).get(impl.label))
                L.append(f"| `{c.name}` | {c.config} | {impl.label} | {same} | " + " | ".join(cells) + " |")
        L += [""]
        errors = sorted({(c.key, lb, r[f"{c.key}/{lb}"]["error"]) for c in active
                         for lb in ["attnzoo"] + [i.label for i in c.peers] for r in runs
                         if r[f"{c.key}/{lb}"].get("error")})
        if errors:
            L += ["Errors during the measurement:", ""] + [f"- `{k}` {lb}: `{e}`" for k, lb, e in errors] + [""]
        L += ["Channel gates against the bandwidth floor: forward time (`eval`, `no_grad`) as a multiple of one "
              "elementwise `x * s` pass over the same input tensor (s: B×C×1×1), measured the same way as the gates. "
              "Targets: ≤ 1.6× for `se` and `eca`, ≤ 3× for `cbam` (eager). At 2×64×56×56 the tensor (1.6 MB) "
              "stays in cache and the floor is a few tens of µs, so the per-op dispatch cost of the gate's small "
              "ops dominates; 2×256×112×112 (25 MB) is the bandwidth-bound case the floor stands for.", "",
              "| gate | input | floor `x * s` (ms) | attnzoo | timm | fightingcv | target |",
              "|---|---|---:|---:|---:|---:|---:|"]
        targets = {"se": "≤ 1.6", "eca": "≤ 1.6", "cbam": "≤ 3"}
        for c in active:
            if not c.gate:
                continue
            cells = []
            for label in ("attnzoo", "timm", "fightingcv"):
                if label != "attnzoo" and label not in [i.label for i in c.peers]:
                    cells.append("–")
                    continue
                cells.append(fmt_ratio([ratio(r[f"{c.key}/{label}"].get("fwd_ms"), r[f"{c.key}/floor"].get("fwd_ms"))
                                        for r in runs]))
            floor = " / ".join(fmt_ms(r[f"{c.key}/floor"].get("fwd_ms")) for r in runs)
            L.append(f"| `{c.name}` | {c.config.split(',')[0]} | {floor} | " + " | ".join(cells) + f" | {targets.get(c.name, '')} |")
        L += ["", "<details><summary>Absolute figures</summary>", "",
              "| module | impl | params | fwd ms | fwd+bwd ms | fwd MiB | fwd+bwd MiB |",
              "|---|---|---:|---:|---:|---:|---:|"]
        for c in active:
            for label in ["attnzoo"] + [p.label for p in c.peers]:
                rows = [r[f"{c.key}/{label}"] for r in runs]
                params = rows[0].get("params")
                L.append(f"| {c.key} | {label} | {params if params is None else f'{params:,}'} | "
                         + " | ".join(" / ".join(f(r.get(k)) for r in rows) for k, f in
                                      (("fwd_ms", fmt_ms), ("fwd_bwd_ms", fmt_ms), ("fwd_mem_bytes", fmt_mib),
                                       ("fwd_bwd_mem_bytes", fmt_mib))) + " |")
        L += ["", "</details>", ""]
    L += ["## Where the peers fail or compute something else", "",
          "| input | why | peer | attnzoo |", "|---|---|---|---|"]
    for p in res["probes"]:
        def cell(d: dict) -> str:
            return f"**error**: `{d['error']}`" if "error" in d else d.get("result", "")

        L.append(f"| {p['probe']} | {p['why']} | {cell(p['peer'])} | {cell(p['attnzoo'])} |")
    L += ["", "## Notes per comparison", ""]
    for c in active:
        for impl in c.peers:
            L.append(f"- `{c.key}` vs {impl.label}: {impl.note}")
    if res["pending"]:
        L += ["", "## Pending", "", "Not registered in attnzoo when this ran (rerun the script when they land): "
              + ", ".join(f"`{k}`" for k in res["pending"]) + "."]
    return "\n".join(L) + "\n"


def case_files() -> list[Comparison]:
    """More comparisons from ``benchmarks/peer_cases/*.py``: each file defines ``comparisons() -> list[Comparison]``
    (one file per topic, so a new module's peer rows live next to nothing else)."""
    import importlib.util

    comps: list[Comparison] = []
    for path in sorted((Path(__file__).parent / "peer_cases").glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"peer_cases.{path.stem}", path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        comps.extend(mod.comparisons())
    return comps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=2, help="measure everything this many times (default 2)")
    ap.add_argument("--only", default=None, help="comma-separated comparison keys (default: all)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds per run (default 3)")
    ap.add_argument("--min-time", type=float, default=0.3, help="seconds per timing at least (default 0.3)")
    ap.add_argument("--max-time", type=float, default=2.0, help="seconds per timing at most (default 2)")
    ap.add_argument("--config", action="append", default=None, metavar="THREADS:CLOCK",
                    help="threads and clock (wall or cpu: process CPU time, much less disturbed by other jobs on a "
                         "shared machine), repeatable; default 2:wall")
    ap.add_argument("--output", default=str(RESULTS / "peers.md"))
    ap.add_argument("--json", default=None, help="raw results (default: next to --output, .json)")
    args = ap.parse_args(argv)
    configs = []
    for spec in args.config or ["2:wall"]:
        threads, _, clock = spec.partition(":")
        if not threads.isdigit() or clock not in CLOCKS:
            ap.error(f"--config must be THREADS:wall or THREADS:cpu, got {spec!r}")
        configs.append((int(threads), clock))
    comps = comparisons() + case_files()
    if args.only:
        keys = set(args.only.split(","))
        comps = [c for c in comps if c.key in keys]
    import_errors = preload_peers()
    for mod, err in import_errors.items():
        print(f"peer import failed: {mod}: {err}", file=sys.stderr)
    measure.preload()  # single-threaded; the parent never runs a parallel region before forking
    started = time.perf_counter()
    res = run_all(comps, configs, args.runs, args.rounds, args.min_time, args.max_time,
                  lambda s: print(s, file=sys.stderr, flush=True))
    seconds = time.perf_counter() - started
    env = environment()
    command = "python benchmarks/peers.py" + "".join(" " + shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    text = render(comps, res, env, command, seconds)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    Path(args.json or out.with_suffix(".json")).write_text(json.dumps({"environment": env, "command": command,
                                                                        **res}, indent=1, default=str))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
