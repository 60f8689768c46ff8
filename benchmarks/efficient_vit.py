"""Efficient vision-transformer attention (window / grouped modules) against the peers that ship them.

attnzoo's ``swin`` (shift 0 and 3), ``cascaded_group_attention`` and ``shsa`` against timm's
``SwinTransformerBlock``, ``LocalWindowAttention`` (its ``CascadedGroupAttention`` in 7×7 windows) and ``SHSA``,
and ``acmix`` against External-Attention-pytorch's ``ACmix`` (the official class), with the
weights copied from the peer (outputs checked equal first), at 2×64×56×56 and 2×128×28×28.

* Time: process-CPU medians of interleaved ``torch.utils.benchmark`` runs (``_common.time_interleaved``: the
  cases take turns, so a burst of load hits every case alike), forward (eval, no grad) and forward+backward
  (train mode, input gradient), 1 thread by default.
* Peak memory: a fresh child process per case, the extra resident high-water mark of one forward+backward call
  after a warm-up (``_common.report_peak``, the measurement of ``attnzoo bench``).

Usage:
    python benchmarks/efficient_vit.py                          # all rows
    python benchmarks/efficient_vit.py --rows swin-56 --repeats 5
    python benchmarks/efficient_vit.py --output BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

import torch
import torch.nn as nn

import attnzoo
from _common import PEER_HEADER, append_section, peer_cells, report_peak, run_once
from attnzoo.testing import randomize


class ChannelsLast(nn.Module):
    """A peer that takes B×H×W×C tokens (timm's Swin block), called on B×C×H×W."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def swin_peer(channels: int, size: int, shift: int) -> nn.Module:
    from timm.models.swin_transformer import SwinTransformerBlock

    return ChannelsLast(SwinTransformerBlock(channels, (size, size), num_heads=channels // 32, window_size=7, shift_size=shift))


def cga_peer(channels: int, size: int) -> nn.Module:
    from timm.models.efficientvit_msra import LocalWindowAttention

    return LocalWindowAttention(channels, 16, 4, attn_ratio=channels // 64, resolution=size, window_resolution=7)


def shsa_peer(channels: int, size: int) -> nn.Module:
    from timm.models.shvit import SHSA

    return SHSA(channels, 16, channels // 4)


def acmix_peer(channels: int, size: int) -> nn.Module:
    from fightingcv_attention.attention.ACmixAttention import ACmix

    return ACmix(channels, channels)


#: row -> (attnzoo name, attnzoo kwargs, peer label, peer builder(channels, size), channels, H=W)
ROWS: dict[str, tuple[str, dict, str, Callable[[int, int], nn.Module], int, int]] = {
    "swin-56": ("swin", {}, "timm SwinTransformerBlock", lambda c, s: swin_peer(c, s, 0), 64, 56),
    "swin-28": ("swin", {}, "timm SwinTransformerBlock", lambda c, s: swin_peer(c, s, 0), 128, 28),
    "swin-56 (shift 3)": ("swin", {"shift_size": 3}, "timm SwinTransformerBlock", lambda c, s: swin_peer(c, s, 3), 64, 56),
    "swin-28 (shift 3)": ("swin", {"shift_size": 3}, "timm SwinTransformerBlock", lambda c, s: swin_peer(c, s, 3), 128, 28),
    "cga-56": ("cascaded_group_attention", {}, "timm LocalWindowAttention", cga_peer, 64, 56),
    "cga-28": ("cascaded_group_attention", {}, "timm LocalWindowAttention", cga_peer, 128, 28),
    "shsa-56": ("shsa", {}, "timm SHSA", shsa_peer, 64, 56),
    "shsa-28": ("shsa", {}, "timm SHSA", shsa_peer, 128, 28),
    "acmix-56": ("acmix", {}, "External-Attention-pytorch ACmix", acmix_peer, 64, 56),
    "acmix-28": ("acmix", {}, "External-Attention-pytorch ACmix", acmix_peer, 128, 28),
}


def build(row: str, impl: str) -> nn.Module:
    name, kwargs, _, peer, channels, size = ROWS[row]
    torch.manual_seed(0)
    theirs = randomize(peer(channels, size), seed=1, scale=0.05)
    if impl == "peer":
        return theirs
    ours = attnzoo.create(name, channels, **kwargs)
    prefix = {"ChannelsLast": "inner.", "LocalWindowAttention": "attn."}.get(type(theirs).__name__, "")
    state = {k.removeprefix(prefix): v for k, v in theirs.state_dict().items()}
    ours.load_state_dict(state)
    return ours


def inputs(row: str, size: int | None = None) -> torch.Tensor:
    _, _, _, _, channels, s = ROWS[row]
    return torch.randn(2, channels, size or s, size or s, generator=torch.Generator().manual_seed(2))


def child(spec: dict) -> None:
    m = build(spec["row"], spec["impl"]).train(spec["backward"])
    x = inputs(spec["row"])
    run_once(m, x, spec["backward"])
    m.zero_grad(set_to_none=True)
    report_peak(lambda: run_once(m, x, spec["backward"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--repeats", type=int, default=5, help="interleaved timing rounds per case")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--output", help="append a markdown section to this file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        child(json.loads(args.child))
        return
    lines = [PEER_HEADER]
    for row in args.rows:
        ours, theirs = build(row, "attnzoo"), build(row, "peer")
        x = inputs(row)
        ours.eval(), theirs.eval()
        with torch.no_grad():
            torch.testing.assert_close(ours(x), theirs(x), atol=1e-4, rtol=1e-4)
        cells = peer_cells(sys.argv[0], row, ours, theirs, x, args.repeats, not args.no_memory)
        _, _, peer, _, channels, size = ROWS[row]
        line = f"| {row} (peer: {peer}) | 2×{channels}×{size}² | {cells} |"
        print(line, flush=True)
        lines.append(line)
    if args.output:
        append_section(args.output, "Efficient ViT attention: windows and groups", "\n".join(lines))


if __name__ == "__main__":
    main()
