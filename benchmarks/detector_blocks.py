"""The detector host blocks against Ultralytics' classes, side by side, with the same weights.

attnzoo's ``psa``, ``c2psa``, ``a2c2f`` and ``aifi`` against Ultralytics' ``PSA``, ``C2PSA``, ``A2C2f`` and
``AIFI`` (imported at run time, never copied; weights copied from Ultralytics' module, outputs checked equal
first) at the YOLO-n P5 and P4 sizes (2×256×20×20, 2×128×40×40); and ``area_attention`` (4 strips) against
``global_attention`` (the fused SDPA over all positions) at 80×80.

* Time: process-CPU and wall medians of interleaved ``torch.utils.benchmark`` runs (``_common.time_interleaved``:
  the cases take turns, so a burst of load hits every case alike), forward (eval, no grad) and forward+backward
  (train mode, input gradient), 1 thread by default.
* Peak memory: a fresh child process per case, the extra resident high-water mark of one call after a warm-up
  (``_common.report_peak``, the measurement of ``attnzoo bench``).

Usage:
    python benchmarks/detector_blocks.py                       # all rows
    python benchmarks/detector_blocks.py --rows c2psa-P5 --repeats 5
    python benchmarks/detector_blocks.py --output benchmarks/results/detector_blocks.md
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
import torch.nn as nn

import attnzoo
from _common import append_section, child_peak_bytes, fmt_bytes, report_peak, run_once, time_interleaved
from attnzoo.testing import randomize

#: row -> (attnzoo name, attnzoo kwargs, Ultralytics class name, its args, channels, H=W)
ROWS = {
    "psa-P5": ("psa", {}, "PSA", (256, 256), 256, 20),
    "psa-P4": ("psa", {}, "PSA", (128, 128), 128, 40),
    "c2psa-P5": ("c2psa", {}, "C2PSA", (256, 256, 1), 256, 20),
    "c2psa-P4": ("c2psa", {}, "C2PSA", (128, 128, 1), 128, 40),
    "a2c2f-P5 (area 1)": ("a2c2f", {"num_repeats": 2, "area": 1}, "A2C2f", (256, 256, 2, True, 1), 256, 20),
    "a2c2f-P4 (area 4)": ("a2c2f", {"num_repeats": 2, "area": 4}, "A2C2f", (128, 128, 2, True, 4), 128, 40),
    "aifi-P5": ("aifi", {"dim_feedforward": 1024, "heads": 8, "pos": "yx"}, "AIFI", (256, 1024, 8), 256, 20),
    "aifi-P4": ("aifi", {"dim_feedforward": 512, "heads": 8, "pos": "yx"}, "AIFI", (128, 512, 8), 128, 40),
    "area_attention vs global (80×80)": ("area_attention", {"area": 4}, "global_attention", (), 64, 80),
}


def build(row: str, impl: str) -> nn.Module:
    name, kwargs, peer, peer_args, channels, _ = ROWS[row]
    torch.manual_seed(0)
    if peer == "global_attention":
        ours = attnzoo.create(name, channels, **kwargs)
        return ours if impl == "attnzoo" else attnzoo.create("global_attention", channels, heads=2, dim_head=32)
    from ultralytics.nn.modules import block, transformer

    peer_cls = getattr(block, peer, None) or getattr(transformer, peer)
    theirs = randomize(peer_cls(*peer_args), seed=1, scale=0.05)
    if impl == "peer":
        return theirs
    ours = attnzoo.create(name, channels, **kwargs)
    ours.load_state_dict(theirs.state_dict())
    return ours


def inputs(row: str, size: int | None = None) -> torch.Tensor:
    _, _, _, _, channels, s = ROWS[row]
    return torch.randn(2, channels, size or s, size or s, generator=torch.Generator().manual_seed(2))


def child(spec: dict) -> None:
    m = build(spec["row"], spec["impl"]).train(spec["backward"])
    run_once(m, inputs(spec["row"], 8), spec["backward"])
    m.zero_grad(set_to_none=True)
    x = inputs(spec["row"])
    report_peak(lambda: run_once(m, x, spec["backward"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--repeats", type=int, default=9, help="interleaved timing rounds per case")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--output", help="append a markdown section to this file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        child(json.loads(args.child))
        return
    lines = [
        "| row | input | fwd attnzoo / peer (ratio) | fwd+bwd attnzoo / peer (ratio) | peak fwd+bwd attnzoo / peer (ratio) |",
        "|---|---|---|---|---|",
    ]
    for row in args.rows:
        ours, theirs = build(row, "attnzoo"), build(row, "peer")
        x = inputs(row)
        if ROWS[row][2] != "global_attention":
            ours.eval(), theirs.eval()
            with torch.no_grad():
                torch.testing.assert_close(ours(x), theirs(x), atol=1e-3, rtol=1e-3)
        cells = []
        for backward in (False, True):
            t = time_interleaved({"attnzoo": (ours, x), "peer": (theirs, x)}, backward, args.repeats)
            a, b = t["attnzoo"][1], t["peer"][1]  # process-CPU medians
            cells.append(f"{a * 1e3:.2f} / {b * 1e3:.2f} ms ({a / b:.2f})")
        if args.no_memory:
            cells.append("—")
        else:
            pa, pb = (child_peak_bytes(sys.argv[0], {"row": row, "impl": i, "backward": True}) for i in ("attnzoo", "peer"))
            cells.append(f"{fmt_bytes(pa)} / {fmt_bytes(pb)} ({pa / max(pb, 1):.2f})")
        peer = ROWS[row][2]
        line = f"| {row} (peer: {'attnzoo ' if peer == 'global_attention' else 'Ultralytics '}{peer}) | 2×{ROWS[row][4]}×{ROWS[row][5]}² | " + " | ".join(cells) + " |"
        print(line, flush=True)
        lines.append(line)
    table = "\n".join(lines)
    if args.output:
        append_section(args.output, "Detector host blocks against Ultralytics", table)


if __name__ == "__main__":
    main()
