"""Speed and memory of the pooling gates (strip_pooling, mixed_pooling, mlca, cpca, attention_gate) against their
peers, side by side in one run, one thread.

No zoo package ships these modules except MONAI (Attention U-Net's ``AttentionBlock``, compared with
``attention_gate(variant="monai")``); External-Attention-pytorch (fightingcv), timm and smp have none of them.
Each module is therefore also compared with its official computation re-typed here (SPNet's ``SPBlock`` and
``StripPooling``, MIT; CPCANet's ``RepBlock``, Apache-2.0; Attention-Gated-Networks' ``_GridAttentionBlockND``,
MIT) and, for MLCA (GPL-3.0, code not read), with the computation of attnzoo's reference notes written the way
the copies write it (``nn.AdaptiveAvgPool2d`` down and up, ``nn.Conv1d`` modules, view/transpose).  Weights are
copied from the attnzoo module (randomised first) and the outputs compared before timing.

Cases: 8×256×28×28 and 2×64×56×56 (attention_gate: the gating map at half size and C channels; MONAI's block at
x's size), forward (eval, no_grad) and forward+backward (train, input gradients); median wall time of interleaved
timings (``torch.utils.benchmark``), peak extra resident memory of one call in a fresh child process.  Ratios are
attnzoo / peer (below 1: attnzoo faster or smaller).

    PYTHONPATH=src:benchmarks python benchmarks/gates_pooling.py --output benchmarks/results/gates_pooling.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from typing import Any, Callable

import torch
import torch.nn.functional as F
import torch.utils.benchmark as tb
from torch import nn

import attnzoo
from _common import append_section, child_peak_bytes, fmt_bytes, outputs, report_peak
from attnzoo.testing import randomize

SHAPES = [(8, 256, 28, 28), (2, 64, 56, 56)]

# ------------------------------------------------------------------------------------------------ peers


class SPBlock(nn.Module):
    """SPNet's ``SPBlock`` (models/resnet.py), used as ``x * spm(x)``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, (3, 1), padding=(1, 0), bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, (1, 3), padding=(0, 1), bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.conv3 = nn.Conv2d(c, c, 1, bias=True)
        self.pool1 = nn.AdaptiveAvgPool2d((None, 1))
        self.pool2 = nn.AdaptiveAvgPool2d((1, None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.size()
        x1 = self.bn1(self.conv1(self.pool1(x))).expand(-1, -1, h, w)
        x2 = self.bn2(self.conv2(self.pool2(x))).expand(-1, -1, h, w)
        return x * self.conv3(F.relu(x1 + x2)).sigmoid()


def _cbn(c_in: int, c_out: int, k: Any, p: Any, relu: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, k, 1, p, bias=False), nn.BatchNorm2d(c_out)]
    return nn.Sequential(*layers, nn.ReLU()) if relu else nn.Sequential(*layers)


class SPNetStripPooling(nn.Module):
    """SPNet's ``StripPooling`` head block (models/customize.py), pool_size (20, 12), bilinear align_corners."""

    def __init__(self, c: int, pool_size: tuple[int, int] = (20, 12)) -> None:
        super().__init__()
        i = c // 4
        self.pool1, self.pool2 = nn.AdaptiveAvgPool2d(pool_size[0]), nn.AdaptiveAvgPool2d(pool_size[1])
        self.pool3, self.pool4 = nn.AdaptiveAvgPool2d((1, None)), nn.AdaptiveAvgPool2d((None, 1))
        self.conv1_1, self.conv1_2 = _cbn(c, i, 1, 0, True), _cbn(c, i, 1, 0, True)
        self.conv2_0, self.conv2_1, self.conv2_2 = _cbn(i, i, 3, 1), _cbn(i, i, 3, 1), _cbn(i, i, 3, 1)
        self.conv2_3, self.conv2_4 = _cbn(i, i, (1, 3), (0, 1)), _cbn(i, i, (3, 1), (1, 0))
        self.conv2_5, self.conv2_6 = _cbn(i, i, 3, 1, True), _cbn(i, i, 3, 1, True)
        self.conv3 = _cbn(2 * i, c, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.size()
        up = dict(size=(h, w), mode="bilinear", align_corners=True)
        x1, x2 = self.conv1_1(x), self.conv1_2(x)
        x2_1 = self.conv2_0(x1)
        x2_2 = F.interpolate(self.conv2_1(self.pool1(x1)), **up)  # type: ignore[arg-type]
        x2_3 = F.interpolate(self.conv2_2(self.pool2(x1)), **up)  # type: ignore[arg-type]
        x2_4 = F.interpolate(self.conv2_3(self.pool3(x2)), **up)  # type: ignore[arg-type]
        x2_5 = F.interpolate(self.conv2_4(self.pool4(x2)), **up)  # type: ignore[arg-type]
        x1 = self.conv2_5(F.relu(x2_1 + x2_2 + x2_3))
        x2 = self.conv2_6(F.relu(x2_5 + x2_4))
        return F.relu(x + self.conv3(torch.cat([x1, x2], dim=1)))


class MLCACopyStyle(nn.Module):
    """MLCA as attnzoo's reference notes describe it, written the way the copies write such code."""

    def __init__(self, c: int, k: int, local_size: int = 5, local_weight: float = 0.5) -> None:
        super().__init__()
        self.s, self.lam = local_size, local_weight
        self.conv = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)
        self.conv_local = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)
        self.local_pool, self.global_pool = nn.AdaptiveAvgPool2d(local_size), nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.s
        local = self.local_pool(x)
        glob = self.global_pool(local)
        y_local = self.conv_local(local.view(b, c, -1).transpose(-1, -2).reshape(b, 1, -1))
        y_global = self.conv(glob.view(b, 1, c))
        att_local = y_local.reshape(b, s * s, c).transpose(-1, -2).view(b, c, s, s).sigmoid()
        att_global = F.adaptive_avg_pool2d(y_global.view(b, c, 1, 1).sigmoid(), [s, s])
        att = F.adaptive_avg_pool2d(att_global * (1 - self.lam) + att_local * self.lam, [h, w])
        return x * att


class CPCARepBlock(nn.Module):
    """CPCANet's ``RepBlock`` with its ``ChannelAttention`` (re-typed)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, c // 4, 1), nn.Conv2d(c // 4, c, 1)
        self.dconv5_5 = nn.Conv2d(c, c, 5, padding=2, groups=c)
        self.dconv1_7, self.dconv7_1 = nn.Conv2d(c, c, (1, 7), padding=(0, 3), groups=c), nn.Conv2d(c, c, (7, 1), padding=(3, 0), groups=c)
        self.dconv1_11, self.dconv11_1 = nn.Conv2d(c, c, (1, 11), padding=(0, 5), groups=c), nn.Conv2d(c, c, (11, 1), padding=(5, 0), groups=c)
        self.dconv1_21, self.dconv21_1 = nn.Conv2d(c, c, (1, 21), padding=(0, 10), groups=c), nn.Conv2d(c, c, (21, 1), padding=(10, 0), groups=c)
        self.conv = nn.Conv2d(c, c, 1)

    def ca(self, u: torch.Tensor) -> torch.Tensor:
        x1 = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(u, 1)))))
        x2 = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_max_pool2d(u, 1)))))
        return x1 + x2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = F.gelu(self.conv(x))
        u = self.ca(u) * u
        z = self.dconv5_5(u)
        x1 = self.dconv7_1(self.dconv1_7(z))
        x2 = self.dconv11_1(self.dconv1_11(z))
        x3 = self.dconv21_1(self.dconv1_21(z))
        return self.conv(self.conv(x1 + x2 + x3 + z) * u)


class GridAttention2D(nn.Module):
    """Attention-Gated-Networks' ``_GridAttentionBlockND`` (mode "concatenation", 2-D, even sizes), returning
    ``x * α`` (``out_conv=False``)."""

    def __init__(self, c: int, c_g: int) -> None:
        super().__init__()
        i = max(c // 2, 1)
        self.theta = nn.Conv2d(c, i, 2, stride=2, bias=False)
        self.phi = nn.Conv2d(c_g, i, 1)
        self.psi = nn.Conv2d(i, 1, 1)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        theta_x = self.theta(x)
        phi_g = F.interpolate(self.phi(g), size=theta_x.shape[2:], mode="bilinear")
        f = F.relu(theta_x + phi_g)
        sig = F.interpolate(torch.sigmoid(self.psi(f)), size=x.shape[2:], mode="bilinear")
        return sig.expand_as(x) * x


class Pair(nn.Module):
    """``m(xs[0], xs[1])`` (the benchmark passes one list)."""

    def __init__(self, m: nn.Module, swap: bool = False) -> None:
        super().__init__()
        self.m, self.swap = m, swap

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return self.m(g=xs[1], x=xs[0]) if self.swap else self.m(xs[0], xs[1])


# ------------------------------------------------------------------------------------------------ cases


@torch.no_grad()
def _copy(dst: nn.Module, src: nn.Module, names: dict[str, str]) -> None:
    sd = src.state_dict()
    dst.load_state_dict({d: sd[s] for d, s in names.items()}, strict=True)


def _names(dst: nn.Module, mapping: Callable[[str], str]) -> dict[str, str]:
    return {k: mapping(k) for k in dst.state_dict()}


def build(module: str, shape: tuple[int, ...]) -> dict[str, tuple[nn.Module, Any]]:
    """{label: (module, input)} for one module at one shape, attnzoo first, weights copied into the peers."""
    torch.manual_seed(0)
    b, c, h, w = shape
    x = torch.randn(b, c, h, w)
    if module == "strip_pooling":
        ours = randomize(attnzoo.create("strip_pooling", c))
        peer = SPBlock(c)
        ren = {"conv1": "rows.0", "bn1": "rows.1", "conv2": "cols.0", "bn2": "cols.1", "conv3": "fuse"}
        _copy(peer, ours, _names(peer, lambda k: ren[k.split(".")[0]] + "." + k.split(".", 1)[1]))
        return {"attnzoo": (ours, x), "SPNet SPBlock": (peer, x)}
    if module == "mixed_pooling":
        ours = randomize(attnzoo.create("mixed_pooling", c))
        peer = SPNetStripPooling(c)
        ren = {"conv1_1": "reduce_short", "conv1_2": "reduce_long", "conv2_0": "local", "conv2_1": "pyramid.0",
               "conv2_2": "pyramid.1", "conv2_3": "strip_w", "conv2_4": "strip_h", "conv2_5": "fuse_short",
               "conv2_6": "fuse_long", "conv3": "proj"}
        _copy(peer, ours, _names(peer, lambda k: ren[k.split(".")[0]] + "." + k.split(".", 1)[1]))
        return {"attnzoo": (ours, x), "SPNet StripPooling": (peer, x)}
    if module == "mlca":
        ours = randomize(attnzoo.create("mlca", c))
        peer = MLCACopyStyle(c, ours.kernel_size)
        _copy(peer, ours, _names(peer, lambda k: k))
        return {"attnzoo": (ours, x), "copy-style (from the notes)": (peer, x)}
    if module == "cpca":
        ours = randomize(attnzoo.create("cpca", c))
        peer = CPCARepBlock(c)
        _copy(peer, ours, _names(peer, lambda k: "ca." + k if k.startswith("fc") else k))
        return {"attnzoo": (ours, x), "CPCANet RepBlock": (peer, x)}
    if module == "attention_gate":
        from monai.networks.nets.attentionunet import AttentionBlock

        g_half = torch.randn(b, c, h // 2, w // 2)
        g_same = torch.randn(b, c, h, w)
        ours = randomize(attnzoo.create("attention_gate", c))
        official = GridAttention2D(c, c)
        _copy(official, ours, _names(official, lambda k: k))
        ours_m = randomize(attnzoo.create("attention_gate", c, variant="monai"))
        monai = AttentionBlock(spatial_dims=2, f_int=ours_m.inner_channels, f_g=c, f_l=c)
        ren = {"W_x": "theta", "W_g": "phi", "psi": "psi"}
        _copy(monai, ours_m, _names(monai, lambda k: ren[k.split(".")[0]] + "." + k.split(".", 1)[1].replace("0.conv.", "0.")))
        return {
            "attnzoo": (Pair(ours), [x, g_half]),
            "official grid attention": (Pair(official), [x, g_half]),
            "attnzoo monai": (Pair(ours_m), [x, g_same]),
            "MONAI AttentionBlock": (Pair(monai, swap=True), [x, g_same]),
        }
    raise ValueError(module)


MODULES = ["strip_pooling", "mixed_pooling", "mlca", "cpca", "attention_gate"]


def _closures(m: nn.Module, x: Any) -> tuple[Callable[[], None], Callable[[], None]]:
    xs = [x] if isinstance(x, torch.Tensor) else list(x)
    xg = [t.clone().requires_grad_() for t in xs]
    arg_g = xg[0] if isinstance(x, torch.Tensor) else xg

    def fwd() -> None:
        with torch.no_grad():
            m(x)

    def fwd_bwd() -> None:
        for t in (*m.parameters(), *xg):
            t.grad = None
        sum(o.float().mean() for o in outputs(m(arg_g))).backward()

    return fwd, fwd_bwd


def _check_same(cases: dict[str, tuple[nn.Module, Any]]) -> float:
    """Largest output difference between attnzoo and its peer(s) (eval mode), pairwise in insertion order."""
    worst = 0.0
    items = list(cases.values())
    with torch.no_grad():
        for (m0, x0), (m1, x1) in zip(items[::2], items[1::2]):
            m0.eval(), m1.eval()
            worst = max(worst, (m0(x0) - m1(x1)).abs().max().item())
    return worst


def time_cases(cases: dict[str, tuple[nn.Module, Any]], backward: bool, repeats: int) -> dict[str, float]:
    fns = {}
    for k, (m, x) in cases.items():
        m.train(backward)
        fns[k] = _closures(m, x)[1 if backward else 0]
    for f in fns.values():
        f()
    numbers = {}
    for k, f in fns.items():
        t = tb.Timer("f()", globals={"f": f}, num_threads=1).timeit(1).median
        numbers[k] = max(1, round(0.1 / max(t, 1e-6)))
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(repeats):
        for k in fns if r % 2 == 0 else reversed(list(fns)):
            times[k].append(tb.Timer("f()", globals={"f": fns[k]}, num_threads=1).timeit(numbers[k]).mean)
    return {k: statistics.median(v) for k, v in times.items()}


def child(spec: dict[str, Any]) -> None:
    torch.set_num_threads(1)
    cases = build(spec["module"], tuple(spec["shape"]))
    m, x = cases[spec["label"]]
    m.train(spec["backward"])
    f = _closures(m, x)[1 if spec["backward"] else 0]
    f()
    report_peak(f)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child")
    ap.add_argument("--modules", default=",".join(MODULES))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--output")
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    torch.set_num_threads(1)
    rows = ["| module | peer | shape | fwd ms (attnzoo / peer) | fwd+bwd ms | fwd peak | fwd+bwd peak | max diff |",
            "|---|---|---|---|---|---|---|---|"]
    for module in args.modules.split(","):
        for shape in SHAPES:
            cases = build(module, shape)
            diff = _check_same(cases)
            t = {bw: time_cases(cases, bw, args.repeats) for bw in (False, True)}
            labels = list(cases)
            for ours, peer in zip(labels[::2], labels[1::2]):
                cells = []
                for bw in (False, True):
                    a, p = t[bw][ours] * 1e3, t[bw][peer] * 1e3
                    cells.append(f"{a:.2f} / {p:.2f} = **{a / p:.2f}**")
                mem = []
                for bw in (False, True):
                    if args.no_memory:
                        mem.append("—")
                        continue
                    pk = {lab: child_peak_bytes(sys.argv[0], {"module": module, "shape": list(shape), "label": lab,
                                                              "backward": bw}) for lab in (ours, peer)}
                    mem.append(f"{fmt_bytes(pk[ours])} / {fmt_bytes(pk[peer])} = {pk[ours] / max(pk[peer], 1):.2f}")
                name = module if ours == "attnzoo" else f"{module} ({ours.split(' ', 1)[1]})"
                rows.append(f"| `{name}` | {peer} | {'×'.join(map(str, shape))} | {cells[0]} | {cells[1]} | "
                            f"{mem[0]} | {mem[1]} | {diff:.1e} |")
                print(rows[-1], flush=True)
    table = "\n".join(rows)
    print(table)
    if args.output:
        append_section(args.output, "Pooling gates against their peers", table)


if __name__ == "__main__":
    main()
