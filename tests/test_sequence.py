"""Faithfulness tests of the sequence family: mhsa, simplified_mhsa, positional encodings, transformer_encoder.

References are written out here from the paper / seeds (matmul → softmax → matmul with the seeds' mask and
weights semantics), compared with the community module itself (fightingcv-attention, same parameter names) and
with ``torch.nn.TransformerEncoder``.
"""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
import torch.nn as nn

import attnzoo
from attnzoo.functional import sinusoidal_table
from attnzoo.testing import randomize
from helpers import rand as rand64
from helpers import require
from reference.common import heads_of
from reference.mhsa import ref_attention, ref_mhsa, ref_simplified

B, NQ, NK, C = 2, 6, 9, 16


rand = partial(rand64, dtype=torch.float32)  # float32 inputs by default here


def bool_mask(shape, p=0.35, seed=1):
    """Random boolean mask (True = masked out) with at least one visible key per row."""
    m = torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < p
    m[..., 0] = False
    return m


def mask_cases(h):
    return {
        "none": {},
        "bool_2d": {"mask": bool_mask((NQ, NK))},
        "bool_3d_heads": {"mask": bool_mask((h, NQ, NK), seed=2)},
        "bool_4d": {"mask": bool_mask((B, h, NQ, NK), seed=3)},
        "bool_4d_broadcast": {"mask": bool_mask((B, 1, 1, NK), seed=4)},
        "float_2d": {"mask": rand(NQ, NK, seed=5).masked_fill(bool_mask((NQ, NK), seed=6), float("-inf"))},
        "float_4d": {"mask": rand(B, h, NQ, NK, seed=7)},
        "key_padding": {"key_padding_mask": bool_mask((B, NK), p=0.5, seed=8)},
        "key_padding_and_mask": {"key_padding_mask": bool_mask((B, NK), seed=9), "mask": bool_mask((NQ, NK), seed=10)},
        "weights": {"weights": rand(B, h, NQ, NK, seed=11).abs()},
        "weights_and_mask": {"weights": rand(1, h, NQ, NK, seed=12), "mask": bool_mask((B, h, NQ, NK), seed=13)},
    }


# ------------------------------------------------------------------------------------------------ mhsa


@pytest.mark.faithful("mhsa")
@pytest.mark.parametrize("case", list(mask_cases(2)))
def test_mhsa_matches_slow_reference_cross_attention(case):
    kw = mask_cases(2)[case]
    m = randomize(attnzoo.create("mhsa", C, heads=2), 99, 0.2).eval()
    q, k, v = rand(B, NQ, C, seed=20), rand(B, NK, C, seed=21), rand(B, NK, C, seed=22)
    ref, _ = ref_mhsa(m, q, k, v, **kw)
    torch.testing.assert_close(m(q, k, v, **kw), ref, atol=2e-5, rtol=1e-4)


def test_mhsa_self_attention_defaults_and_custom_widths():
    m = randomize(attnzoo.create("mhsa", C, heads=3, d_k=5, d_v=7, qkv_bias=False), 99, 0.2).eval()  # heads need not divide C here
    assert m.fc_q.bias is None and m.fc_q.out_features == 15 and m.fc_v.out_features == 21
    x = rand(B, NQ, C, seed=23)
    mask = bool_mask((NQ, NQ))
    ref, _ = ref_mhsa(m, x, mask=mask)
    torch.testing.assert_close(m(x, mask=mask), ref, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(m(x), m(x, x, x), atol=0, rtol=0)
    torch.testing.assert_close(m(x, x), m(x, x, x), atol=0, rtol=0)


@pytest.mark.parametrize("case", ["none", "bool_4d", "weights", "weights_and_mask"])
def test_mhsa_equals_community_module_with_same_state_dict(case):
    """The fightingcv (External-Attention) module with the same weights gives the same output (no dead rows)."""
    SelfAttention = require("fightingcv_attention.attention.SelfAttention")
    kw = mask_cases(4)[case]
    ours = randomize(attnzoo.create("mhsa", C, heads=4), 99, 0.2).eval()
    theirs = SelfAttention.ScaledDotProductAttention(d_model=C, d_k=C // 4, d_v=C // 4, h=4, dropout=0.0).eval()
    theirs.load_state_dict(ours.state_dict())
    q, k = rand(B, NQ, C, seed=30), rand(B, NK, C, seed=31)
    expected = theirs(q, k, k, attention_mask=kw.get("mask"), attention_weights=kw.get("weights"))
    torch.testing.assert_close(ours(q, k, k, **kw), expected, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", ["bool", "float", "key_padding", "weights"])
def test_fully_masked_rows_give_zeros_not_nan(dtype, kind):
    m = randomize(attnzoo.create("mhsa", C, heads=2), 99, 0.2).eval()
    x = rand(B, NQ, C, seed=40)
    dead = torch.zeros(NQ, NQ, dtype=torch.bool)
    dead[2] = True  # query 2 sees nothing
    mask = dead | bool_mask((NQ, NQ), seed=41)
    mask[2] = True
    kw: dict = {"mask": mask}
    if kind == "float":
        kw = {"mask": torch.zeros(NQ, NQ).masked_fill(mask, float("-inf"))}
    elif kind == "key_padding":  # batch element 1 is all padding: every one of its queries is dead
        kw = {"key_padding_mask": torch.tensor([[False] * (NQ - 1) + [True], [True] * NQ])}
    elif kind == "weights":
        kw = {"mask": mask, "weights": rand(B, 2, NQ, NQ, seed=42)}
    # the community formula gives NaN on these rows
    ref, _ = ref_mhsa(m.double(), x.double(), **{k: (v.double() if v.is_floating_point() else v) for k, v in kw.items()})
    assert torch.isnan(ref).any()
    m = m.to(dtype)
    out = m(x.to(dtype), **{k: (v.to(dtype) if v.is_floating_point() else v) for k, v in kw.items()})
    assert out.dtype == dtype and torch.isfinite(out).all()
    rows = torch.isnan(ref).any(-1)
    assert (out[rows] == 0).all()
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(out[~rows].double(), ref[~rows], atol=tol, rtol=tol)


@pytest.mark.parametrize("path", ["fused", "math_kernel", "weights", "float_mask_weights"])
def test_fully_masked_rows_have_finite_gradients(path):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    m = randomize(attnzoo.create("mhsa", C, heads=2), 99, 0.2)
    x = rand(B, NQ, C, seed=43).requires_grad_()
    mask = bool_mask((NQ, NQ))
    mask[0] = True
    kw = {"mask": mask}
    if path.endswith("weights"):
        kw["weights"] = rand(B, 2, NQ, NQ, seed=44)
    if path.startswith("float"):
        kw["mask"] = torch.zeros(NQ, NQ).masked_fill(mask, float("-inf"))
    backend = SDPBackend.MATH if path == "math_kernel" else SDPBackend.FLASH_ATTENTION
    with sdpa_kernel(backend):
        out = m(x, **kw)
        out.square().sum().backward()
    assert (out[:, 0] == 0).all()
    assert torch.isfinite(x.grad).all() and all(torch.isfinite(p.grad).all() for p in m.parameters())


def test_fully_masked_rows_under_bf16_autocast():
    m = randomize(attnzoo.create("mhsa", C, heads=2), 99, 0.2)
    x = rand(B, NQ, C, seed=43)
    mask = bool_mask((NQ, NQ))
    mask[0] = True
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = m(x, mask=torch.zeros(NQ, NQ).masked_fill(mask, float("-inf")))
    assert torch.isfinite(low).all() and (low[:, 0] == 0).all()


def test_dead_in_one_head_only_zeroes_that_head():
    m = randomize(attnzoo.create("mhsa", C, heads=2), 99, 0.2).eval()
    x = rand(1, NQ, C, seed=44)
    mask = torch.zeros(1, 2, NQ, NQ, dtype=torch.bool)
    mask[0, 0, 3] = True  # query 3 sees nothing in head 0, everything in head 1
    out = m(x, mask=mask)
    lin = lambda t, layer: t @ layer.weight.t() + layer.bias  # noqa: E731
    _, att = ref_attention(lin(x, m.fc_q), lin(x, m.fc_k), lin(x, m.fc_v), 2, m.d_k**-0.5)
    att = torch.nan_to_num(att.masked_fill(mask, 0.0))
    att[0, 0, 3] = 0.0
    heads = torch.matmul(att, heads_of(lin(x, m.fc_v), 2)).permute(0, 2, 1, 3).reshape(1, NQ, C)
    torch.testing.assert_close(out, lin(heads, m.fc_o), atol=2e-5, rtol=1e-4)


@pytest.mark.slow
def test_mhsa_onnx_export_with_masks_and_fully_masked_rows(tmp_path):
    """Masks are real graph inputs of the exported model; onnxruntime matches eager, fully masked rows stay 0."""
    ort = require("onnxruntime")

    class WithMask(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x, mask):
            return self.m(x, mask=mask)

    m = randomize(attnzoo.create("mhsa", C, heads=2), 99, 0.2).eval()
    x = rand(B, NQ, C, seed=45)
    mask = bool_mask((NQ, NQ))
    mask[0] = True
    for mk in (mask, torch.zeros(NQ, NQ).masked_fill(mask, float("-inf"))):
        path = str(tmp_path / "m.onnx")
        torch.onnx.export(WithMask(m), (x, mk), path, dynamo=True, verbose=False)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        got = torch.from_numpy(sess.run(None, {i.name: t.numpy() for i, t in zip(sess.get_inputs(), (x, mk))})[0])
        other = bool_mask((NQ, NQ), seed=46)  # a different mask at run time: the mask is not baked in
        if mk.dtype != torch.bool:
            other = torch.zeros(NQ, NQ).masked_fill(other, float("-inf"))
        got_other = torch.from_numpy(sess.run(None, {i.name: t.numpy() for i, t in zip(sess.get_inputs(), (x, other))})[0])
        with torch.no_grad():
            torch.testing.assert_close(got, m(x, mask=mk), atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(got_other, m(x, mask=other), atol=1e-5, rtol=1e-4)
        assert (got[:, 0] == 0).all()


@pytest.mark.parametrize("dims", [{}, {"d_k": 8, "d_v": 24}, {"d_k": 24, "d_v": 8}], ids=["equal", "dk<dv", "dk>dv"])
def test_mhsa_uses_fused_flash_kernel_with_and_without_masks(dims):
    m = attnzoo.create("mhsa", 64, heads=4, **dims).eval()
    x = rand(2, 300, 64, seed=50)
    for kw in ({}, {"mask": bool_mask((300, 300))}, {"key_padding_mask": bool_mask((2, 300))}):
        with torch.no_grad(), torch.profiler.profile() as prof:
            m(x, **kw)
        names = {e.key for e in prof.key_averages()}
        assert "aten::_scaled_dot_product_flash_attention_for_cpu" in names, (kw.keys(), names)
        assert not any("bmm" in n or n == "aten::softmax" for n in names), names


def test_capture_records_probabilities_without_changing_output():
    m = randomize(attnzoo.create("mhsa", C, heads=2), 99, 0.2).eval()
    x = rand(B, NQ, C, seed=51)
    mask = bool_mask((NQ, NQ))
    mask[1] = True
    plain = m(x, mask=mask)
    with attnzoo.capture_attention(m) as maps:
        captured = m(x, mask=mask)
    torch.testing.assert_close(captured, plain, atol=1e-6, rtol=1e-5)
    probs = maps[""]["attn"]
    _, ref = ref_mhsa(m, x, mask=mask)
    assert probs.shape == (B, 2, NQ, NQ)
    assert (probs[:, :, 1] == 0).all()
    keep = torch.ones(NQ, dtype=torch.bool)
    keep[1] = False
    torch.testing.assert_close(probs[:, :, keep], ref[:, :, keep], atol=1e-6, rtol=1e-5)


def test_mhsa_init_keeps_the_input_scale():
    """The community std-1e-3 init shrinks outputs to ~1e-5; Xavier init keeps them O(1)."""
    m = attnzoo.create("mhsa", 64, heads=8)
    assert m(rand(4, 50, 64, seed=52)).std() > 0.1
    assert all((lin.bias == 0).all() for lin in (m.fc_q, m.fc_k, m.fc_v, m.fc_o))


def test_mhsa_dropouts_are_honoured():
    x = rand(B, NQ, C, seed=53)
    for kw in ({"attn_drop": 0.5}, {"proj_drop": 0.5}):
        m = attnzoo.create("mhsa", C, heads=2, **kw)
        torch.manual_seed(0)
        a = m(x)
        torch.manual_seed(1)
        assert not torch.allclose(a, m(x)), kw
        m.eval()
        assert torch.equal(m(x), m(x))
    m = attnzoo.create("mhsa", C, heads=2, attn_drop=0.5).train()
    torch.manual_seed(0)
    a = m(x, weights=torch.ones(()))  # the explicit path drops probabilities too
    torch.manual_seed(1)
    assert not torch.allclose(a, m(x, weights=torch.ones(())))


def test_mhsa_argument_errors():
    for kw in ({"heads": 3}, {"heads": 0}, {"d_k": 0, "heads": 2}, {"attn_drop": 1.0}, {"proj_drop": -0.1}):
        with pytest.raises(ValueError, match="MultiHeadSelfAttention"):
            attnzoo.create("mhsa", C, **kw)
    with pytest.raises(TypeError):
        attnzoo.create("mhsa", C, nhead=2)
    m = attnzoo.create("mhsa", C, heads=2)
    x = rand(B, NQ, C)
    cases = [
        ({"mask": torch.zeros(NQ, NQ + 1, dtype=torch.bool)}, "broadcastable"),
        ({"mask": torch.zeros(3, NQ, NQ, dtype=torch.bool)}, "broadcastable"),
        ({"weights": torch.ones(B, 3, NQ, NQ)}, "broadcastable"),
        ({"key_padding_mask": torch.zeros(B, NQ + 1, dtype=torch.bool)}, "key_padding_mask"),
        ({"mask": torch.zeros(NQ, NQ, dtype=torch.int64)}, "bool or floating"),
        ({"k": rand(B + 1, NQ, C)}, "batch"),
        ({"k": rand(B, NQ, C), "v": rand(B, NQ + 2, C)}, "same length"),
        ({"k": rand(B, NQ, C + 1)}, "expected 16 channels"),
    ]
    for kw, msg in cases:
        with pytest.raises(ValueError, match=msg) as err:
            m(x, **kw)
        assert "MultiHeadSelfAttention" in str(err.value)


# ------------------------------------------------------------------------------------------------ simplified


@pytest.mark.faithful("simplified_mhsa")
@pytest.mark.parametrize("case", list(mask_cases(4)))
def test_simplified_matches_slow_reference(case):
    kw = mask_cases(4)[case]
    m = randomize(attnzoo.create("simplified_mhsa", C, heads=4), 99, 0.2).eval()
    q, k, v = rand(B, NQ, C, seed=60), rand(B, NK, C, seed=61), rand(B, NK, C, seed=62)
    ref, _ = ref_simplified(m, q, k, v, **kw)
    torch.testing.assert_close(m(q, k, v, **kw), ref, atol=2e-5, rtol=1e-4)


def test_simplified_equals_community_module_and_checks_heads():
    Simplified = require("fightingcv_attention.attention.SimplifiedSelfAttention")
    ours = randomize(attnzoo.create("simplified_mhsa", C, heads=4), 99, 0.2).eval()
    theirs = Simplified.SimplifiedScaledDotProductAttention(C, h=4, dropout=0.0).eval()
    theirs.load_state_dict(ours.state_dict())
    q, k = rand(B, NQ, C, seed=63), rand(B, NK, C, seed=64)
    mask = bool_mask((B, 4, NQ, NK))
    torch.testing.assert_close(ours(q, k, k, mask=mask), theirs(q, k, k, attention_mask=mask), atol=2e-5, rtol=1e-4)
    assert not any(n.startswith(("fc_q", "fc_k", "fc_v")) for n, _ in ours.named_parameters())
    with pytest.raises(ValueError, match="SimplifiedMultiHeadAttention: heads"):
        attnzoo.create("simplified_mhsa", C, heads=3)
    out = ours(q, mask=torch.ones(NQ, NQ, dtype=torch.bool))
    assert (out == 0).all()


# ------------------------------------------------------------------------------------------------ positional


@pytest.mark.faithful("positional_encoding")
def test_positional_encoding_values_even_sin_odd_cos():
    c = 10
    pe = attnzoo.create("positional_encoding", c, max_len=64)
    x = rand(2, 40, c, seed=70)
    out = pe(x) - x
    for p in (0, 1, 7, 39):
        for i in range(c // 2):
            angle = p / 10000 ** (2 * i / c)
            assert out[1, p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert out[1, p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    torch.testing.assert_close(out[0], out[1], atol=1e-6, rtol=0)  # same for every batch element


def test_positional_encoding_any_length_odd_channels_dropout():
    short = attnzoo.create("positional_encoding", 7, max_len=8)
    long = attnzoo.create("positional_encoding", 7, max_len=5000)
    x = rand(2, 30, 7, seed=71)
    torch.testing.assert_close(short(x), long(x), atol=1e-6, rtol=0)  # beyond max_len: computed on the fly
    assert (long(x) - x)[0, 5, 6].item() == pytest.approx(math.sin(5 / 10000 ** (6 / 7)), abs=1e-6)
    far = sinusoidal_table(6001, 16)[6000]  # float64 table: exact at long positions
    assert far[0].item() == pytest.approx(math.sin(6000.0), abs=1e-7)
    d = attnzoo.create("positional_encoding", 7, dropout=0.5).train()
    y = d(x)
    assert (y == 0).any() and torch.allclose(y[y != 0], (2 * long(x))[y != 0], atol=1e-5)
    assert torch.equal(d.eval()(x), long(x))
    assert "pe" not in long.state_dict()  # derived data, not a checkpoint entry
    with pytest.raises(ValueError, match="PositionalEncoding"):
        attnzoo.create("positional_encoding", 8, max_len=0)


@pytest.mark.faithful("positional_encoding_2d")
def test_positional_encoding_2d_separable_values():
    c = 12
    pe = attnzoo.create("positional_encoding_2d", c)
    x = rand(2, c, 5, 9, seed=72)
    enc = pe(x) - x
    rows, cols = sinusoidal_table(5, c // 2, dtype=torch.float64), sinusoidal_table(9, c // 2, dtype=torch.float64)
    for h in range(5):
        for w in range(9):
            torch.testing.assert_close(enc[0, : c // 2, h, w].double(), rows[h], atol=1e-6, rtol=0)
            torch.testing.assert_close(enc[1, c // 2 :, h, w].double(), cols[w], atol=1e-6, rtol=0)
    torch.testing.assert_close(pe.encoding(5, 9), enc[0], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="PositionalEncoding2D"):
        attnzoo.create("positional_encoding_2d", 7)


# ------------------------------------------------------------------------------------------------ encoder


def torch_encoder(ours, activation):
    layer0 = ours.layers[0]
    c, heads = ours.channels, layer0.self_attn.heads
    ff = layer0.linear1.out_features
    layer = nn.TransformerEncoderLayer(c, heads, ff, dropout=0.0, activation=activation, batch_first=True, norm_first=True)
    final = nn.LayerNorm(c) if isinstance(ours.norm, nn.LayerNorm) else None
    ref = nn.TransformerEncoder(layer, len(ours.layers), norm=final, enable_nested_tensor=False)
    with torch.no_grad():
        for mine, theirs in zip(ours.layers, ref.layers):
            a = mine.self_attn
            theirs.self_attn.in_proj_weight.copy_(torch.cat([a.fc_q.weight, a.fc_k.weight, a.fc_v.weight]))
            theirs.self_attn.in_proj_bias.copy_(torch.cat([a.fc_q.bias, a.fc_k.bias, a.fc_v.bias]))
            theirs.self_attn.out_proj.weight.copy_(a.fc_o.weight)
            theirs.self_attn.out_proj.bias.copy_(a.fc_o.bias)
            for name in ("linear1", "linear2", "norm1", "norm2"):
                getattr(theirs, name).load_state_dict(getattr(mine, name).state_dict())
        if final is not None:
            final.load_state_dict(ours.norm.state_dict())
    return ref


@pytest.mark.faithful("transformer_encoder")
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_transformer_encoder_equals_torch(activation, mode):
    torch.manual_seed(0)
    ours = attnzoo.create("transformer_encoder", C, num_layers=3, heads=4, dim_feedforward=40, act=activation)
    with torch.no_grad():  # non-trivial norms and biases
        for p in ours.parameters():
            p.add_(0.1 * torch.randn_like(p))
    ref = torch_encoder(ours, activation)
    ours.train(mode == "train")
    ref.train(mode == "train")
    n = 11
    x = rand(B, n, C, seed=80)
    causal = torch.triu(torch.ones(n, n, dtype=torch.bool), 1)
    float_mask = rand(n, n, seed=81).masked_fill(causal, float("-inf"))
    padding = torch.zeros(B, n, dtype=torch.bool)
    padding[1, 7:] = True
    cases = [{}, {"mask": causal}, {"mask": float_mask}, {"key_padding_mask": padding}, {"mask": causal, "key_padding_mask": padding}]
    for kw in cases:
        theirs_kw = {"mask": kw.get("mask"), "src_key_padding_mask": kw.get("key_padding_mask")}
        float_mask_case = kw.get("mask") is float_mask
        with torch.no_grad():
            # torch's eval fast path (torch._transformer_encoder_layer_fwd) returns NaN with an additive float mask
            # holding -inf even when no row is fully masked: compare with its regular path there
            torch.backends.mha.set_fastpath_enabled(not float_mask_case)
            try:
                expected = ref(x, **theirs_kw)
            finally:
                torch.backends.mha.set_fastpath_enabled(True)
            got = ours(x, **kw)
        if "key_padding_mask" in kw and mode == "eval":  # torch's fast path may zero padded positions
            got, expected = got[~padding], expected[~padding]
        torch.testing.assert_close(got, expected, atol=3e-5, rtol=1e-4, msg=lambda s: f"{sorted(kw)}: {s}")
    # gradients agree too
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours(xa, mask=causal).pow(2).sum().backward()
    ref(xb, mask=causal).pow(2).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, atol=1e-4, rtol=1e-4)


def test_transformer_encoder_options():
    enc = attnzoo.create("transformer_encoder", C, num_layers=2, heads=2, final_norm=False)
    assert isinstance(enc.norm, nn.Identity) and len(enc.layers) == 2
    assert enc.layers[0].linear1.out_features == 4 * C  # default dim_feedforward = 4·C
    ref = torch_encoder(enc, "relu").eval()
    x = rand(B, 5, C, seed=82)
    torch.testing.assert_close(enc.eval()(x), ref(x), atol=3e-5, rtol=1e-4)
    d = attnzoo.create("transformer_encoder", C, num_layers=1, heads=2, dropout=0.3).train()
    layer = d.layers[0]
    assert layer.dropout.p == layer.dropout1.p == layer.dropout2.p == layer.self_attn.attn_drop == 0.3
    assert layer.self_attn.proj_drop.p == 0.0  # as torch: dropout1 follows the attention, no second one inside
    for kw in ({"activation": "tanh"}, {"heads": 3}, {"num_layers": 0}, {"dim_feedforward": 0}):
        with pytest.raises(ValueError, match="TransformerEncoder"):
            attnzoo.create("transformer_encoder", C, **kw)
