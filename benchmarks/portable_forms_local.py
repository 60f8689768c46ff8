"""Eager forms against portable (ncnn) forms of the local and self-attention modules, in eager PyTorch and under
``torch.compile``: does a module need two forms (keep the eager one only where it is > 5% faster)?

    python benchmarks/portable_forms_local.py --threads 1 [--modules axial,cot] [--output FILE.md]

Each module runs its eager form and its portable form (the one ``attnzoo.export_target("ncnn")`` selects) on
the same weights and input (2×64×28×28 by default), interleaved in one process: forward in eval mode under
``no_grad``, forward+backward in train mode with input gradients.  The compiled cases compile the module once
per form (``torch.compile``, default backend), the portable one inside the export target, which compiled graphs
guard on.  Figures are torch.utils.benchmark medians (wall and process-CPU); ratios are portable / eager, from
process-CPU time (robust to other load on the machine).
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

import torch
import torch.nn as nn

import attnzoo
from _common import append_section, machine_line, time_interleaved

MODULES = ("axial", "cot", "local_window", "outlook")


class UnderTarget(nn.Module):
    """``fn(x)`` (the module or its compiled form) called inside ``attnzoo.export_target(target)``."""

    def __init__(self, module: nn.Module, fn: Callable[[torch.Tensor], Any], target: str | None) -> None:
        super().__init__()
        self.module, self.fn, self.target = module, fn, target

    def forward(self, x: torch.Tensor) -> Any:
        if self.target is None:
            return self.fn(x)
        with attnzoo.export_target(self.target):
            return self.fn(x)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--modules", default=",".join(MODULES))
    p.add_argument("--shape", default="2,64,28,28")
    p.add_argument("--no-compile", action="store_true", help="eager PyTorch only")
    p.add_argument("--output", default=None, help="append the table to this markdown file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    shape = tuple(int(s) for s in args.shape.split(","))
    dims = "×".join(map(str, shape))
    rows = [
        "| module | input | mode | pass | eager form (ms) | portable form (ms) | portable / eager |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    modes = ("eager",) if args.no_compile else ("eager", "compile")
    for name in args.modules.split(","):
        torch.manual_seed(0)
        module = attnzoo.create(name, shape[1])
        x = torch.randn(shape)
        with torch.no_grad():  # the same function
            module.eval()
            ref = module(x)
            with attnzoo.export_target("ncnn"):
                torch.testing.assert_close(module(x), ref, atol=1e-4, rtol=1e-4)
        for mode in modes:
            for backward in (False, True):
                if mode == "compile":
                    torch._dynamo.reset()
                    fns = {"eager": torch.compile(module), "portable": torch.compile(module)}
                else:
                    fns = {"eager": module, "portable": module}
                cases = {
                    "eager": (UnderTarget(module, fns["eager"], None), x),
                    "portable": (UnderTarget(module, fns["portable"], "ncnn"), x),
                }
                res = time_interleaved(cases, backward, args.repeats)
                e_ms, p_ms = 1e3 * res["eager"][1], 1e3 * res["portable"][1]
                label = "fwd+bwd" if backward else "fwd"
                rows.append(f"| {name} | {dims} | {mode} | {label} | {e_ms:.2f} | {p_ms:.2f} | {p_ms / e_ms:.2f} |")
                print(rows[-1], flush=True)
    body = "\n".join(rows)
    print(machine_line() + "\n\n" + body)
    if args.output:
        append_section(args.output, "Eager and portable forms of the local / self-attention modules", body)


if __name__ == "__main__":
    main()
