"""What stops ``cbam`` at its gate floor: the passes over the tensor, their cost one by one, and a fused prototype.

The gate-floor rows of ``peers.py`` time CBAM's forward as a multiple of one ``x * s`` pass (B×C×1×1 ``s``) on
the bandwidth-bound 2×256×112×112 input (25.7 MB, far beyond the caches).  This script takes the same case apart,
side by side in one process, one thread by default, forward only (eval, ``no_grad``):

* ``floor``: ``x * s`` (one read and one write of the tensor: 2 passes);
* ``cbam``: attnzoo's module (randomised weights);
* each of CBAM's steps alone, as the module runs them: mean and max over H·W (one read each), ``x * ca`` (read
  and write), mean and max over C of the product (one read each), the 7×7 conv + BN + sigmoid on the B×2×H×W
  pooled map, and the in-place ``x' *= sa`` (read and write): 8 passes, hence 8 / 2 = 4× the floor in memory
  traffic before any per-op cost;
* ``compiled``: the same module through ``torch.compile`` (inductor's CPU code generation), a prototype of the
  fused form: the channel pooling in one read, the spatial pooling of ``x * ca`` in one read without writing
  it, and ``x * ca * sa`` in one read and one write: 4 passes, 2× the floor.  Its output is checked against the
  eager module first.  Not used by attnzoo (a cold compile costs tens of seconds; see BENCHMARKS.md).

Times are medians of interleaved ``torch.utils.benchmark`` samples (the cases take turns, so a burst of load hits
all alike); ratios to the floor are what to read on a shared machine.  ``--profile STEPS`` adds the operator
table (torch.profiler, self CPU time) of the eager module's forward.

    PYTHONPATH=src:benchmarks python benchmarks/cbam_floor.py --threads 1 --repeats 9 --profile 5 \\
        --output benchmarks/results/cbam_floor.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any, Callable

import torch
import torch.utils.benchmark as tb

import attnzoo
from _common import append_section, load_line, op_table
from attnzoo.testing import randomize

SHAPE = (2, 256, 112, 112)


def steps(m: Any, x: torch.Tensor) -> dict[str, Callable[[], Any]]:
    """CBAM's forward cut into its passes, each timed alone on tensors of the right size."""
    cg, sg = m.channel_gate, m.spatial_gate.gate
    with torch.no_grad():
        ca = cg.gate_map(x)
        x1 = x * ca
        pooled = torch.stack([x1.amax(1), x1.mean(1)], dim=1)
        sa = sg(pooled)
    buf = x1.clone()
    return {
        "mean over H·W (1 read)": lambda: x.mean((2, 3)),
        "max over H·W (1 read)": lambda: x.amax((2, 3)),
        "x · ca (read + write)": lambda: x * ca,
        "mean over C (1 read)": lambda: x1.mean(1),
        "max over C (1 read)": lambda: x1.amax(1),
        "7×7 conv + BN + σ on B×2×H×W": lambda: sg(pooled),
        "x' ·= sa in place (read + write)": lambda: buf.mul_(sa),
    }


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int, budget_s: float = 0.2) -> dict[str, float]:
    """Median seconds per call of each function, the functions taking turns ``repeats`` times."""
    numbers = {}
    for name, f in fns.items():
        f()
        t0 = time.perf_counter()
        f()
        numbers[name] = max(1, round(budget_s / max(time.perf_counter() - t0, 1e-6)))
    timers = {k: tb.Timer("f()", globals={"f": f}, num_threads=torch.get_num_threads()) for k, f in fns.items()}
    times: dict[str, list[float]] = {k: [] for k in fns}
    keys = list(fns)
    for i in range(repeats):
        for k in keys if i % 2 == 0 else keys[::-1]:
            times[k].append(timers[k].timeit(numbers[k]).mean)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=9, help="interleaved samples per case")
    ap.add_argument("--profile", type=int, default=0, metavar="STEPS", help="add the eager operator table")
    ap.add_argument("--no-compile", action="store_true", help="leave the torch.compile prototype out")
    ap.add_argument("--output", help="append the section to this markdown file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    start = load_line()
    torch.manual_seed(0)
    m = randomize(attnzoo.create("cbam", SHAPE[1]), scale=0.2).eval()
    x = torch.randn(*SHAPE, generator=torch.Generator().manual_seed(1))
    s = torch.rand(SHAPE[0], SHAPE[1], 1, 1)

    def fwd(mod: Any) -> Callable[[], Any]:
        def run() -> Any:
            with torch.no_grad():
                return mod(x)

        return run

    cases: dict[str, Callable[[], Any]] = {"floor `x * s`": lambda: x * s, "cbam (eager)": fwd(m)}
    note = ""
    if not args.no_compile:
        compiled = torch.compile(m)
        t0 = time.perf_counter()
        with torch.no_grad():
            diff = (compiled(x) - m(x)).abs().max().item()
        note = f"torch.compile prototype: first call (compile) {time.perf_counter() - t0:.0f} s, max |Δ| to eager {diff:.1e}."
        print(note, file=sys.stderr, flush=True)
        cases["cbam, torch.compile prototype"] = fwd(compiled)
    parts = steps(m, x)
    t = interleaved({**cases, **parts}, args.repeats)
    floor = t["floor `x * s`"]
    lines = ["| case | ms | × floor |", "|---|---|---|"]
    for name in [*cases, *parts]:
        lines.append(f"| {name} | {t[name] * 1e3:.2f} | {t[name] / floor:.2f} |")
    step_sum = sum(t[k] for k in parts)
    lines.append(f"| sum of the seven steps | {step_sum * 1e3:.2f} | {step_sum / floor:.2f} |")
    body = (f"Input {'×'.join(map(str, SHAPE))} float32, forward (eval, no_grad), medians of {args.repeats} "
            f"interleaved samples; {start} at the start, {load_line()} at the end.\n\n" + "\n".join(lines))
    if note:
        body += "\n\n" + note
    if args.profile:
        table, total = op_table(fwd(m), steps=args.profile)
        body += (f"\n\nOperators of the eager forward by self CPU time (torch.profiler, mean of {args.profile} calls, "
                 f"{total:.1f} ms per call under the profiler):\n\n" + table)
    print(body)
    if args.output:
        append_section(args.output, f"cbam against its gate floor, {args.threads} thread(s)", body)


if __name__ == "__main__":
    main()
