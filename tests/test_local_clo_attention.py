"""clo_attention: equals a slow reference from the paper's equations; purely local without global heads; any H×W."""

import pytest
import torch

import attnzoo
from helpers import randomize
from reference.clo_attention import clo_attention_reference


@pytest.mark.faithful("clo_attention")
@pytest.mark.parametrize("size", [(8, 12), (13, 11)])
def test_clo_attention_matches_the_reference(size):
    m = randomize(attnzoo.create("clo_attention", 16, heads=4, group_split=(1, 1, 2), kernels=(3, 5))).double().eval()
    x = torch.randn(2, 16, *size, dtype=torch.float64)
    torch.testing.assert_close(m(x), clo_attention_reference(m, x))


def test_clo_attention_without_global_heads_is_local():
    """group_split = [h, 0]: out[p] depends on the k×k neighbourhood of p only (one depthwise conv)."""
    m = randomize(attnzoo.create("clo_attention", 8, heads=2, group_split=(2, 0), kernels=(3,))).double()
    x = torch.randn(1, 8, 9, 10, dtype=torch.float64, requires_grad=True)
    m(x)[0, :, 4, 6].sum().backward()
    support = x.grad.abs().sum(1)[0] > 0
    expected = torch.zeros(9, 10, dtype=torch.bool)
    expected[3:6, 5:8] = True
    assert torch.equal(support, expected)


def test_clo_attention_defaults_and_bad_arguments():
    m = attnzoo.create("clo_attention", 64)
    assert (m.heads, m.group_split, m.kernels, m.window_size, m.dim_head) == (8, (4, 4), (5,), 4, 8)
    bad = ({"group_split": (4, 3)}, {"group_split": (8,)}, {"kernels": (4,)}, {"heads": 3}, {"window_size": 0})
    for kw in bad:
        with pytest.raises(ValueError, match="CloAttention"):
            attnzoo.create("clo_attention", 64, **kw)
