"""External attention's layout: the memory units on a channels-first B×C×N map (attnzoo: 1×1 Conv1d M_k / M_v)
against the token layout B×N×C of the community copies (nn.Linear), in the same EANet block, same weights.

Explains the one cell of the peer comparison still above 1.0 on memory: attnzoo's fwd+bwd live-tensor peak is
1.13× the token block's.  Three blocks, the same math (parity checked): attnzoo's module; the block written
channels-first with plain matmuls on the Conv1d weights (no Conv1d kernels); the block on tokens with nn.Linear.
Reports the live-tensor peaks (benchmarks/peer_memory.py --live) and fwd / fwd+bwd process-CPU medians (interleaved
rounds).

    PYTHONPATH=src:benchmarks python benchmarks/external_attention_layout.py [--threads 1] [--output F.md]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from peer_memory import live_peaks

import attnzoo
from _common import time_interleaved, write_results

C, S, SHAPE = 64, 64, (2, 64, 56, 56)


class EABlock(nn.Module):
    """The EANet block on attnzoo's parameters: ``tokens`` runs M_k / M_v as nn.Linear on B×N×C (the copies'
    layout), else as matmuls on the channels-first B×C×N map (attnzoo's layout, without its Conv1d kernels)."""

    def __init__(self, ref: nn.Module, tokens: bool) -> None:
        super().__init__()
        self.ref, self.tokens = ref, tokens
        if tokens:
            self.mk, self.mv = nn.Linear(C, S, bias=False), nn.Linear(S, C, bias=False)
            with torch.no_grad():
                self.mk.weight.copy_(ref.mk.weight.squeeze(-1))
                self.mv.weight.copy_(ref.mv.weight.squeeze(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        r = self.ref
        if self.tokens:
            a = self.mk(r.conv_in(x).flatten(2).transpose(1, 2)).softmax(1)  # B×N×S, softmax over the positions
            a = a / (1e-9 + a.sum(2, keepdim=True))
            f = self.mv(a).transpose(1, 2).reshape(b, c, h, w)
        else:
            a = torch.matmul(r.mk.weight.squeeze(-1), r.conv_in(x).flatten(2)).softmax(-1)  # B×S×N
            a = a / (1e-9 + a.sum(1, keepdim=True))
            f = torch.matmul(r.mv.weight.squeeze(-1), a).reshape(b, c, h, w)
        return F.relu(x + r.norm(r.conv_out(f)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=9, help="interleaved timing rounds")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (peers.py's 2 by default)")
    ap.add_argument("--output", help="append the results section to this markdown file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(SHAPE)
    blocks = {"attnzoo (Conv1d, B×C×N)": attnzoo.create("external_attention", C, memory=S)}
    blocks["matmul, B×C×N"] = EABlock(blocks["attnzoo (Conv1d, B×C×N)"], tokens=False)
    blocks["nn.Linear, B×N×C tokens"] = EABlock(blocks["attnzoo (Conv1d, B×C×N)"], tokens=True)
    ref = blocks["attnzoo (Conv1d, B×C×N)"].eval()
    with torch.no_grad():
        y = ref(x)
        parity = {k: float((m.eval()(x) - y).abs().max()) for k, m in blocks.items() if m is not ref}
    mib = 2.0**20
    peaks = {k: live_peaks(m, (x,)) for k, m in blocks.items()}
    times = [
        time_interleaved({k: (m, x) for k, m in blocks.items()}, backward, args.repeats) for backward in (False, True)
    ]
    base = "attnzoo (Conv1d, B×C×N)"
    lines = [
        "| block | live peak fwd / fwd+bwd (MiB) | fwd ms | fwd+bwd ms | fwd+bwd time / attnzoo |",
        "|---|---|---|---|---|",
    ]
    for k in blocks:
        fwd, both = times[0][k][1] * 1e3, times[1][k][1] * 1e3
        ratio = times[1][k][1] / times[1][base][1]
        lines.append(
            f"| {k} | {peaks[k][0] / mib:.2f} / {peaks[k][1] / mib:.2f} | {fwd:.2f} | {both:.2f} | {ratio:.2f} |"
        )
    data = {
        "threads": args.threads,
        "shape": SHAPE,
        "memory": S,
        "live_peak_bytes": peaks,
        "cpu_seconds": {k: [t[k][1] for t in times] for k in blocks},
    }
    write_results(
        args.output,
        f"external_attention: channels-first against tokens, {SHAPE}, S = {S}",
        f"live-tensor peaks (torch memory profiler timeline) and process-CPU medians, {args.threads} thread(s)",
        ("outputs against attnzoo's", parity),
        lines,
        data,
    )


if __name__ == "__main__":
    main()
