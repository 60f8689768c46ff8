"""Deformable ConvNets v2: More Deformable, Better Results (Zhu, Hu, Lin, Dai; CVPR 2019),
https://arxiv.org/abs/1811.11168.

Modulated deformable convolution: every kernel tap samples the input at its regular position plus a learned
offset (bilinear interpolation, zero outside) and multiplies the sample by a learned modulation scalar in
(0, 1); offsets and modulation come from a plain convolution on the input, zero-initialised.  Two equal paths:
torchvision's ``deform_conv2d`` (used on CUDA) and a pure-PyTorch path (one ``grid_sample`` of all taps + one
matmul; used on CPU, where it is faster, and in graphs recorded for ONNX or ncnn), which exports to ONNX
(``GridSample``, opset ≥ 16) and ncnn.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..capture import record
from ..layers import (
    KERNEL_BOUND,
    AttnModule,
    SizeBound,
    check_arg,
    check_choice,
    check_nchw,
    fx_leaf,
    non_negative_int,
    positive_int,
)
from ..layers.checks import output_width
from ..registry import ShapeRule, register
from ..tracing import PortableForm, eager_only, inplace_ok, portable, traced_size

_TV: list = []  # torchvision's deform_conv2d (or None), imported on first use: `import attnzoo` stays light


def _tv_deform_conv2d() -> object:
    if not _TV:
        try:
            from torchvision.ops import deform_conv2d  # type: ignore[import-untyped]
        except Exception:  # noqa: BLE001  # pragma: no cover - torchvision missing or broken (any import error)
            deform_conv2d = None
        _TV.append(deform_conv2d)
    return _TV[0]


__all__ = ["ModulatedDeformConv", "conv_out_size", "deform_conv2d_portable"]

#: The export targets that take the pure path instead of torchvision's op: pnnx / ncnn have no deformable
#: convolution; ONNX has DeformConv from opset 19 only and the TorchScript ONNX exporter no symbolic for the op
#: (the pure path costs onnxruntime the same).  OpenVINO converts the op (DeformableConvolution).
_TARGETS: tuple[str, ...] = ("onnx", "ncnn")


def conv_out_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def deform_conv2d_portable(
    x: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
    dilation: tuple[int, int] = (1, 1),
    mask: torch.Tensor | None = None,
    chunk: int | None = None,
) -> torch.Tensor:
    """``torchvision.ops.deform_conv2d`` in plain PyTorch (same arguments and layouts).

    x: B×C×H×W; offset: B×(2·G·kh·kw)×Ho×Wo as (group, tap, (dy, dx)); mask: B×(G·kh·kw)×Ho×Wo; weight:
    O×C×kh×kw.  All taps are sampled with one ``grid_sample`` (bilinear, zeros outside, align_corners=False,
    i.e. pixel-centre coordinates as torchvision), modulated, and contracted with the weight in one matmul.

    In eager mode the taps go in chunks of ``chunk`` taps (default 1) accumulated into the output, with a
    backward that resamples each chunk instead of keeping the columns: the sampled columns (taps × the input's
    size, twice with the modulation) never exist at once, so the peak memory stays at or below torchvision's CPU
    kernel (BENCHMARKS.md).  Graphs (ONNX, ncnn, ``torch.compile``) record the one-call form.
    """
    b, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    ho, wo = offset.shape[2], offset.shape[3]
    taps = kh * kw
    groups = offset.shape[1] // (2 * taps)
    dev, dt = x.device, x.dtype
    ys = (torch.arange(ho, device=dev) * stride[0] - padding[0])[None, :] + (
        torch.arange(kh, device=dev) * dilation[0]
    )[:, None]
    xs = (torch.arange(wo, device=dev) * stride[1] - padding[1])[None, :] + (
        torch.arange(kw, device=dev) * dilation[1]
    )[:, None]
    base_y = ys[:, None, :, None].expand(kh, kw, ho, wo).reshape(1, taps, ho, wo).to(dt)
    base_x = xs[None, :, None, :].expand(kh, kw, ho, wo).reshape(1, taps, ho, wo).to(dt)
    off = offset.to(dt).reshape(b * groups, taps, 2, ho * wo)
    py = base_y + off[:, :, 0].view(b * groups, taps, ho, wo)
    px = base_x + off[:, :, 1].view(b * groups, taps, ho, wo)
    grid = torch.stack(((px * 2 + 1) / w - 1, (py * 2 + 1) / h - 1), dim=-1).view(b * groups, taps * ho, wo, 2)
    xg = x.reshape(b * groups, c // groups, h, w)
    m = None if mask is None else mask.to(dt).reshape(b * groups, 1, taps * ho, wo)
    w3 = weight.to(dt).reshape(o, c, taps)
    step = 1 if chunk is None else chunk
    if step >= taps or not eager_only(x):  # graphs (export targets) record one grid_sample and one matmul
        out = _sampled_product(xg, grid, m, w3, b)
    else:
        out = _chunked_product(xg, grid, m, w3, b, ho, step)
    if bias is not None:
        out = out + bias.to(dt)[:, None]
    return out.view(b, o, ho, wo)


def _sampled_product(
    xg: torch.Tensor, grid: torch.Tensor, m: torch.Tensor | None, w3: torch.Tensor, b: int
) -> torch.Tensor:
    """``W @ cols`` (B×O×Ho·Wo) for the taps of ``grid`` / ``w3``: the sampled columns (bilinear, zeros outside,
    (B·G)×(C/G)×(taps·Ho)×Wo), modulated by ``m``, contracted with the weight O×C×taps."""
    cols = F.grid_sample(xg, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if m is not None:
        cols = cols.mul_(m) if inplace_ok() else cols * m
    o, c, taps = w3.shape
    return w3.reshape(o, c * taps) @ cols.reshape(b, c * taps, -1)


def _chunked_product(
    xg: torch.Tensor, grid: torch.Tensor, m: torch.Tensor | None, w3: torch.Tensor, b: int, ho: int, step: int
) -> torch.Tensor:
    """:func:`_sampled_product` over chunks of ``step`` taps, accumulated into the output: the sampled columns of
    one chunk exist at a time (the one-call form holds all taps, twice with the modulation, and autograd keeps
    both for backward).  The backward (:class:`_ChunkedDeform`) resamples each chunk instead of saving it."""
    if m is None:
        m = torch.ones((), dtype=xg.dtype, device=xg.device).expand(xg.shape[0], 1, grid.shape[1], grid.shape[2])
    return _ChunkedDeform.apply(xg, grid, m, w3, b, ho, step)


def _chunks(taps: int, step: int) -> list[tuple[int, int]]:
    return [(t0, min(taps, t0 + step)) for t0 in range(0, taps, step)]


class _ChunkedDeform(torch.autograd.Function):
    """``Σ_chunks W_c @ (grid_sample(x, grid_c) ⊙ m_c)`` (B×O×Ho·Wo).  Saves x, the grid, the modulation and the
    weight (no sampled columns); backward resamples one chunk at a time and uses ATen's ``grid_sampler_2d``
    backward for the input and grid gradients (the same kernel as autograd's)."""

    @staticmethod
    def forward(
        ctx: Any,
        xg: torch.Tensor,
        grid: torch.Tensor,
        m: torch.Tensor,
        w3: torch.Tensor,
        b: int,
        ho: int,
        step: int,
    ) -> torch.Tensor:
        o, c, taps = w3.shape
        out = xg.new_zeros(b, o, grid.shape[1] // taps * grid.shape[2])
        for t0, t1 in _chunks(taps, step):
            cols = F.grid_sample(xg, grid[:, t0 * ho : t1 * ho], "bilinear", "zeros", align_corners=False)
            cols = cols.mul_(m[:, :, t0 * ho : t1 * ho]).view(b, c * (t1 - t0), -1)
            wc = w3[:, :, t0:t1].reshape(o, -1)
            for i in range(b):
                out[i].addmm_(wc, cols[i])
        ctx.save_for_backward(xg, grid, m, w3)
        ctx.b, ctx.ho, ctx.step = b, ho, step
        return out

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        xg, grid, m, w3 = ctx.saved_tensors
        b, ho, step = ctx.b, ctx.ho, ctx.step
        o, c, taps = w3.shape
        need_x, need_grid, need_m, need_w = ctx.needs_input_grad[:4]
        dout = dout.contiguous()
        dx = torch.zeros_like(xg) if need_x else None
        dgrid = torch.empty_like(grid) if need_grid else None
        dm = torch.empty_like(m) if need_m else None
        dw = torch.zeros_like(w3) if need_w else None
        for t0, t1 in _chunks(taps, step):
            rows = slice(t0 * ho, t1 * ho)
            g_c, m_c = grid[:, rows], m[:, :, rows]
            nt = t1 - t0
            cols = F.grid_sample(xg, g_c, "bilinear", "zeros", align_corners=False)  # (B·G)×(C/G)×(nt·Ho)×Wo
            wc = w3[:, :, t0:t1].reshape(o, c * nt)
            dcm = torch.empty_like(cols)  # gradient of the modulated columns
            dcm_b = dcm.view(b, c * nt, -1)
            for i in range(b):
                torch.mm(wc.t(), dout[i], out=dcm_b[i])
            if dm is not None:
                dm[:, :, rows] = (dcm * cols).sum(1, keepdim=True)
            if dw is not None:
                cm = cols.mul_(m_c).view(b, c * nt, -1)
                dwc = torch.zeros_like(wc)
                for i in range(b):
                    dwc.addmm_(dout[i], cm[i].t())
                dw[:, :, t0:t1] = dwc.view(o, c, nt)
            del cols
            if dx is not None or dgrid is not None:
                dcols = dcm.mul_(m_c)
                gx, gg = torch.ops.aten.grid_sampler_2d_backward(
                    dcols, xg, g_c, 0, 0, False, [dx is not None, dgrid is not None]
                )
                if dx is not None:
                    dx.add_(gx)
                if dgrid is not None:
                    dgrid[:, rows] = gg
        return dx, dgrid, dm, dw, None, None, None


@fx_leaf
def _check_size(x: torch.Tensor, kernel: int, stride: int, padding: int, dilation: int, owner: str) -> torch.Tensor:
    h, w = traced_size(x)
    if (
        conv_out_size(h, kernel, stride, padding, dilation) < 1
        or conv_out_size(w, kernel, stride, padding, dilation) < 1
    ):
        raise ValueError(
            f"{owner}: expected an input of at least {dilation * (kernel - 1) + 1 - 2 * padding} pixels per side "
            f"(kernel_size={kernel}, dilation={dilation}, padding={padding}), got {h}×{w}"
        )
    return x


def _output_size(h: int, w: int, a: Mapping[str, Any]) -> tuple[int, int]:
    k, s, d = a["kernel_size"], a["stride"], a["dilation"]
    p = d * (k - 1) // 2 if a["padding"] is None else a["padding"]
    return conv_out_size(h, k, s, p, d), conv_out_size(w, k, s, p, d)


@register(
    "dcnv2",
    family="local",
    paper="Deformable ConvNets v2: More Deformable, Better Results (Zhu, Hu, Lin, Dai; CVPR 2019)",
    url="https://arxiv.org/abs/1811.11168",
    complexity="O(N·k²)",
    summary="Modulated deformable convolution: learned per-tap offsets and modulation (zero-init), torchvision op or exportable pure path.",
    shape=ShapeRule(
        "out_channels",
        _output_size,
        "C → `out_channels`, H×W as nn.Conv2d with `kernel_size`, `stride`, `padding`, `dilation`",
    ),
    maps=("offset", "modulation"),
    forms=(
        PortableForm(
            targets=_TARGETS,
            marker="aten::grid_sampler",
            reason="pnnx / ncnn have no deformable convolution, and ONNX only from opset 19 with the dynamo "
            "exporter (the TorchScript exporter has no symbolic for torchvision's op); the pure path (one "
            "grid_sample and one matmul) exports to both",
            cases=({"backend": "torchvision"},),
        ),
    ),
)
class ModulatedDeformConv(AttnModule):
    """Modulated deformable convolution (DCNv2); B×C×H×W → B×O×Ho×Wo.

    ``y(p) = Σ_k w_k · x(p + p_k + Δp_k) · Δm_k + b`` with Δp (2 per tap and deform group) and
    Δm = σ(·) (one per tap and deform group) from one k×k convolution on x (same stride, padding, dilation),
    zero-initialised as the official code: at init Δp = 0, Δm = 0.5, so y = 0.5·conv(x, W) + b.  Main weight
    uniform(±1/√(C·k²)) and zero bias (official init).  Sampling is bilinear with zeros outside the map.

    ``backend="auto"`` runs torchvision's ``deform_conv2d`` on CUDA tensors in plain eager mode (when
    torchvision is installed) and the pure-PyTorch path otherwise: on CPU the pure path is the faster one
    (0.4× forward, 0.25× forward+backward of torchvision's CPU kernel at 2×64×56×56, at 0.4–0.6× its peak
    memory: the taps are sampled one at a time; benchmarks/results/dcnv2_chunked.md).  ``"torchvision"`` uses the op in eager calls, ``torch.compile``
    and ``torch.export``, ``"pure"`` never.  Graphs recorded for ONNX or ncnn (``attnzoo.export_target``, a plain
    ``torch.jit.trace``, ``torch.onnx.export``) always take the pure path: pnnx / ncnn have no deformable
    convolution, and ONNX has ``DeformConv`` only from opset 19 with the dynamo exporter; OpenVINO converts the op.
    Both paths give the same result (tested).  See docs/provenance/dcnv2.md.

    Args:
        channels: C.
        out_channels: O (``None`` = C).
        kernel_size, stride, dilation: as ``nn.Conv2d`` (3, 1, 1).
        padding: ``None`` = dilation·(k−1)//2 ("same" at stride 1).
        deform_groups: groups of input channels sharing one offset/modulation field (a divisor of C).
        bias: bias of the main convolution.
        backend: ``"auto"``, ``"torchvision"`` or ``"pure"``.

    Captured maps: ``"offset"`` B×(2·G·k²)×Ho×Wo (dy, dx per tap), ``"modulation"`` B×(G·k²)×Ho×Wo.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "kernel_size": SizeBound(15, "the offset conv has 3·G·k⁴·C weights"),
        "padding": SizeBound(KERNEL_BOUND, "padding"),
        "dilation": SizeBound(KERNEL_BOUND, "dilation: the padding grows with it"),
    }

    def __init__(
        self,
        channels: int,
        out_channels: int | None = None,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        deform_groups: int = 1,
        bias: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        owner = self.owner
        out_channels = output_width(channels, out_channels, owner)
        positive_int(kernel_size, owner, "kernel_size")
        positive_int(stride, owner, "stride")
        positive_int(dilation, owner, "dilation")
        padding = dilation * (kernel_size - 1) // 2 if padding is None else non_negative_int(padding, owner, "padding")
        positive_int(deform_groups, owner, "deform_groups")
        check_arg(
            channels % deform_groups == 0, owner, "deform_groups", f"a divisor of channels={channels}", deform_groups
        )
        check_arg(isinstance(bias, bool), owner, "bias", "a bool", bias)
        check_choice(backend, ("auto", "torchvision", "pure"), owner, "backend")
        check_arg(
            backend != "torchvision" or _tv_deform_conv2d() is not None,
            owner,
            "backend",
            "'auto' or 'pure' (torchvision is not installed)",
            backend,
        )
        self.channels, self.out_channels, self.kernel_size, self.stride = channels, out_channels, kernel_size, stride
        self.padding, self.dilation, self.deform_groups, self.bias_flag, self.backend = (
            padding,
            dilation,
            deform_groups,
            bias,
            backend,
        )
        self.weight = nn.Parameter(torch.empty(out_channels, channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        taps = deform_groups * kernel_size * kernel_size
        self.conv_offset = nn.Conv2d(channels, 3 * taps, kernel_size, stride, padding, dilation)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.channels * self.kernel_size**2)
        nn.init.uniform_(self.weight, -stdv, stdv)
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        nn.init.zeros_(self.conv_offset.weight)
        if self.conv_offset.bias is not None:
            nn.init.zeros_(self.conv_offset.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        x = _check_size(x, self.kernel_size, self.stride, self.padding, self.dilation, self.owner)
        om = self.conv_offset(x)
        taps = self.deform_groups * self.kernel_size * self.kernel_size
        offset, mask = om[:, : 2 * taps], om[:, 2 * taps :].sigmoid()
        record(self, "offset", offset)
        record(self, "modulation", mask)
        return _deform(x, offset, mask, self.weight, self.bias, self.stride, self.padding, self.dilation, self.backend)

    def extra_repr(self) -> str:
        return (
            f"{self.channels}, out_channels={self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, deform_groups={self.deform_groups}, backend={self.backend!r}"
        )


@fx_leaf
def _deform(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: int,
    padding: int,
    dilation: int,
    backend: str,
) -> torch.Tensor:
    dt = x.dtype
    s, p, d = (stride, stride), (padding, padding), (dilation, dilation)
    # torchvision's op: with "auto" only where it is the faster one (CUDA; on CPU the pure path is); export
    # targets take the pure path (the portable form)
    fast = (x.is_cuda if backend == "auto" else backend == "torchvision") and not portable(*_TARGETS)
    if fast and _tv_deform_conv2d() is not None:
        b = None if bias is None else bias.to(dt)
        return _TV[0](x, offset.to(dt), weight.to(dt), b, stride=s, padding=p, dilation=d, mask=mask.to(dt))
    return deform_conv2d_portable(x, offset, weight, bias, s, p, d, mask)
