"""Resolution sweep of the sparse / linear global attention modules against full global attention.

    PYTHONPATH=src:benchmarks python benchmarks/sparse_sweep.py            # 14², 28², 56², 112²
    PYTHONPATH=src:benchmarks python benchmarks/sparse_sweep.py --sizes 14,28 --output s.md

For each square input 2×64×S×S: forward time (``eval()``, ``no_grad``; median CPU time of the process per call,
``time.process_time``, one thread by default: a loaded shared machine disturbs it far less than wall-clock time) and the extra peak resident memory of
one forward, measured in a fresh child process (see ``_common.py``).  ``global_attention`` (fused SDPA over all
N = S² positions, O(N²) time, memory linear in N) is the baseline the sparse modules are read against:
criss_cross and axial O(N·(H+W)) = O(N^1.5), halo O(N·(b+2h)²), double_attention and external_attention O(N).
Writes a markdown table (appended to ``--output``), the raw JSON next to it and a log-log plot (``--plot``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

import attnzoo
from _common import append_section, child_peak_bytes, fmt_bytes, report_peak

ROOT = Path(__file__).resolve().parents[1]
C, B = 64, 2
MODULES = {
    "global_attention": {"heads": 8, "dim_head": 8},
    "criss_cross": {},
    "axial": {"heads": 8, "dim_head": 8},
    "halo": {"heads": 8, "dim_head": 8},
    "double_attention": {},
    "external_attention": {},
}


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return attnzoo.create(name, C, **MODULES[name]).eval()


def make_input(size: int) -> torch.Tensor:
    return torch.randn(B, C, size, size, generator=torch.Generator().manual_seed(0))


def cpu_ms(fn, min_time: float) -> float:
    """Median CPU time (ms) of ``fn()`` over at least ``min_time`` seconds of CPU time (3 calls at least)."""
    fn()
    times: list[float] = []
    while sum(times) < min_time or len(times) < 3:
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return statistics.median(times) * 1e3


def child(spec: dict) -> None:
    torch.set_num_threads(spec["threads"])
    m, x = build(spec["name"]), make_input(spec["size"])

    def run() -> None:
        with torch.no_grad():
            m(x)

    run()
    report_peak(run)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--sizes", default="14,28,56,112")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--min-time", type=float, default=0.3)
    ap.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "sparse_attention.md"))
    ap.add_argument("--plot", default=str(ROOT / "benchmarks" / "results" / "sparse_sweep.png"))
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    names = list(MODULES)
    load_before = os.getloadavg()
    res: dict[str, dict[int, dict[str, float]]] = {n: {} for n in names}
    for s in sizes:
        x = make_input(s)
        for name in names[s % len(names):] + names[: s % len(names)]:
            m = build(name)
            with torch.no_grad():
                t = cpu_ms(lambda m=m, x=x: m(x), args.min_time) / 1e3
            mem = child_peak_bytes(__file__, {"name": name, "size": s, "threads": args.threads})
            res[name][s] = {"fwd_ms": t * 1e3, "mem_bytes": mem}
            print(f"{s:4d}² {name:<20} fwd {t * 1e3:9.2f} ms  mem {fmt_bytes(mem)}", file=sys.stderr, flush=True)
    load = " / ".join(f"{v:.1f}" for v in load_before) + " → " + " / ".join(f"{v:.1f}" for v in os.getloadavg())
    head = "| module | complexity | " + " | ".join(f"{s}² fwd ms" for s in sizes) + " | " + \
        " | ".join(f"{s}² MiB" for s in sizes) + f" | time ×{sizes[-1]}²/{sizes[0]}² | vs global at {sizes[-1]}² |"
    lines = [head, "|" + "---|" * (4 + 2 * len(sizes))]
    g = res["global_attention"][sizes[-1]]["fwd_ms"]
    for name in names:
        r = res[name]
        lines.append(f"| `{name}` | {attnzoo.info(name).complexity} | "
                     + " | ".join(f"{r[s]['fwd_ms']:.2f}" for s in sizes) + " | "
                     + " | ".join(f"{r[s]['mem_bytes'] / 2**20:.1f}" for s in sizes) + " | "
                     + f"{r[sizes[-1]]['fwd_ms'] / r[sizes[0]]['fwd_ms']:.0f}× | {r[sizes[-1]]['fwd_ms'] / g:.3f} |")
    body = (f"Input 2×{C}×S×S, forward (`eval`, `no_grad`), CPU time per call (`time.process_time`), "
            f"{args.threads} thread(s); load average (1/5/15 min) {load}. N grows "
            f"{(sizes[-1] / sizes[0]) ** 2:.0f}× from {sizes[0]}² to {sizes[-1]}²; absolute times are from a shared "
            "machine, read the growth and the ratios.\n\n" + "\n".join(lines))
    append_section(args.output, "Resolution sweep (sparse attention vs global attention)", body)
    Path(args.output).with_name("sparse_sweep.json").write_text(json.dumps({"sizes": sizes, "results": res}, indent=1))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        ns = [s * s for s in sizes]
        for name in names:
            style = "k--" if name == "global_attention" else "-o"
            axes[0].plot(ns, [res[name][s]["fwd_ms"] for s in sizes], style, label=name)
            axes[1].plot(ns, [max(res[name][s]["mem_bytes"], 1) / 2**20 for s in sizes], style, label=name)
        for ax, title in zip(axes, ("forward time (ms)", "extra peak memory of one forward (MiB)")):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("N = H·W (input 2×64×S×S, S = " + ", ".join(map(str, sizes)) + ")")
            ax.set_title(title)
            ax.grid(True, which="both", alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
