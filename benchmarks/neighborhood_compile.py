"""Neighbourhood attention under ``torch.compile``: what compile records now (the eager schedules: query tiles in
2-D and 1-D, query chunks in 3-D) against the one-piece per-query gather, which it recorded before
(``tracing.for_export()`` now sends only exported graphs there).  Eager PyTorch beside them.

The gather form is forced inside the compiled graph by running the module under ``attnzoo.export_target("onnx")``
(neighbourhood declares no ONNX portable form, so that target only selects the gather form).  Inductor backend;
forward in eval mode under ``no_grad``, forward+backward in train mode with input gradients; process-CPU medians
of interleaved rounds.

    PYTHONPATH=src:benchmarks python benchmarks/neighborhood_compile.py [--threads 2] [--output F.md]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn as nn

import attnzoo
from _common import time_interleaved, write_results

EXPORTED = "compiled exported program (inference)"
CASES = {1: (2, 64, 1024), 2: (2, 64, 28, 28), 3: (1, 64, 4, 12, 12)}
LARGE = {1: (2, 64, 4096), 2: (2, 64, 56, 56), 3: (1, 64, 8, 16, 16)}


class GatherForm(nn.Module):
    """The module with its forward under ``export_target("onnx")``: the per-query gather form in one piece."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with attnzoo.export_target("onnx"):
            return self.m(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=9, help="interleaved timing rounds")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--large", action="store_true", help="the larger inputs (NAT's first stage at 224²)")
    ap.add_argument("--output", help="append the results section to this markdown file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lines = [
        "| rank, input | form | fwd ms | fwd+bwd ms | fwd / compiled now | fwd+bwd / compiled now |",
        "|---|---|---|---|---|---|",
    ]
    parity, data = {}, {}
    for dims, shape in (LARGE if args.large else CASES).items():
        torch.manual_seed(0)
        m = attnzoo.create("neighborhood", shape[1], dims=dims)
        x = torch.randn(shape)
        torch._dynamo.reset()
        forms = {
            "eager": m,
            "compiled (now)": torch.compile(m),
            "compiled, one-piece gather (before)": torch.compile(GatherForm(m)),
        }
        with torch.no_grad():
            ref = m.eval()(x)
            # inference only: the route to the gather's graph for compiled inference (docs/exports.md)
            forms[EXPORTED] = torch.compile(torch.export.export(m, (x,)).module())
            for k, f in forms.items():
                if f is not m:
                    parity[f"{dims}-D {k}"] = float((f(x) - ref).abs().max())
        trainable = {k: (f, x) for k, f in forms.items() if k != EXPORTED}
        times = [
            # every form is already in eval mode (m.eval() above; an exported program's module has no train mode)
            time_interleaved({k: (f, x) for k, f in forms.items()}, False, args.repeats, prepare=lambda f, b: None),
            time_interleaved(trainable, True, args.repeats),
        ]
        base = "compiled (now)"
        for k in forms:
            fwd, both = times[0][k][1], times[1].get(k, (0.0, None))[1]
            both_ms, both_ratio = (
                ("—", "—") if both is None else (f"{both * 1e3:.2f}", f"{both / times[1][base][1]:.2f}")
            )
            lines.append(
                f"| {dims}-D {tuple(shape)} | {k} | {fwd * 1e3:.2f} | {both_ms} | {fwd / times[0][base][1]:.2f} | {both_ratio} |"
            )
        data[f"{dims}d"] = {"shape": shape, "cpu_seconds": {k: [t[k][1] for t in times if k in t] for k in forms}}
    write_results(
        args.output,
        f"neighborhood under torch.compile: now against the one-piece gather ({'large' if args.large else 'small'} inputs)",
        f"inductor, kernel 7, heads 8; process-CPU medians, {args.threads} thread(s)",
        ("outputs against eager", parity),
        lines,
        {"threads": args.threads, **data},
    )


if __name__ == "__main__":
    main()
