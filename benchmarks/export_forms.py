"""Eager cost of the portable (export) forms, side by side, interleaved, in one process.

Two sections:

* ``previous``: modules whose only form is now the portable one (the eager twin was deleted), against the previous
  eager form, reproduced below as subclasses: SimAM and BAM without ``torch.addcmul`` (pnnx cannot convert it to
  ncnn), the weighted fusion node without ``torch.addcmul``, criss-cross attention with a 1×1 convolution and an
  additive self mask.  In eager PyTorch and under ``torch.compile``; ratios new / previous.
* ``twins``: modules that keep an eager form beside a portable one (docs/exports.md), the module run as it is
  against the same module under ``attnzoo.export_target(target)`` (its portable forms, run eagerly), in eager
  PyTorch and under ``torch.compile`` (which takes the eager forms; the portable column is what compile would get
  if the eager twin were deleted).  Ratios portable / eager.  A twin is kept only where the eager form is
  measurably faster (portable / eager > 1.05).

    python benchmarks/export_forms.py --threads 1 --repeats 15 [--section previous|twins] [--modules fca,...]
        [--no-compile] [--output benchmarks/results/export_forms.md]

Forward runs in eval mode under ``no_grad``; forward+backward in train mode with input gradients.  Times are
median process-CPU time (robust to other load on the machine).
"""

from __future__ import annotations

import argparse
import copy
from typing import Any, Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

import attnzoo
from _common import append_section, machine_line, time_interleaved
from attnzoo.capture import record
from attnzoo.fusion import WeightedFusion
from attnzoo.layers import check_nchw, check_same_shape, inplace_ok
from attnzoo.self_attention import CrissCrossAttention
from attnzoo.spatial import BAM, SimAM
from attnzoo.spatial.simam import _gn_constants
from attnzoo.testing import randomize

SHAPES = [(2, 64, 56, 56), (8, 256, 28, 28)]


class PreviousSimAM(SimAM):
    """SimAM's gate as before: group_norm without bias, then ``addcmul(½, t, t)`` off the in-place path."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        weight, eps = _gn_constants(x, self.channels, self.lambda_)
        t = torch.group_norm(x, self.channels, weight, None, eps)
        if not torch.is_grad_enabled():
            return t.square_().add_(0.5).sigmoid_().mul_(x)
        gate = torch.addcmul(torch.full((), 0.5, dtype=t.dtype, device=t.device), t, t).sigmoid_()
        record(self, "gate", gate)
        return x * gate


class PreviousBAM(BAM):
    """BAM's output as before: ``addcmul(x, x, σ)`` off the in-place path."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        x = check_nchw(x, self.channels, self.owner)
        mc = self.channel_fc2(F.relu(self.channel_bn(self.channel_fc1(x.mean((2, 3))))))[:, :, None, None]
        s = F.relu(self.spatial_bn0(self.spatial_reduce(x)))
        s = F.relu(self.spatial_bn1(self.spatial_conv1(s)))
        s = F.relu(self.spatial_bn2(self.spatial_conv2(s)))
        ms = self.spatial_out(s)
        t = (mc + ms if self.fusion == "add" else mc * ms).sigmoid_()
        if not torch.is_grad_enabled():
            return t.add_(1.0).mul_(x)
        return torch.addcmul(x, x, t)


class PreviousWeightedFusion(WeightedFusion):
    """The fusion node as before: ``torch.addcmul`` under autograd (the in-place ``addcmul_`` without)."""

    def forward(self, x: Any) -> torch.Tensor:
        x = check_same_shape(x, self.num_inputs, self.channels, self.owner)
        xs = [x[i] for i in range(self.num_inputs)]
        w = self.normalised_weights(xs[0]).to(xs[0].dtype)
        out, inplace = xs[0] * w[0], inplace_ok()
        for i in range(1, len(xs)):
            out = out.addcmul_(xs[i], w[i]) if inplace else torch.addcmul(out, xs[i], w[i])
        return out


def _previous_cca(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, gamma: torch.Tensor, c: int
) -> torch.Tensor:
    """attnzoo's criss-cross step as before (the eager form): F.linear on the channels-last view, masked_fill_."""
    qkv = F.linear(x.permute(0, 2, 3, 1), weight, bias)
    q, k, v = qkv[..., :c], qkv[..., c : 2 * c], qkv[..., 2 * c :]
    h, w = q.shape[1], q.shape[2]
    e_col = q.transpose(1, 2) @ k.permute(0, 2, 3, 1)
    e_row = q @ k.transpose(-1, -2)
    acc = torch.promote_types(e_row.dtype, torch.float32)
    diag = torch.eye(h, dtype=torch.bool, device=q.device)
    e_col = e_col.to(acc).masked_fill_(diag, torch.finfo(acc).min)
    p = torch.cat([e_col.transpose(1, 2), e_row.to(acc)], dim=-1).softmax(-1).to(v.dtype)
    p_col, p_row = p.split([h, w], dim=-1)
    y = (p_col.transpose(1, 2) @ v.transpose(1, 2)).transpose(1, 2) + p_row @ v
    return x + gamma * y.permute(0, 3, 1, 2)


class PreviousCrissCross(CrissCrossAttention):
    """Criss-cross attention as before: q/k/v by ``F.linear`` on the channels-last view, the self position by
    ``masked_fill_`` (now a 1×1 convolution and an additive mask, the former export form)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        for _ in range(self.recurrence):
            x = _previous_cca(x, self.qkv_weight, self.qkv_bias, self.gamma, self.hidden_channels)
        return x


class Unstack(nn.Module):
    """``m(list(x.unbind(0)))``: a list-input module on one stacked tensor (what ``time_interleaved`` passes)."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(list(x.unbind(0)))


class Under(nn.Module):
    """``m`` called under ``attnzoo.export_target(target)``: its portable forms, run eagerly (or compiled)."""

    def __init__(self, m: nn.Module, target: str) -> None:
        super().__init__()
        self.m, self.target = m, target

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with attnzoo.export_target(self.target):
            return self.m(x)


def _each(shapes: list[tuple[int, ...]], entries: list[Any], only: set[str] | None) -> Iterator[tuple[Any, ...]]:
    """(shape, input, entry) for every shape and every entry named in ``only`` (all without it), seeded."""
    for shape in shapes:
        x = torch.randn(shape)
        for entry in entries:
            if not only or entry[0] in only:
                torch.manual_seed(0)
                yield shape, x, entry


def _mode_rows(
    name: str,
    shape: tuple[int, ...],
    labels: tuple[str, str],
    pair: tuple[nn.Module, nn.Module],
    compiled: tuple[nn.Module, nn.Module] | None,
    arg: torch.Tensor,
    repeats: int,
) -> list[str]:
    """The rows of one comparison (second / first), eager and, when given, compiled; printed as they come."""
    rows = []
    for mode, (a, b) in (("eager", pair), ("compile", compiled)) if compiled else (("eager", pair),):
        cases = {labels[0]: (a, arg), labels[1]: (b, arg)}
        for row in _ratio_rows(name, "×".join(map(str, shape)), cases, repeats):
            rows.append(row.replace(" | fwd", f" | {mode} | fwd", 1))
            print(rows[-1], flush=True)
    return rows


def _ratio_rows(label: str, dims: str, cases: dict[str, tuple[nn.Module, torch.Tensor]], repeats: int) -> list[str]:
    rows = []
    (a_name, _), (b_name, _) = cases.items()
    for backward in (False, True):
        res = time_interleaved(cases, backward, repeats)
        a_ms, b_ms = 1e3 * res[a_name][1], 1e3 * res[b_name][1]
        rows.append(
            f"| {label} | {dims} | {'fwd+bwd' if backward else 'fwd'} | {a_ms:.2f} | {b_ms:.2f} | {b_ms / a_ms:.2f} |"
        )
    return rows


def _previous(shapes: list[tuple[int, ...]], repeats: int, only: set[str] | None, compile_too: bool) -> str:
    rows = ["| module | input | mode | pass | previous (ms) | new (ms) | new / previous |",
            "|---|---|---|---|---:|---:|---:|"]  # fmt: skip
    pairs: list[tuple[str, Callable[[int], nn.Module], type]] = [
        ("simam", SimAM, PreviousSimAM),
        ("bam", BAM, PreviousBAM),
        ("weighted_fusion", lambda c: WeightedFusion(c, 3), PreviousWeightedFusion),
        ("criss_cross", CrissCrossAttention, PreviousCrissCross),
    ]
    for shape, x, (name, new_cls, old_cls) in _each(shapes, pairs, only):
        new = randomize(new_cls(shape[1]), seed=1, scale=0.5)
        old = old_cls(shape[1], 3) if name == "weighted_fusion" else old_cls(shape[1])
        old.load_state_dict(new.state_dict())
        arg = x
        if name == "weighted_fusion":
            new, old, arg = Unstack(new), Unstack(old), torch.randn(3, *shape)
        with torch.no_grad():
            torch.testing.assert_close(old.eval()(arg), new.eval()(arg), atol=1e-3, rtol=1e-3)  # same function
        compiled = (torch.compile(copy.deepcopy(old)), torch.compile(copy.deepcopy(new))) if compile_too else None
        rows += _mode_rows(name, shape, ("previous", "new"), (old, new), compiled, arg, repeats)
    return "\n".join(rows)


#: (registry name, constructor arguments, export target): modules that keep an eager twin beside a portable form.
TWINS: list[tuple[str, dict[str, Any], str]] = [
    ("se", {}, "ncnn"),
    ("gct", {}, "ncnn"),
    ("fca", {}, "ncnn"),
    ("ema", {}, "ncnn"),
    ("spd_conv", {"out_channels": 64}, "ncnn"),
    ("positional_encoding_2d", {}, "ncnn"),
]


def _twins(shapes: list[tuple[int, ...]], repeats: int, only: set[str] | None, compile_too: bool) -> str:
    rows = ["| module | input | mode | pass | eager form (ms) | portable form (ms) | portable / eager |",
            "|---|---|---|---|---:|---:|---:|"]  # fmt: skip
    for shape, x, (name, kwargs, target) in _each(shapes, TWINS, only):
        m = randomize(attnzoo.create(name, shape[1], **kwargs), seed=1, scale=0.5)
        portable = Under(copy.deepcopy(m), target)
        with torch.no_grad():
            torch.testing.assert_close(portable.eval()(x), m.eval()(x), atol=1e-3, rtol=1e-3)  # same function
        compiled = (
            (torch.compile(copy.deepcopy(m)), Under(torch.compile(copy.deepcopy(m)), target)) if compile_too else None
        )
        rows += _mode_rows(name, shape, ("eager", "portable"), (m, portable), compiled, x, repeats)
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--section", choices=("previous", "twins", "all"), default="all")
    p.add_argument("--modules", default=None, help="comma-separated: only these modules")
    p.add_argument("--shapes", default=None, help="e.g. 2x64x56x56,8x256x28x28 (default: both)")
    p.add_argument("--no-compile", action="store_true", help="eager PyTorch only")
    p.add_argument("--output", default=None, help="append the tables to this markdown file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    only = set(args.modules.split(",")) if args.modules else None
    shapes = [tuple(int(d) for d in s.split("x")) for s in args.shapes.split(",")] if args.shapes else SHAPES
    sections = []
    if args.section in ("previous", "all"):
        sections.append(("Portable forms that replaced their eager twins, against the previous forms",
                         _previous(shapes, args.repeats, only, not args.no_compile)))  # fmt: skip
    if args.section in ("twins", "all"):
        sections.append(("Portable forms beside their eager twins (eager and torch.compile)",
                         _twins(shapes, args.repeats, only, not args.no_compile)))  # fmt: skip
    for title, body in sections:
        print(f"### {title}\n\n{machine_line()}\n\n{body}\n")
        if args.output:
            append_section(args.output, title, body)


if __name__ == "__main__":
    main()
