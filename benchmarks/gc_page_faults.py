"""``gc`` against timm's ``GlobalContext``: forward+backward time, minor page faults and system time per step,
each in its own freshly forked process, to tell the allocator's cost from the kernels'.

    PYTHONPATH=src:benchmarks python benchmarks/gc_page_faults.py --processes 8
    MALLOC_TRIM_THRESHOLD_=268435456 MALLOC_MMAP_THRESHOLD_=268435456 MALLOC_TOP_PAD_=67108864 \\
        PYTHONPATH=src:benchmarks python benchmarks/gc_page_faults.py --processes 8

1 thread, process CPU time, 100 steps per process after 3 warm-up steps, weights drawn N(0, 0.1) with one seed;
the two sides alternate (ABBA...).  The environment variables stop glibc from returning freed memory to the system
(heap trimming and ``mmap``-ed large blocks), so the second command shows the same computation without first-touch
page faults.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn as nn

import attnzoo


def builders(c: int, hidden: int) -> dict[str, Callable[[], nn.Module]]:
    from timm.layers.global_context import GlobalContext

    return {
        "attnzoo": lambda: attnzoo.create("gc", c, hidden_channels=hidden),
        "timm": lambda: GlobalContext(c, use_attn=True, fuse_add=True, fuse_scale=False, rd_channels=hidden),
    }


def one_process(build: Callable[[], nn.Module], shape: tuple[int, ...], steps: int) -> tuple[float, float, float]:
    """(median ms per step, minor faults per step, system ms per step) in a fresh forked process."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        torch.set_num_threads(1)
        torch.manual_seed(0)
        m = build().train()
        for p in m.parameters():
            nn.init.normal_(p, std=0.1)
        x = torch.randn(shape, requires_grad=True)
        for _ in range(3):
            m(x).sum().backward()
        times = []
        before = resource.getrusage(resource.RUSAGE_SELF)
        for _ in range(steps):
            t0 = time.process_time()
            m(x).sum().backward()
            times.append(time.process_time() - t0)
        after = resource.getrusage(resource.RUSAGE_SELF)
        row = (
            statistics.median(times) * 1e3,
            (after.ru_minflt - before.ru_minflt) / steps,
            (after.ru_stime - before.ru_stime) / steps * 1e3,
        )
        os.write(w, repr(row).encode())
        os._exit(0)
    os.close(w)
    data = os.read(r, 1 << 12)
    os.waitpid(pid, 0)
    return eval(data)  # a tuple of three floats written by the child


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="2,64,56,56")
    ap.add_argument("--processes", type=int, default=8)
    ap.add_argument("--steps", type=int, default=100)
    args = ap.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    c = shape[1]
    sides = builders(c, max(c // 16, min(8, c)))
    rows: dict[str, list[tuple[float, float, float]]] = {k: [] for k in sides}
    for i in range(args.processes):
        for name in list(sides) if i % 2 == 0 else list(sides)[::-1]:
            rows[name].append(one_process(sides[name], shape, args.steps))
    trim = os.environ.get("MALLOC_TRIM_THRESHOLD_", "glibc default")
    print(f"gc fwd+bwd, {'×'.join(map(str, shape))}, {args.processes} processes per side; MALLOC_TRIM_THRESHOLD_: {trim}")
    print("| | ms per step (per process) | median | minor faults per step | system ms per step |")
    print("|---|---|---|---|---|")
    for name, rs in rows.items():
        ms = sorted(r[0] for r in rs)
        print(
            f"| {name} | {ms[0]:.2f} – {ms[-1]:.2f} | {statistics.median(ms):.2f} | "
            f"{min(r[1] for r in rs):.0f} – {max(r[1] for r in rs):.0f} | "
            f"{min(r[2] for r in rs):.2f} – {max(r[2] for r in rs):.2f} |"
        )


if __name__ == "__main__":
    main()
