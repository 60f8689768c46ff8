"""Speed and memory of the YOLO-pluggable resamplers and BiFPN against what they replace, side by side.

Groups (each group's cases timed interleaved call by call in one run, so they share the background load):

* **upsample ×2** on 1×256×40×40 (a YOLO P4 → P3 upsample): ``nn.Upsample`` nearest (what YOLO uses), bilinear,
  nearest + 1×1 conv, bilinear + 3×3 conv; attnzoo ``DySample`` (lp, and lp + dyscope) against the official
  DySample computation re-implemented here as tiny-smart/dysample computes it (``OfficialDySample``: meshgrid
  coordinates + ``init_pos``, pixel shuffle of the coordinates, permute + ``contiguous``); attnzoo ``CARAFE``
  against the pure-PyTorch CARAFE port that circulates in the YOLO zoos (nearest upsampling then ``F.unfold``
  with dilation s at the output resolution: a C·k_up²×sH×sW buffer; ``UnfoldCARAFE``, same weights).
* **BiFPN** on a 3-level YOLOv8-s pyramid (128/256/512 channels at 80², 40², 20²; width 128): attnzoo ``BiFPN``
  against the most-used community weighted BiFPN written as it circulates (``CommunityBiFPN``: 1×1 projections,
  nodes ``Conv1×1(SiLU(w₀x₀ + w₁x₁ [+ w₂x₂]))`` with ``w / (Σw + 1e-4)`` and no ReLU on the weights,
  ``nn.Upsample`` nearest, stride-2 3×3 conv + BN + SiLU downsampling).
* **downsample** 1×128×80×80: ``SPDConv(128, 128)`` against a stride-2 3×3 conv + BN + SiLU (same output).

Forward: eval + ``torch.no_grad``; forward+backward: train mode, input gradients, loss = mean of the outputs.
Peak memory: extra resident memory of one call after a warm-up, in a fresh child process per case
(``benchmarks/_common.py``).  The machine is shared: read the ratios, not the absolute times.

    PYTHONPATH=src:benchmarks python benchmarks/resample_fusion.py \
        --output benchmarks/results/resample_fusion.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

from _common import child_peak_bytes, machine_line, medians, report_peak, runners
from attnzoo.fusion import BiFPN
from attnzoo.resample import CARAFE, DySample, SPDConv

UP_SHAPE = (1, 256, 40, 40)
PYR_CHANNELS = [128, 256, 512]
PYR_SIZES = [80, 40, 20]
WIDTH = 128
DOWN_SHAPE = (1, 128, 80, 80)


# ------------------------------------------------------------------------------------------------------------
# peers, written as their code computes


class OfficialDySample(nn.Module):
    """tiny-smart/dysample's computation (re-typed, same parameters and buffer as ``attnzoo.DySample``)."""

    def __init__(self, channels: int, scale: int = 2, groups: int = 4, dyscope: bool = False) -> None:
        super().__init__()
        self.scale, self.groups = scale, groups
        self.offset = nn.Conv2d(channels, 2 * groups * scale * scale, 1)
        if dyscope:
            self.scope = nn.Conv2d(channels, 2 * groups * scale * scale, 1)
        h = torch.arange((-scale + 1) / 2, (scale - 1) / 2 + 1) / scale
        pos = torch.stack(torch.meshgrid([h, h], indexing="ij")).transpose(1, 2).repeat(1, groups, 1).reshape(1, -1, 1, 1)
        self.register_buffer("init_pos", pos)

    def sample(self, x: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        b, _, h, w = offset.shape
        offset = offset.view(b, 2, -1, h, w)
        coords_h = torch.arange(h) + 0.5
        coords_w = torch.arange(w) + 0.5
        coords = torch.stack(torch.meshgrid([coords_w, coords_h], indexing="ij")).transpose(1, 2).unsqueeze(1).unsqueeze(0)
        coords = coords.type(x.dtype)
        normalizer = torch.tensor([w, h], dtype=x.dtype).view(1, 2, 1, 1, 1)
        coords = 2 * (coords + offset) / normalizer - 1
        s = self.scale
        coords = F.pixel_shuffle(coords.view(b, -1, h, w), s).view(b, 2, -1, s * h, s * w).permute(0, 2, 3, 4, 1)
        coords = coords.contiguous().flatten(0, 1)
        out = F.grid_sample(x.reshape(b * self.groups, -1, h, w), coords, mode="bilinear", align_corners=False,
                            padding_mode="border")
        return out.view(b, -1, s * h, s * w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "scope"):
            offset = self.offset(x) * self.scope(x).sigmoid() * 0.5 + self.init_pos
        else:
            offset = self.offset(x) * 0.25 + self.init_pos
        return self.sample(x, offset)


class UnfoldCARAFE(nn.Module):
    """The circulating pure-PyTorch CARAFE: kernels at the output resolution, nearest upsampling, then
    ``F.unfold(dilation=s)`` of the upsampled map (B×C·k²×sH×sW), weighted sum over k² (same encoder weights)."""

    def __init__(self, channels: int, scale: int = 2, k_up: int = 5, k_enc: int = 3, compressed_channels: int = 64) -> None:
        super().__init__()
        self.scale, self.k_up = scale, k_up
        self.channel_compressor = nn.Conv2d(channels, compressed_channels, 1)
        self.content_encoder = nn.Conv2d(compressed_channels, k_up * k_up * scale * scale, k_enc, padding=k_enc // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s, k = self.scale, self.k_up
        kernels = F.pixel_shuffle(self.content_encoder(self.channel_compressor(x)), s)
        kernels = F.softmax(kernels, dim=1)  # B×k²×sH×sW
        x_up = F.interpolate(x, scale_factor=s, mode="nearest")
        cols = F.unfold(x_up, k, dilation=s, padding=k // 2 * s).view(b, c, k * k, s * h, s * w)
        return (cols * kernels.unsqueeze(1)).sum(2)


def yolo_conv(cin: int, cout: int, k: int = 1, s: int = 1) -> nn.Sequential:
    """YOLOv5/v8 ``Conv``: conv (no bias) → BN → SiLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout), nn.SiLU())


class CommunityAdd(nn.Module):
    """The circulating ``BiFPN_Add2/3`` (ultralytics/yolov5#3993 and copies): no ReLU on the weights."""

    def __init__(self, c: int, n: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(n))
        self.epsilon = 0.0001
        self.conv = nn.Conv2d(c, c, 1)
        self.silu = nn.SiLU()

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        weight = self.w / (torch.sum(self.w, dim=0) + self.epsilon)
        return self.conv(self.silu(sum(weight[i] * xs[i] for i in range(len(xs)))))


class CommunityBiFPN(nn.Module):
    """One community weighted-BiFPN layer on 3 levels as wired in the YOLO zoos."""

    def __init__(self, channels: list[int], width: int) -> None:
        super().__init__()
        self.proj = nn.ModuleList(yolo_conv(c, width) for c in channels)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.td1, self.td0 = CommunityAdd(width, 2), CommunityAdd(width, 2)
        self.down0, self.down1 = yolo_conv(width, width, 3, 2), yolo_conv(width, width, 3, 2)
        self.out1, self.out2 = CommunityAdd(width, 3), CommunityAdd(width, 2)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        p0, p1, p2 = (f(x) for f, x in zip(self.proj, xs))
        td1 = self.td1([p1, self.up(p2)])
        out0 = self.td0([p0, self.up(td1)])
        out1 = self.out1([p1, td1, self.down0(out0)])
        out2 = self.out2([p2, self.down1(out1)])
        return [out0, out1, out2]


# ------------------------------------------------------------------------------------------------------------
# cases


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


class _Fn(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def build(case: str) -> tuple[nn.Module, object]:
    """(module, input) of a case; peers get the attnzoo module's weights where the layers agree."""
    torch.manual_seed(0)
    c = UP_SHAPE[1]
    if case == "nearest":
        return nn.Upsample(scale_factor=2, mode="nearest"), _rand(*UP_SHAPE)
    if case == "bilinear":
        return nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), _rand(*UP_SHAPE)
    if case == "nearest_conv1":
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c, 1)), _rand(*UP_SHAPE)
    if case == "bilinear_conv3":
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear"), nn.Conv2d(c, c, 3, padding=1)), _rand(*UP_SHAPE)
    if case in ("dysample", "dysample_scope"):
        return DySample(c, dyscope=case.endswith("scope")), _rand(*UP_SHAPE)
    if case in ("official_dysample", "official_dysample_scope"):
        ours = DySample(c, dyscope=case.endswith("scope"))
        peer = OfficialDySample(c, dyscope=case.endswith("scope"))
        peer.load_state_dict(ours.state_dict())
        return peer, _rand(*UP_SHAPE)
    if case == "carafe":
        return CARAFE(c), _rand(*UP_SHAPE)
    if case == "unfold_carafe":
        ours, peer = CARAFE(c), UnfoldCARAFE(c)
        peer.load_state_dict(ours.state_dict())
        return peer, _rand(*UP_SHAPE)
    if case == "bifpn":
        return BiFPN(PYR_CHANNELS, WIDTH), [_rand(1, ch, s, s, seed=i) for i, (ch, s) in enumerate(zip(PYR_CHANNELS, PYR_SIZES))]
    if case == "community_bifpn":
        return CommunityBiFPN(PYR_CHANNELS, WIDTH), [_rand(1, ch, s, s, seed=i) for i, (ch, s) in enumerate(zip(PYR_CHANNELS, PYR_SIZES))]
    if case == "spd_conv":
        return SPDConv(DOWN_SHAPE[1], DOWN_SHAPE[1]), _rand(*DOWN_SHAPE)
    if case == "strided_conv":
        return yolo_conv(DOWN_SHAPE[1], DOWN_SHAPE[1], 3, 2), _rand(*DOWN_SHAPE)
    raise ValueError(case)








def child(spec: dict) -> None:
    torch.set_num_threads(2)
    m, x = build(spec["case"])
    fwd, fwd_bwd = runners(m, x)
    fn = fwd if spec["mode"] == "fwd" else fwd_bwd
    fn()
    report_peak(fn)


def check_peers() -> None:
    """The re-implemented peers compute what attnzoo computes (same weights)."""
    with torch.no_grad():
        for ours, peer in (("dysample", "official_dysample"), ("dysample_scope", "official_dysample_scope"), ("carafe", "unfold_carafe")):
            (a, x), (b, _) = build(ours), build(peer)
            torch.testing.assert_close(a.eval()(x), b.eval()(x), atol=1e-4, rtol=1e-4)


GROUPS = [
    ("upsample ×2, 1×256×40×40 → 80×80", "nearest", [
        ("nearest", "nn.Upsample nearest (YOLO's)"),
        ("bilinear", "nn.Upsample bilinear"),
        ("nearest_conv1", "nearest + Conv1×1"),
        ("bilinear_conv3", "bilinear + Conv3×3"),
        ("dysample", "attnzoo DySample (lp, g=4)"),
        ("official_dysample", "official DySample computation (lp, g=4), re-implemented"),
        ("dysample_scope", "attnzoo DySample (lp, g=4, dyscope)"),
        ("official_dysample_scope", "official DySample computation (lp, g=4, dyscope), re-implemented"),
        ("carafe", "attnzoo CARAFE (k_up 5, k_enc 3, 64)"),
        ("unfold_carafe", "community pure-PyTorch CARAFE (unfold at output resolution), same weights"),
    ], [("dysample", "official_dysample"), ("dysample_scope", "official_dysample_scope"), ("carafe", "unfold_carafe")]),
    ("BiFPN, 3 levels 128/256/512 ch at 80²/40²/20², width 128", "community_bifpn", [
        ("bifpn", "attnzoo BiFPN (1 layer, separable conv + BN + SiLU, ReLU-normalised weights)"),
        ("community_bifpn", "community weighted BiFPN (BiFPN_Add2/3, no ReLU, 1×1 convs, strided-conv down)"),
    ], [("bifpn", "community_bifpn")]),
    ("downsample ×2, 1×128×80×80 → 128×40×40", "strided_conv", [
        ("spd_conv", "attnzoo SPDConv (SPD → Conv3×3 s1 + BN + SiLU)"),
        ("strided_conv", "Conv3×3 stride 2 + BN + SiLU"),
    ], [("spd_conv", "strided_conv")]),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", default=None)
    ap.add_argument("--runs", type=int, default=9, help="interleaved timed calls per case (fwd+bwd: runs - 2)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    torch.set_num_threads(2)
    check_peers()
    lines: list[str] = []

    def emit(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    load0 = os.getloadavg()[0]
    emit("## resamplers and BiFPN against what they replace")
    emit()
    emit(machine_line())
    emit()
    emit(f"- load average at the start: {load0:.1f} (shared machine: compare ratios within a group, not absolute times)")
    emit(f"- forward: eval + no_grad, median of {args.runs} single calls; fwd+bwd: train mode, input gradients, "
         f"median of {args.runs - 2}; the cases of a group interleaved call by call (ABC…, then …CBA)")
    emit("- peak MiB: extra resident memory of one call after a warm-up, fresh process per case")
    emit("- peers checked equal to attnzoo on the same weights before timing (official DySample computation, "
         "unfold CARAFE)")
    for title, base, cases, pairs in GROUPS:
        built = {k: build(k) for k, _ in cases}
        fns = {k: runners(*built[k]) for k, _ in cases}
        f = medians({k: v[0] for k, v in fns.items()}, args.runs)
        fb = medians({k: v[1] for k, v in fns.items()}, max(3, args.runs - 2))
        mem = {k: (child_peak_bytes(__file__, {"case": k, "mode": "fwd"}), child_peak_bytes(__file__, {"case": k, "mode": "bwd"}))
               for k, _ in cases}
        emit()
        emit(f"### {title}")
        emit()
        emit(f"| case | params | fwd ms | fwd × {base} | fwd+bwd ms | fwd+bwd × {base} | peak MiB fwd | peak MiB fwd+bwd |")
        emit("|---|---:|---:|---:|---:|---:|---:|---:|")
        for k, label in cases:
            p = sum(t.numel() for t in built[k][0].parameters())
            emit(f"| {label} | {p / 1e3:.1f}k | {f[k] * 1e3:.2f} | {f[k] / f[base]:.2f} | {fb[k] * 1e3:.1f} | "
                 f"{fb[k] / fb[base]:.2f} | {mem[k][0] / 2**20:.1f} | {mem[k][1] / 2**20:.1f} |")
        emit()
        for a, b in pairs:
            emit(f"- {a} / {b}: forward {f[a] / f[b]:.2f}, fwd+bwd {fb[a] / fb[b]:.2f}, peak fwd "
                 f"{mem[a][0] / max(mem[b][0], 1):.2f}, peak fwd+bwd {mem[a][1] / max(mem[b][1], 1):.2f}")
    emit()
    emit(f"- load average at the end: {os.getloadavg()[0]:.1f}")
    if args.output:
        with open(args.output, "w") as fh:
            fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
