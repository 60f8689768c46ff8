"""``mhsa`` against External-Attention's ``ScaledDotProductAttention`` (PyPI ``fightingcv-attention``).

Issue requirement: self-attention on B=2 × N=4096 tokens, d_model 512, 8 heads (d_k = d_v = 64): forward+backward
at least 2.5× faster and at least 20× less peak memory than the community module, measured side by side.

* Same computation: the community module is built with d_k = d_v = 64 and dropout 0 (ours defaults to 0) and
  loads ``attnzoo``'s state dict (same parameter names ``fc_q/fc_k/fc_v/fc_o``); outputs are checked equal first.
* Time: ``torch.utils.benchmark`` (``blocked_autorange``, median of the runs), ``torch.set_num_threads(2)``,
  the two peers one after the other in the same process on the same input.
* Peak memory: a fresh child process per case (``--child``): warm up on a tiny input (loads kernels and thread
  pools), build the full-size input, reset the resident high-water mark (``/proc/self/clear_refs``), run one
  pass, report the high-water mark minus the resident size before the pass.

``--temporal`` instead times MTGNN's ``gated_tcn`` (one fused convolution for the 4 branches × filter/gate) against
the official formulation (8 separate branch convolutions, crop, concatenate) with the same weights.

Usage:
    python benchmarks/sequence.py                                   # the required case, printed
    python benchmarks/sequence.py --output benchmarks/results/sequence.md --label "run 1"
    python benchmarks/sequence.py --temporal --output benchmarks/results/sequence.md
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
from _common import append_section, child_peak_bytes, fmt_bytes, load_line, op_table, report_peak

torch.set_num_threads(2)
PEERS = ("fightingcv", "attnzoo")


def build(impl: str, d_model: int, heads: int) -> nn.Module:
    torch.manual_seed(0)
    ours = attnzoo.MultiHeadSelfAttention(d_model, heads=heads)
    if impl == "attnzoo":
        return ours
    from fightingcv_attention.attention.SelfAttention import ScaledDotProductAttention

    d = d_model // heads
    theirs = ScaledDotProductAttention(d_model=d_model, d_k=d, d_v=d, h=heads, dropout=0.0)
    theirs.load_state_dict(ours.state_dict())
    return theirs


def make_input(batch: int, n: int, d_model: int, grad: bool) -> torch.Tensor:
    return torch.randn(batch, n, d_model, generator=torch.Generator().manual_seed(1)).requires_grad_(grad)


def run_once(m: nn.Module, x: torch.Tensor, backward: bool) -> None:
    if backward:
        m(x, x, x).sum().backward()
    else:
        with torch.no_grad():
            m(x, x, x)


def child(spec: dict) -> None:
    """One case in a fresh process: prints the extra peak resident memory of one pass (after a warm-up)."""
    torch.set_num_threads(spec.get("threads", 2))
    m = build(spec["impl"], spec["d_model"], spec["heads"])
    run_once(m, make_input(spec["batch"], 16, spec["d_model"], spec["backward"]), spec["backward"])  # warm-up
    m.zero_grad(set_to_none=True)
    x = make_input(spec["batch"], spec["n"], spec["d_model"], spec["backward"])
    report_peak(lambda: run_once(m, x, spec["backward"]))


def profile_tables(mods: dict[str, nn.Module], args: argparse.Namespace) -> str:
    """Operators by self CPU time of one forward+backward call of each module (torch.profiler): the fused kernels
    against the projections (attnzoo) and the N×N matmul / softmax passes (the community module)."""
    x = make_input(args.batch, args.n, args.d_model, True)
    totals, parts = {}, []
    for impl, m in mods.items():
        table, totals[impl] = op_table(lambda m=m: run_once(m, x, True), steps=args.profile)
        parts += [f"{impl}, forward+backward ({totals[impl]:.0f} ms per call under the profiler):", "", table, ""]
    head = (f"Operators by self CPU time, one forward+backward call (mean of {args.profile} after a warm-up), "
            f"{load_line()} when it finished; speed-up under the profiler "
            f"{totals['fightingcv'] / totals['attnzoo']:.2f}×.")
    return head + "\n\n" + "\n".join(parts)


def interleaved(mods: dict[str, nn.Module], args: argparse.Namespace, backward: bool) -> dict[str, tuple[float, int]]:
    """{impl: (median seconds, samples)}: one call of each module per round, ``--interleave`` rounds, the order
    alternating, so that the load of a shared machine hits both alike (for calls of tens of seconds)."""
    x = make_input(args.batch, args.n, args.d_model, backward)
    times: dict[str, list[float]] = {impl: [] for impl in mods}
    names = list(mods)
    for impl in names:  # warm-up
        run_once(mods[impl], x, backward)
    for i in range(args.interleave):
        for impl in names if i % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            run_once(mods[impl], x, backward)
            times[impl].append(time.perf_counter() - t0)
            mods[impl].zero_grad(set_to_none=True)
    return {impl: (statistics.median(v), len(v)) for impl, v in times.items()}


def median_time(m: nn.Module, x: torch.Tensor, backward: bool, min_run_time: float) -> tuple[float, int]:
    timer = tb.Timer(
        stmt="run_once(m, x, backward)", globals={"run_once": run_once, "m": m, "x": x, "backward": backward},
        num_threads=torch.get_num_threads(),
    )
    run_once(m, x, backward)  # warm-up
    meas = timer.blocked_autorange(min_run_time=min_run_time)
    return meas.median, len(meas.times)


class OfficialGatedTCN(nn.Module):
    """The official MTGNN formulation: per-branch convolutions, crop to the shortest, concatenate; twice."""

    def __init__(self, ours: nn.Module) -> None:
        super().__init__()
        self.filter_convs, self.gate_convs = ours.filter_conv.tconv, ours.gate_conv.tconv  # shared weights

    @staticmethod
    def inception(convs: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        outs = [conv(x) for conv in convs]
        return torch.cat([o[..., -outs[-1].size(3):] for o in outs], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.inception(self.filter_convs, x)) * torch.sigmoid(self.inception(self.gate_convs, x))


def temporal(args: argparse.Namespace) -> None:
    shapes = [(64, 32, 207, 19), (16, 16, 137, 168), (2, 32, 8, 24)]  # METR-LA layer, Solar-like single step, bench default
    lines = ["| input B×C×N×T | pass | official (8 convs + crop + cat) | attnzoo (1 conv) | speed-up |", "|---|---|---|---|---|"]
    for shape in shapes:
        ours = attnzoo.GatedTemporalConv(shape[1])
        ref = OfficialGatedTCN(ours)
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            assert (ours(x) - ref(x)).abs().max() < 1e-5
        for backward in (False, True):
            xin = x.clone().requires_grad_(backward)
            stmt = "m(x).sum().backward()" if backward else "with torch.no_grad(): m(x)"
            t = {name: tb.Timer(stmt, globals={"m": m, "x": xin, "torch": torch}, num_threads=2).blocked_autorange(min_run_time=2).median
                 for name, m in (("official", ref), ("attnzoo", ours))}
            lines.append(f"| {'×'.join(map(str, shape))} | {'fwd+bwd' if backward else 'fwd'} | {t['official'] * 1e3:.1f} ms "
                         f"| {t['attnzoo'] * 1e3:.1f} ms | {t['official'] / t['attnzoo']:.2f}× |")
            print(lines[-1], flush=True)
    table = "\n".join(lines)
    if args.output:
        append_section(args.output, f"gated_tcn: fused convolution vs the official per-branch formulation {args.label}", table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--n", type=int, default=4096, help="tokens")
    ap.add_argument("--d-model", type=int, default=512)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--min-run-time", type=float, default=20.0, help="seconds per timing (blocked_autorange)")
    ap.add_argument("--output", help="append a markdown section to this file")
    ap.add_argument("--label", default="")
    ap.add_argument("--temporal", action="store_true", help="time gated_tcn against the official formulation instead")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2; the memory children too)")
    ap.add_argument("--interleave", type=int, default=0, metavar="ROUNDS",
                    help="time by ROUNDS alternating single calls of both modules instead of blocked_autorange")
    ap.add_argument("--passes", choices=("both", "fwd", "fwd+bwd"), default="both")
    ap.add_argument("--profile", type=int, default=0, metavar="STEPS",
                    help="add operator tables (torch.profiler, STEPS forward+backward calls) of both modules")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        child(json.loads(args.child))
        return
    if args.temporal:
        temporal(args)
        return

    common = dict(batch=args.batch, n=args.n, d_model=args.d_model, heads=args.heads, threads=args.threads)
    start = load_line()
    mods = {impl: build(impl, args.d_model, args.heads) for impl in PEERS}
    with torch.no_grad():  # the same function first
        x = make_input(args.batch, args.n, args.d_model, False)
        err = (mods["fightingcv"](x, x, x) - mods["attnzoo"](x)).abs().max().item()
    assert err < 1e-4, f"outputs differ by {err}"
    rows = []
    passes = [False, True] if args.passes == "both" else [args.passes == "fwd+bwd"]
    for backward in passes:
        res = {}
        inter = interleaved(mods, args, backward) if args.interleave else None
        for impl, m in mods.items():  # side by side: the community module, then attnzoo
            x = make_input(args.batch, args.n, args.d_model, backward)
            t, runs = inter[impl] if inter else median_time(m, x, backward, args.min_run_time)
            mem = child_peak_bytes(__file__, {**common, "impl": impl, "backward": backward})
            res[impl] = (t, runs, mem)
            print(f"{'fwd+bwd' if backward else 'fwd'} {impl}: {t * 1e3:.0f} ms (median of {runs}), {fmt_bytes(mem)}", flush=True)
        rows.append((backward, res))

    lines = [
        "| pass | fightingcv time | attnzoo time | speed-up | fightingcv peak | attnzoo peak | memory ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for backward, res in rows:
        (tf, rf, mf), (ta, ra, ma) = res["fightingcv"], res["attnzoo"]
        lines.append(
            f"| {'fwd+bwd' if backward else 'fwd (no_grad)'} | {tf * 1e3:.0f} ms ({rf} runs) | {ta * 1e3:.0f} ms ({ra} runs) "
            f"| {tf / ta:.2f}× | {fmt_bytes(mf)} | {fmt_bytes(ma)} | {mf / max(ma, 1):.0f}× less |"
        )
    table = f"Load: {start} at the start, {load_line()} at the end.\n\n" + "\n".join(lines)
    if args.profile:
        table += "\n\n" + profile_tables(mods, args)
    print(table)
    if args.output:
        title = (f"mhsa vs fightingcv ScaledDotProductAttention: B={args.batch}, N={args.n}, d_model={args.d_model}, "
                 f"{args.heads} heads {args.label}")
        append_section(args.output, title, f"max |Δ| of the outputs {err:.1e}\n\n{table}")


if __name__ == "__main__":
    main()
