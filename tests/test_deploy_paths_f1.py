"""The export-only forms (``layers.exporting()``) of the channel gates, SimAM, EMA, BAM and the positional encodings
give the values of their eager forms.

``torch.jit.trace`` (what pnnx and OpenVINO convert) records the exporting branch, so a traced module run on the
same input must match the eager module; the graph is also checked to hold the export form's operator, so the
comparison is not eager against eager.
"""

from __future__ import annotations

import pytest
import torch

import attnzoo
from attnzoo.functional.gating import spatial_mean
from attnzoo.testing import randomize

# (module, kwargs, an operator only the export form records, or None for a single-form module)
CASES = [
    ("se", {}, "aten::adaptive_avg_pool2d"),
    ("eca", {}, "aten::adaptive_avg_pool2d"),
    ("ese", {}, "aten::adaptive_avg_pool2d"),
    ("ge", {}, "aten::adaptive_avg_pool2d"),
    ("ge", {"extent": 0, "use_mlp": False}, "aten::adaptive_avg_pool2d"),
    ("scse", {}, "aten::adaptive_avg_pool2d"),
    ("fca", {}, "aten::adaptive_avg_pool2d"),
    ("gct", {}, "aten::adaptive_avg_pool2d"),
    ("gct", {"mode": "l1"}, "aten::adaptive_avg_pool2d"),
    ("ema", {}, "aten::_convolution"),
    ("ema", {"factor": 8}, "aten::_convolution"),
    ("ema", {"factor": 1}, "aten::_convolution"),
    ("simam", {}, None),
    ("bam", {}, None),
    ("bam", {"fusion": "mul"}, None),
    ("positional_encoding_2d", {}, "aten::avg_pool2d"),
]


def _traced_matches_eager(module: torch.nn.Module, x: torch.Tensor, marker: str | None) -> None:
    module = randomize(module.eval(), seed=3, scale=0.5)
    with torch.no_grad():
        ref = module(x)
    ref_grad = module(x)  # eager autograd (spatial_mean's lean backward, the non-in-place branches)
    traced = torch.jit.trace(module, (x,), check_trace=False)
    if marker is not None:
        assert marker in str(traced.inlined_graph), f"the trace did not take the export form ({marker} missing)"
    with torch.no_grad():
        got = traced(x)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ref_grad.detach(), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("size", [(13, 11), (7, 9), (1, 1)])
@pytest.mark.parametrize(
    "name, kwargs, marker", CASES, ids=[f"{n}-{'-'.join(map(str, k.values()))}" for n, k, _ in CASES]
)
def test_export_form_matches_eager(name, kwargs, marker, size):
    torch.manual_seed(0)
    module = attnzoo.create(name, 64, **kwargs)
    x = torch.randn(2, 64, *size, generator=torch.Generator().manual_seed(1))
    _traced_matches_eager(module, x, marker)


@pytest.mark.parametrize("max_len", [5000, 10])  # 10 < N: the table computed on the fly
def test_positional_encoding_export_form_matches_eager(max_len):
    module = attnzoo.create("positional_encoding", 64, max_len=max_len)
    x = torch.randn(2, 143, 64, generator=torch.Generator().manual_seed(1))
    _traced_matches_eager(module, x, "aten::avg_pool1d")


def test_gct_channel_sums_forms_agree():
    m = attnzoo.create("gct", 16)
    x = torch.randn(2, 16, 5, 7, generator=torch.Generator().manual_seed(0))
    for mode in ("l2", "l1"):
        m.mode = mode
        eager = m.channel_sums(x)
        traced = torch.jit.trace(lambda t: m.channel_sums(t), (x,), check_trace=False)(x)
        torch.testing.assert_close(traced, eager)


@pytest.mark.parametrize("factor", [1, 4, 16])
def test_ema_grouped_form_equals_folded_form(factor):
    m = randomize(attnzoo.create("ema", 32, factor=factor).eval(), seed=1, scale=0.5)
    x = torch.randn(3, 32, 6, 5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(m._forward_grouped(x), m(x), atol=1e-5, rtol=1e-5)


def test_spatial_mean_export_form():
    x = torch.randn(2, 8, 5, 3, generator=torch.Generator().manual_seed(0))
    traced = torch.jit.trace(spatial_mean, (x,), check_trace=False)
    assert "aten::adaptive_avg_pool2d" in str(traced.graph)
    torch.testing.assert_close(traced(x), x.mean((2, 3)))
