"""Runtime latency against eager PyTorch, with the runtime's own floor measured in the same process.

``attnzoo deploy`` records each runtime's latency next to eager PyTorch's (docs/deployment.json).  A small module
(eager time well under a millisecond) can read many times slower in a runtime for two reasons that have nothing to
do with its export form: a fixed cost per inference call (input binding, output copies, the request's
bookkeeping) and a fixed cost per graph node.  This script measures both floors beside the modules:

* ``floor``: ``x * s`` (``s`` 1×64×1×1) on 1×64×H×W, the nearest thing to an empty model a runtime accepts (a
  chain of elementwise ops would be fused into one node by OpenVINO, so it measures nothing more);
* ``grid_sample``: ``F.grid_sample`` alone (bilinear, border padding) from 1×64×H×W to a 2H×2W grid, the
  sampling step of ``dysample`` (1 group), to tell the runtime's sampling kernel from the module's other ops;
* each named module, built as ``attnzoo deploy`` builds it (``deploy.core._build_case``: default arguments,
  perturbed weights, eval, batch 1), exported through the same ``Runtime.prepare``.

Every case of a runtime is prepared first, then all are timed in interleaved rounds (each round: median of
``--calls`` calls per case), and the median over ``--repeats`` rounds is reported with eager PyTorch's, so the
load of the machine hits all alike.  Columns: eager ms, runtime ms, ratio runtime / eager, and the ratio left
after subtracting the floor ((runtime − floor) / eager); for OpenVINO the converted model's operation count
(``ov.Model.get_ordered_ops``, parameters, constants and results included) before the plugin's fusions.

    PYTHONPATH=src:benchmarks python benchmarks/deploy_floor.py --runtimes openvino --threads 1 \\
        --modules simam,positional_encoding --output benchmarks/results/deploy_floor.md
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from _common import append_section, load_line
from attnzoo.deploy.core import _build_case
from attnzoo.deploy.runtimes import runtime


class Floor(nn.Module):
    """``x * s``: one elementwise node, the near-empty model whose latency is the runtime's per-call floor."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("s", torch.full((1, channels, 1, 1), 1.0001))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.s


class GridSample(nn.Module):
    """``F.grid_sample`` of x onto a fixed 2H×2W grid (bilinear, border padding): dysample's sampling step."""

    def __init__(self, h: int, w: int) -> None:
        super().__init__()
        gy, gx = torch.meshgrid(torch.linspace(-1, 1, 2 * h), torch.linspace(-1, 1, 2 * w), indexing="ij")
        self.register_buffer("grid", torch.stack([gx, gy], -1)[None] * 0.97)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.grid_sample(x, self.grid, mode="bilinear", padding_mode="border", align_corners=False)


def median_ms(fn: Callable[[], Any], calls: int) -> float:
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modules", required=True, help="comma-separated registry names")
    ap.add_argument("--runtimes", default="openvino", help="comma-separated: onnxruntime,openvino,ncnn")
    ap.add_argument("--size", default="13x11", help="H×W (as attnzoo deploy --size)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7, help="interleaved rounds")
    ap.add_argument("--calls", type=int, default=50, help="calls per case and round (median)")
    ap.add_argument("--grid-sample", action="store_true", help="add the grid_sample case")
    ap.add_argument("--output", help="append the section to this markdown file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.split("x"))
    start = load_line()
    cases: dict[str, tuple[nn.Module, list[torch.Tensor]]] = {}
    x = torch.randn(1, 64, h, w, generator=torch.Generator().manual_seed(0))
    cases["floor `x * s`"] = (Floor(64).eval(), [x])
    if args.grid_sample:
        cases["grid_sample 1×64×H×W → 2H×2W"] = (GridSample(h, w).eval(), [x])
    for name in args.modules.split(","):
        cases[name] = _build_case({"module": name, "seed": 0, "size": [h, w], "batch": 1})
    sections = []
    for rt_name in args.runtimes.split(","):
        rt = runtime(rt_name)
        with tempfile.TemporaryDirectory() as tmp:
            runs: dict[str, tuple[Callable[[], Any], Callable[[], Any], int | None]] = {}
            for i, (name, (module, flat)) in enumerate(cases.items()):
                workdir = Path(tmp) / str(i)
                workdir.mkdir()
                with torch.no_grad():
                    run = rt.prepare(module, flat, workdir, args.threads)
                arrays = [t.numpy() for t in flat]
                ov_model = getattr(run, "ov_model", None)
                nodes = len(ov_model.get_ordered_ops()) if ov_model is not None else None

                def eager(m: nn.Module = module, f: list[torch.Tensor] = flat) -> Any:
                    with torch.no_grad():
                        return m(*f)

                runs[name] = (eager, lambda r=run, a=arrays: r(a), nodes)
            for e, r, _ in runs.values():  # warm-up
                e(), r()
            eager_t: dict[str, list[float]] = {n: [] for n in runs}
            rt_t: dict[str, list[float]] = {n: [] for n in runs}
            for _ in range(args.repeats):
                for n, (e, r, _) in runs.items():
                    eager_t[n].append(median_ms(e, args.calls))
                    rt_t[n].append(median_ms(r, args.calls))
        med_e = {n: statistics.median(v) for n, v in eager_t.items()}
        med_r = {n: statistics.median(v) for n, v in rt_t.items()}
        floor = med_r["floor `x * s`"]
        lines = [f"| case | {rt_name} model ops | eager ms | {rt_name} ms | ratio | (runtime − floor) / eager |",
                 "|---|---|---|---|---|---|"]
        for n in runs:
            nodes = runs[n][2]
            lines.append(f"| {n} | {'' if nodes is None else nodes} | {med_e[n]:.3f} | {med_r[n]:.3f} | "
                         f"{med_r[n] / med_e[n]:.2f} | {(med_r[n] - floor) / med_e[n]:.2f} |")
        sections.append(f"**{rt_name}**\n\n" + "\n".join(lines))
    body = (f"Input {h}×{w} (modules: as `attnzoo deploy --size {args.size}`), {args.threads} thread(s), medians of "
            f"{args.repeats} interleaved rounds of {args.calls} calls; {start} at the start, {load_line()} at the "
            "end.\n\n" + "\n\n".join(sections))
    print(body)
    if args.output:
        append_section(args.output, f"runtime floors beside the modules ({args.runtimes})", body)


if __name__ == "__main__":
    main()
