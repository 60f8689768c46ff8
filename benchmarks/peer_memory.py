"""Peak memory only (forward and forward+backward) of comparisons of benchmarks/peers.py, attnzoo and each peer,
each in a freshly forked process (``attnzoo.bench.measure.measure_module`` without timing: the same memory
measurement as peers.py, in seconds instead of minutes; memory is much less disturbed by other jobs than time).

    PYTHONPATH=src:benchmarks python benchmarks/peer_memory.py caa,lka,lska,lsk,gam --repeats 2
    PYTHONPATH=src:benchmarks python benchmarks/peer_memory.py gam,ema_56 --live

``--live`` measures the peak of the bytes held by live tensors instead (``torch.profiler`` allocation and free
events of one call, after a warm-up call, summed in time order).  Resident memory also depends on glibc's
allocator: whether a freed block is reused, kept, or returned to the system (large blocks are ``mmap``-ed and
unmapped, the heap top is trimmed) changes with the order and sizes of the allocations, so two computations
with the same tensors can differ by a whole buffer.  The live-tensor peak is what the computation itself needs.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from functools import partial
from typing import Any

import torch

import peers
from _common import run_once
from attnzoo.bench import measure


def live_peak(run: Callable[[], Any]) -> int:
    """Peak of the bytes held by live tensors during ``run()``, over what was held before: torch's memory
    profiler timeline (``export_memory_timeline`` reads the same timeline; this keeps tensors that existed before
    the call out of the count), allocations and frees in time order."""
    from torch.profiler._memory_profiler import Action

    with torch.profiler.profile(profile_memory=True, record_shapes=True, with_stack=True) as prof:
        run()
    held = peak = 0
    for _, action, _, size in prof._memory_profile().timeline:
        if action == Action.CREATE:
            held += size
        elif action == Action.DESTROY:
            held -= size
        peak = max(peak, held)
    return peak


def live_peaks(module: torch.nn.Module, args: tuple) -> list[int]:
    """Live-tensor peaks of one forward (``eval()``, ``no_grad``) and one forward+backward (``train()``)."""
    out = []
    for backward in (False, True):
        module.train(backward)
        run = partial(run_once, module, args[0], backward)
        run()
        out.append(live_peak(run))
    return out


def child_peaks(comp: peers.Comparison, label: str, live: bool = False) -> tuple[int, int]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        torch.set_num_threads(peers.THREADS)
        module, args, _, _ = peers.build_pair(comp, label)
        if live:
            os.write(w, json.dumps(live_peaks(module, args)).encode())
            os._exit(0)
        row = measure.measure_module(module, args, threads=peers.THREADS, timing=False, flops=False)
        os.write(w, json.dumps([row.get("fwd_mem_bytes"), row.get("fwd_bwd_mem_bytes")]).encode())
        os._exit(0)
    os.close(w)
    data = os.read(r, 1 << 16)
    os.waitpid(pid, 0)
    fwd, bwd = json.loads(data)
    return fwd, bwd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("keys", help="comma-separated comparison keys of peers.py")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--live", action="store_true", help="peak of live tensor bytes instead of resident memory")
    args = ap.parse_args()
    keys = args.keys.split(",")
    comps = {c.key: c for c in peers.comparisons() + peers.case_files() if c.key in keys}
    peers.preload_peers()
    measure.preload()
    what = "live-tensor peak" if args.live else "peak"
    print(f"| comparison | peer | fwd {what} MiB attnzoo / peer (ratio) | fwd+bwd {what} MiB attnzoo / peer (ratio) |")
    print("|---|---|---|---|")
    for key in keys:
        comp = comps[key]
        labels = ["attnzoo"] + [p.label for p in comp.peers]
        res = {lab: [child_peaks(comp, lab, args.live) for _ in range(args.repeats)] for lab in labels}
        for lab in labels[1:]:
            cells = []
            for i in (0, 1):
                cells.append(", ".join(f"{a[i] / 2**20:.1f} / {b[i] / 2**20:.1f} ({a[i] / b[i]:.2f})"
                                       for a, b in zip(res["attnzoo"], res[lab])))
            print(f"| `{key}` | {lab} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
