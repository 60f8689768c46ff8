"""The shared pieces of the detector blocks: exact adaptive pooling (and its unpool), the YOLO-style ConvBN block
and RT-DETR's 2-D sin-cos table — each against an independent computation."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import attnzoo
from attnzoo.functional import adaptive_pool2d, pool_bins, sincos_2d_table, unpool
from attnzoo.layers import ConvBN
from helpers import require

SIZES = [((13, 11), (5, 5)), ((45, 37), (20, 12)), ((7, 9), (3, 4)), ((14, 14), (7, 7)), ((5, 5), (13, 11)),
         ((4, 3), (12, 9)), ((1, 1), (3, 2)), ((6, 10), (6, 4)), ((9, 2), (2, 5))]


def _loops(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Adaptive pooling written out from its definition: bin i of an axis of n to o is [⌊i·n/o⌋, ⌈(i+1)·n/o⌉)."""
    (h, w), (oh, ow) = x.shape[-2:], size
    out = torch.empty(*x.shape[:2], oh, ow, dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            hs, he = math.floor(i * h / oh), math.ceil((i + 1) * h / oh)
            ws, we = math.floor(j * w / ow), math.ceil((j + 1) * w / ow)
            cell = x[:, :, hs:he, ws:we]
            out[:, :, i, j] = cell.mean((2, 3)) if mode == "avg" else cell.amax((2, 3))
    return out


@pytest.mark.faithful()
@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("size, out", SIZES, ids=[f"{a[0]}x{a[1]}-{b[0]}x{b[1]}" for a, b in SIZES])
def test_adaptive_pool_bins_eager_and_portable(size, out, mode) -> None:
    x = torch.randn(2, 3, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref = _loops(x, out, mode)
    torch.testing.assert_close(adaptive_pool2d(x, out, mode), ref)
    with attnzoo.export_target("onnx"):
        torch.testing.assert_close(adaptive_pool2d(x, out, mode), ref)
        xg = x.clone().requires_grad_()
        adaptive_pool2d(xg, out, mode).sum().backward()
    xe = x.clone().requires_grad_()
    (F.adaptive_avg_pool2d(xe, out) if mode == "avg" else F.adaptive_max_pool2d(xe, out)).sum().backward()
    torch.testing.assert_close(xg.grad, xe.grad)


def test_pool_bins_cover_the_axis() -> None:
    for n in range(1, 30):
        for o in range(1, 30):
            bins = pool_bins(n, o)
            assert bins[0][0] == 0 and bins[-1][1] == n and all(s < e for s, e in bins)
            assert all(b[0] <= a[1] for a, b in zip(bins, bins[1:]))  # contiguous or overlapping, never a gap


def test_portable_pool_is_taken_only_for_onnx() -> None:
    x = torch.randn(1, 2, 13, 11)
    graph = str(torch.jit.trace(lambda t: adaptive_pool2d(t, (5, 5), "max"), (x,)).inlined_graph)
    assert "adaptive_max_pool2d" in graph  # a hand trace targets ncnn, which converts the operator exactly
    with attnzoo.export_target("onnx"):
        graph = str(torch.jit.trace(lambda t: adaptive_pool2d(t, (5, 5), "max"), (x,)).inlined_graph)
    assert "adaptive_max_pool2d" not in graph and "aten::amax" in graph


class _Pools(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return adaptive_pool2d(x, (5, 5), "avg"), adaptive_pool2d(x, (5, 4), "max"), unpool(x[..., :5, :5], (13, 11))


@pytest.mark.slow
@pytest.mark.parametrize("dynamo", [True, False])
def test_exact_pooling_runs_in_onnxruntime(dynamo: bool) -> None:
    """Both ONNX exporters refuse one of the eager operators at 13×11 (non-factor avg for the TorchScript one,
    max for the dynamo one); the portable form exports and equals eager."""
    ort = require("onnxruntime")
    x = torch.randn(1, 4, 13, 11)
    f = io.BytesIO()
    torch.onnx.export(_Pools(), (x,), f, dynamo=dynamo, output_names=["a", "b", "c"])
    sess = ort.InferenceSession(f.getvalue(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    for g, e in zip(got, _Pools()(x)):
        torch.testing.assert_close(torch.from_numpy(g), e, atol=1e-6, rtol=1e-5)


def test_unpool_is_adaptive_avg_upward_and_checks_its_size() -> None:
    x = torch.randn(2, 3, 5, 5)
    torch.testing.assert_close(unpool(x, (15, 10)), x.repeat_interleave(3, 2).repeat_interleave(2, 3))
    torch.testing.assert_close(unpool(x, (13, 11)), F.adaptive_avg_pool2d(x, (13, 11)))
    with pytest.raises(ValueError, match="unpool: size must be at least"):
        unpool(x, (4, 6))
    with pytest.raises(ValueError, match="mode must be one of"):
        adaptive_pool2d(x, 2, "median")


def test_conv_bn_is_conv_bn_silu_with_yolo_keys() -> None:
    m = ConvBN(8, 16, 3, stride=2, groups=2).eval()
    assert list(m.state_dict()) == [
        "conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"
    ]
    with torch.no_grad():
        for p in (m.bn.weight, m.bn.bias, m.bn.running_mean):
            p.normal_()
        m.bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 8, 9, 7)
    y = F.conv2d(x, m.conv.weight, None, 2, 1, 1, 2)
    y = (y - m.bn.running_mean[:, None, None]) / torch.sqrt(m.bn.running_var[:, None, None] + m.bn.eps)
    y = y * m.bn.weight[:, None, None] + m.bn.bias[:, None, None]
    torch.testing.assert_close(m(x), F.silu(y), atol=1e-5, rtol=1e-5)
    assert isinstance(ConvBN(4, 4, act=False).act, nn.Identity)
    assert ConvBN(4, 4, 3, dilation=2).conv.padding == (2, 2)
    assert float(ConvBN(4, 4, bn_weight_init=0.0).bn.weight.abs().sum()) == 0.0
    ConvBN(4, 4).train()(torch.randn(1, 4, 1, 1))  # batch 1 on a 1×1 map trains (running statistics)


def test_sincos_table_values() -> None:
    """P[(y,x)] = [sin(xω), cos(xω), sin(yω), cos(yω)], ω_i = 10000^(−i/d), d = C/4 (written per element)."""
    h, w, c = 3, 5, 16
    d = c // 4
    table = sincos_2d_table(h, w, c, dtype=torch.float64)
    for y in range(h):
        for x in range(w):
            for i in range(d):
                om = 10000.0 ** (-i / d)
                row = table[y * w + x]
                assert row[i] == pytest.approx(math.sin(x * om)) and row[d + i] == pytest.approx(math.cos(x * om))
                assert row[2 * d + i] == pytest.approx(math.sin(y * om))
                assert row[3 * d + i] == pytest.approx(math.cos(y * om))


def test_sincos_orders() -> None:
    c = 8
    big, small = sincos_2d_table(9, 7, c), sincos_2d_table(5, 4, c)
    # "xy" is crop-consistent: token (y, x) has the same row in any map that contains it
    for y in range(5):
        for x in range(4):
            torch.testing.assert_close(small[y * 4 + x], big[y * 7 + x])
    legacy_small, legacy_big = sincos_2d_table(5, 4, c, order="rtdetr"), sincos_2d_table(9, 7, c, order="rtdetr")
    assert not torch.allclose(legacy_small[4], legacy_big[7])  # token (1, 0): the official grid is garbled (H ≠ W)
    sq, sq_legacy = sincos_2d_table(6, 6, c), sincos_2d_table(6, 6, c, order="rtdetr")
    torch.testing.assert_close(sq_legacy, torch.cat([sq[:, c // 2 :], sq[:, : c // 2]], 1))  # H = W: halves swapped
    torch.testing.assert_close(sincos_2d_table(4, 3, c, order="yx"), sincos_2d_table(4, 3, c).roll(c // 2, 1))
    with pytest.raises(ValueError, match="multiple of 4"):
        sincos_2d_table(2, 2, 6)
    with pytest.raises(ValueError, match="order must be one of"):
        sincos_2d_table(2, 2, 8, order="rc")
