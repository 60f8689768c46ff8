"""Relative-position attention (bot_mhsa, aa_conv, lambda_layer, generalized_attention) against their peers.

Peers: timm ``BottleneckAttn`` (at its ``feat_size``; attnzoo's ``max_size=(56, 56)`` covers both inputs and is
centre-sliced at 28×28), timm ``LambdaLayer`` (``dim_out = dim``, r = 9, 4 heads × 16), mmcv
``GeneralizedAttention`` (C ∈ {64, 128}, '1111', 9 heads, kv_stride 2).  ``aa_conv`` has no peer that runs (the
PyTorch copies need H = W and a fixed shape); it is listed alone.  Same weights (copied from the peer; outputs
checked equal first), inputs 2×64×56×56 and 2×128×28×28, 1 thread.

Time: the implementations of one row interleaved in one process (``_common.time_interleaved``: each sample lasts
≥ 0.2 s, median over ``--repeats`` samples), forward (eval, ``no_grad``) and forward+backward (train; input and
weight gradients); wall and process-CPU medians (the CPU time is much less sensitive to a loaded machine).
Peak: extra resident memory of one call in a fresh child process (``_common.child_peak_bytes``).

    python benchmarks/relative_attention.py --output benchmarks/results/relative_attention.md
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
import torch.nn as nn

import attnzoo
from _common import append_section, child_peak_bytes, fmt_bytes, report_peak, run_once, time_interleaved
from attnzoo.testing import randomize

torch.set_num_threads(1)

SIZES = ((64, 56), (128, 28))  # (C, H = W), batch 2
MODULES = ("bot_mhsa", "aa_conv", "lambda_layer", "generalized_attention")


def build(name: str, c: int, s: int) -> tuple[nn.Module, nn.Module | None, str]:
    """(attnzoo module, peer with the same weights or None, peer label)."""
    torch.manual_seed(0)
    if name == "bot_mhsa":
        from timm.layers.bottleneck_attn import BottleneckAttn

        peer = BottleneckAttn(c, feat_size=(s, s), num_heads=4)
        m = attnzoo.create("bot_mhsa", c, max_size=(56, 56))
        big = 56
        with torch.no_grad():
            m.qkv.weight.copy_(peer.qkv.weight)
            m.height_rel.zero_(), m.width_rel.zero_()
            m.height_rel[big - s : big + s - 1].copy_(peer.pos_embed.height_rel)  # the centre rows cover s×s
            m.width_rel[big - s : big + s - 1].copy_(peer.pos_embed.width_rel)
        return m, peer, "timm BottleneckAttn"
    if name == "lambda_layer":
        from timm.layers.lambda_layer import LambdaLayer

        peer = randomize(LambdaLayer(c, num_heads=4, dim_head=16, r=9))
        m = attnzoo.create("lambda_layer", c)
        for part in ("qkv", "norm_q", "norm_v"):
            getattr(m, part).load_state_dict(getattr(peer, part).state_dict())
        with torch.no_grad():
            m.conv_lambda.weight.copy_(peer.conv_lambda.weight[..., 0])
            m.conv_lambda.bias.copy_(peer.conv_lambda.bias)
        return m, peer, "timm LambdaLayer"
    if name == "generalized_attention":
        try:
            from mmcv.cnn import GeneralizedAttention
        except ImportError:
            return attnzoo.create(name, c), None, "mmcv not installed"
        peer = GeneralizedAttention(c)
        with torch.no_grad():
            peer.gamma.fill_(0.5)  # not the identity
        m = attnzoo.create(name, c)
        m.load_state_dict(peer.state_dict())
        return m, peer, "mmcv GeneralizedAttention"
    return attnzoo.create(name, c, max_size=(56, 56)), None, "none"  # aa_conv


def child(spec: dict) -> None:
    torch.set_num_threads(1)
    m, peer, _ = build(spec["name"], spec["c"], spec["s"])
    mod = m if spec["impl"] == "attnzoo" else peer
    assert mod is not None
    mod.train(spec["backward"])
    x = torch.randn(2, spec["c"], spec["s"], spec["s"])
    warm = x if spec["name"] == "bot_mhsa" else torch.randn(2, spec["c"], 8, 8)
    run_once(mod, warm, spec["backward"])  # warm-up (timm's BoT takes only its feat_size)
    report_peak(lambda: run_once(mod, x, spec["backward"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", default=",".join(MODULES))
    ap.add_argument("--output", help="append the table to this markdown file")
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    rows = []
    for name in args.only.split(","):
        for c, s in SIZES:
            m, peer, label = build(name, c, s)
            x = torch.randn(2, c, s, s)
            if peer is not None:
                m.eval(), peer.eval()
                with torch.no_grad():
                    diff = (m(x) - peer(x)).abs().max().item()
                assert diff < 1e-3, f"{name}: attnzoo and {label} differ by {diff}"
            cells = [f"{name} (peer: {label})", f"2×{c}×{s}²"]
            for backward in (False, True):
                cases = {"attnzoo": (m, x)} | ({"peer": (peer, x)} if peer is not None else {})
                t = time_interleaved(cases, backward, args.repeats)
                a = t["attnzoo"][1] * 1e3
                if peer is None:
                    cells.append(f"{a:.1f} ms")
                else:
                    p = t["peer"][1] * 1e3
                    cells.append(f"{a:.1f} / {p:.1f} ms ({a / p:.2f})")
            for backward in (False, True):
                peaks = []
                for impl in ("attnzoo", "peer") if peer is not None else ("attnzoo",):
                    spec = {"name": name, "c": c, "s": s, "impl": impl, "backward": backward}
                    peaks.append(child_peak_bytes(sys.argv[0], spec))
                if peer is None:
                    cells.append(fmt_bytes(peaks[0]))
                else:
                    cells.append(f"{fmt_bytes(peaks[0])} / {fmt_bytes(peaks[1])} ({peaks[0] / max(peaks[1], 1):.2f})")
            rows.append("| " + " | ".join(cells) + " |")
            print(rows[-1], flush=True)
    head = (
        "| module | input | fwd attnzoo / peer CPU (ratio) | fwd+bwd attnzoo / peer CPU (ratio) "
        "| peak fwd attnzoo / peer (ratio) | peak fwd+bwd attnzoo / peer (ratio) |\n|---|---|---|---|---|---|\n"
    )
    table = head + "\n".join(rows)
    print(table)
    if args.output:
        append_section(args.output, "Relative-position attention (1 thread)", table)


if __name__ == "__main__":
    main()
