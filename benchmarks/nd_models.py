"""Attention inserted into real 3-D networks with ``attnzoo.insert`` (``dims=3`` inferred), side by side in one run.

Rows (each network built once from one seed, then copied for every variant):

* torchvision ``r3d_18`` (400 classes, a 1×3×8×112×112 clip): bare, with attnzoo ``se`` in every residual block,
  and with fvcore's ``SqueezeExcitation(is_3d=True)`` (the SE of pytorchvideo's X3D) at the same places with the
  same hidden widths;
* MONAI ``UNet(spatial_dims=3, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2)`` on a
  1×1×64×64×64 volume: bare, with attnzoo ``scse`` in every residual unit, and with MONAI's own attention block for
  it, ``ChannelSELayer`` (cSE, r=2; MONAI has no scSE: its QuickNAT imports one from another package), against
  attnzoo ``se`` (reduction=2) at the same places.

Where the function is the same (attnzoo ``se`` against fvcore / MONAI), the peer modules get the attnzoo modules'
weights and the whole networks' outputs are checked equal before any timing.  Times: ``torch.utils.benchmark``
process-CPU medians, the variants of a network taking turns (:func:`_common.time_interleaved`), one thread;
forward in eval mode under ``no_grad``, forward+backward in train mode.  Peak memory: a fresh child process per
measurement (:func:`_common.child_peak_bytes`).

    nice -n 5 python benchmarks/nd_models.py --output benchmarks/results/nd_models.md
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import sys
import warnings
from typing import Any

import torch
import torch.nn as nn

import attnzoo
from _common import (
    child_peak_bytes,
    fmt_bytes,
    load_line,
    run_once,
    time_interleaved,
    write_results,
)
from attnzoo.bench.measure import peak_rss_extra
from attnzoo.testing import randomize

THREADS = 1
torch.set_num_threads(THREADS)
warnings.filterwarnings("ignore", category=FutureWarning)

CLIP = (1, 3, 8, 112, 112)
VOLUME = (1, 1, 64, 64, 64)
VARIANTS = {
    "r3d_18": ["bare", "attnzoo se", "fvcore SE"],
    "unet3d": ["bare", "attnzoo scse", "attnzoo se r=2", "MONAI ChannelSELayer r=2"],
}
#: (network, peer variant) -> the attnzoo variant computing the same function
PAIRS = {("r3d_18", "fvcore SE"): "attnzoo se", ("unet3d", "MONAI ChannelSELayer r=2"): "attnzoo se r=2"}


@functools.lru_cache(maxsize=None)
def _base(net: str) -> nn.Module:
    torch.manual_seed(0)
    if net == "r3d_18":
        from torchvision.models.video import r3d_18

        return r3d_18()
    from monai.networks.nets import UNet

    return UNet(3, 1, 2, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2)


def _se_hidden(c: int) -> int:
    return int(attnzoo.create("se", c).fc1.weight.shape[0])


def _fvcore_se(c: int) -> nn.Module:
    from fvcore.nn.squeeze_excitation import SqueezeExcitation

    return SqueezeExcitation(c, num_channels_reduced=_se_hidden(c), is_3d=True)


def _monai_se(c: int) -> nn.Module:
    from monai.networks.blocks import ChannelSELayer

    return ChannelSELayer(3, c, r=2)


def _peer_fcs(m: nn.Module) -> tuple[nn.Module, nn.Module]:
    return (m.block[0], m.block[2]) if hasattr(m, "block") else (m.fc[0], m.fc[2])


def build(net: str, variant: str) -> tuple[nn.Module, torch.Tensor]:
    """The network with the variant inserted (randomised attnzoo modules: no identity gates), and its input."""
    model = copy.deepcopy(_base(net))
    torch.manual_seed(1)  # the inserted modules' initialisation, the same in every build of a variant
    x = torch.randn(CLIP if net == "r3d_18" else VOLUME, generator=torch.Generator().manual_seed(7))
    if variant == "bare":
        return model, x
    if variant.startswith("attnzoo"):
        name, kw = ("scse", {}) if "scse" in variant else ("se", {"reduction": 2} if "r=2" in variant else {})
        _, report = attnzoo.insert(model, name, **kw)
        for i, r in enumerate(report):
            randomize(model.get_submodule(r.name), seed=i)
        return model, x
    ours, ref = build(net, PAIRS[(net, variant)])
    _, report = attnzoo.insert(model, _fvcore_se if variant.startswith("fvcore") else _monai_se)
    with torch.no_grad():
        for r in report:
            a, (fc1, fc2) = ours.get_submodule(r.name), _peer_fcs(model.get_submodule(r.name))
            for src, dst in ((a.fc1, fc1), (a.fc2, fc2)):
                dst.weight.copy_(src.weight.reshape(dst.weight.shape))
                dst.bias.copy_(src.bias)
    return model, x


def parity(net: str, variant: str) -> float:
    (peer, x), (ours, _) = build(net, variant), build(net, PAIRS[(net, variant)])
    with torch.no_grad():
        a, b = ours.eval()(x), peer.eval()(x)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    return float((a - b).abs().max())


def child(spec: dict[str, Any]) -> None:
    m, x = build(spec["net"], spec["variant"])
    m.train(spec["backward"])
    run_once(m, x, spec["backward"])
    print(json.dumps({"extra_bytes": peak_rss_extra(lambda: run_once(m, x, spec["backward"]))}))


def _ms(t: float) -> str:
    return f"{t * 1e3:.0f} ms" if t < 10 else f"{t:.1f} s"


def measure(net: str, repeats: int, script: str) -> dict[str, dict[str, float]]:
    cases = {v: build(net, v) for v in VARIANTS[net]}
    res: dict[str, dict[str, float]] = {
        v: {"params": sum(p.numel() for p in m.parameters())} for v, (m, _) in cases.items()
    }
    for bw in (False, True):
        for v, (wall, cpu) in time_interleaved(cases, bw, repeats, budget_s=0.1).items():
            res[v]["fwd_bwd" if bw else "fwd"] = cpu
            res[v]["wall_fwd_bwd" if bw else "wall_fwd"] = wall
    for v in VARIANTS[net]:
        res[v]["peak_fwd_bwd"] = child_peak_bytes(script, {"net": net, "variant": v, "backward": True})
    print(net, res, flush=True)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--repeats", type=int, default=5, help="interleaved timings per variant (median)")
    ap.add_argument("--output", help="append the markdown table here (and write the numbers to the same name .json)")
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return 0
    load0 = load_line()
    checks = {f"{net} {v}": parity(net, v) for net, v in PAIRS}
    print("parity (max |Δ|):", checks, flush=True)
    results = {net: measure(net, args.repeats, sys.argv[0]) for net in VARIANTS}
    load1 = load_line()

    inputs = {"r3d_18": "×".join(map(str, CLIP)), "unet3d": "×".join(map(str, VOLUME))}
    title = {"r3d_18": "torchvision `r3d_18`", "unet3d": "MONAI `UNet` 3-D (2 res units)"}
    lines = [
        "| network | input | variant | params | fwd | fwd+bwd | peak fwd+bwd | × bare (fwd / fwd+bwd / peak) | × peer |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for net, res in results.items():
        bare = res["bare"]
        for v, r in res.items():
            ratio = " / ".join(f"{r[k] / bare[k]:.2f}" for k in ("fwd", "fwd_bwd", "peak_fwd_bwd"))
            ours = next((a for (n, p), a in PAIRS.items() if n == net and p == v), None)
            peer = next((p for (n, p), a in PAIRS.items() if n == net and a == v), None)
            vs = (
                "attnzoo / peer: "
                + " / ".join(f"{r[k] / res[peer][k]:.2f}" for k in ("fwd", "fwd_bwd", "peak_fwd_bwd"))
                if peer
                else f"peer of {ours}"
                if ours
                else "—"
            )
            lines.append(
                f"| {title[net]} | {inputs[net]} | {v} | {r['params'] / 1e6:.3f} M | {_ms(r['fwd'])} | "
                f"{_ms(r['fwd_bwd'])} | {fmt_bytes(r['peak_fwd_bwd'])} | {ratio} | {vs} |"
            )
    note = f"{load0} at the start, {load1} at the end; {args.repeats} interleaved repeats per variant, process-CPU medians."
    data = {"load_start": load0, "load_end": load1, "threads": THREADS, "results": results}
    write_results(
        args.output, "Attention inserted into 3-D networks", note, ("the whole network's output", checks), lines, data
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
