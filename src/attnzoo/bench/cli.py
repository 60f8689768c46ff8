"""``attnzoo bench``: parameters and forward latency of every registered module on its default input."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="profile registered modules (params, latency)")
    p.add_argument("--modules", default=None, help="comma-separated registry names (default: all)")
    p.add_argument("--family", default=None, help="only this family")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    import torch.utils.benchmark as tb

    import attnzoo
    from attnzoo.inputs import example_channels, example_inputs

    names = args.modules.split(",") if args.modules else attnzoo.list_modules(args.family)
    print(f"{'module':<24}{'layout':<10}{'params':>12}{'fwd ms':>10}")
    for name in names:
        ch = example_channels(name)
        m = attnzoo.create(name, ch).eval()
        x = example_inputs(name, channels=ch)
        with torch.no_grad():
            t = tb.Timer("m(*x)", globals={"m": m, "x": x}).blocked_autorange(min_run_time=0.3)
        params = sum(p.numel() for p in m.parameters())
        print(f"{name:<24}{attnzoo.info(name).layout:<10}{params:>12,}{t.median * 1e3:>10.2f}")
    return 0
