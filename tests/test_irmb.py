"""EMO's iRMB against a reference written from its definition: windows as explicit pixel sets (the official code's
strided grids, or contiguous windows), attention over the real pixels of each window only."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import attnzoo
from attnzoo.testing import randomize


def _windows(h: int, w: int, size: int, partition: str) -> list[list[tuple[int, int]]]:
    """The real pixels of every window of an H×W map padded to multiples of ``size``."""
    hp, wp = math.ceil(h / size) * size, math.ceil(w / size) * size
    n1, n2 = hp // size, wp // size
    out = []
    for a in range(n1):
        for b in range(n2):
            if partition == "grid":  # window (a, b): rows a, a + n1, ...; columns b, b + n2, ...
                pix = [(a + n1 * i, b + n2 * j) for i in range(size) for j in range(size)]
            else:
                pix = [(a * size + i, b * size + j) for i in range(size) for j in range(size)]
            out.append([(r, c) for r, c in pix if r < h and c < w])
    return out


def reference(m, x: torch.Tensor) -> torch.Tensor:
    z = F.batch_norm(x, m.norm.running_mean, m.norm.running_var, m.norm.weight, m.norm.bias, False, 0.0, m.norm.eps)
    q, k = F.conv2d(z, m.qk.weight, m.qk.bias).chunk(2, 1)
    v = m.v(z)
    b, c, h, w = x.shape
    heads, d = m.heads, c // m.heads
    dv = v.shape[1] // heads
    y = torch.zeros_like(v)
    for pix in _windows(h, w, m.window_size, m.partition):
        rows, cols = torch.tensor([p[0] for p in pix]), torch.tensor([p[1] for p in pix])
        for hd in range(heads):
            qs = q[:, hd * d : (hd + 1) * d, rows, cols]  # B×d×n
            ks = k[:, hd * d : (hd + 1) * d, rows, cols]
            vs = v[:, hd * dv : (hd + 1) * dv, rows, cols]
            attn = torch.softmax(qs.transpose(1, 2) @ ks / math.sqrt(d), -1)  # B×n×n
            y[:, hd * dv : (hd + 1) * dv, rows, cols] = (attn @ vs.transpose(1, 2)).transpose(1, 2)
    y = y + m.conv_local(y)
    return x + F.conv2d(y, m.proj.weight)


@pytest.mark.faithful("irmb")
@pytest.mark.parametrize("partition", ["grid", "window"])
@pytest.mark.parametrize("size, window", [((14, 14), 7), ((13, 11), 4), ((5, 9), 3), ((2, 1), 3)])
def test_irmb_equals_the_window_definition(partition, size, window) -> None:
    m = randomize(attnzoo.create("irmb", 16, dim_head=8, window_size=window, partition=partition,
                                 expansion=1.5, qkv_bias=True), seed=2, scale=0.3).eval().double()
    x = torch.randn(2, 16, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(m(x), reference(m, x))


@pytest.mark.faithful("irmb")
@pytest.mark.parametrize("partition", ["grid", "window"])
def test_irmb_attends_exactly_its_window(partition) -> None:
    """With the depthwise branch zeroed, the output at a pixel depends on exactly the pixels of its window."""
    m = randomize(attnzoo.create("irmb", 16, dim_head=8, window_size=4, partition=partition), seed=1).eval()
    torch.nn.init.zeros_(m.conv_local[1].weight), torch.nn.init.zeros_(m.conv_local[1].bias)
    x = torch.randn(1, 16, 13, 11, requires_grad=True)
    m(x)[0, :, 5, 6].sum().backward()
    support = {(int(r), int(c)) for r, c in (x.grad.abs().sum((0, 1)) > 0).nonzero()}
    window = next(p for p in _windows(13, 11, 4, partition) if (5, 6) in p)
    assert support == set(window)
    if partition == "grid":  # a strided grid: rows 1, 5, 9 (n1 = 4), columns 0, 3, 6, 9 (n2 = 3)
        assert {r for r, _ in support} == {1, 5, 9} and {c for _, c in support} == {0, 3, 6, 9}


def test_irmb_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="InvertedResidualMobileBlock: dim_head.*divisor of channels"):
        attnzoo.create("irmb", 48)
    with pytest.raises(ValueError, match="partition"):
        attnzoo.create("irmb", 64, partition="shifted")
    with pytest.raises(ValueError, match="kernel_size"):
        attnzoo.create("irmb", 64, kernel_size=4)
    with pytest.raises(ValueError, match="window_size"):
        attnzoo.create("irmb", 64, window_size=10_000)
