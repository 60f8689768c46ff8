"""Faithfulness of the non-local family (nonlocal, sagan, danet_position, danet_channel, danet, cgnl,
cross_layer_nonlocal): slow references written from the official code with the module's weights, invariants
(permutation equivariance, identity at init, CGNL's per-group scalars, CAM's sign), the fused-attention dispatch,
the absence of N×N' tensors, attention-map capture and argument errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

import attnzoo
from helpers import rand, randomize
from reference.cgnl import ref_cgnl
from reference.common import conv, pool_ceil
from reference.cross_layer_nonlocal import ref_cnl
from reference.danet import ref_cam, ref_pam
from reference.nonlocal_block import ref_nonlocal
from reference.sagan import ref_sagan_pytorch, ref_sagan_tf

NAMES = ["nonlocal", "sagan", "danet_position", "danet_channel", "danet", "cgnl", "cross_layer_nonlocal"]
MODES = ["embedded_gaussian", "gaussian", "dot_product", "concatenation"]
SIZES = [(8, 6), (7, 5), (1, 1), (9, 4)]


def make(name, channels=16, dtype=torch.float64, scale=0.3, state="eval", **kw):
    torch.manual_seed(0)
    m = attnzoo.create(name, channels, **kw)
    return randomize(m, scale=scale).to(dtype).train(state == "train")


def permute_positions(x, perm):
    return x.flatten(2)[:, :, perm].reshape(x.shape)


# --------------------------------------------------------------------------------------------------------
# slow references (official computations, per sample)
# --------------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------------
# parity with the references
# --------------------------------------------------------------------------------------------------------


@pytest.mark.faithful("nonlocal")
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("subsample", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_nonlocal_matches_reference(mode, subsample, size):
    m = make("nonlocal", mode=mode, subsample=subsample)
    x = rand(2, 16, *size)
    torch.testing.assert_close(m(x), ref_nonlocal(m, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kw", [dict(use_scale=False), dict(use_bn=False), dict(inner_channels=5)])
def test_nonlocal_options_match_reference(kw):
    m = make("nonlocal", **kw)
    x = rand(2, 16, 10, 7)
    torch.testing.assert_close(m(x), ref_nonlocal(m, x), atol=1e-5, rtol=1e-5)


def test_nonlocal_float32_matches_reference():
    m = make("nonlocal", dtype=torch.float32)
    x = rand(2, 16, 12, 10, dtype=torch.float32)
    torch.testing.assert_close(m(x), ref_nonlocal(m, x), atol=1e-5, rtol=1e-4)


def test_nonlocal_official_defaults():
    m = attnzoo.create("nonlocal", 64)
    assert m.mode == "embedded_gaussian" and m.subsample and m.use_scale and m.inner_channels == 32
    assert all(c.bias is not None for c in (m.theta, m.phi, m.g, m.out))
    assert torch.all(m.bn.weight == 0) and torch.all(m.bn.bias == 0)
    assert 0.005 < m.theta.weight.std().item() < 0.02  # N(0, 0.01)


@pytest.mark.faithful("sagan")
@pytest.mark.parametrize("size", [(8, 6), (7, 5)])
def test_sagan_matches_pytorch_reference(size):
    m = make("sagan")
    assert m.query.out_channels == 2 and m.value.out_channels == 16 and m.out is None and not m.pool
    x = rand(2, 16, *size)
    torch.testing.assert_close(m(x), ref_sagan_pytorch(m, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("size", [(8, 6), (7, 5), (1, 1)])
def test_sagan_official_tf_configuration_matches_reference(size):
    m = make("sagan", value_channels=8, pool=True, out_conv=True, bias=False)
    assert m.out is not None and m.query.bias is None
    x = rand(2, 16, *size)
    torch.testing.assert_close(m(x), ref_sagan_tf(m, x), atol=1e-5, rtol=1e-5)


@pytest.mark.faithful("danet_position")
@pytest.mark.parametrize("size", [(8, 6), (7, 5), (1, 1), (3, 13)])
def test_danet_position_matches_official(size):
    m = make("danet_position", channels=32)
    assert m.query.out_channels == 4 and m.query.bias is not None and m.value.out_channels == 32
    x = rand(2, 32, *size)
    torch.testing.assert_close(m(x), ref_pam(m, x), atol=1e-5, rtol=1e-5)


@pytest.mark.faithful("danet_channel")
@pytest.mark.parametrize("size", [(8, 6), (7, 5), (1, 1)])
def test_danet_channel_matches_official(size):
    m = make("danet_channel", channels=32)
    with torch.no_grad():
        m.beta.fill_(0.7)
    x = rand(2, 32, *size)
    torch.testing.assert_close(m(x), ref_cam(m, x), atol=1e-5, rtol=1e-5)


def test_danet_channel_float32_large_energy():
    m = make("danet_channel", channels=32, dtype=torch.float32)
    with torch.no_grad():
        m.beta.fill_(1.0)
    x = rand(2, 32, 24, 24, dtype=torch.float32)  # energies in the hundreds: float32 rounding of E is ~1e-5
    out = m(x)
    ref = ref_cam(m.double(), x.double()).float()
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_danet_channel_energy_stays_float32_under_autocast():
    """E grows with H·W; rounded to bfloat16 it reorders CAM's softmax (error ≈ 0.37 here instead of ≈ 0.02)."""
    m = make("danet_channel", channels=32, dtype=torch.float32)
    with torch.no_grad():
        m.beta.fill_(1.0)
    x = rand(2, 32, 32, 32, dtype=torch.float32)
    ref = m(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = m(x)
    assert (low.float() - ref).abs().max() < 0.05


def test_danet_channel_sign_is_the_official_one():
    """softmax(rowmax(E) − E) = softmax(−E), which is not the paper's softmax(E)."""
    m = make("danet_channel")
    with torch.no_grad():
        m.beta.fill_(1.0)
    x = rand(2, 16, 5, 6)
    e = x.flatten(2) @ x.flatten(2).transpose(1, 2)
    neg = (torch.softmax(-e, -1) @ x.flatten(2)).view_as(x) + x
    out = m(x)
    torch.testing.assert_close(out, neg, atol=1e-6, rtol=1e-6)
    paper = ref_cam(m, x, sign="paper")
    assert (out - paper).abs().max() > 0.1


@pytest.mark.faithful("danet")
@pytest.mark.parametrize("size", [(8, 6), (7, 5), (1, 1)])
def test_danet_dual_matches_official_branches(size):
    m = make("danet", channels=32)
    assert m.position.gamma.item() != 0 and m.channel.beta.item() != 0
    x = rand(2, 32, *size)
    ref = ref_pam(m.position, x) + ref_cam(m.channel, x) - x  # x + γ_p·PAM-term + γ_c·CAM-term
    torch.testing.assert_close(m(x), ref, atol=1e-5, rtol=1e-5)


def test_danet_honours_its_arguments():
    m = attnzoo.create("danet", 64, reduction=4)
    assert m.position.query.out_channels == 16 and m.position.value.out_channels == 64
    m = attnzoo.create("danet", 64, qk_channels=3)
    assert m.position.query.out_channels == 3 and m.position.key.out_channels == 3
    m = attnzoo.create("danet_position", 24, reduction=2)
    assert m.query.out_channels == 12
    assert attnzoo.create("danet", 96).position.query.out_channels == 12


@pytest.mark.faithful("cgnl")
@pytest.mark.parametrize("use_scale", [False, True])
@pytest.mark.parametrize("kernel", ["dot", "gaussian"])
@pytest.mark.parametrize("size", [(8, 6), (7, 5), (1, 1)])
def test_cgnl_matches_official(kernel, use_scale, size):
    m = make("cgnl", channels=32, kernel=kernel, use_scale=use_scale)
    assert m.planes == 16 and m.groups == 8 and m.z.groups == 8 and isinstance(m.gn, nn.GroupNorm)
    x = rand(2, 32, *size)
    torch.testing.assert_close(m(x), ref_cgnl(m, x), atol=1e-5, rtol=1e-5)


def test_cgnl_taylor_orders_and_gamma():
    for order, gamma in ((0, 1e-4), (2, 1e-2), (3, 1e-4), (5, 5e-2)):
        m = make("cgnl", channels=32, kernel_type="gaussian", order=order, gamma=gamma)
        x = rand(2, 32, 6, 5)
        torch.testing.assert_close(m(x), ref_cgnl(m, x), atol=1e-5, rtol=1e-5)
    assert attnzoo.create("cgnl", 32, kernel_type="gaussian").order == 3  # the released models' order


def test_cgnl_one_scalar_per_group_and_sample():
    m = make("cgnl", channels=32)
    x = rand(3, 32, 5, 7)
    with attnzoo.capture_attention(m) as maps:
        out = m(x)
    att = maps[""]["attn"]
    assert att.shape == (3, 8)
    t, p, g = (conv(x, layer).detach() for layer in (m.t, m.p, m.g))
    c = m.planes // m.groups
    expected = torch.zeros(3, 8, dtype=x.dtype)
    y = torch.zeros_like(t)
    for b in range(3):
        for grp in range(8):
            sl = slice(grp * c, (grp + 1) * c)
            s = sum(float(p[b, ch, i, j] * g[b, ch, i, j]) for ch in range(sl.start, sl.stop) for i in range(5) for j in range(7))
            expected[b, grp] = s
            y[b, sl] = s * t[b, sl]
    torch.testing.assert_close(att, expected, atol=1e-8, rtol=1e-8)
    torch.testing.assert_close(out, x + F.group_norm(conv(y, m.z), 8, m.gn.weight, m.gn.bias, m.gn.eps))
    # a per-channel scalar (a common community mistake) gives a different answer
    per_channel = t * (p * g).sum((2, 3), keepdim=True)
    wrong = x + F.group_norm(conv(per_channel, m.z), 8, m.gn.weight, m.gn.bias, m.gn.eps)
    assert (wrong - out).abs().max() > 1e-3


def test_cgnl_gaussian_records_order_plus_one_scalars():
    m = make("cgnl", channels=32, kernel_type="gaussian")
    with attnzoo.capture_attention(m) as maps:
        m(rand(2, 32, 4, 4))
    assert maps[""]["attn"].shape == (2, 8, 4)


@pytest.mark.faithful("cross_layer_nonlocal")
@pytest.mark.parametrize("ctx_sizes", [[(4, 3)], [(9, 7)], [(1, 1)]])
def test_cross_layer_nonlocal_single_context_matches_reference(ctx_sizes):
    m = make("cross_layer_nonlocal", channels=32, context_channels=24)
    assert m.planes == 4 and m.theta.bias is None
    q = rand(2, 32, 7, 5)
    ctx = rand(2, 24, *ctx_sizes[0], seed=1)
    torch.testing.assert_close(m(q, ctx), ref_cnl(m, q, [ctx]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(m(q, [ctx]), ref_cnl(m, q, [ctx]), atol=1e-5, rtol=1e-5)


def test_cross_layer_nonlocal_several_contexts_match_reference():
    chans = [8, 8, 16, 16, 16]
    m = make("cross_layer_nonlocal", channels=32, context_channels=chans, inner_channels=6)
    q = rand(2, 32, 5, 5)
    sizes = [(20, 20), (20, 20), (10, 9), (10, 9), (10, 9)]
    ctxs = [rand(2, c, *s, seed=i + 1) for i, (c, s) in enumerate(zip(chans, sizes))]
    out = m(q, ctxs)
    assert out.shape == q.shape
    torch.testing.assert_close(out, ref_cnl(m, q, ctxs), atol=1e-5, rtol=1e-5)
    with attnzoo.capture_attention(m) as maps:
        m(q, ctxs)
    assert [tuple(maps[""][f"attn{i}"].shape) for i in range(5)] == [(2, 1, 25, s[0] * s[1]) for s in sizes]


# --------------------------------------------------------------------------------------------------------
# invariants
# --------------------------------------------------------------------------------------------------------


EQUIVARIANT = [
    *[("nonlocal", dict(mode=mode, subsample=False)) for mode in MODES],
    ("sagan", {}),
    ("sagan", dict(value_channels=8)),
    ("danet_position", {}),
    ("danet_channel", {}),
    ("danet", {}),
    ("cgnl", {}),
    ("cgnl", dict(kernel_type="gaussian")),
]


@pytest.mark.parametrize("name,kw", EQUIVARIANT, ids=lambda v: str(v))
def test_permutation_equivariance(name, kw):
    m = make(name, **kw)
    if name == "danet_channel":
        with torch.no_grad():
            m.beta.fill_(1.0)
    x = rand(2, 16, 6, 7)
    perm = torch.randperm(42, generator=torch.Generator().manual_seed(3))
    out = m(x)
    torch.testing.assert_close(m(permute_positions(x, perm)), permute_positions(out, perm), atol=1e-10, rtol=1e-8)
    assert (out - x).abs().max() > 1e-3  # the block is not the identity here, so the check has teeth


@pytest.mark.parametrize("mode", MODES)
def test_nonlocal_with_subsampling_is_not_permutation_equivariant(mode):
    """Local 2×2 pooling breaks equivariance: the invariant test above would notice a hidden pooling."""
    m = make("nonlocal", mode=mode, subsample=True)
    x = rand(2, 16, 6, 7)
    perm = torch.randperm(42, generator=torch.Generator().manual_seed(3))
    assert (m(permute_positions(x, perm)) - permute_positions(m(x), perm)).abs().max() > 1e-6


def test_cross_layer_nonlocal_equivariant_in_query_invariant_in_context():
    m = make("cross_layer_nonlocal", channels=32, context_channels=[16, 8])
    q, c1, c2 = rand(2, 32, 6, 5), rand(2, 16, 4, 4, seed=1), rand(2, 8, 3, 5, seed=2)
    out = m(q, [c1, c2])
    pq = torch.randperm(30, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(m(permute_positions(q, pq), [c1, c2]), permute_positions(out, pq), atol=1e-10, rtol=1e-8)
    p1, p2 = torch.randperm(16), torch.randperm(15)
    torch.testing.assert_close(m(q, [permute_positions(c1, p1), permute_positions(c2, p2)]), out, atol=1e-10, rtol=1e-8)


IDENTITY_CASES = [
    *[("nonlocal", dict(mode=mode)) for mode in MODES],
    ("nonlocal", dict(use_bn=False)),
    ("sagan", {}),
    ("sagan", dict(value_channels=8, pool=True, bias=False)),
    ("danet_position", {}),
    ("danet_channel", {}),
    ("danet", {}),
    ("cgnl", {}),
    ("cgnl", dict(kernel_type="gaussian")),
    ("cross_layer_nonlocal", {}),
    ("cross_layer_nonlocal", dict(context_channels=[8, 4])),
]


@pytest.mark.parametrize("name,kw", IDENTITY_CASES, ids=lambda v: str(v))
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_identity_at_init(name, kw, mode):
    torch.manual_seed(0)
    m = attnzoo.create(name, 16, **kw).train(mode == "train")
    x = rand(2, 16, 7, 6, dtype=torch.float32)
    if name == "cross_layer_nonlocal":
        chans = kw.get("context_channels", 16)
        ctx = [rand(2, c, 4, 3, seed=i + 1, dtype=torch.float32) for i, c in enumerate(chans)] if isinstance(chans, list) else rand(
            2, chans, 4, 3, seed=1, dtype=torch.float32
        )
        out = m(x, ctx)
    else:
        out = m(x)
    assert torch.equal(out, x)
    # ... and it is not a dead block: one SGD step moves it away from the identity
    loss = (out * rand(*out.shape, seed=9, dtype=torch.float32)).sum()
    loss.backward()
    grads = [p.grad for p in m.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert grads, f"{name}: no parameter receives a gradient at init"


# --------------------------------------------------------------------------------------------------------
# speed-relevant structure: fused kernel, no N×N' tensor
# --------------------------------------------------------------------------------------------------------

FLASH = "aten::_scaled_dot_product_flash_attention_for_cpu"
MATH = "aten::_scaled_dot_product_attention_math"

SDPA_CASES = [
    ("nonlocal", {}),
    ("nonlocal", dict(mode="gaussian")),
    ("nonlocal", dict(subsample=False)),
    ("sagan", {}),
    ("sagan", dict(value_channels=8, pool=True, out_conv=True, bias=False)),
    ("danet_position", {}),
    ("danet", {}),
    ("cross_layer_nonlocal", {}),
]


def call(m, name, x):
    if name == "cross_layer_nonlocal":
        return m(x, x[:, :, ::2, ::2])
    return m(x)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("name,kw", SDPA_CASES, ids=lambda v: str(v))
def test_attention_runs_the_flash_kernel(name, kw, channels_last):
    m = make(name, channels=32, dtype=torch.float32, **kw)
    x = rand(2, 32, 9, 7, dtype=torch.float32).requires_grad_()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        call(m, name, x).sum().backward()
    names = {e.name for e in prof.events()}
    assert FLASH in names, sorted(n for n in names if "scaled" in n)
    assert MATH not in names


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any aten op produces (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.largest = 0
        self.op = None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.numel() > self.largest:
                self.largest, self.op = t.numel(), func
        return out


@pytest.mark.parametrize(
    "name,kw",
    [
        ("nonlocal", {}),
        ("nonlocal", dict(mode="gaussian")),
        ("nonlocal", dict(mode="dot_product")),
        ("sagan", dict(pool=True)),
        ("danet_position", {}),
        ("danet_channel", {}),
        ("danet", {}),
        ("cgnl", {}),
        ("cgnl", dict(kernel_type="gaussian")),
        ("cross_layer_nonlocal", {}),
    ],
    ids=lambda v: str(v),
)
def test_no_quadratic_tensor(name, kw):
    m = make(name, channels=16, dtype=torch.float32, state="train", **kw)
    h, w = 32, 24
    x = rand(2, 16, h, w, dtype=torch.float32).requires_grad_()
    n = h * w
    with LargestTensor() as mode:
        call(m, name, x).sum().backward()
    # keys are N/4 positions (pooling / the pair layout's half-resolution context) or N: either way ≥ N·N/4
    assert mode.largest < n * n // 4, (mode.largest, mode.op)
    assert mode.largest <= 2 * 16 * n * 3, (mode.largest, mode.op)  # a few feature maps at most


def test_concatenation_builds_only_the_scalar_map():
    torch.manual_seed(0)
    m = randomize(attnzoo.create("nonlocal", 16, mode="concatenation")).train()
    b, h, w = 2, 32, 24
    n, n_keys, d = h * w, (h // 2) * (w // 2), m.inner_channels
    x = rand(b, 16, h, w, dtype=torch.float32).requires_grad_()
    with LargestTensor() as mode:
        m(x).sum().backward()
    assert mode.largest <= b * n * n_keys, (mode.largest, mode.op)  # the N×N' scalar map
    assert mode.largest < b * 2 * d * n * n_keys


# --------------------------------------------------------------------------------------------------------
# capture
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_nonlocal_capture_records_the_normalised_map(mode):
    m = make("nonlocal", mode=mode)
    x = rand(2, 16, 7, 6)
    plain = m(x)
    with attnzoo.capture_attention(m) as maps:
        captured = m(x)
    # layers.attention computes captured probabilities in float32 even for float64 inputs: hence 1e-6
    torch.testing.assert_close(captured, plain, atol=1e-6, rtol=1e-5)
    attn = maps[""]["attn"]
    assert attn.shape == (2, 1, 42, 12)  # N × N' (7×6 pooled with ceil to 4×3)
    # the reference's normalised f / C(x) for sample 0
    src = pool_ceil(x[:1])
    theta = x[:1].reshape(16, -1) if mode == "gaussian" else conv(x[:1], m.theta).reshape(8, -1)
    phi = src.reshape(16, -1) if mode == "gaussian" else conv(src, m.phi).reshape(8, -1)
    if mode == "concatenation":
        wt, wp = m.concat_project.weight[0, :8, 0, 0], m.concat_project.weight[0, 8:, 0, 0]
        p = F.relu((wt @ theta)[:, None] + (wp @ phi)[None, :]) / 12
    elif mode == "dot_product":
        p = theta.t() @ phi / 12
    else:
        p = torch.softmax(theta.t() @ phi * theta.shape[0] ** -0.5, -1)
        torch.testing.assert_close(attn.sum(-1), torch.ones(2, 1, 42, dtype=attn.dtype))
    torch.testing.assert_close(attn[0, 0], p, atol=1e-6, rtol=1e-5)


def test_capture_of_every_module():
    shapes = {
        "sagan": {"": {"attn": (2, 1, 30, 30)}},
        "danet_position": {"": {"attn": (2, 1, 30, 30)}},
        "danet_channel": {"": {"attn": (2, 16, 16)}},
        "danet": {"position": {"attn": (2, 1, 30, 30)}, "channel": {"attn": (2, 16, 16)}},
        "cgnl": {"": {"attn": (2, 8)}},
        "cross_layer_nonlocal": {"": {"attn": (2, 1, 30, 9)}},
    }
    for name, expected in shapes.items():
        m = make(name)
        x = rand(2, 16, 6, 5)
        with attnzoo.capture_attention(m) as maps:
            out = call(m, name, x)
        torch.testing.assert_close(out, call(m, name, x), atol=1e-6, rtol=1e-5)
        assert {k: {kk: tuple(v.shape) for kk, v in d.items()} for k, d in maps.items()} == expected, name


# --------------------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,channels,kw,cls",
    [
        ("nonlocal", 16, dict(mode="softmax"), "NonLocalBlock"),
        ("nonlocal", 16, dict(inner_channels=0), "NonLocalBlock"),
        ("nonlocal", 0, {}, "NonLocalBlock"),
        ("sagan", 16, dict(reduction=0), "SAGANAttention"),
        ("sagan", 16, dict(qk_channels=0), "SAGANAttention"),
        ("sagan", 16, dict(value_channels=8, out_conv=False), "SAGANAttention"),
        ("danet_position", 16, dict(reduction=-2), "DANetPositionAttention"),
        ("danet_position", 16, dict(qk_channels=1.5), "DANetPositionAttention"),
        ("danet_channel", -1, {}, "DANetChannelAttention"),
        ("danet", 16, dict(reduction=0), "DANetPositionAttention"),
        ("danet", 0, {}, "DANetAttention"),
        ("cgnl", 16, dict(groups=3), "CompactGeneralizedNonLocal"),
        ("cgnl", 16, dict(groups=0), "CompactGeneralizedNonLocal"),
        ("cgnl", 24, dict(inner_channels=16, groups=16), "CompactGeneralizedNonLocal"),  # 16 does not divide 24
        ("cgnl", 16, dict(kernel_type="rbf"), "CompactGeneralizedNonLocal"),
        ("cgnl", 16, dict(kernel_type="gaussian", order=-1), "CompactGeneralizedNonLocal"),
        ("cgnl", 16, dict(kernel_type="gaussian", gamma=0.0), "CompactGeneralizedNonLocal"),
        ("cross_layer_nonlocal", 16, dict(context_channels=[]), "CrossLayerNonLocal"),
        ("cross_layer_nonlocal", 16, dict(context_channels=[8, 0]), "CrossLayerNonLocal"),
        ("cross_layer_nonlocal", 16, dict(inner_channels=0), "CrossLayerNonLocal"),
    ],
)
def test_bad_constructor_arguments(name, channels, kw, cls):
    with pytest.raises(ValueError, match=cls) as err:
        attnzoo.create(name, channels, **kw)
    assert "must be" in str(err.value) and "got" in str(err.value)


def test_unknown_keyword_is_a_type_error():
    for name in NAMES:
        with pytest.raises(TypeError):
            attnzoo.create(name, 16, heads=2)


def test_bad_inputs():
    x = torch.randn(2, 16, 5, 5)
    for name in ["nonlocal", "sagan", "danet_position", "danet_channel", "danet", "cgnl"]:
        m = attnzoo.create(name, 16)
        for bad in (torch.randn(2, 8, 5, 5), torch.randn(16, 5, 5), torch.randn(2, 16, 0, 5)):
            with pytest.raises(ValueError, match=type(m).__name__):
                m(bad)
    m = attnzoo.create("cross_layer_nonlocal", 16, context_channels=[8, 4])
    good = [torch.randn(2, 8, 3, 3), torch.randn(2, 4, 6, 2)]
    assert m(x, good).shape == x.shape
    cases = [
        ([torch.randn(2, 4, 3, 3), torch.randn(2, 8, 6, 2)], "expected 8 input channels"),  # swapped
        ([torch.randn(2, 8, 3, 3)], "expected 2 context map"),
        (good + [torch.randn(2, 4, 3, 3)], "expected 2 context map"),
        (torch.randn(2, 8, 3, 3), "expected 2 context map"),
        ([torch.randn(3, 8, 3, 3), torch.randn(3, 4, 6, 2)], "batch size"),
        ([torch.randn(8, 3, 3), torch.randn(2, 4, 6, 2)], "4-D"),
    ]
    for ctx, msg in cases:
        with pytest.raises(ValueError, match="CrossLayerNonLocal") as err:
            m(x, ctx)
        assert msg in str(err.value), str(err.value)
    with pytest.raises(ValueError, match="expected 16 input channels"):
        attnzoo.create("cross_layer_nonlocal", 16)(x, torch.randn(2, 12, 3, 3))


def test_public_names():
    from attnzoo import self_attention

    for cls_name in self_attention.__all__:
        assert getattr(attnzoo, cls_name) is getattr(self_attention, cls_name)
    assert {attnzoo.info(n).cls.__name__ for n in NAMES} <= set(self_attention.__all__)
    for n in NAMES:
        e = attnzoo.info(n)
        assert e.family == "self_attention" and e.identity_at_init and e.min_size == (1, 1) and not e.exceptions
