"""Eager cost of the deployable forms: SimAM and BAM now compute their gate without ``torch.addcmul`` (which pnnx
cannot convert to ncnn), in eager mode too.  This script times the current modules against the previous forms
(``torch.addcmul``, reproduced below as subclasses) side by side, interleaved, in one process.

    python benchmarks/export_forms.py --threads 1 --repeats 15 [--output benchmarks/results/export_forms.md]

Forward runs in eval mode under ``no_grad`` (both forms take their in-place path there and are the same code);
forward+backward in train mode with input gradients, where the forms differ.  Ratios are new / previous, from
median process-CPU time (robust to other load on the machine).
"""

from __future__ import annotations

import argparse

import torch

from _common import append_section, machine_line, time_interleaved
from attnzoo.capture import record
from attnzoo.layers import check_nchw
from attnzoo.spatial import BAM, SimAM
from attnzoo.spatial.simam import _gn_constants

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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--output", default=None, help="append the table to this markdown file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = ["| module | input | pass | previous (ms) | new (ms) | new / previous |", "|---|---|---|---:|---:|---:|"]
    for shape in SHAPES:
        x = torch.randn(shape)
        for name, new_cls, old_cls in (("simam", SimAM, PreviousSimAM), ("bam", BAM, PreviousBAM)):
            torch.manual_seed(0)
            new = new_cls(shape[1])
            old = old_cls(shape[1])
            old.load_state_dict(new.state_dict())
            with torch.no_grad():
                torch.testing.assert_close(old.eval()(x), new.eval()(x))  # same function
            for backward in (False, True):
                res = time_interleaved({"previous": (old, x), "new": (new, x)}, backward, args.repeats)
                prev_ms, new_ms = 1e3 * res["previous"][1], 1e3 * res["new"][1]
                label = "fwd+bwd" if backward else "fwd"
                dims = "×".join(map(str, shape))
                rows.append(f"| {name} | {dims} | {label} | {prev_ms:.2f} | {new_ms:.2f} | {new_ms / prev_ms:.2f} |")
    body = "\n".join(rows)
    print(machine_line() + "\n\n" + body)
    if args.output:
        append_section(args.output, "Deployable forms against the previous forms (SimAM, BAM)", body)


if __name__ == "__main__":
    main()
