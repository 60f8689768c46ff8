"""Multi-scale deformable attention: attnzoo's core against Ultralytics' pure-PyTorch ``MSDeformAttn`` and a naive
per-level ``grid_sample`` loop, side by side, with the same weights.

The case is the encoder's self-attention over a pyramid: queries = every pixel of every level (Q = N), the
reference points their normalised centres, query = tokens + a fixed position table, value = tokens; ``64``
channels, 8 heads, 4 points, levels 40², 20², 10² (N = 2100), batch 2, by default.

* ``attnzoo``: :class:`attnzoo.local.ms_deform_attn.MultiScaleDeformableAttention` (one ``grid_sample`` over the
  zero-bordered canvas of all levels and heads, :func:`attnzoo.functional.sampling.ms_deform_sample`).
* ``attnzoo (gather form)``: the same module under ``export_target("onnx")`` (floor + index_select + bmm).
* ``ultralytics``: ``ultralytics.nn.modules.transformer.MSDeformAttn`` (imported at run time, never copied; its
  weights are copied into attnzoo's module and the outputs checked equal first).
* ``naive loop``: Deformable DETR's debugging core written out here: heads folded into the batch, one
  ``grid_sample`` per level into a list, stacked to B·M×D×Q×L×K (a 5-D stack; the official one is 6-D), weighted
  and summed.

Time: process-CPU and wall medians of interleaved ``torch.utils.benchmark`` runs (``_common.time_interleaved``),
forward (no grad) and forward+backward (input and parameter gradients), 1 thread by default.  Peak memory: a
fresh child process per case, the extra resident high-water mark of one forward+backward after a warm-up, with
glibc's mmap threshold fixed at 64 KiB (``MALLOC_MMAP_THRESHOLD_``) so that the peak does not depend on the
allocator's history.

Usage:
    python benchmarks/ms_deform_attn.py
    python benchmarks/ms_deform_attn.py --channels 256 --levels 40,20,10,5 --repeats 5
    python benchmarks/ms_deform_attn.py --output benchmarks/results/ms_deform_attn.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from _common import append_section, child_peak_bytes, fmt_bytes, report_peak, run_once, time_interleaved
from attnzoo import export_target
from attnzoo.local.ms_deform_attn import MultiScaleDeformableAttention
from attnzoo.testing import randomize

IMPLS = ("attnzoo", "attnzoo (gather form)", "ultralytics", "naive loop")


def naive_sample(
    value: torch.Tensor, shapes: Sequence[tuple[int, int]], loc: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Per-level grid_sample with the heads folded into the batch (value B×N×M×D, loc B×Q×M×(L·K)×2)."""
    b, n, m, d = value.shape
    q, lk = loc.shape[1], loc.shape[3]
    k = lk // len(shapes)
    grids = (2 * loc - 1).permute(0, 2, 1, 3, 4).reshape(b * m, q, lk, 2)
    samples, start = [], 0
    for lvl, (h, w) in enumerate(shapes):
        v = value[:, start : start + h * w].permute(0, 2, 3, 1).reshape(b * m, d, h, w)
        start += h * w
        g = grids[:, :, lvl * k : (lvl + 1) * k]
        samples.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    stacked = torch.stack(samples, -2).reshape(b * m, d, q, lk)  # B·M×D×Q×L×K folded
    a = weights.permute(0, 2, 1, 3).reshape(b * m, 1, q, lk)
    return (stacked * a).sum(-1).reshape(b, m * d, q).transpose(1, 2)


class NaiveCore(MultiScaleDeformableAttention):
    def forward(self, query, reference, value, shapes):  # type: ignore[override]
        b, q, _ = query.shape
        m, lk = self.heads, self.levels * self.points
        v = self.value_proj(value).reshape(b, value.shape[1], m, self.channels // m)
        offsets = self.sampling_offsets(query).reshape(b, q, m, lk, 2)
        weights = torch.softmax(self.attention_weights(query).reshape(b, q, m, lk), -1)
        size = torch.tensor([(float(w), float(h)) for h, w in shapes for _ in range(self.points)], dtype=query.dtype)
        loc = reference.reshape(reference.shape[0], q, 1, 1, 2) + offsets / size
        return self.output_proj(naive_sample(v, shapes, loc, weights))


class SelfAttention(nn.Module):
    """``core(t + pos, ref, t, shapes)`` on tokens t: the encoder's self-attention with fixed positions."""

    def __init__(self, core: nn.Module, shapes: list[tuple[int, int]], channels: int, ul: bool, gather: bool):
        super().__init__()
        self.core, self.shapes, self.ul, self.gather = core, shapes, ul, gather
        g = torch.Generator().manual_seed(9)
        n = sum(h * w for h, w in shapes)
        self.pos = torch.randn(1, n, channels, generator=g)
        ref = []
        for h, w in shapes:
            ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
            ref.append(torch.stack([xs.flatten() / w, ys.flatten() / h], -1))
        self.ref = torch.cat(ref)[None]

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        ref = self.ref.expand(t.shape[0], -1, -1)
        if self.ul:
            return self.core(t + self.pos, ref[:, :, None], t, self.shapes)
        if self.gather:
            with export_target("onnx"):
                return self.core(t + self.pos, ref, t, self.shapes)
        return self.core(t + self.pos, ref, t, self.shapes)


class Kernel(nn.Module):
    """The sampling kernel alone, ``kernel(value, shapes, loc, weights)``, on fixed random points and weights (held as
    parameters, so that forward+backward computes their gradients too); ``forward(value B×N×M×D)``."""

    def __init__(self, impl: str, shapes: list[tuple[int, int]], heads: int, points: int, queries: int):
        super().__init__()
        from ultralytics.nn.modules.utils import multi_scale_deformable_attn_pytorch

        from attnzoo.functional.sampling import ms_deform_sample, ms_deform_sample_portable

        self.impl, self.shapes = impl, shapes
        self.fn = {
            "attnzoo": ms_deform_sample,
            "attnzoo (gather form)": ms_deform_sample_portable,
            "ultralytics": multi_scale_deformable_attn_pytorch,
            "naive loop": naive_sample,
        }[impl]
        g = torch.Generator().manual_seed(4)
        lk = len(shapes) * points
        self.loc = nn.Parameter(torch.rand(2, queries, heads, lk, 2, generator=g) * 1.2 - 0.1)
        self.logits = nn.Parameter(torch.randn(2, queries, heads, lk, generator=g))

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        b = value.shape[0]
        return self.fn(value, self.shapes, self.loc[:b], torch.softmax(self.logits[:b], -1))


def build(impl: str, channels: int, shapes: list[tuple[int, int]], heads: int, points: int) -> nn.Module:
    from ultralytics.nn.modules.transformer import MSDeformAttn

    torch.manual_seed(0)
    theirs = randomize(MSDeformAttn(channels, len(shapes), heads, points), seed=1, scale=0.05)
    if impl == "ultralytics":
        return SelfAttention(theirs, shapes, channels, ul=True, gather=False)
    cls = NaiveCore if impl == "naive loop" else MultiScaleDeformableAttention
    ours = cls(channels, len(shapes), heads, points)
    ours.load_state_dict(theirs.state_dict())
    return SelfAttention(ours, shapes, channels, ul=False, gather=impl == "attnzoo (gather form)")


def tokens(channels: int, shapes: list[tuple[int, int]], batch: int) -> torch.Tensor:
    n = sum(h * w for h, w in shapes)
    return torch.randn(batch, n, channels, generator=torch.Generator().manual_seed(3))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--levels", default="40,20,10", help="square level sides, finest first")
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--points", type=int, default=4)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--output", help="append the table to this markdown file")
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    shapes = [(int(s), int(s)) for s in a.levels.split(",")]
    n = sum(h * w for h, w in shapes)
    value = torch.randn(a.batch, n, a.heads, a.channels // a.heads, generator=torch.Generator().manual_seed(5))
    if a.child:
        spec = json.loads(a.child)
        if spec.get("kernel"):
            m, x = Kernel(spec["impl"], shapes, a.heads, a.points, n), value
        else:
            m, x = build(spec["impl"], a.channels, shapes, a.heads, a.points), tokens(a.channels, shapes, a.batch)
        run_once(m.train(), x, True)
        report_peak(lambda: run_once(m, x, True))
        return

    x = tokens(a.channels, shapes, a.batch)
    argv = list(sys.argv)  # the command, for the results header (the children get their own arguments)
    # glibc's dynamic mmap threshold makes the resident peak depend on the allocation history (±15 % between
    # identical runs); fixed at 64 KiB, every tensor buffer is mapped and unmapped, and the peak tracks live tensors
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")
    child_args = ["--channels", str(a.channels), "--levels", a.levels, "--heads", str(a.heads)]
    child_args += ["--points", str(a.points), "--batch", str(a.batch), "--threads", str(a.threads)]
    case = f"B={a.batch}, C={a.channels}, {a.heads} heads, {a.points} points, levels {a.levels} (Q = N = {n})"
    lines = [f"{case}; ratio = row / Ultralytics (and / naive loop)"]
    for part in ("attention core (projections + sampling)", "sampling kernel alone"):
        kernel = part.startswith("sampling")
        if kernel:
            cases = {impl: (Kernel(impl, shapes, a.heads, a.points, n), value) for impl in IMPLS}
        else:
            cases = {impl: (build(impl, a.channels, shapes, a.heads, a.points), x) for impl in IMPLS}
        with torch.no_grad():
            want = cases["ultralytics"][0](cases["ultralytics"][1])
            for impl, (m, inp) in cases.items():
                torch.testing.assert_close(m(inp), want, atol=5e-5, rtol=1e-4, msg=lambda s, i=impl: f"{i}: {s}")
        fwd = time_interleaved(cases, False, a.repeats)
        bwd = time_interleaved(cases, True, a.repeats)
        peak = {}
        for impl in IMPLS:
            sys.argv[1:] = child_args  # the child re-parses the same case
            peak[impl] = child_peak_bytes(__file__, {"impl": impl, "kernel": kernel})
        base = "ultralytics"
        lines += [
            "",
            f"{part}:",
            "",
            "| implementation | fwd (CPU ms) | ratio | fwd+bwd (CPU ms) | ratio | peak fwd+bwd | ratio |",
            "|---|---|---|---|---|---|---|",
        ]
        f_cpu = {k: v[1] for k, v in fwd.items()}
        b_cpu = {k: v[1] for k, v in bwd.items()}
        for impl in IMPLS:

            def r(d: dict, i: str = impl) -> str:
                return f"{d[i] / d[base]:.2f} ({d[i] / d['naive loop']:.2f})"

            lines.append(
                f"| {impl} | {f_cpu[impl] * 1e3:.2f} | {r(f_cpu)} | {b_cpu[impl] * 1e3:.2f} | {r(b_cpu)} | "
                f"{fmt_bytes(peak[impl])} | {r(peak)} |"
            )
    body = "\n".join(lines)
    print(body)
    sys.argv[:] = argv
    if a.output:
        append_section(a.output, "ms_deform_attn against Ultralytics MSDeformAttn and a naive loop", body)


if __name__ == "__main__":
    main()
