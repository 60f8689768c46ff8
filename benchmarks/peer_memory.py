"""Peak memory only (forward and forward+backward) of comparisons of benchmarks/peers.py, attnzoo and each peer,
each in a freshly forked process (``attnzoo.bench.measure.measure_module`` without timing: the same memory
measurement as peers.py, in seconds instead of minutes; memory is much less disturbed by other jobs than time).

    PYTHONPATH=src:benchmarks python benchmarks/peer_memory.py caa,lka,lska,lsk,gam --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os

import torch

import peers
from attnzoo.bench import measure


def child_peaks(comp: peers.Comparison, label: str) -> tuple[int, int]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        torch.set_num_threads(peers.THREADS)
        module, args, _, _ = peers.build_pair(comp, label)
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
    args = ap.parse_args()
    keys = args.keys.split(",")
    comps = {c.key: c for c in peers.comparisons() + peers.case_files() if c.key in keys}
    peers.preload_peers()
    measure.preload()
    print("| comparison | peer | fwd peak MiB attnzoo / peer (ratio) | fwd+bwd peak MiB attnzoo / peer (ratio) |")
    print("|---|---|---|---|")
    for key in keys:
        comp = comps[key]
        labels = ["attnzoo"] + [p.label for p in comp.peers]
        res = {lab: [child_peaks(comp, lab) for _ in range(args.repeats)] for lab in labels}
        for lab in labels[1:]:
            cells = []
            for i in (0, 1):
                cells.append(", ".join(f"{a[i] / 2**20:.1f} / {b[i] / 2**20:.1f} ({a[i] / b[i]:.2f})"
                                       for a, b in zip(res["attnzoo"], res[lab])))
            print(f"| `{key}` | {lab} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
