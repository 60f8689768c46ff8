"""Benchmarks of the sparse / deformable local modules against their peers, side by side in one run.

Comparisons (forward = eval + ``no_grad``; forward+backward = train, input and weight gradients):

1. ``neighborhood`` against NATTEN 0.21 (the authors' library; on CPU it runs its Flex-Attention backend,
   forward only: it has no CPU backward): the attention alone (``neighborhood_attention`` vs
   ``natten.functional.na2d``, B×heads×H×W×d vs B×H×W×heads×d, no position bias since NATTEN 0.21 has none) and
   the whole module (``NeighborhoodAttention(position_bias=False)`` vs ``natten.NeighborhoodAttention2D``, same
   weights); 2×64×56×56, kernel 7, 2 heads × 32.
2. ``dcnv2`` against torchvision: its ``deform_conv2d`` plus the same zero-init offset/mask conv (what a user
   writes); attnzoo's default path (torchvision's op in eager) and its pure-PyTorch path (what runs under
   export); 2×64×56×56, 3×3, random offsets (the offset conv randomised).
3. ``deformable_attention`` against External-Attention's ``DAttentionBaseline`` (fightingcv-attention; its
   resolution-tied position-bias table, which only works at stride 1), 2×64×28×28, 4 heads, 2 groups, stride 1,
   offset kernel 5; attnzoo with its continuous position bias and without (``position_bias=False``).
4. ``bra`` against the official BiFormer computation (tests/reference/biformer.py: region partition, routing by
   ``torch.topk``, ``torch.gather`` from an expanded view, explicit softmax; no peer package runs on CPU),
   2×64×56×56, n_win 7, topk 4, 2 heads.
5. Resolution sweep (batch 1, 64 channels, 14² … 112²): forward time and forward peak memory of each module at
   its defaults (2 heads; deformable_attention at stride 1 up to 56² and at stride 4 to 112²) against
   ``global_attention`` (2 heads × 32, fused SDPA); plot ``--plot``.

Method as benchmarks/local.py: the implementations of one comparison run interleaved in one process, each
sample ``torch.utils.benchmark.Timer.timeit(number)`` (≥ 0.15 s), medians over ``--repeats`` samples, 2
threads; process CPU time reported too (less sensitive to the load of the shared machine).  Peak memory: a fresh
child process per case, resident high-water mark of one call minus the resident size before it.

    PYTHONPATH=src:benchmarks:tests python benchmarks/local_sparse.py --output benchmarks/results/local_sparse.md --plot benchmarks/results/local_sparse_sweep.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
warnings.filterwarnings("ignore")

import attnzoo
from _common import child_peak_bytes, machine_line, report_peak, run_once, time_interleaved
from attnzoo.local.neighborhood import neighborhood_attention
from attnzoo.testing import randomize

torch.set_num_threads(2)
B, C = 2, 64


# ------------------------------------------------------------------------------------------------------------
# cases: name -> (module, input)
# ------------------------------------------------------------------------------------------------------------


class Fn(nn.Module):
    """A function of q, k, v as a module (attention-only comparisons); the input is the packed q, k, v."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        return self.fn(*qkv.unbind(0))


class NattenModule(nn.Module):
    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class TorchvisionDCN(nn.Module):
    """What a user writes with torchvision: an offset/mask conv + ``torchvision.ops.deform_conv2d``."""

    def __init__(self, ours: nn.Module) -> None:
        super().__init__()
        from torchvision.ops import deform_conv2d

        self.op = deform_conv2d
        self.conv_offset = nn.Conv2d(C, 27, 3, 1, 1)
        self.weight, self.bias = nn.Parameter(ours.weight.detach().clone()), nn.Parameter(ours.bias.detach().clone())
        self.conv_offset.load_state_dict(ours.conv_offset.state_dict())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        om = self.conv_offset(x)
        return self.op(x, om[:, :18], self.weight, self.bias, padding=(1, 1), mask=om[:, 18:].sigmoid())


class EADAT(nn.Module):
    def __init__(self, size: int) -> None:
        super().__init__()
        from fightingcv_attention.attention.DAT import DAttentionBaseline

        self.m = DAttentionBaseline((size, size), (size, size), 4, 16, 2, 0.0, 0.0, 1, 2, True, False, False, False, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x)[0]


class OfficialBRA(nn.Module):
    def __init__(self, ours: nn.Module) -> None:
        super().__init__()
        self.ours = ours

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from reference.biformer import bra_official

        return bra_official(self.ours, x)


def build(case: str, size: int | None = None) -> tuple[nn.Module, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(0)
    if case.startswith("sweep:"):
        _, name, s = case.split(":")
        kw = {} if name == "dcnv2" else {"heads": 2}
        if name == "global_attention":
            kw["dim_head"] = 32
        if name.startswith("deformable_attention"):
            name, stride = name.split("@")
            kw["stride"] = int(stride)
        m = randomize(attnzoo.create(name, C, **kw), seed=0, scale=0.1)
        return m, torch.randn(1, C, int(s), int(s), generator=g)
    x = torch.randn(B, C, 56, 56, generator=g)
    if case in ("na_attn_ours", "na_attn_natten"):
        qkv = torch.randn(3, B, 2, 56, 56, 32, generator=g)
        if case == "na_attn_ours":
            return Fn(lambda q, k, v: neighborhood_attention(q, k, v, 7, 1)), qkv
        from natten.functional import na2d

        return Fn(lambda q, k, v: na2d(q, k, v, kernel_size=7)), qkv.permute(0, 1, 3, 4, 2, 5).contiguous()
    if case in ("na_ours", "na_natten"):
        ours = randomize(attnzoo.create("neighborhood", C, heads=2, position_bias=False), seed=0, scale=0.1)
        if case == "na_ours":
            return ours, x
        import natten

        peer = natten.NeighborhoodAttention2D(C, 2, 7)
        peer.load_state_dict(ours.state_dict())
        return NattenModule(peer), x
    if case.startswith("dcn_"):
        ours = randomize(attnzoo.create("dcnv2", C, backend={"dcn_pure": "pure", "dcn_tvop": "torchvision"}.get(case, "auto")), scale=0.05, seed=0)
        return (TorchvisionDCN(ours) if case == "dcn_tv" else ours), x
    if case.startswith("dat_"):
        x = torch.randn(B, C, 28, 28, generator=g)
        if case == "dat_ea":
            return randomize(EADAT(28), seed=0, scale=0.1), x
        bias = {"dat_ours": "table", "dat_cpb": "log_cpb", "dat_nobias": None}[case]
        kw = {"heads": 4, "groups": 2, "stride": 1, "kernel_size": 5, "position_bias": bias}
        return randomize(attnzoo.create("deformable_attention", C, **kw), seed=0, scale=0.1), x
    if case.startswith("bra_"):
        ours = randomize(attnzoo.create("bra", C, heads=2), seed=0, scale=0.1)
        return (OfficialBRA(ours) if case == "bra_official" else ours), x
    raise ValueError(case)


FORWARD_ONLY = {"na_attn_natten", "na_natten"}


def child(spec: dict) -> None:
    m, x = build(spec["case"])
    m.train(spec["backward"])
    run_once(m, x, spec["backward"])  # warm-up (kernels, thread pools); the measured call is the second
    report_peak(lambda: run_once(m, x, spec["backward"]))


def peak_mib(case: str, backward: bool) -> float:
    return child_peak_bytes(__file__, {"case": case, "backward": backward}) / 2**20


COMPARISONS = {
    "na_attn": ("neighborhood: attention only vs natten.functional.na2d (2×2 heads×56×56×32, k 7)", ["na_attn_ours", "na_attn_natten"]),
    "na": ("neighborhood: module vs natten.NeighborhoodAttention2D (2×64×56×56, k 7, 2 heads, no rpb)", ["na_ours", "na_natten"]),
    "dcn": ("dcnv2 vs torchvision deform_conv2d + offset conv (2×64×56×56, 3×3)", ["dcn_auto", "dcn_tvop", "dcn_tv"]),
    "dat": ("deformable_attention vs External-Attention DAttentionBaseline (2×64×28×28, 4 heads, 2 groups, stride 1)", ["dat_ours", "dat_cpb", "dat_nobias", "dat_ea"]),
    "bra": ("bra vs the official BiFormer computation (torch.gather) (2×64×56×56, n_win 7, topk 4, 2 heads)", ["bra_ours", "bra_official"]),
}
LABELS = {"na_attn_ours": "attnzoo", "na_attn_natten": "NATTEN", "na_ours": "attnzoo", "na_natten": "NATTEN",
          "dcn_auto": "attnzoo (default on CPU: pure path)", "dcn_tvop": "attnzoo backend='torchvision'", "dcn_tv": "torchvision",
          "dat_ours": "attnzoo (table, default)", "dat_cpb": "attnzoo (log-CPB)", "dat_nobias": "attnzoo (no bias)", "dat_ea": "External-Attention",
          "bra_ours": "attnzoo", "bra_official": "official (gather)"}


def check_equal(comp: str, cases: dict) -> str:
    """Max |difference| of outputs where the weights are shared."""
    names = COMPARISONS[comp][1]
    if comp not in ("na_attn", "na", "dcn", "bra"):
        return "different parameterisations (not compared)"
    outs = []
    for n in names:
        m, x = cases[n]
        with torch.no_grad():
            y = m.eval()(x)
        outs.append(y.permute(0, 3, 1, 2, 4) if n == "na_attn_natten" else y)
    return f"max |Δ| = {max((o - outs[0]).abs().max().item() for o in outs[1:]):.1e}"


def compare(comp: str, repeats: int) -> list[str]:
    title, names = COMPARISONS[comp]
    cases = {n: build(n) for n in names}
    rows = [f"#### {title}", "", check_equal(comp, cases) + f"; load average {os.getloadavg()[0]:.1f}", "",
            "| implementation | forward (ratio to peer, CPU-time ratio) | forward peak MiB | fwd+bwd (ratio, CPU ratio) | fwd+bwd peak MiB |",
            "|---|---|---|---|---|"]
    fwd = time_interleaved(cases, False, repeats, budget_s=0.15)
    bwd_cases = {n: c for n, c in cases.items() if n not in FORWARD_ONLY}
    bwd = time_interleaved(bwd_cases, True, repeats, budget_s=0.15)
    peer = names[-1]
    for n in names:
        f = f"{fwd[n][0] * 1e3:.1f} ms ({fwd[n][0] / fwd[peer][0]:.2f}, {fwd[n][1] / fwd[peer][1]:.2f})"
        mf = f"{peak_mib(n, False):.1f}"
        if n in bwd:
            ref = bwd.get(peer)
            ratio = f" ({bwd[n][0] / ref[0]:.2f}, {bwd[n][1] / ref[1]:.2f})" if ref else ""
            bb, mb = f"{bwd[n][0] * 1e3:.1f} ms{ratio}", f"{peak_mib(n, True):.1f}"
        else:
            bb, mb = "n/a (no CPU backward)", "n/a"
        rows.append(f"| {LABELS[n]} | {f} | {mf} | {bb} | {mb} |")
    print("\n".join(rows), flush=True)
    return rows + [""]


SWEEP_SIZES = [14, 28, 56, 112]
SWEEP = {"global_attention": SWEEP_SIZES, "neighborhood": SWEEP_SIZES, "bra": SWEEP_SIZES, "dcnv2": SWEEP_SIZES,
         "deformable_attention@1": [14, 28, 56], "deformable_attention@4": SWEEP_SIZES}


def sweep(repeats: int) -> tuple[list[str], dict]:
    data: dict[str, dict[int, tuple[float, float]]] = {n: {} for n in SWEEP}
    for s in SWEEP_SIZES:
        cases = {n: build(f"sweep:{n}:{s}") for n, sizes in SWEEP.items() if s in sizes}
        res = time_interleaved(cases, False, repeats, budget_s=0.15)
        for n in cases:
            data[n][s] = (res[n][0], peak_mib(f"sweep:{n}:{s}", False))
        print(s, {n: f"{data[n][s][0] * 1e3:.1f} ms" for n in cases}, flush=True)
    rows = [f"#### Resolution sweep (forward, batch 1, 64 channels, 2 heads; load average {os.getloadavg()[0]:.1f})", "",
            "| module | " + " | ".join(f"{s}² time / peak MiB" for s in SWEEP_SIZES) + " | time ×(112² / 56²) |",
            "|---|" + "---|" * (len(SWEEP_SIZES) + 1)]
    for n, d in data.items():
        cells = [f"{d[s][0] * 1e3:.1f} ms / {d[s][1]:.0f}" if s in d else "–" for s in SWEEP_SIZES]
        growth = f"{d[112][0] / d[56][0]:.1f}×" if 112 in d and 56 in d else "–"
        rows.append(f"| {n} | " + " | ".join(cells) + f" | {growth} |")
    print("\n".join(rows), flush=True)
    return rows + [""], data


def plot(data: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for n, d in data.items():
        sizes = sorted(d)
        a.loglog([s * s for s in sizes], [d[s][0] * 1e3 for s in sizes], "o-", label=n)
        b.loglog([s * s for s in sizes], [max(d[s][1], 0.1) for s in sizes], "o-", label=n)
    a.set(xlabel="N = H·W", ylabel="forward time (ms)", title="time (batch 1, 64 ch)")
    b.set(xlabel="N = H·W", ylabel="forward peak extra memory (MiB)", title="memory")
    a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--only", default=",".join([*COMPARISONS, "sweep"]))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--output")
    ap.add_argument("--plot")
    args = ap.parse_args()
    if args.child:
        spec = json.loads(args.child)
        child(spec)
        return
    lines = ["## Sparse and deformable local attention (neighborhood, bra, deformable_attention, dcnv2)", "", machine_line(), "",
             ("Times are medians of interleaved samples; ratios are attnzoo / the peer in the last row of each table "
              "(below 1 = attnzoo faster), wall time first, process CPU time second."), ""]
    only = args.only.split(",")

    def flush() -> None:
        if args.output:
            with open(args.output, "w") as f:
                f.write("\n".join(lines) + "\n")

    for comp in COMPARISONS:
        if comp in only:
            lines += compare(comp, args.repeats)
            flush()
    if "sweep" in only:
        rows, data = sweep(max(3, args.repeats - 2))
        lines += rows
        if args.plot:
            plot(data, args.plot)
            with open(args.plot.replace(".png", ".json"), "w") as f:
                json.dump({n: {str(s): v for s, v in d.items()} for n, d in data.items()}, f, indent=1)
    flush()


if __name__ == "__main__":
    main()
