"""Regression cases: each failure found by tests/test_fuzz.py (or reported) kept as a plain test once fixed."""

from __future__ import annotations

import math

import pytest
import torch

import attnzoo
from attnzoo.layers.batchnorm import PooledBatchNorm2d

# (registry name, channels, constructor kwargs, the class whose name the error must start with)
BAD_ARGS = [
    ("sk", 64, {"reduction": 0}, "SelectiveKernel"),
    ("sk", 64, {"reduction": -1}, "SelectiveKernel"),
    ("danet", 16, {"reduction": 0}, "DANetAttention"),  # raised by the position branch under its own name
    ("danet", 16, {"qk_channels": 0}, "DANetAttention"),
    ("eca", 16, {"beta": "x"}, "EfficientChannelAttention"),  # TypeError from the kernel-size formula
    ("eca", 16, {"beta": math.nan}, "EfficientChannelAttention"),  # "cannot convert float NaN to integer"
    ("eca", 16, {"beta": math.inf}, "EfficientChannelAttention"),
    ("transformer_encoder", 16, {"heads": 2, "norm_eps": -2.5}, "TransformerEncoder"),  # NaN output
    ("transformer_encoder", 16, {"heads": 2, "norm_eps": 0.0}, "TransformerEncoder"),
    ("transformer_encoder", 16, {"heads": 2, "dim_feedforward": 0}, "TransformerEncoder"),  # named the layer class
    ("transformer_encoder", 16, {"heads": 2, "activation": "x"}, "TransformerEncoder"),
    ("transformer_encoder", 16, {"heads": 2, "dropout": 2.5}, "TransformerEncoder"),
    ("outlook", 16, {"heads": 2, "qk_scale": "x"}, "OutlookAttention"),  # bare "'>' not supported" TypeError
    ("self_attention_block", 16, {"attention": []}, "SelfAttentionBlock"),  # "unhashable type: 'list'"
]


# modules whose output shape depends on a constructor argument: the registry's ``ShapeRule`` says so
SHAPES = [
    ("sk", 16, {"out_channels": 17}, (1, 16, 5, 7), (1, 17, 5, 7)),
    ("sk", 16, {"stride": 2}, (2, 16, 5, 7), (2, 16, 3, 4)),
    ("spatial_self_attention", 16, {"out_channels": 5}, (1, 16, 3, 2), (1, 5, 3, 2)),
]


@pytest.mark.parametrize("name,channels,kwargs,shape,expected", SHAPES)
def test_declared_output_shape(name, channels, kwargs, shape, expected):
    m = attnzoo.create(name, channels, **kwargs).eval()
    x = torch.randn(shape)
    entry = attnzoo.info(name)
    assert tuple(m(x).shape) == expected
    assert [expected] == entry.output_shape_of(m, x)
    assert expected[1:] == (entry.output_channels(channels, **kwargs), *entry.output_size(*shape[2:], channels, **kwargs))


@pytest.mark.parametrize("name,channels,kwargs,owner", BAD_ARGS, ids=[f"{n}-{k}" for n, _, k, _ in BAD_ARGS])
def test_bad_constructor_argument_is_a_clear_error(name, channels, kwargs, owner):
    with pytest.raises((ValueError, TypeError)) as err:
        attnzoo.create(name, channels, **kwargs)
    assert str(err.value).startswith(f"{owner}:"), f"the error must name {owner}: {err.value}"


@pytest.mark.parametrize("name", ["sk", "cot"])
def test_train_at_batch_1_uses_running_statistics_of_the_pooled_bn(name):
    """SK / CoT at batch 1 in train(): works; the BN of the pooled vector normalises with its running statistics
    and leaves them unchanged; the spatial BNs still update theirs."""
    torch.manual_seed(0)
    m = attnzoo.create(name, 64).train()
    pooled = [m.bn if name == "sk" else m.se[1]]  # the BN on the pooled vector
    spatial = [b for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d) and b is not pooled[0]]
    assert isinstance(pooled[0], PooledBatchNorm2d) and spatial
    before = [t.clone() for t in (pooled[0].running_mean, pooled[0].running_var, pooled[0].num_batches_tracked)]
    spatial_before = spatial[0].running_mean.clone()
    x = torch.randn(1, 64, 7, 9, requires_grad=True)
    y = m(x)
    y.sum().backward()
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert pooled[0].weight.grad is not None and x.grad is not None
    for a, b in zip(before, (pooled[0].running_mean, pooled[0].running_var, pooled[0].num_batches_tracked)):
        assert torch.equal(a, b)
    assert not torch.equal(spatial_before, spatial[0].running_mean)
    # at batch 2 the pooled BN trains as a BatchNorm2d does
    m(torch.randn(2, 64, 7, 9))
    assert not torch.equal(before[0], pooled[0].running_mean)


def test_pooled_batchnorm_equals_batchnorm_otherwise_and_traces():
    torch.manual_seed(0)
    ref, bn = torch.nn.BatchNorm2d(8), PooledBatchNorm2d(8)
    bn.load_state_dict(ref.state_dict())
    x = torch.randn(3, 8, 1, 1)
    torch.testing.assert_close(bn(x), ref(x))
    torch.testing.assert_close(bn.running_mean, ref.running_mean)
    gm = torch.fx.symbolic_trace(torch.nn.Sequential(bn).eval())
    torch.testing.assert_close(gm(x), ref.eval()(x))
    one = torch.randn(1, 8, 1, 1)
    torch.testing.assert_close(bn.train()(one), ref.eval()(one))  # batch 1: the running statistics


@pytest.mark.parametrize("size, fill", [((1, 1), None), ((6, 5), 0.0), ((6, 5), 2.5)])
def test_sge_backward_is_finite_without_spread(size, fill):
    """sge's √(spread) had an infinite slope at zero spread (a 1×1, all-zeros or constant map): NaN input gradients."""
    m = attnzoo.create("sge", 8, groups=2).train()
    with torch.no_grad():
        m.weight.normal_()
    x = torch.randn(2, 8, *size) if fill is None else torch.full((2, 8, *size), fill)
    x.requires_grad_()
    m(x).sum().backward()
    assert torch.isfinite(x.grad).all() and all(torch.isfinite(p.grad).all() for p in m.parameters())
    y = torch.randn(2, 8, 5, 4, dtype=torch.float64, requires_grad=True)  # exact where the spread is not zero
    assert torch.autograd.gradcheck(m.double(), (y,))


@pytest.mark.parametrize("kwargs", [{"gamma": 1e-9}, {"kernel_size": 10**7 + 1}, {"kernel_size": 33}])
def test_eca_rejects_kernels_wider_than_the_channels(kwargs):
    """A tiny gamma or a huge kernel_size built millions of taps (and stacked as many shifted views): out of memory."""
    with pytest.raises(ValueError, match=r"EfficientChannelAttention: .* 2·C − 1"):
        attnzoo.create("eca", 16, **kwargs)
    assert attnzoo.create("eca", 16, kernel_size=31).kernel_size == 31
    assert attnzoo.create("eca", 1).kernel_size == 3  # ψ's floor stays allowed
