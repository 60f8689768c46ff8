"""global_attention against a naive matmul-softmax-matmul implementation with the same weights.

Issue requirement: at input 2×64×64×64 (N = 4096 positions) with 8 heads, forward+backward peak memory of
``attnzoo.GlobalAttention`` must be under 1/20 of the naive version and its time under 1/3, measured side by
side in one run.

* Time: the two implementations run interleaved in one process (naive, attnzoo, naive, attnzoo, ...; same
  weights, outputs checked equal first), each run timed on its own; the table gives the median over the
  repeats (``torch.utils.benchmark.Measurement``).  The machine is shared, so the process CPU time of each run
  (``time.process_time``, both threads) is reported too: it is far less sensitive to other load.
* Peak memory: a fresh child process per case (``--child``): warm up on a tiny input (loads the kernels),
  build the full-size input and module, read the resident size (VmRSS) as the baseline, run one forward
  (+ backward), report the peak resident size (VmHWM) minus the baseline.  (``ru_maxrss`` would be wrong
  here: a child inherits the parent's high-water mark across fork/exec, VmHWM starts fresh.)

Usage:
    python benchmarks/global_attention.py                       # the required case (dim_head 8 = C/heads)
    python benchmarks/global_attention.py --dim-heads 8 64      # also the community code's default dim_head 64
    python benchmarks/global_attention.py --repeats 7 5         # more interleaved runs
    python benchmarks/global_attention.py --output benchmarks/results/self_attention.md --label "run 1"
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.utils.benchmark as tb

import attnzoo
from _common import append_section, child_peak_bytes, fmt_bytes, report_peak
from reference.community_attention import CommunityAttentionBlock

torch.set_num_threads(2)


class NaiveGlobalAttention(CommunityAttentionBlock):
    """The community ``AttentionBlock`` applied to a map: explicit B×h×N×N logits and probabilities."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return super().forward(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, c, h, w)


def build(impl: str, channels: int, heads: int, dim_head: int) -> nn.Module:
    torch.manual_seed(0)
    fused = attnzoo.GlobalAttention(channels, heads=heads, dim_head=dim_head)
    if impl == "attnzoo":
        return fused
    naive = NaiveGlobalAttention(channels, heads, dim_head)
    naive.load_state_dict({k.replace("to_out.0", "to_out"): v for k, v in fused.state_dict().items()})
    return naive


def make_input(batch: int, channels: int, size: int, grad: bool) -> torch.Tensor:
    x = torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(1))
    return x.requires_grad_(grad)


def run_once(m: nn.Module, x: torch.Tensor, backward: bool) -> None:
    y = m(x)
    if backward:
        y.sum().backward()


def child(spec: dict) -> None:
    """One case in a fresh process: prints the extra peak resident memory of one pass (after a warm-up)."""
    m = build(spec["impl"], spec["channels"], spec["heads"], spec["dim_head"])
    run_once(m, make_input(spec["batch"], spec["channels"], 8, spec["backward"]), spec["backward"])  # warm-up
    m.zero_grad(set_to_none=True)
    x = make_input(spec["batch"], spec["channels"], spec["size"], spec["backward"])
    report_peak(lambda: run_once(m, x, spec["backward"]))


def time_runs(mods: dict[str, nn.Module], x_of, backward: bool, repeats: int, threads: int) -> dict[str, tuple[float, float]]:
    """Median wall time and median process CPU time per implementation, runs interleaved across implementations.

    Each run takes seconds, so every run is timed on its own (``time.perf_counter`` / ``time.process_time``)
    and summarised with ``torch.utils.benchmark.Measurement``; ``Timer.timeit`` would add two warm-up runs
    per call (tripling the cost and the CPU-time window).
    """
    wall: dict[str, list[float]] = {k: [] for k in mods}
    cpu: dict[str, list[float]] = {k: [] for k in mods}
    xs = {k: x_of() for k in mods}
    for impl, m in mods.items():
        run_once(m, xs[impl], backward)  # warm-up
    for _ in range(repeats):
        for impl, m in mods.items():
            c0, t0 = time.process_time(), time.perf_counter()
            run_once(m, xs[impl], backward)
            wall[impl].append(time.perf_counter() - t0)
            cpu[impl].append(time.process_time() - c0)
    out = {}
    for k in mods:
        spec = tb.TaskSpec(stmt=f"{k} {'fwd+bwd' if backward else 'fwd'}", setup="", num_threads=threads)
        out[k] = (tb.Measurement(1, wall[k], spec).median, statistics.median(cpu[k]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--dim-heads", type=int, nargs="+", default=[8], help="dim_head values (8 = C/heads)")
    ap.add_argument("--repeats", type=int, nargs=2, default=[5, 3], metavar=("FWD", "FWD_BWD"),
                    help="interleaved timed runs per implementation, forward and forward+backward")
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads (the spec's setting is 2)")
    ap.add_argument("--output", help="append a markdown section to this file")
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    if args.child:
        spec = json.loads(args.child)
        torch.set_num_threads(spec["threads"])
        child(spec)
        return
    torch.set_num_threads(args.threads)

    rows = []
    for dim_head in args.dim_heads:
        common = dict(batch=args.batch, channels=args.channels, size=args.size, heads=args.heads, dim_head=dim_head,
                      threads=args.threads)
        mods = {impl: build(impl, args.channels, args.heads, dim_head) for impl in ("naive", "attnzoo")}
        with torch.no_grad():  # same function first
            x = make_input(args.batch, args.channels, args.size, False)
            ref, got = mods["naive"](x), mods["attnzoo"](x)
            err = (ref - got).abs().max().item()
        assert err < 1e-4, f"outputs differ by {err}"
        for backward in (False, True):
            mem = {impl: child_peak_bytes(__file__, {**common, "impl": impl, "backward": backward}) for impl in mods}
            times = time_runs(mods, lambda: make_input(args.batch, args.channels, args.size, backward), backward,
                              args.repeats[int(backward)], args.threads)
            res = {impl: (*times[impl], mem[impl]) for impl in mods}
            for impl, (t, c, mb) in res.items():
                print(f"dim_head={dim_head} {'fwd+bwd' if backward else 'fwd'} {impl}: {t * 1e3:.0f} ms wall, "
                      f"{c * 1e3:.0f} ms CPU, {fmt_bytes(mb)}", flush=True)
            rows.append((dim_head, backward, res, err))

    shape = f"{args.batch}×{args.channels}×{args.size}×{args.size}"
    lines = [
        "| dim_head | pass | naive wall | attnzoo wall | wall ratio | naive CPU | attnzoo CPU | CPU ratio "
        "| naive peak | attnzoo peak | memory ratio | max abs diff |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for dim_head, backward, res, err in rows:
        (tn, cn, mn), (ta, ca, ma) = res["naive"], res["attnzoo"]
        lines.append(
            f"| {dim_head} | {'fwd+bwd' if backward else 'fwd'} | {tn * 1e3:.0f} ms | {ta * 1e3:.0f} ms | {ta / tn:.3f} "
            f"| {cn * 1e3:.0f} ms | {ca * 1e3:.0f} ms | {ca / cn:.3f} "
            f"| {fmt_bytes(mn)} | {fmt_bytes(ma)} | {ma / max(mn, 1):.4f} (1/{mn / max(ma, 1):.0f}) | {err:.1e} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.output:
        append_section(args.output, f"global_attention vs naive, input {shape}, {args.heads} heads {args.label}", table)

if __name__ == "__main__":
    main()
