"""Cost of the fusion necks (fpn, panet, asff) on a ResNet-50-like pyramid, and fpn against torchvision.

Input: batch 1, C2..C5 = 256/512/1024/2048 channels at strides 4, 8, 16, 32 of a 512×512 image
(128², 64², 32², 16²).  For each neck: parameters, FLOPs (``torch.utils.flop_counter.FlopCounterMode``; a
multiply-add counts 2), forward latency (eval, ``torch.no_grad``) and forward+backward latency (train), as
medians of single ``torch.utils.benchmark.Timer`` calls with 2 threads, and the peak extra resident memory of an
inference forward measured in a fresh child process per neck (see :func:`child_peak_memory`).  The fpn /
torchvision comparison runs the two side by side, interleaved call by call, in ``--rounds`` rounds.

    python benchmarks/fusion.py --output benchmarks/results/fusion.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
from collections import OrderedDict

import torch

from _common import medians, outputs, runners
from attnzoo.bench.flops import model_flops
from attnzoo.bench.measure import peak_rss_extra
from attnzoo.bench.worker import cpu_model

CHANNELS = [256, 512, 1024, 2048]
IMAGE = 512
STRIDES = [4, 8, 16, 32]


def make_inputs(batch: int = 1, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, c, IMAGE // s, IMAGE // s, generator=g) for c, s in zip(CHANNELS, STRIDES)]


def build(case: str) -> torch.nn.Module:
    """A neck by case name; ``tv_*`` are torchvision's, the rest attnzoo's."""
    from torchvision.ops import FeaturePyramidNetwork as TVFPN
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

    import attnzoo

    torch.manual_seed(0)
    if case == "fpn":
        return attnzoo.create("fpn", CHANNELS)
    if case == "fpn_p6p7":
        return attnzoo.create("fpn", CHANNELS, extra_levels="p6p7")
    if case == "fpn_maxpool":
        return attnzoo.create("fpn", CHANNELS, extra_levels="maxpool")
    if case == "tv_fpn":
        return _ListAdapter(TVFPN(CHANNELS, 256))
    if case == "tv_fpn_p6p7":
        return _ListAdapter(TVFPN(CHANNELS, 256, extra_blocks=LastLevelP6P7(2048, 256)))
    if case == "tv_fpn_maxpool":
        return _ListAdapter(TVFPN(CHANNELS, 256, extra_blocks=LastLevelMaxPool()))
    if case == "panet":
        return attnzoo.create("panet", CHANNELS)
    if case == "panet_gn":
        return attnzoo.create("panet", CHANNELS, norm="gn", act="relu")
    if case.startswith("asff256_l"):  # ASFF at neck width: inter = out = 256
        return attnzoo.create("asff", CHANNELS, level=int(case[-1]), inter_channels=256, out_channels=256)
    if case.startswith("asff_l"):  # defaults: inter = out = channels[level]
        return attnzoo.create("asff", CHANNELS, level=int(case[-1]))
    raise ValueError(case)


class _ListAdapter(torch.nn.Module):
    """Feed torchvision's FPN the same list (its OrderedDict is built outside the timed region's cost: O(L))."""

    def __init__(self, fpn: torch.nn.Module) -> None:
        super().__init__()
        self.fpn = fpn

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return list(self.fpn(OrderedDict((str(i), x) for i, x in enumerate(xs))).values())




def count_flops(m: torch.nn.Module, xs: list[torch.Tensor]) -> int:
    """Forward FLOPs with attnzoo's counter (the one ``attnzoo bench`` and ``attnzoo compare`` use)."""
    return model_flops(m, xs)






def child_peak_memory(case: str, repeats: int = 3) -> None:
    """Runs in a fresh process: prints the extra peak resident memory (MiB) of an inference forward of ``case``.

    A warm-up forward first (one-time oneDNN primitive caches are not counted); then ``repeats`` times
    :func:`attnzoo.bench.measure.peak_rss_extra` of one forward (free heap returned to the OS, high-water mark
    reset, peak minus the resident size before; the outputs are part of the working set).  Prints the median
    and the range.
    """
    torch.set_num_threads(2)
    m = build(case).eval()
    xs = make_inputs()
    with torch.no_grad():
        outputs(m(xs))
        peaks = [peak_rss_extra(lambda: outputs(m(xs))) / 2**20 for _ in range(repeats)]
    print(json.dumps({"case": case, "median": statistics.median(peaks), "min": min(peaks), "max": max(peaks)}))


def peak_memory(case: str) -> dict:
    r = subprocess.run([sys.executable, __file__, "--child", case], capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def fmt_mem(d: dict) -> str:
    return f"{d['median']:.0f} ({d['min']:.0f}–{d['max']:.0f})"


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", default=None, help="write the markdown section to this file")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of the side-by-side fpn / torchvision comparison")
    ap.add_argument("--runs", type=int, default=5, help="timed calls per forward latency (fwd+bwd: runs - 2, at least 3)")
    ap.add_argument("--pair-runs", type=int, default=9, help="interleaved calls per peer in the fpn / torchvision comparison (fwd+bwd: pair-runs - 2)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_peak_memory(args.child)
        return
    torch.set_num_threads(2)
    xs = make_inputs()
    lines: list[str] = []

    def emit(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    emit("## fusion necks (fpn, panet, asff)")
    emit()
    emit(f"- date: {datetime.date.today().isoformat()}; machine: {cpu_model()}, "
         f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} at the start (ratios matter more than absolute times)")
    emit(f"- torch {torch.__version__}, torchvision {__import__('torchvision').__version__}, float32, CPU")
    emit("- command: `python benchmarks/fusion.py" + (f" --output {args.output}" if args.output else "") + "`")
    emit("- input: batch 1, ResNet-50 C2..C5 = 256/512/1024/2048 channels at 128², 64², 32², 16² (strides 4–32 of 512×512)")
    emit(f"- latency: median of single timed calls (`torch.utils.benchmark.Timer`, {args.runs} forward / "
         f"{max(3, args.runs - 2)} fwd+bwd per neck; peers interleaved call by call, {args.pair_runs} / {args.pair_runs - 2}); forward: "
         "eval + no_grad; fwd+bwd: train mode, input gradients, loss = sum of output means; peak MiB: extra resident memory of an inference forward after a warm-up, in a fresh process per neck (VmHWM after − VmRSS before, after malloc_trim; includes outputs and oneDNN scratch): median (min–max) of 3 forwards")
    emit()

    # 1. cost table of the necks
    cases = [
        ("fpn", "fpn (out 256)"),
        ("fpn_p6p7", "fpn + RetinaNet P6/P7 (P6 from C5)"),
        ("panet", "panet (out 256)"),
        ("panet_gn", "panet, norm=gn, act=relu (official GN config)"),
        *[(f"asff_l{i}", f"asff level {i} (inter = out = {CHANNELS[i]})") for i in range(4)],
        *[(f"asff256_l{i}", f"asff level {i}, inter = out = 256") for i in range(4)],
    ]
    emit("### cost per neck")
    emit()
    emit("| neck | params (M) | GFLOPs | forward ms | fwd+bwd ms | peak MiB |")
    emit("|---|---:|---:|---:|---:|---:|")
    for case, label in cases:
        m = build(case)
        params = sum(p.numel() for p in m.parameters()) / 1e6
        flops = count_flops(m.eval(), xs) / 1e9
        fwd_fn, bwd_fn = runners(m, xs)
        fwd = medians({"x": fwd_fn}, args.runs)["x"]
        bwd = medians({"x": bwd_fn}, max(3, args.runs - 2))["x"]
        mem = peak_memory(case)
        emit(f"| {label} | {params:.2f} | {flops:.1f} | {fmt_ms(fwd)} | {fmt_ms(bwd)} | {fmt_mem(mem)} |")
    emit()

    # 2. fpn vs torchvision, side by side, alternating, several rounds
    emit("### fpn vs torchvision.ops.FeaturePyramidNetwork (same input, same weights)")
    emit()
    emit("| round | config | attnzoo fwd ms | torchvision fwd ms | ratio | attnzoo fwd+bwd ms | torchvision fwd+bwd ms | ratio | attnzoo peak MiB | torchvision peak MiB |")
    emit("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    pairs = [("fpn", "tv_fpn", "no extra"), ("fpn_p6p7", "tv_fpn_p6p7", "LastLevelP6P7(2048, 256)")]
    for r in range(1, args.rounds + 1):
        for ours_case, tv_case, label in pairs:
            ours, tv = build(ours_case), build(tv_case)
            tv.fpn.load_state_dict(_to_tv_names(ours.state_dict(), tv.fpn.state_dict()))
            with torch.no_grad():
                for a, b in zip(outputs(ours.eval()(xs)), outputs(tv.eval()(xs))):
                    torch.testing.assert_close(a, b)
            (fa, ba), (fb_, bb) = runners(ours, xs), runners(tv, xs)
            first = {"a": fa, "b": fb_} if r % 2 else {"b": fb_, "a": fa}
            f = medians(first, args.pair_runs)
            fb = medians({"a": ba, "b": bb} if r % 2 else {"b": bb, "a": ba}, args.pair_runs - 2)
            mem_a, mem_b = peak_memory(ours_case), peak_memory(tv_case)
            emit(f"| {r} | {label} | {fmt_ms(f['a'])} | {fmt_ms(f['b'])} | {f['a'] / f['b']:.2f} | "
                 f"{fmt_ms(fb['a'])} | {fmt_ms(fb['b'])} | {fb['a'] / fb['b']:.2f} | {fmt_mem(mem_a)} | {fmt_mem(mem_b)} |")
    emit()
    emit("ratio = attnzoo / torchvision (below 1 = attnzoo faster).")
    if args.output:
        with open(args.output, "w") as fh:
            fh.write("\n".join(lines) + "\n")


def _to_tv_names(ours: dict, tv: dict) -> dict:
    """Our state_dict renamed to torchvision's (same registration order)."""
    assert len(ours) == len(tv), (list(ours), list(tv))
    return {kt: v for (ko, v), kt in zip(ours.items(), tv)}


if __name__ == "__main__":
    main()
