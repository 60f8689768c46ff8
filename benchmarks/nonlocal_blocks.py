"""Non-local family (nonlocal, sagan, danet_*, cgnl, cross_layer_nonlocal) against the official / community code.

Each attnzoo module is timed side by side with a reference implementation that uses *the same weights* and
computes the same function the way the official or common community code does (explicit bmm → softmax → bmm
with the N×N' matrix; the pairwise B×2d×N×N' tensor of ``Non-local_pytorch``'s concatenation mode; CGNL's
per-group Python loop).  Outputs are checked equal first.  One extra row times External-Attention-pytorch's
``DAModule`` (PyPI ``fightingcv-attention``) at the only input it accepts (512 channels, 7×7); it is not the
same function (3×3 convs, full-width projections, no residual), so only its cost is compared.

* Time: ``torch.utils.benchmark`` medians (``blocked_autorange``), ``torch.set_num_threads(2)``, reference and
  attnzoo interleaved in one process.
* Peak memory: a fresh child process per case: warm up on a tiny input, build the full input, reset the
  resident high-water mark (``/proc/self/clear_refs``), run one forward (+ backward), report the high-water
  mark minus the resident size before the run.

Usage:
    python benchmarks/nonlocal_blocks.py                                   # all cases
    python benchmarks/nonlocal_blocks.py --cases nonlocal nonlocal_concat  # a subset
    python benchmarks/nonlocal_blocks.py --output benchmarks/results/nonlocal.md --label "run 1"
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.benchmark as tb

import attnzoo
from _common import append_section, child_peak_bytes, fmt_bytes, report_peak
from attnzoo.testing import randomize
from reference.cgnl import ref_cgnl
from reference.danet import ref_cam, ref_pam

THREADS = 2
torch.set_num_threads(THREADS)


# ----------------------------------------------------------------------------------------------------------
# reference implementations (same modules, official / community computation): the oracles of tests/reference
# ----------------------------------------------------------------------------------------------------------


def ref_nonlocal(m, x):
    """Caffe2 video-nonlocal-net / Non-local_pytorch: explicit affinity; concatenation builds B×2d×N×N'.

    Batched as the official code runs, with the module's own BatchNorm call (training mode); the oracle of
    tests/reference/nonlocal_block.py loops over samples and uses running statistics."""
    b, c, h, w = x.shape
    d = m.inner_channels
    src = F.max_pool2d(x, 2, 2, ceil_mode=True) if m.subsample else x
    g = m.g(src).view(b, d, -1).permute(0, 2, 1)
    if m.mode == "concatenation":
        theta = m.theta(x).view(b, d, -1, 1)
        phi = m.phi(src).view(b, d, 1, -1)
        n, n_keys = theta.size(2), phi.size(3)
        pair = torch.cat([theta.repeat(1, 1, 1, n_keys), phi.repeat(1, 1, n, 1)], dim=1)  # B×2d×N×N'
        f = F.relu(m.concat_project(pair)).view(b, n, n_keys) / n_keys
    else:
        theta = m.theta(x).view(b, d, -1).permute(0, 2, 1)
        phi = m.phi(src).view(b, d, -1)
        f = torch.softmax(torch.bmm(theta, phi) * d**-0.5, dim=-1)
    y = torch.bmm(f, g).permute(0, 2, 1).reshape(b, d, h, w)
    return x + m.bn(m.out(y))


def ref_danet(m, x):
    return ref_pam(m.position, x) + ref_cam(m.channel, x) - x


def ref_cnl(m, x, ctx):
    """CNL-ICIP2020 ``CNL_5``, with the module's own BatchNorm call: the modules are timed in training mode (batch
    statistics), where the oracle of tests/reference/cross_layer_nonlocal.py evaluates BN with running statistics."""
    b, _, h, w = x.shape
    t = m.theta(x).view(b, m.planes, -1).permute(0, 2, 1)
    p = m.phi[0](ctx).view(b, m.planes, -1)
    g = m.g[0](ctx).view(b, m.planes, -1).permute(0, 2, 1)
    att = torch.softmax(torch.bmm(t, p) * m.scale, dim=2)
    y = torch.bmm(att, g).permute(0, 2, 1).reshape(b, m.planes, h, w)
    return x + m.bn[0](m.out(y))


class Reference(nn.Module):
    def __init__(self, module: nn.Module, fn) -> None:
        super().__init__()
        self.m, self.fn = module, fn

    def forward(self, *args):
        return self.fn(self.m, *args)


#: label → (registry name, kwargs, channels, H=W, pair?, reference function)
CASES = {
    "nonlocal": ("nonlocal", {}, 64, 56, False, ref_nonlocal),
    "nonlocal_no_subsample": ("nonlocal", dict(subsample=False), 64, 56, False, ref_nonlocal),
    "nonlocal_concat": ("nonlocal", dict(mode="concatenation"), 64, 32, False, ref_nonlocal),
    "sagan": ("sagan", {}, 64, 56, False, ref_pam),
    "danet_position": ("danet_position", {}, 64, 56, False, ref_pam),
    "danet_channel": ("danet_channel", {}, 64, 56, False, ref_cam),
    "danet": ("danet", {}, 64, 56, False, ref_danet),
    "cgnl": ("cgnl", {}, 64, 56, False, ref_cgnl),
    "cross_layer_nonlocal": ("cross_layer_nonlocal", {}, 64, 56, True, ref_cnl),
    "danet_vs_fightingcv": ("danet", {}, 512, 7, False, "fightingcv"),
}


def build(label: str, impl: str) -> nn.Module:
    name, kw, channels, _, _, ref = CASES[label]
    torch.manual_seed(0)
    m = attnzoo.create(name, channels, **kw)
    randomize(m, seed=0, scale=0.05)  # leave the identity init, so the attention path matters numerically
    if impl == "attnzoo":
        return m
    if ref == "fightingcv":
        from fightingcv_attention.attention.DANet import DAModule

        torch.manual_seed(0)
        return DAModule(d_model=512, kernel_size=3, H=7, W=7)
    return Reference(m, ref)


def make_inputs(label: str, size: int | None = None, grad: bool = False) -> tuple:
    _, _, channels, default, pair, _ = CASES[label]
    s = default if size is None else size
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, channels, s, s, generator=g).requires_grad_(grad)
    if pair:
        return x, torch.randn(2, channels, (s + 1) // 2, (s + 1) // 2, generator=g).requires_grad_(grad)
    return (x,)


def run_once(m: nn.Module, args: tuple, backward: bool) -> None:
    y = m(*args)
    if backward:
        y.sum().backward()


def child(spec: dict) -> None:
    """One case in a fresh process: prints the extra peak resident memory of one pass (after a warm-up)."""
    m = build(spec["label"], spec["impl"])
    warm = 7 if spec["label"] == "danet_vs_fightingcv" else 8
    run_once(m, make_inputs(spec["label"], warm, spec["backward"]), spec["backward"])
    m.zero_grad(set_to_none=True)
    args = make_inputs(spec["label"], None, spec["backward"])
    report_peak(lambda: run_once(m, args, spec["backward"]))


def median_time(m: nn.Module, args: tuple, backward: bool, min_run_time: float) -> float:
    run_once(m, args, backward)
    timer = tb.Timer(stmt="run_once(m, args, backward)", globals={"run_once": run_once, "m": m, "args": args, "backward": backward},
                     num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--min-run-time", type=float, default=2.0, help="seconds per timing (blocked_autorange)")
    ap.add_argument("--output", help="append a markdown section to this file")
    ap.add_argument("--label", default="")
    ap.add_argument("--threads", type=int, default=THREADS, help="torch threads (2 as the project's benchmark rule)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        child(json.loads(args.child))
        return

    lines = [
        "| case | input | pass | reference time | attnzoo time | time ratio | reference peak | attnzoo peak | memory ratio | max abs diff |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label in args.cases:
        mods = {impl: build(label, impl) for impl in ("reference", "attnzoo")}
        with torch.no_grad():
            x = make_inputs(label)
            ref, got = mods["reference"](*x), mods["attnzoo"](*x)
            err = (ref - got).abs().max().item() if CASES[label][5] != "fightingcv" else float("nan")
        assert not err > 1e-4, f"{label}: outputs differ by {err}"
        shape = "×".join(str(s) for s in x[0].shape)
        for backward in (False, True):
            res = {}
            for impl, m in mods.items():
                xs = make_inputs(label, grad=backward)
                t = median_time(m, xs, backward, args.min_run_time)
                mem = child_peak_bytes(__file__, {"label": label, "impl": impl, "backward": backward})
                res[impl] = (t, mem)
            (tr, mr), (ta, ma) = res["reference"], res["attnzoo"]
            row = (
                f"| {label} | {shape} | {'fwd+bwd' if backward else 'fwd'} | {tr * 1e3:.1f} ms | {ta * 1e3:.1f} ms | {ta / tr:.2f} | "
                f"{fmt_bytes(mr)} | {fmt_bytes(ma)} | {ma / max(mr, 1):.3f} | {err:.1e} |"
            )
            print(row, flush=True)
            lines.append(row)
    table = "\n".join(lines)
    if args.output:
        append_section(args.output, f"non-local family vs official/community code {args.label}", table)


if __name__ == "__main__":
    main()
