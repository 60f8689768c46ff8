"""``neighborhood`` and ``halo`` against fused global attention, side by side.

    PYTHONPATH=src:benchmarks python benchmarks/neighborhood_halo.py --sizes 56,112 --threads 1,2 \
        --output benchmarks/results/neighborhood_halo.json

Input 1×64×S×S.  Cases (``attnzoo.create(name, 64, **kw)``, weights randomised with one seed):

* ``neighborhood``: module defaults (k 7, dilation 1, 8 heads × 8, relative position bias);
* ``neighborhood_gather``: the same module with the attention in the per-query gather form (each query's k²
  keys and values gathered by ``index_select``: the form before the tiles, kept for attention capture), so that
  before and after are measured side by side in one run;
* ``neighborhood_h2``: 2 heads × 32 (the configuration of benchmarks/local_sparse.py's sweep);
* ``halo``: module defaults (8×8 blocks, halo 3, 8 heads × 8);
* ``criss_cross``: module defaults;
* ``global_attention`` (fused SDPA over all N = S² positions): its defaults (``global``: 8 heads × 64, the
  "fused global attention" of the earlier figures), and the inner widths of the local modules: 8 heads × 8
  (``global_h8``) and 2 heads × 32 (``global_h2``).  Every local case gets its ratio to each of them.

Time: forward + backward (``train()``, input gradient, parameter gradients reset), and forward (``eval()``,
``no_grad``): ``torch.utils.benchmark.Timer(num_threads=n).timeit(number)`` samples, the cases taking turns
(ABC, CBA, ...) ``--repeats`` times so that the load of the shared machine hits every case alike; medians.
Peak memory: one forward+backward call in a fresh child process, resident high-water mark minus the resident size
before the call (``attnzoo.bench.measure.peak_rss_extra``, the measurement of BENCHMARKS.md's other rows).
Before/after: run the script once with ``PYTHONPATH=<main>/src:benchmarks`` (before) and once from the branch
(after); each run's ratios are taken side by side within that run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.utils.benchmark as tb

import attnzoo
from _common import child_peak_bytes, machine_line, report_peak
from attnzoo.testing import randomize

try:  # the tiled branch: the per-query gather form is kept for attention capture
    from attnzoo.local.neighborhood_windows import _gathered_attention
except ImportError:  # main before it: neighborhood_attention is the gather form
    _gathered_attention = None

C = 64
CASES = {
    "neighborhood": ("neighborhood", {}),
    "neighborhood_gather": ("neighborhood", {}),
    "neighborhood_h2": ("neighborhood", {"heads": 2}),
    "halo": ("halo", {}),
    "criss_cross": ("criss_cross", {}),
    "global_h8": ("global_attention", {"heads": 8, "dim_head": 8}),
    "global_h2": ("global_attention", {"heads": 2, "dim_head": 32}),
    "global": ("global_attention", {}),
}
GLOBALS = ("global", "global_h8", "global_h2")


class Gathered(torch.nn.Module):
    """``NeighborhoodAttention``'s eager forward with the attention in the gather form (same weights)."""

    def __init__(self, m: torch.nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.m
        b, _, h, w = x.shape
        q, k, v = m.qkv(x.permute(0, 2, 3, 1)).view(b, h, w, 3, m.heads, m.dim_head).permute(3, 0, 4, 1, 2, 5).unbind(0)
        out = _gathered_attention(q, k, v, m.kernel_size, m.dilation, m.rpb, m.scale, 0.0, None)
        return m.proj(out.permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)).permute(0, 3, 1, 2)


def build(case: str, size: int) -> tuple[torch.nn.Module, torch.Tensor]:
    name, kw = CASES[case]
    torch.manual_seed(0)
    m = randomize(attnzoo.create(name, C, **kw), seed=0, scale=0.1)
    if case == "neighborhood_gather":
        m = Gathered(m) if _gathered_attention is not None else m
    return m, torch.randn(1, C, size, size, generator=torch.Generator().manual_seed(1))


def runner(m: torch.nn.Module, x: torch.Tensor, backward: bool):
    xg = x.clone().requires_grad_()

    def fwd_bwd() -> None:
        for p in m.parameters():
            p.grad = None
        xg.grad = None
        m(xg).sum().backward()

    def fwd() -> None:
        with torch.no_grad():
            m(x)

    m.train(backward)
    return fwd_bwd if backward else fwd


def time_cases(cases: dict, backward: bool, threads: int, repeats: int, budget: float) -> dict[str, float]:
    """Median seconds per call of each case, interleaved (alternating order) ``repeats`` times."""
    fns = {n: runner(m, x, backward) for n, (m, x) in cases.items()}
    timers, numbers = {}, {}
    for n, f in fns.items():
        timers[n] = tb.Timer("f()", globals={"f": f}, num_threads=threads)
        t0 = time.perf_counter()
        timers[n].timeit(1)  # warm-up, and the number of calls per sample
        numbers[n] = max(1, round(budget / max(time.perf_counter() - t0, 1e-6)))
    samples: dict[str, list[float]] = {n: [] for n in fns}
    order = list(fns)
    for i in range(repeats):
        for n in order if i % 2 == 0 else order[::-1]:
            samples[n].append(timers[n].timeit(numbers[n]).mean)
    return {n: statistics.median(s) for n, s in samples.items()}


def ratios(values: dict[str, float]) -> dict[str, dict[str, float]]:
    """{local case: {global case: value / global value}} for the cases present."""
    return {
        n: {g: round(v / values[g], 4) for g in GLOBALS if g in values}
        for n, v in values.items()
        if n not in GLOBALS
    }


def child(spec: dict) -> None:
    m, x = build(spec["case"], spec["size"])
    torch.set_num_threads(spec.get("threads", 2))
    f = runner(m, x, spec["backward"])
    f()  # warm-up: the measured call is the second
    report_peak(f)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--sizes", default="56,112")
    ap.add_argument("--repeats-large", type=int, default=0, help="repeats at 112² and above (default --repeats)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--memory-cases", help="cases whose peak memory is measured (default: --cases)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--budget", type=float, default=0.3, help="seconds per timed sample")
    ap.add_argument("--no-forward", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--label", default="")
    ap.add_argument("--output")
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    names = args.cases.split(",")
    if "neighborhood_gather" in names and "neighborhood" in names:
        m, x = build("neighborhood", 20)
        with torch.no_grad():
            diff = (m.eval()(x) - build("neighborhood_gather", 20)[0].eval()(x)).abs().max().item()
        print("neighborhood tiled vs gather form, max |diff| at 20²:", diff, flush=True)
    result: dict = {"machine": machine_line(), "label": args.label, "load_start": os.getloadavg()[0], "sizes": {}}
    for s in map(int, args.sizes.split(",")):
        cases = {n: build(n, s) for n in names}
        res: dict = {}
        for th in map(int, args.threads.split(",")):
            for backward in (True, False) if not args.no_forward else (True,):
                key = f"{'fwd_bwd' if backward else 'fwd'}_{th}t"
                repeats = args.repeats_large if s >= 112 and args.repeats_large else args.repeats
                res[key] = time_cases(cases, backward, th, repeats, args.budget)
                print(s, key, {n: f"{v * 1e3:.1f} ms" for n, v in res[key].items()}, flush=True)
                res[key + "_ratio"] = ratios(res[key])
                print("   ratio", res[key + "_ratio"], flush=True)
        if not args.no_memory:
            mem_names = args.memory_cases.split(",") if args.memory_cases else names
            mem = {n: child_peak_bytes(__file__, {"case": n, "size": s, "backward": True}) / 2**20 for n in mem_names}
            res["peak_mib_fwd_bwd"] = mem
            res["peak_mib_fwd_bwd_ratio"] = ratios(mem)
            print("   ratio", res["peak_mib_fwd_bwd_ratio"], flush=True)
            print(s, "peak MiB", {n: f"{v:.1f}" for n, v in mem.items()}, flush=True)
        result["sizes"][str(s)] = res
    result["load_end"] = os.getloadavg()[0]
    if args.output:
        runs = []
        if os.path.exists(args.output):
            with open(args.output) as f:
                runs = json.load(f)
        runs.append(result)
        with open(args.output, "w") as f:
            json.dump(runs, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
