"""Efficient vision-transformer attention (lite_mla, mobilevit_v2, mobilevit, focal_modulation, agent_attention)
against their peers, side by side, and the resolution sweep of the linear-cost ones.

Peers: timm's classes (weights copied from attnzoo's randomised module, outputs checked equal first: "faithful")
and External-Attention-pytorch (PyPI ``fightingcv-attention``) where it ships the layer (its own random weights:
same configuration, outputs not comparable). Inputs 2×64×56×56 and 2×128×28×28.

* Time: process-CPU and wall medians of interleaved ``torch.utils.benchmark`` runs (``_common.time_interleaved``:
  the cases take turns, so a burst of load hits every case alike), forward (eval, no grad) and forward+backward
  (train mode, input gradient), 1 thread by default.
* Peak memory: a fresh child process per case, the extra resident high-water mark of one forward+backward after a
  warm-up (``_common.report_peak``, the measurement of ``attnzoo bench``).
* ``--sweep``: ``attnzoo bench`` over 28² → 112² for the linear-cost modules next to ``global_attention`` and
  ``efficient_self_attention`` (O(N²) and O(N²/R²)), JSON + PNG under benchmarks/results/.

Usage:
    python benchmarks/linear_attention.py                          # all rows, 1 run
    python benchmarks/linear_attention.py --rows lite_mla --repeats 3
    python benchmarks/linear_attention.py --output benchmarks/results/linear_attention.md
    python benchmarks/linear_attention.py --sweep
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any, Callable

import torch
import torch.nn as nn

import attnzoo
from _common import append_section, child_peak_bytes, fmt_bytes, report_peak, run_once, time_interleaved
from attnzoo.testing import randomize

SIZES = ((64, 56), (128, 28))  # (C, H = W), batch 2
SWEEP = ("lite_mla", "mobilevit_v2", "agent_attention", "global_attention", "efficient_self_attention")


# --------------------------------------------------------------------------------- peers with copied weights


def timm_lite_mla(m: nn.Module) -> nn.Module:
    from timm.models.efficientvit_mit import LiteMLA

    peer = LiteMLA(m.channels, m.out_channels, heads=m.heads, dim=m.dim_head, scales=m.kernels, eps=m.eps)
    with torch.no_grad():
        peer.qkv.conv.weight.copy_(m.qkv.weight)
        for ours, theirs in zip(m.aggreg, peer.aggreg):
            theirs.load_state_dict(ours.state_dict())
        peer.proj.conv.weight.copy_(m.proj.conv.weight)
        peer.proj.norm.load_state_dict(m.proj.bn.state_dict())
    return peer


def timm_mobilevit_v2(m: nn.Module) -> nn.Module:
    from functools import partial

    from timm.layers import ConvNormAct
    from timm.models.byobnet import LayerFn
    from timm.models.mobilevit import MobileVitV2Block

    layers = LayerFn(conv_norm_act=partial(ConvNormAct, act_layer=nn.SiLU), act=nn.SiLU)
    peer = MobileVitV2Block(m.channels, m.out_channels, kernel_size=m.kernel_size, group_size=1, mlp_ratio=m.mlp_ratio,
                            transformer_dim=m.hidden_channels, transformer_depth=m.num_layers, patch_size=m.patch_size,
                            layers=layers)
    peer.load_state_dict(m.state_dict())
    return peer


def timm_focal_modulation(m: nn.Module) -> nn.Module:
    from timm.models.focalnet import FocalModulation

    peer = FocalModulation(m.channels, focal_window=m.focal_window, focal_level=m.focal_level)
    peer.load_state_dict(m.state_dict())
    return peer


def timm_mobilevit(m: nn.Module) -> nn.Module:
    from functools import partial

    from timm.layers import ConvNormAct
    from timm.models.byobnet import LayerFn
    from timm.models.mobilevit import MobileVitBlock

    layers = LayerFn(conv_norm_act=partial(ConvNormAct, act_layer=nn.SiLU), act=nn.SiLU)
    peer = MobileVitBlock(m.channels, m.out_channels, transformer_dim=m.hidden_channels, transformer_depth=m.num_layers,
                          patch_size=m.patch_size, num_heads=m.heads, mlp_ratio=m.mlp_ratio, layers=layers)
    peer.load_state_dict(m.state_dict())
    return peer


def eap_mobilevit(m: nn.Module) -> nn.Module:
    from fightingcv_attention.attention.MobileViTAttention import MobileViTAttention

    return MobileViTAttention(m.channels, dim=m.hidden_channels, kernel_size=3, patch_size=m.patch_size)


#: attnzoo's configuration closest to External-Attention's fixed one (depth 3, MLP width 1024; its attention is
#: 8 heads × 64 whatever the width, attnzoo's 8 heads × d/8)
EAP_MOBILEVIT = {"num_layers": 3, "heads": 8}


#: module -> [(peer label, builder(attnzoo module, C) -> peer, faithful: same weights and outputs,
#: attnzoo's constructor arguments for that comparison)]
PEERS: dict[str, list[tuple[str, Callable[[nn.Module, int], nn.Module], bool, dict[str, Any]]]] = {
    "lite_mla": [("timm LiteMLA (eps=1e-15)", lambda m, c: timm_lite_mla(m), True, {})],
    "mobilevit_v2": [("timm MobileVitV2Block", lambda m, c: timm_mobilevit_v2(m), True, {})],
    "focal_modulation": [("timm FocalModulation", lambda m, c: timm_focal_modulation(m), True, {})],
    "mobilevit": [
        ("timm MobileVitBlock", lambda m, c: timm_mobilevit(m), True, {}),
        ("External-Attention MobileViTAttention", lambda m, c: eap_mobilevit(m), False, EAP_MOBILEVIT),
    ],
}


def build(module: str, impl: int, channels: int, peer: int) -> nn.Module:
    """impl -1: attnzoo's module (randomised, configured for peer ``peer``); impl i ≥ 0: the i-th peer of
    ``PEERS[module]``."""
    torch.manual_seed(0)
    kwargs = PEERS[module][peer][3] if module in PEERS else {}
    if module == "mobilevit" and kwargs:
        kwargs = {**kwargs, "mlp_ratio": 1024 / channels}
    ours = randomize(attnzoo.create(module, channels, **kwargs), seed=1, scale=0.05)
    return ours if impl < 0 else PEERS[module][impl][1](ours, channels)


def inputs(channels: int, size: int) -> torch.Tensor:
    return torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(2))


def child(spec: dict) -> None:
    m = build(spec["module"], spec["impl"], spec["channels"], spec["peer"]).train(True)
    run_once(m, inputs(spec["channels"], 8), True)
    m.zero_grad(set_to_none=True)
    x = inputs(spec["channels"], spec["size"])
    report_peak(lambda: run_once(m, x, True))


def sweep() -> None:
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "linear_sweep")
    cmd = [sys.executable, "-m", "attnzoo", "bench", "--modules", ",".join(m for m in SWEEP if m in attnzoo.list_modules()),
           "--sizes", "28,56,84,112", "--threads", "1", "--min-time", "0.05", "--max-time", "0.5", "--timeout", "300",
           "--format", "json", "--output", out + ".json", "--plot", out + ".png"]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--rows", nargs="+", default=list(PEERS), choices=list(PEERS))
    ap.add_argument("--repeats", type=int, default=3, help="interleaved timing rounds per case")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--sweep", action="store_true", help="run the resolution sweep (attnzoo bench) instead")
    ap.add_argument("--output", help="append a markdown section to this file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        child(json.loads(args.child))
        return
    if args.sweep:
        sweep()
        return
    lines = [
        "| module | peer | input | fwd attnzoo / peer (ratio) | fwd+bwd attnzoo / peer (ratio) | peak fwd+bwd attnzoo / peer (ratio) |",
        "|---|---|---|---|---|---|",
    ]
    for module in args.rows:
        if module not in attnzoo.list_modules():
            print(f"{module}: not registered yet, skipped", flush=True)
            continue
        for c, s in SIZES:
            x = inputs(c, s)
            for i, (label, _, faithful, _) in enumerate(PEERS[module]):
                ours, theirs = build(module, -1, c, i), build(module, i, c, i)
                if faithful:
                    ours.eval(), theirs.eval()
                    with torch.no_grad():
                        torch.testing.assert_close(ours(x), theirs(x), atol=1e-3, rtol=1e-3)
                cells = []
                for backward in (False, True):
                    t = time_interleaved({"attnzoo": (ours, x), "peer": (theirs, x)}, backward, args.repeats)
                    a, b = t["attnzoo"][1], t["peer"][1]  # process-CPU medians
                    cells.append(f"{a * 1e3:.2f} / {b * 1e3:.2f} ms ({a / b:.2f})")
                if args.no_memory:
                    cells.append("—")
                else:
                    pa, pb = (child_peak_bytes(sys.argv[0], {"module": module, "impl": j, "channels": c, "size": s, "peer": i})
                              for j in (-1, i))
                    cells.append(f"{fmt_bytes(pa)} / {fmt_bytes(pb)} ({pa / max(pb, 1):.2f})")
                tag = "" if faithful else " (own weights)"
                line = f"| {module} | {label}{tag} | 2×{c}×{s}² | " + " | ".join(cells) + " |"
                print(line, flush=True)
                lines.append(line)
    if args.output:
        append_section(args.output, "Efficient ViT attention against timm and External-Attention", "\n".join(lines))


if __name__ == "__main__":
    main()
