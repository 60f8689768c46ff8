"""Compare the ratios of a peers.py run with earlier runs of the same comparisons.

    python benchmarks/peers_compare.py benchmarks/results/peers.json --before benchmarks/results/gates_*.json

For every comparison key and peer of the new run: attnzoo / peer in forward time, forward+backward time, forward
peak memory and forward+backward peak memory, one figure per run of the new file (``run 1 / run 2``), beside the
same cells of the ``--before`` files (every run of every file that measured that key and peer, with the same
thread count and clock).  ``--above`` lists only the cells where the new run's ratio exceeds that value in every
run (a ratio above it in one run only is run-to-run spread).  Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

METRICS = (("fwd_ms", "fwd time"), ("fwd_bwd_ms", "fwd+bwd time"), ("fwd_mem_bytes", "fwd mem"),
           ("fwd_bwd_mem_bytes", "fwd+bwd mem"))  # fmt: skip


def ratios(data: dict[str, Any], threads: int | None = None, clock: str | None = None) -> dict[tuple, list]:
    """{(key, peer, metric): [ratio per run]} over the configs matching ``threads``/``clock`` (all if None)."""
    out: dict[tuple, list] = {}
    for cfg in data["configs"]:
        if (threads is not None and cfg["threads"] != threads) or (clock is not None and cfg["clock"] != clock):
            continue
        for run in cfg["runs"]:
            for cell, row in run.items():
                key, _, label = cell.rpartition("/")
                if label in ("attnzoo", "floor"):
                    continue
                ours = run.get(f"{key}/attnzoo", {})
                for metric, _ in METRICS:
                    a, b = ours.get(metric), row.get(metric)
                    if a and b:
                        out.setdefault((key, label, metric), []).append(a / b)
    return out


def _fmt(values: list[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values) if values else "—"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("after", help="the new peers.py JSON")
    ap.add_argument("--before", nargs="*", default=[], help="earlier peers.py JSON files")
    ap.add_argument("--above", type=float, default=None, help="only cells above this ratio in every new run")
    args = ap.parse_args(argv)
    new = json.loads(Path(args.after).read_text())
    cfg = new["configs"][0]
    threads, clock = cfg["threads"], cfg["clock"]
    after = ratios(new, threads, clock)
    before: dict[tuple, list] = {}
    for path in args.before:
        for cell, vals in ratios(json.loads(Path(path).read_text()), threads, clock).items():
            before.setdefault(cell, []).extend(vals)
    print(f"{threads} thread(s), {clock} clock; attnzoo / peer, new run(s) vs earlier runs")
    print()
    print("| comparison | peer | metric | now | before |")
    print("|---|---|---|---:|---:|")
    for (key, peer, metric), vals in sorted(after.items()):
        if args.above is not None and min(vals) <= args.above:
            continue
        label = dict(METRICS)[metric]
        print(f"| `{key}` | {peer} | {label} | {_fmt(vals)} | {_fmt(before.get((key, peer, metric), []))} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
