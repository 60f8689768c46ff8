"""1-D and 3-D attention (``dims=1|3``) against the peers that ship the same module, side by side in one run.

Rows (attnzoo / fastest peer; below 1 means attnzoo is faster or smaller):

* ``se`` dims=3 against MONAI ``ChannelSELayer(spatial_dims=3)`` and fvcore ``SqueezeExcitation(is_3d=True)``;
* ``nonlocal`` dims=3 against mmcv-lite ``mmcv.cnn.NonLocal3d`` (embedded Gaussian, 1/√d, sub-sampled keys);
* ``neighborhood`` dims=1 and dims=3 against NATTEN ``NeighborhoodAttention1D`` / ``3D`` (no position bias), forward
  only: NATTEN has no CPU backward, attnzoo's trains (its forward+backward is timed alone);
* ``criss_cross`` dims=3 against ``global_attention`` dims=3 (one head of 32 channels): not the same function,
  the RCCA-3D claim that the three axis lines are cheaper than all positions.

Where the function is the same, the peer's weights are copied from a randomised attnzoo module (or the other way)
and the outputs are checked equal before any timing.  Times: ``torch.utils.benchmark`` process-CPU medians with the
sides interleaved (:func:`_common.time_interleaved`), one thread.  Peak memory: a fresh child process per
measurement (:func:`_common.child_peak_bytes`, the ``attnzoo bench`` measurement).

    python benchmarks/nd_peers.py --output benchmarks/results/nd_peers.md
"""

from __future__ import annotations

import argparse
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

SE_X = (2, 64, 8, 28, 28)
NL_X = (1, 256, 8, 14, 14)
NA1_X, NA1_K = (1, 64, 4096), 31
NA3_X, NA3_K = (1, 64, 8, 16, 16), 3
CC_X = (1, 32, 16, 32, 32)


def _input(shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(7))


def _se(impl: str) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    ours = randomize(attnzoo.create("se", 64, reduction=8, dims=3), seed=0)
    if impl == "attnzoo":
        return ours, _input(SE_X)
    if impl == "monai":
        from monai.networks.blocks import ChannelSELayer

        peer = ChannelSELayer(spatial_dims=3, in_channels=64, r=8)
        fc1, fc2 = peer.fc[0], peer.fc[2]
    else:
        from fvcore.nn.squeeze_excitation import SqueezeExcitation

        peer = SqueezeExcitation(64, reduction_ratio=8, is_3d=True)
        fc1, fc2 = peer.block[0], peer.block[2]
    with torch.no_grad():
        fc1.weight.copy_(ours.fc1.weight.view(fc1.weight.shape))
        fc1.bias.copy_(ours.fc1.bias)
        fc2.weight.copy_(ours.fc2.weight.view(fc2.weight.shape))
        fc2.bias.copy_(ours.fc2.bias)
    return peer, _input(SE_X)


def _nonlocal(impl: str) -> tuple[nn.Module, torch.Tensor]:
    """Sub-sampled keys (1×2×2 pool): mmcv pools after the φ / g convs, attnzoo (as the official code) before them;
    the two agree when each φ / g channel is a positive multiple of one input channel plus a bias (as in
    tests/test_nd_attention.py), which these weights are."""
    from mmcv.cnn import NonLocal3d

    c, d = NL_X[1], NL_X[1] // 2
    torch.manual_seed(0)
    peer = NonLocal3d(c, sub_sample=True)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in peer.parameters():
            p.copy_(0.05 * torch.randn(p.shape, generator=g))
        for conv in (peer.phi[0].conv, peer.g[0].conv):
            w = torch.zeros(d, c)
            w[torch.arange(d), torch.randperm(c, generator=g)[:d]] = 0.5 + torch.rand(d, generator=g)
            conv.weight.copy_(w.view(conv.weight.shape))
    x = _input(NL_X)
    if impl == "mmcv":
        return peer, x
    ours = attnzoo.create("nonlocal", c, dims=3, subsample=True, use_bn=False)
    sd = {}
    for k, v in peer.state_dict().items():
        sd[k.replace(".0.conv", ".conv").replace("conv_out.conv", "out").replace(".conv.", ".")] = v
    ours.load_state_dict(sd)
    return ours, x


def _neighborhood(impl: str, dims: int) -> tuple[nn.Module, torch.Tensor]:
    import natten

    shape, k = (NA1_X, NA1_K) if dims == 1 else (NA3_X, NA3_K)
    torch.manual_seed(0)
    peer = {1: natten.NeighborhoodAttention1D, 3: natten.NeighborhoodAttention3D}[dims](shape[1], 2, k)
    x = _input(shape)
    if impl == "natten":

        class ChannelsLast(nn.Module):  # NATTEN takes B×…×C; the same B×C×… in and out as attnzoo
            def __init__(self, m: nn.Module) -> None:
                super().__init__()
                self.m = m

            def forward(self, t: torch.Tensor) -> torch.Tensor:
                return self.m(t.movedim(1, -1)).movedim(-1, 1)

        return ChannelsLast(peer), x
    ours = attnzoo.create("neighborhood", shape[1], dims=dims, kernel_size=k, heads=2, position_bias=False)
    ours.load_state_dict(peer.state_dict())
    return ours, x


def _criss(impl: str) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    if impl == "criss_cross":
        m = randomize(attnzoo.create("criss_cross", CC_X[1], dims=3), seed=0)
    else:
        m = randomize(attnzoo.create("global_attention", CC_X[1], dims=3, heads=1, dim_head=32), seed=0)
    return m, _input(CC_X)


BUILD: dict[str, Any] = {
    "se": _se,
    "nonlocal": _nonlocal,
    "na1": lambda impl: _neighborhood(impl, 1),
    "na3": lambda impl: _neighborhood(impl, 3),
    "cc": _criss,
}


def child(spec: dict[str, Any]) -> None:
    m, x = BUILD[spec["row"]](spec["impl"])
    m.train(spec["backward"])
    run_once(m, x, spec["backward"])  # warm-up (NATTEN rejects inputs shorter than its window)
    run_once(m, x, spec["backward"])
    print(json.dumps({"extra_bytes": peak_rss_extra(lambda: run_once(m, x, spec["backward"]))}))


def _check(a: tuple[nn.Module, torch.Tensor], b: tuple[nn.Module, torch.Tensor], atol: float) -> float:
    with torch.no_grad():
        ya, yb = a[0].eval()(a[1]), b[0].eval()(b[1])
    assert torch.equal(a[1], b[1])
    torch.testing.assert_close(ya, yb, atol=atol, rtol=1e-4)
    return float((ya - yb).abs().max())


def _ms(t: float) -> str:
    return f"{t * 1e3:.1f} ms" if t < 10 else f"{t:.1f} s"


def row(name: str, impls: list[str], repeats: int, backward: list[bool], memory: list[bool], script: str) -> dict:
    cases = {i: BUILD[name](i) for i in impls}
    res: dict[str, Any] = {"impls": impls}
    for bw in backward:
        t = time_interleaved(cases, bw, repeats, budget_s=0.1)
        res["fwd_bwd" if bw else "fwd"] = {i: t[i][1] for i in impls}
    for bw in memory:
        res["peak_fwd_bwd" if bw else "peak_fwd"] = {
            i: child_peak_bytes(script, {"row": name, "impl": i, "backward": bw}) for i in impls
        }
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--repeats", type=int, default=5, help="interleaved timings per side (median)")
    ap.add_argument("--output", help="write the markdown table here (and the numbers to the same name .json)")
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return 0
    script = sys.argv[0]
    load0 = load_line()
    parity = {
        "se (MONAI)": _check(_se("attnzoo"), _se("monai"), 1e-6),
        "se (fvcore)": _check(_se("attnzoo"), _se("fvcore"), 1e-6),
        "nonlocal (mmcv)": _check(_nonlocal("attnzoo"), _nonlocal("mmcv"), 1e-5),
        "neighborhood 1-D (NATTEN)": _check(_neighborhood("attnzoo", 1), _neighborhood("natten", 1), 1e-5),
        "neighborhood 3-D (NATTEN)": _check(_neighborhood("attnzoo", 3), _neighborhood("natten", 3), 1e-5),
    }
    print("parity (max |Δ|):", parity, flush=True)
    r = args.repeats
    results = {
        "se": row("se", ["attnzoo", "monai", "fvcore"], r, [False, True], [True], script),
        "nonlocal": row("nonlocal", ["attnzoo", "mmcv"], r, [False, True], [True], script),
        "na1": row("na1", ["attnzoo", "natten"], r, [False], [False], script),
        "na3": row("na3", ["attnzoo", "natten"], r, [False], [False], script),
        "cc": row("cc", ["criss_cross", "global_attention"], r, [False, True], [True], script),
    }
    # attnzoo's neighborhood also trains on CPU (NATTEN cannot): its forward+backward alone
    for k in ("na1", "na3"):
        m, x = BUILD[k]("attnzoo")
        results[k]["attnzoo_fwd_bwd"] = time_interleaved({"attnzoo": (m, x)}, True, r, budget_s=0.1)["attnzoo"][1]
        print(k, results[k], flush=True)
    load1 = load_line()

    label = {
        "se": f"`se` dims=3 vs MONAI `ChannelSELayer` / fvcore `SqueezeExcitation` (r=8) | {'×'.join(map(str, SE_X))}",
        "nonlocal": f"`nonlocal` dims=3 vs mmcv-lite `NonLocal3d` (sub-sampled) | {'×'.join(map(str, NL_X))}",
        "na1": f"`neighborhood` dims=1 vs NATTEN `NeighborhoodAttention1D` (k={NA1_K}, 2 heads) | "
        f"{'×'.join(map(str, NA1_X))}",
        "na3": f"`neighborhood` dims=3 vs NATTEN `NeighborhoodAttention3D` (k={NA3_K}, 2 heads) | "
        f"{'×'.join(map(str, NA3_X))}",
        "cc": f"`criss_cross` dims=3 vs `global_attention` dims=3 (1 head × 32) | {'×'.join(map(str, CC_X))}",
    }
    lines = [
        "| row | input | fwd attnzoo / fastest peer (ratio) | fwd+bwd (ratio) | peak fwd+bwd (ratio) | peers |",
        "|---|---|---|---|---|---|",
    ]
    for k, res in results.items():
        ours, peers = res["impls"][0], res["impls"][1:]
        cells = []
        for key, fmt in (("fwd", _ms), ("fwd_bwd", _ms), ("peak_fwd_bwd", fmt_bytes)):
            if key not in res:
                cells.append(
                    "—"
                    if key != "fwd_bwd" or "attnzoo_fwd_bwd" not in res
                    else f"{_ms(res['attnzoo_fwd_bwd'])} / — (peer cannot train on CPU)"
                )
                continue
            best = min(peers, key=lambda p: res[key][p])
            a, b = res[key][ours], res[key][best]
            cells.append(f"{fmt(a)} / {fmt(b)} {best} ({a / max(b, 1e-12):.2f})")
        every = "; ".join(
            f"{p}: "
            + ", ".join(
                f"{key} {(_ms if 'peak' not in key else fmt_bytes)(res[key][p])}"
                for key in ("fwd", "fwd_bwd", "peak_fwd_bwd")
                if key in res
            )
            for p in peers
        )
        lines.append(f"| {label[k]} | {' | '.join(cells)} | {every} |")
    note = (
        f"{load0} at the start, {load1} at the end; {args.repeats} interleaved repeats per side, process-CPU medians."
    )
    data = {"load_start": load0, "load_end": load1, "threads": THREADS, "results": results}
    write_results(args.output, "1-D and 3-D attention against their peers", note, ("the outputs", parity), lines, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
