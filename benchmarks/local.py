"""Benchmarks of the local family (local_window, outlook, multipole) against their peers, side by side.

Comparisons, every one run ``--runs`` times (default 2) and every run reported:

1. ``local_window`` against the community code's unfold-based ``LocalAttention2D`` (community code: ``nn.Unfold`` → LayerNorm
   → AttentionBlock → ``nn.Fold`` / overlap count), written out below from the community code with the same
   configuration: input 2×64×56×56, window 7 (non-overlapping), 2 heads, dim_head 32.  Forward (eval,
   ``no_grad``) and forward+backward (train; input and weight gradients, ``zero_grad(set_to_none=True)``
   first as an optimizer loop does).  Target: forward+backward ≤ 0.6× the community code.
2. ``outlook`` against External-Attention's ``OutlookAttention`` (PyPI ``fightingcv-attention``, channels-last
   input) and timm's ``OutlookAttention`` (= the official VOLO code), same weights (outputs checked equal),
   input 2×28×28×64, kernel 3, 2 heads, stride 1; stride 2 against timm only (the community class crashes at
   stride 2).  Target: forward ≤ 0.7× External-Attention with no more peak memory.
3. ``multipole`` linear scaling: batch 1, 64 channels, window 7, 2 heads × 32, at 32², 64², 128², 256²:
   forward and forward+backward time and peak memory (should grow ≈4× per step), and against
   ``global_attention`` of the same width (2 heads × 32) up to 128² (it grows ≈16× per step).

Method.  Each implementation gets its natural input layout (attnzoo: contiguous B×C×H×W; the community code and
External-Attention: B×H×W×C).  Time: the implementations of one comparison run interleaved in one process
(A, B, A, B, ...), each sample is ``torch.utils.benchmark.Timer.timeit(number)`` with ``number`` chosen so a
sample lasts ≥ 0.2 s, medians over ``--repeats`` samples, 2 threads.  The machine is shared with other jobs,
so the process CPU time of the same samples (``time.process_time``) is reported too; it is much less
sensitive to the load.  Peak memory: a fresh child process per case builds module and input, reads VmRSS as
the baseline, runs one forward (+ backward) and reports VmHWM minus the baseline (a warm-up on a tiny input
loads the kernels first).

    python benchmarks/local.py --output benchmarks/results/local.md --plot benchmarks/results/local_multipole_scaling.png
    python benchmarks/local.py --only outlook --runs 1          # one comparison, no file
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys

import torch
import torch.nn as nn
from torch.nn.attention import SDPBackend, sdpa_kernel

import attnzoo
from _common import child_peak_bytes, load_line, op_table, report_peak, run_once, time_interleaved
from attnzoo.bench.worker import cpu_model
from reference.community_attention import CommunityAttentionBlock

torch.set_num_threads(2)


# ------------------------------------------------------------------------------------------------------------
# the community code's unfold-based window attention (the community AttentionBlock + LocalAttention2D, channels-last)
# ------------------------------------------------------------------------------------------------------------


class CommunityLocalAttention2D(nn.Module):
    """The community ``LocalAttention2D`` (B×H×W×C): nn.Unfold windows → LayerNorm → AttentionBlock → nn.Fold / count."""

    def __init__(self, kernel_size: int, stride: int, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.k, self.s = kernel_size, stride
        self.norm = nn.LayerNorm(dim)
        self.attention = CommunityAttentionBlock(dim, heads, dim_head)
        self.unfold = nn.Unfold(kernel_size=kernel_size, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        k = self.k
        patches = self.unfold(x.permute(0, 3, 1, 2))  # B×(C·k·k)×L
        n = patches.shape[-1]
        tokens = patches.view(b, c, k * k, n).permute(0, 3, 2, 1).reshape(b * n, k * k, c)
        out = self.attention(self.norm(tokens)).view(b, n, k * k, c).permute(0, 3, 2, 1).reshape(b, c * k * k, n)
        fold = nn.Fold(output_size=(h, w), kernel_size=k, stride=self.s)
        out = fold(out) / fold(self.unfold(torch.ones((b, 1, h, w), device=x.device)))
        return out.permute(0, 2, 3, 1)


class MathBackend(nn.Module):
    """The module with SDPA restricted to its math backend (explicit softmax on the 49×49 window scores): shows
    what the fused kernel costs on short windows."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with sdpa_kernel(SDPBackend.MATH):
            return self.module(x)


def copy_local_weights(ours: nn.Module, community: CommunityLocalAttention2D) -> None:
    a = ours.attention
    community.norm.load_state_dict(a.norm.state_dict())
    community.attention.norm.load_state_dict(a.attn_norm.state_dict())
    community.attention.to_qkv.load_state_dict(a.to_qkv.state_dict())
    community.attention.to_out.load_state_dict(a.to_out.state_dict())


# ------------------------------------------------------------------------------------------------------------
# cases
# ------------------------------------------------------------------------------------------------------------

LW = dict(batch=2, channels=64, size=56, kernel=7, heads=2, dim_head=32)
OL = dict(batch=2, channels=64, size=28, heads=2)
MP = dict(batch=1, channels=64, kernel=7, heads=2, dim_head=32, sizes=[32, 64, 128, 256], global_max=128)


def build(impl: str, size: int | None = None, stride: int = 1) -> tuple[nn.Module, torch.Tensor]:
    """Module and input (in the implementation's layout) for one implementation name."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    if impl in ("local_window", "local_window_math", "community_local"):
        c, s = LW["channels"], LW["size"]
        ours = attnzoo.create("local_window", c, kernel_size=LW["kernel"], heads=LW["heads"], dim_head=LW["dim_head"])
        x = torch.randn(LW["batch"], c, s, s, generator=g)
        if impl == "local_window":
            return ours, x
        if impl == "local_window_math":
            return MathBackend(ours), x
        community = CommunityLocalAttention2D(LW["kernel"], LW["kernel"], c, LW["heads"], LW["dim_head"])
        copy_local_weights(ours, community)
        return community, x.permute(0, 2, 3, 1).contiguous()
    if impl in ("outlook", "ea_outlook", "timm_outlook"):
        c, s = OL["channels"], OL["size"]
        ours = attnzoo.create("outlook", c, heads=OL["heads"], stride=stride)
        x = torch.randn(OL["batch"], c, s, s, generator=g)
        if impl == "outlook":
            return ours, x
        if impl == "ea_outlook":
            from fightingcv_attention.attention.OutlookAttention import OutlookAttention as EAOutlook

            peer = EAOutlook(c, num_heads=OL["heads"], stride=stride, attn_drop=0.0)
            peer.load_state_dict({k.replace("v.", "v_pj.", 1) if k.startswith("v.") else k: v for k, v in ours.state_dict().items()})
        else:
            from timm.models.volo import OutlookAttention as TimmOutlook

            peer = TimmOutlook(c, OL["heads"], kernel_size=3, padding=1, stride=stride)
            peer.load_state_dict(ours.state_dict())
        return peer, x.permute(0, 2, 3, 1).contiguous()
    if impl in ("multipole", "global_attention"):
        c = MP["channels"]
        x = torch.randn(MP["batch"], c, size, size, generator=g)
        if impl == "multipole":
            return attnzoo.create("multipole", c, kernel_size=MP["kernel"], heads=MP["heads"], dim_head=MP["dim_head"]), x
        return attnzoo.create("global_attention", c, heads=MP["heads"], dim_head=MP["dim_head"]), x
    raise ValueError(f"unknown implementation {impl!r}")




def prepare(m: nn.Module, backward: bool) -> nn.Module:
    return m.train() if backward else m.eval()


# ------------------------------------------------------------------------------------------------------------
# peak memory in a fresh child process
# ------------------------------------------------------------------------------------------------------------


CHANNELS_LAST = ("community_local", "ea_outlook", "timm_outlook")


def child(spec: dict) -> None:
    impl, size, stride, backward = spec["impl"], spec.get("size"), spec.get("stride", 1), spec["backward"]
    torch.set_num_threads(spec.get("threads", 2))
    m, x = build(impl, size, stride)
    small = x[:, :14, :14, :] if impl in CHANNELS_LAST else x[:, :, :14, :14]  # warm-up: loads kernels, thread pools
    run_once(prepare(m, backward), small.contiguous(), backward)
    del m, x, small
    m, x = build(impl, size, stride)
    prepare(m, backward)
    report_peak(lambda: run_once(m, x, backward))


def peak_memory(impl: str, backward: bool, size: int | None = None, stride: int = 1) -> float:
    """Extra peak resident memory (MiB) of one call, measured in a fresh child process."""
    spec = {"impl": impl, "size": size, "stride": stride, "backward": backward, "threads": torch.get_num_threads()}
    return child_peak_bytes(__file__, spec) / 2**20


# ------------------------------------------------------------------------------------------------------------
# interleaved timing
# ------------------------------------------------------------------------------------------------------------




# ------------------------------------------------------------------------------------------------------------
# comparisons
# ------------------------------------------------------------------------------------------------------------


def check_equal(a: nn.Module, xa: torch.Tensor, b: nn.Module, xb: torch.Tensor, b_channels_last: bool) -> float:
    with torch.no_grad():
        ya, yb = a.eval()(xa), b.eval()(xb)
    if b_channels_last:
        yb = yb.permute(0, 3, 1, 2)
    return (ya - yb).abs().max().item()


def compare_local_window(repeats: int) -> dict:
    ours, x = build("local_window")
    community, xs = build("community_local")
    res = {"max_abs_diff": check_equal(ours, x, community, xs, True)}
    for backward in (False, True):
        key = "fwd_bwd" if backward else "fwd"
        math = build("local_window_math")[0]
        t = time_interleaved({"local_window": (ours, x), "local_window_math": (math, x), "community_local": (community, xs)},
                             backward, repeats, prepare=prepare)
        res[key] = {n: {"wall": t[n][0], "cpu": t[n][1], "peak_mib": peak_memory(n, backward)} for n in t}
    return res


def compare_outlook(repeats: int) -> dict:
    res: dict = {}
    for stride, peers in ((1, ("ea_outlook", "timm_outlook")), (2, ("timm_outlook",))):
        ours, x = build("outlook", stride=stride)
        cases = {"outlook": (ours, x)}
        diffs = {}
        for p in peers:
            m, xp = build(p, stride=stride)
            diffs[p] = check_equal(ours, x, m, xp, True)
            cases[p] = (m, xp)
        entry: dict = {"max_abs_diff": diffs}
        for backward in (False, True):
            key = "fwd_bwd" if backward else "fwd"
            t = time_interleaved(cases, backward, repeats, prepare=prepare)
            entry[key] = {n: {"wall": t[n][0], "cpu": t[n][1], "peak_mib": peak_memory(n, backward, stride=stride)} for n in t}
        res[f"stride{stride}"] = entry
    return res


def compare_multipole(repeats: int) -> dict:
    res: dict = {}
    for size in MP["sizes"]:
        impls = ["multipole"] + (["global_attention"] if size <= MP["global_max"] else [])
        cases = {i: build(i, size) for i in impls}
        entry: dict = {}
        for backward in (False, True):
            key = "fwd_bwd" if backward else "fwd"
            reps = repeats if size <= 128 else max(3, repeats // 2)
            if size == MP["global_max"]:
                reps = max(3, repeats // 2)
            t = time_interleaved(cases, backward, reps, prepare=prepare)
            entry[key] = {n: {"wall": t[n][0], "cpu": t[n][1], "peak_mib": peak_memory(n, backward, size=size)} for n in t}
        res[str(size)] = entry
    return res


# ------------------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------------------


def profile_local_window(steps: int) -> str:
    """Top operators by self CPU time of one forward+backward call (train mode, input gradient) of ``local_window``
    and of the community form, same input and weights: where the time goes, and what is left to remove."""
    out = []
    for impl, label in (("local_window", "attnzoo `local_window`"), ("community_local", "community unfold form")):
        m, x = build(impl)
        prepare(m, True)
        table, total = op_table(lambda: run_once(m, x, True), steps=steps)
        out.append((label, table, total))
    ratio = out[0][2] / out[1][2]
    lines = [
        "### local_window forward+backward: operators by self CPU time (torch.profiler)",
        "",
        f"One forward+backward call (train mode, input gradient, `sum().backward()`), mean of {steps} profiled calls "
        f"after a warm-up, {torch.get_num_threads()} thread(s), {load_line()} when it finished. Total self CPU time "
        f"attnzoo / community under the profiler: {ratio:.2f}.",
        "",
    ]
    for label, table, total in out:
        lines += [f"{label} ({total:.1f} ms per call under the profiler):", "", table, ""]
    return "\n".join(lines)


def ms(s: float) -> str:
    return f"{s * 1e3:.1f}" if s < 10 else f"{s:.1f} s"


def machine() -> str:
    return (f"{cpu_model()}, {os.cpu_count()} cores visible, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"Python {platform.python_version()}")


def pair_rows(runs: list[dict], pick, ours: str, peer: str, label: str) -> list[str]:
    rows = []
    for i, r in enumerate(runs, 1):
        e = pick(r)
        for key, what in (("fwd", "forward"), ("fwd_bwd", "forward+backward")):
            a, b = e[key][ours], e[key][peer]
            rows.append(
                f"| {i} | {label} | {what} | {ms(a['wall'])} | {ms(b['wall'])} | **{a['wall'] / b['wall']:.2f}×** | "
                f"{ms(a['cpu'])} | {ms(b['cpu'])} | {a['cpu'] / b['cpu']:.2f}× | {a['peak_mib']:.1f} | {b['peak_mib']:.1f} | {a['peak_mib'] / max(b['peak_mib'], 1e-9):.2f}× |"
            )
    return rows


HEADER = ("| run | case | pass | attnzoo ms | peer ms | time ratio | attnzoo CPU ms | peer CPU ms | CPU ratio | attnzoo peak MiB | peer peak MiB | memory ratio |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|")


def report(runs: list[dict], command: str, plot: str | None) -> str:
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    out = [
        "## Local family: local_window, outlook, multipole",
        "",
        f"Date {now}. Machine: {machine()}. {load_line()} at the end: ratios matter more than absolute times;",
        "each comparison ran in every run below, the implementations interleaved. Times are medians per call (wall clock",
        "from `torch.utils.benchmark`, and process CPU time of the same samples); peak memory is the extra resident memory",
        "of one call in a fresh child process. Ratios are attnzoo / peer (below 1 = attnzoo faster or smaller).",
        "",
        f"Command: `{command}`",
        "",
    ]
    out += targets(runs)
    if runs and "local_window" in runs[0]:
        d = runs[0]["local_window"]["max_abs_diff"]
        out += [
            "### local_window vs the community code's unfold-based LocalAttention2D",
            "",
            f"Input 2×64×56×56, window 7 (non-overlapping), 2 heads × 32, same weights (max |difference| {d:.1e}).",
            "Target: forward+backward ≤ 0.6× the community code.",
            "",
            HEADER,
            *pair_rows(runs, lambda r: r["local_window"], "local_window", "community_local", "7×7 windows"),
            *pair_rows(runs, lambda r: r["local_window"], "local_window_math", "community_local", "7×7 windows, SDPA math backend"),
            "",
            "The second case is the same module with `scaled_dot_product_attention` restricted to its math backend",
            "(explicit softmax on the 49×49 window scores), in the same interleaved run.",
            "",
        ]
    if runs and "outlook" in runs[0]:
        d = runs[0]["outlook"]["stride1"]["max_abs_diff"]
        out += [
            "### outlook vs External-Attention (fightingcv-attention) and timm (official VOLO code)",
            "",
            "Input 2×28×28×64 (attnzoo gets B×C×H×W, the peers B×H×W×C), kernel 3, 2 heads, same weights (max |difference|: "
            + ", ".join(f"{k} {v:.1e}" for k, v in d.items()) + "). The community class crashes at stride 2 (see tests), so stride 2",
            "is against timm only. Target: forward ≤ 0.7× External-Attention with no more peak memory.",
            "",
            HEADER,
            *pair_rows(runs, lambda r: r["outlook"]["stride1"], "outlook", "ea_outlook", "stride 1 vs External-Attention"),
            *pair_rows(runs, lambda r: r["outlook"]["stride1"], "outlook", "timm_outlook", "stride 1 vs timm"),
            *pair_rows(runs, lambda r: r["outlook"]["stride2"], "outlook", "timm_outlook", "stride 2 vs timm"),
            "",
        ]
    if runs and "multipole" in runs[0]:
        out += [
            "### multipole: linear scaling, and against global_attention",
            "",
            "Batch 1, 64 channels, window 7, 2 heads × 32 (avg_pool / nearest), levels from the input (32²: 3 levels, 64²: 5,",
            "128²: 6, 256²: 7). `global_attention` has the same width (2 heads × 32, fused SDPA). Growth = value / value at",
            "the previous size (4× more positions per step: linear cost gives ≈4×, quadratic ≈16×).",
            "",
        ]
        for i, r in enumerate(runs, 1):
            mp = r["multipole"]
            out += [f"Run {i}:", "",
                    "| size | module | fwd ms | growth | fwd+bwd ms | growth | fwd peak MiB | growth | fwd+bwd peak MiB | growth |",
                    "|---|---|---|---|---|---|---|---|---|---|"]
            for impl in ("multipole", "global_attention"):
                prev = None
                for size in MP["sizes"]:
                    e = mp[str(size)]
                    if impl not in e["fwd"]:
                        continue
                    vals = [e["fwd"][impl]["wall"], e["fwd_bwd"][impl]["wall"], e["fwd"][impl]["peak_mib"], e["fwd_bwd"][impl]["peak_mib"]]
                    g = [f"{v / p:.1f}×" if prev else "" for v, p in zip(vals, prev or vals)]
                    out.append(f"| {size}² | {impl} | {ms(vals[0])} | {g[0]} | {ms(vals[1])} | {g[1]} | {vals[2]:.1f} | {g[2]} | {vals[3]:.1f} | {g[3]} |")
                    prev = vals
            e = mp[str(MP["global_max"])]
            out += ["", f"At {MP['global_max']}²: multipole / global_attention = "
                    f"forward time {e['fwd']['multipole']['wall'] / e['fwd']['global_attention']['wall']:.3f}×, "
                    f"forward+backward time {e['fwd_bwd']['multipole']['wall'] / e['fwd_bwd']['global_attention']['wall']:.3f}×, "
                    f"forward peak memory {e['fwd']['multipole']['peak_mib'] / max(e['fwd']['global_attention']['peak_mib'], 1e-9):.2f}×, "
                    f"forward+backward peak memory {e['fwd_bwd']['multipole']['peak_mib'] / max(e['fwd_bwd']['global_attention']['peak_mib'], 1e-9):.2f}×.", ""]
        if plot:
            out += [f"![multipole scaling]({plot.split('/')[-1]})", ""]
    return "\n".join(out) + "\n"


def targets(runs: list[dict]) -> list[str]:
    """The issue's targets against the measured ratios, one cell per run (wall-clock time / process CPU time)."""
    rows = ["### Targets, per run", "", "| target | measured (run 1, run 2, …) | met |", "|---|---|---|"]

    def cell(vals: list[float], limit: float) -> tuple[str, str]:
        return ", ".join(f"{v:.2f}×" for v in vals), "yes" if all(v <= limit for v in vals) else ("partly" if any(v <= limit for v in vals) else "no")

    if runs and "local_window" in runs[0]:
        for key, what in (("fwd_bwd", "forward+backward"), ("fwd", "forward (no target; for reference)")):
            wall = [r["local_window"][key]["local_window"]["wall"] / r["local_window"][key]["community_local"]["wall"] for r in runs]
            cpu = [r["local_window"][key]["local_window"]["cpu"] / r["local_window"][key]["community_local"]["cpu"] for r in runs]
            txt, met = cell(wall, 0.6)
            rows.append(f"| local_window {what} time ≤ 0.6× the community code | wall {txt}; CPU {cell(cpu, 0.6)[0]} | {met if key == 'fwd_bwd' else '—'} |")
    if runs and "outlook" in runs[0]:
        e = [r["outlook"]["stride1"]["fwd"] for r in runs]
        wall = [x["outlook"]["wall"] / x["ea_outlook"]["wall"] for x in e]
        cpu = [x["outlook"]["cpu"] / x["ea_outlook"]["cpu"] for x in e]
        mem = [x["outlook"]["peak_mib"] / x["ea_outlook"]["peak_mib"] for x in e]
        txt, met = cell(wall, 0.7)
        rows.append(f"| outlook forward time ≤ 0.7× External-Attention | wall {txt}; CPU {cell(cpu, 0.7)[0]} | {met} |")
        txt, met = cell(mem, 1.0)
        rows.append(f"| outlook forward peak memory ≤ External-Attention | {txt} | {met} |")
    if runs and "multipole" in runs[0]:
        sizes = MP["sizes"]
        for key, what in (("fwd", "forward"), ("fwd_bwd", "forward+backward")):
            for metric, label in (("wall", "time"), ("peak_mib", "peak memory")):
                growth = [(r["multipole"][str(sizes[-1])][key]["multipole"][metric] / r["multipole"][str(sizes[0])][key]["multipole"][metric]) ** (1 / (len(sizes) - 1)) for r in runs]
                txt = ", ".join(f"{g:.1f}×" for g in growth)
                rows.append(f"| multipole {what} {label} grows ≈4× per step (not 16×), {sizes[0]}²→{sizes[-1]}² | mean growth per step {txt} | {'yes' if all(g < 6 for g in growth) else 'no'} |")
        g = str(MP["global_max"])
        for key, what in (("fwd", "forward"), ("fwd_bwd", "forward+backward")):
            for metric, label in (("wall", "time"), ("peak_mib", "peak memory")):
                vals = [r["multipole"][g][key]["multipole"][metric] / r["multipole"][g][key]["global_attention"][metric] for r in runs]
                txt, met = cell(vals, 1.0)
                rows.append(f"| multipole {what} {label} < global_attention at {g}² | {txt} | {met} |")
    return rows + [""]


def make_plot(runs: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for r_i, r in enumerate(runs):
        mp = r["multipole"]
        for impl, colour in (("multipole", "C0"), ("global_attention", "C3")):
            for key, style in (("fwd", "-o"), ("fwd_bwd", "--s")):
                sizes = [s for s in MP["sizes"] if impl in mp[str(s)][key]]
                n = [s * s for s in sizes]
                label = f"{impl} {'forward' if key == 'fwd' else 'fwd+bwd'}" if r_i == 0 else None
                axes[0].plot(n, [mp[str(s)][key][impl]["wall"] * 1e3 for s in sizes], style, color=colour, alpha=0.5 + 0.5 * (r_i == 0), label=label)
                axes[1].plot(n, [max(mp[str(s)][key][impl]["peak_mib"], 0.1) for s in sizes], style, color=colour, alpha=0.5 + 0.5 * (r_i == 0), label=label)
    n = [s * s for s in MP["sizes"]]
    t0 = runs[0]["multipole"][str(MP["sizes"][0])]["fwd"]["multipole"]["wall"] * 1e3
    axes[0].plot(n, [t0 * v / n[0] for v in n], ":", color="grey", label="∝ N")
    axes[0].plot(n[:3], [t0 * (v / n[0]) ** 2 for v in n[:3]], ":", color="black", label="∝ N²")
    for ax, title in ((axes[0], "time per call (ms)"), (axes[1], "peak extra memory (MiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("positions N = H·W")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("multipole vs global_attention (batch 1, 64 channels, 2 heads × 32)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--only", default="local_window,outlook,multipole", help="comma-separated comparisons")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7, help="interleaved samples per implementation")
    ap.add_argument("--output", help="write the markdown section to this file")
    ap.add_argument("--json", help="also dump the raw numbers")
    ap.add_argument("--plot", help="multipole scaling plot (PNG)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2; the memory children too)")
    ap.add_argument("--profile", type=int, default=0, metavar="STEPS",
                    help="add the local_window operator tables (torch.profiler over STEPS forward+backward calls)")
    ap.add_argument("--append", action="store_true", help="append the section to --output instead of overwriting it")
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    torch.set_num_threads(args.threads)
    only = args.only.split(",")
    print(f"start: {load_line()}", file=sys.stderr, flush=True)
    runs = []
    for run in range(args.runs):
        r: dict = {}
        for name, fn in (("local_window", compare_local_window), ("outlook", compare_outlook), ("multipole", compare_multipole)):
            if name in only:
                print(f"run {run + 1}: {name} ...", file=sys.stderr, flush=True)
                r[name] = fn(args.repeats)
        runs.append(r)
    if args.plot and "multipole" in only:
        make_plot(runs, args.plot)
    command = "python " + " ".join(sys.argv)
    text = report(runs, command, args.plot)
    if args.profile and "local_window" in only:
        text += "\n\n" + profile_local_window(args.profile)
    print(text)
    if args.output:
        with open(args.output, "a" if args.append else "w") as f:
            f.write(("\n\n" if args.append else "") + text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=1)


if __name__ == "__main__":
    main()
