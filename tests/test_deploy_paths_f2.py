"""The export forms (``attnzoo.layers.exporting()``: windows / heads on their own axes, at most 5 axes, no
masked_fill, … — what ncnn via pnnx can run) equal the eager forms.

Each module runs eagerly and under ``torch.jit.trace`` (which takes the export form) on the same input; the
outputs must agree, at sizes that tile the windows, that do not, and smaller than a window.

bra's export form attends to every region with the non-routed ones masked (no topk): equal to the gathered
form except on exact affinity ties (not met by random inputs).
"""

from __future__ import annotations

import warnings

import pytest
import torch

import attnzoo
from attnzoo.layouts import example_channels, example_inputs
from attnzoo.testing import randomize

MODULES = ["local_window", "multipole", "axial", "criss_cross", "cot", "halo", "outlook", "neighborhood", "bra"]
SIZES = [(13, 11), (7, 9), (16, 16), (1, 1)]


def _traced_vs_eager(name: str, size: tuple[int, int], **kwargs) -> None:
    torch.manual_seed(0)
    channels = example_channels(name, None)
    module = attnzoo.create(name, channels, **kwargs)
    randomize(module.eval(), seed=0)
    size = tuple(max(a, b) for a, b in zip(size, attnzoo.info(name).min_size))
    args = example_inputs(name, batch=2, channels=channels, size=size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eager = module(*args)
        traced = torch.jit.trace(module, args, check_trace=False)(*args)
    torch.testing.assert_close(traced, eager, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", MODULES)
def test_export_form_equals_eager(name: str, size: tuple[int, int]) -> None:
    _traced_vs_eager(name, size)


VARIANTS = [
    ("outlook", {"stride": 2, "heads": 2}),
    ("outlook", {"kernel_size": 5}),
    ("halo", {"block_size": 4, "halo_size": 0, "heads": 2}),
    ("halo", {"block_size": 4, "halo_size": 2, "heads": 4, "dim_head": 8}),
    ("local_window", {"kernel_size": 4, "heads": 2, "dim_head": 8}),
    ("local_window", {"kernel_size": 5, "stride": 3, "heads": 2, "dim_head": 8}),
    ("local_window", {"kernel_size": 3, "stride": 1, "heads": 2, "dim_head": 8}),
    ("multipole", {"kernel_size": 4, "stride": 2, "heads": 2, "dim_head": 8}),
    ("multipole", {"kernel_size": 3, "heads": 2, "dim_head": 8}),
    ("axial", {"heads": 2, "dim_head": 4}),
    ("neighborhood", {"kernel_size": 3, "heads": 2}),
    ("neighborhood", {"kernel_size": 5, "dilation": 2, "heads": 2}),
    ("neighborhood", {"kernel_size": 9, "heads": 2, "position_bias": False}),
    ("bra", {"heads": 2, "n_win": 3, "topk": 2}),
    ("bra", {"heads": 4, "n_win": 4, "topk": 1}),
]


@pytest.mark.parametrize("size", [(13, 11), (8, 8), (3, 20)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize(("name", "kwargs"), VARIANTS, ids=lambda v: str(v) if isinstance(v, str) else "")
def test_export_form_equals_eager_variants(name: str, kwargs: dict, size: tuple[int, int]) -> None:
    _traced_vs_eager(name, size, **kwargs)
