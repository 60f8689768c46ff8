"""Faithfulness of the channel gates gc, ese, ge, fca, gct and scse: parity with timm / segmentation_models_pytorch
after copying weights, and slow references written from the papers and the official code (tests/reference/)."""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attnzoo
from attnzoo.channel.fca import FREQ_SELS
from helpers import missing, randomize, require
from reference.fcanet import dct_filters as ref_dct_filters
from reference.fcanet import fca as ref_fca
from reference.fcanet import frequencies as ref_frequencies
from reference.gcnet import gc_block as ref_gc
from reference.gct import gct as ref_gct

timm_layers = require("timm.layers")


def x_input(c=64, h=11, w=9, b=2, seed=0, dtype=torch.float32):
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ------------------------------------------------------------------------------------------------------- gc


@pytest.mark.faithful("gc")
@pytest.mark.parametrize("pooling", ["attention", "avg"])
@pytest.mark.parametrize("fusion", ["add", "mul", "add_mul"])
@pytest.mark.parametrize("size", [(11, 9), (1, 1), (7, 7)])
def test_gc_matches_paper_reference(pooling, fusion, size):
    m = randomize(attnzoo.create("gc", 32, pooling=pooling, fusion=fusion), scale=0.5).eval()
    x = x_input(32, *size, dtype=torch.float64)
    m = m.double()
    torch.testing.assert_close(m(x), ref_gc(m, x))


@pytest.mark.faithful("gc")
@pytest.mark.parametrize("pooling,fusion", [("attention", "add"), ("avg", "mul"), ("attention", "add_mul")])
def test_gc_matches_timm_global_context(pooling, fusion):
    m = randomize(attnzoo.create("gc", 256, pooling=pooling, fusion=fusion), scale=0.3).eval()
    ref = timm_layers.GlobalContext(256, use_attn=pooling == "attention", fuse_add="add" in fusion,
                                    fuse_scale="mul" in fusion, rd_channels=16).eval()
    sd = {}
    for k, v in m.state_dict().items():
        k = k.replace("conv_mask.", "conv_attn.").replace("add.", "mlp_add.").replace("mul.", "mlp_scale.")
        k = k.replace(".conv1.", ".fc1.").replace(".conv2.", ".fc2.")
        sd[k] = v.flatten() if ".norm." in k else v  # timm's LayerNorm2d affine is (hidden,)
    ref.load_state_dict(sd)
    x = x_input(256, 9, 13)
    torch.testing.assert_close(m(x), ref(x), atol=1e-5, rtol=1e-4)


@pytest.mark.faithful("gc")
def test_gc_official_defaults_and_init():
    m = attnzoo.create("gc", 256)
    assert m.pooling == "attention" and m.fusion == "add" and m.mul is None
    assert m.add.conv1.out_channels == 16 and tuple(m.add.norm.weight.shape) == (16, 1, 1)
    assert m.add.conv2.weight.abs().sum() == 0 and m.add.conv2.bias.abs().sum() == 0  # last_zero_init
    assert m.conv_mask.bias.abs().sum() == 0
    # Kaiming normal, fan-in, ReLU gain: std = sqrt(2 / C)
    assert abs(m.conv_mask.weight.std().item() - (2 / 256) ** 0.5) < 0.3 * (2 / 256) ** 0.5
    x = x_input(256, 5, 6)
    torch.testing.assert_close(m(x), x)  # identity at init
    mm = attnzoo.create("gc", 256, fusion="mul")  # the official zero init of the mul branch: σ(0) = 0.5
    torch.testing.assert_close(mm(x), 0.5 * x)
    assert attnzoo.create("gc", 64).add.conv1.out_channels == 8  # C/16 floored at min_hidden=8
    assert attnzoo.create("gc", 64, min_hidden=1).add.conv1.out_channels == 4  # the official int(C/16)


def test_gc_attention_map_captured_and_sums_to_one():
    m = randomize(attnzoo.create("gc", 32), scale=0.5).eval()
    x = x_input(32, 6, 7)
    with attnzoo.capture_attention(m) as maps:
        m(x)
    a = maps[""]["attn"]
    assert a.shape == (2, 1, 6, 7)
    torch.testing.assert_close(a.sum((1, 2, 3)), torch.ones(2))
    avg = attnzoo.create("gc", 32, pooling="avg")
    with attnzoo.capture_attention(avg) as maps2:
        avg(x)
    assert "attn" not in maps2.get("", {})


@pytest.mark.parametrize("kw", [{"pooling": "max"}, {"fusion": "sum"}, {"fusion": ("add",)}, {"reduction": 0},
                                {"hidden_channels": 0}, {"min_hidden": -1}])
def test_gc_bad_arguments(kw):
    with pytest.raises(ValueError, match="GlobalContextBlock"):
        attnzoo.create("gc", 32, **kw)


# ------------------------------------------------------------------------------------------------------ ese


@pytest.mark.faithful("ese")
@pytest.mark.parametrize("size", [(11, 9), (1, 1)])
def test_ese_matches_timm(size):
    m = randomize(attnzoo.create("ese", 64), scale=0.5).eval()
    ref = timm_layers.EffectiveSEModule(64).eval()
    ref.load_state_dict(m.state_dict())  # same names and shapes: fc.weight, fc.bias
    x = x_input(64, *size)
    torch.testing.assert_close(m(x), ref(x))
    g = torch.nn.functional.relu6(m.fc(x.mean((2, 3), keepdim=True)) + 3) / 6  # the official Hsigmoid
    torch.testing.assert_close(m(x), x * g)


def test_ese_bad_arguments():
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="EffectiveSqueezeExcite"):
            attnzoo.create("ese", bad)
    with pytest.raises(ValueError, match="EffectiveSqueezeExcite"):
        attnzoo.create("ese", 8, gate="nope")


# ------------------------------------------------------------------------------------------------------- ge


@pytest.fixture
def timm_ge(monkeypatch):
    """timm 1.0.31's GatherExcite passes ``*dd`` (the strings 'device', 'dtype') positionally to its children and
    fails to construct; patch the three factories it calls to drop those extra positional arguments."""
    from timm.layers import gather_excite as ge_mod

    real_conv, real_mlp = ge_mod.create_conv2d, ge_mod.ConvMlp

    def conv(cin, cout, *extra, **kw):
        return real_conv(cin, cout, **kw)

    def mlp(cin, hidden, *extra, **kw):
        return real_mlp(cin, hidden, **kw)

    fake_nn = types.SimpleNamespace(**{k: getattr(nn, k) for k in dir(nn) if not k.startswith("__")})
    fake_nn.BatchNorm2d = lambda c, *extra, **kw: nn.BatchNorm2d(c, **kw)
    monkeypatch.setattr(ge_mod, "create_conv2d", conv)
    monkeypatch.setattr(ge_mod, "ConvMlp", mlp)
    monkeypatch.setattr(ge_mod, "nn", fake_nn)
    return ge_mod.GatherExcite


@pytest.mark.faithful("ge")
# extent=0 with extra_params is left out: timm pads its full-map conv by (k-1)//2, not globally (see
# test_ge_global_with_params)
@pytest.mark.parametrize(("extent", "extra_params"), [(e, p) for e in (0, 2, 4, 8) for p in (False, True) if e or not p])
@pytest.mark.parametrize("use_mlp", [True, False])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_ge_matches_timm(timm_ge, extent, extra_params, use_mlp, mode):
    m = randomize(attnzoo.create("ge", 64, extent=extent, extra_params=extra_params, use_mlp=use_mlp), scale=0.3)
    ref = timm_ge(64, extent=extent, extra_params=extra_params, use_mlp=use_mlp)
    ref.load_state_dict(m.state_dict())
    m.train(mode == "train")
    ref.train(mode == "train")
    for size in [(13, 11), (16, 16), (3, 5), (1, 1)]:  # incl. smaller than the extent
        x = x_input(64, *size)
        torch.testing.assert_close(m(x), ref(x), atol=1e-5, rtol=1e-4)


@pytest.mark.faithful("ge")
def test_ge_global_with_params():
    """GE-θ with the global extent: a depthwise conv over the whole (fixed-size) map + BN, one value per channel."""
    m = randomize(attnzoo.create("ge", 32, extent=0, extra_params=True, use_mlp=False, feat_size=(7, 6)), scale=0.3).eval()
    x = x_input(32, 7, 6)
    conv, bn = m.gather.conv1, m.gather.norm1
    g = (x * conv.weight[:, 0]).sum((2, 3))
    g = (g - bn.running_mean) / (bn.running_var + bn.eps).sqrt() * bn.weight + bn.bias
    torch.testing.assert_close(m(x), x * torch.sigmoid(g)[:, :, None, None])
    with pytest.raises(ValueError, match="GatherExcite.*feat_size"):
        m(x_input(32, 7, 7))
    with pytest.raises(ValueError, match="GatherExcite.*feat_size"):
        attnzoo.create("ge", 32, extent=0, extra_params=True)


@pytest.mark.faithful("ge")
def test_ge_theta_minus_is_parameter_free_pooling():
    m = attnzoo.create("ge", 16, extent=2, use_mlp=False)
    assert sum(p.numel() for p in m.parameters()) == 0
    x = x_input(16, 8, 8)
    g = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)  # kernel 2e-1, stride e
    torch.testing.assert_close(m(x), x * torch.sigmoid(g).repeat_interleave(2, 2).repeat_interleave(2, 3))


def test_ge_train_batch_one_tiny_map():
    m = attnzoo.create("ge", 16, extent=8, extra_params=True).train()
    y = m(x_input(16, 1, 1, b=1))
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("kw", [{"extent": 3}, {"extent": 16}, {"extent": True}, {"extra_params": 1},
                                {"use_mlp": "yes"}, {"reduction": -1}, {"extent": 0, "extra_params": True,
                                                                        "feat_size": (0, 3)}])
def test_ge_bad_arguments(kw):
    with pytest.raises(ValueError, match="GatherExcite"):
        attnzoo.create("ge", 32, **kw)


# ------------------------------------------------------------------------------------------------------ fca


@pytest.mark.faithful("fca")
@pytest.mark.parametrize("freq_sel", FREQ_SELS)
def test_fca_dct_filters_and_frequencies(freq_sel):
    c = 64  # a multiple of every K (1…32)
    for d in (7, 14):
        m = attnzoo.create("fca", c, freq_sel=freq_sel, dct_size=d)
        torch.testing.assert_close(m.dct_filters().double(), ref_dct_filters(c, freq_sel, d), atol=1e-6, rtol=0)


def test_fca_frequency_tables():
    from attnzoo.channel.fca import fca_frequencies

    assert fca_frequencies("top16", 7) == ref_frequencies("top16", 7)
    assert fca_frequencies("top2", 14) == [(0, 0), (0, 2)]  # (0, 1) on 7×7 is (0, 2) on 14×14
    assert fca_frequencies("low4", 7) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert fca_frequencies("bot1", 7) == [(6, 6)]
    # the basis is orthonormal on the d×d grid
    m = attnzoo.create("fca", 32, freq_sel="low32", dct_size=7)
    f = m.dct_filters().reshape(32, -1).double()
    torch.testing.assert_close(f @ f.T, torch.eye(32, dtype=torch.float64), atol=1e-6, rtol=0)


@pytest.mark.faithful("fca")
@pytest.mark.parametrize("size", [(7, 7), (14, 14), (9, 11), (3, 2), (1, 1), (56, 56), (30, 17)])
@pytest.mark.parametrize("freq_sel,dct_size", [("top16", 7), ("low4", 7), ("bot8", 14)])
def test_fca_matches_paper_reference(size, freq_sel, dct_size):
    """Any H×W: equals the official adaptive-pool-to-dct_size² then DCT (the pooling folded into the filters)."""
    m = randomize(attnzoo.create("fca", 64, freq_sel=freq_sel, dct_size=dct_size), scale=0.3).eval().double()
    x = x_input(64, *size, dtype=torch.float64)
    torch.testing.assert_close(m(x), ref_fca(m, x))


def test_fca_state_dict_and_defaults():
    m = attnzoo.create("fca", 64)
    assert m.freq_sel == "top16" and m.dct_size == 7 and m.num_freq == 16
    assert sorted(m.state_dict()) == ["fc1.weight", "fc2.weight"]  # DCT bases are non-persistent buffers
    assert m.fc1.out_features == 4 and m.fc1.bias is None and m.fc2.bias is None


@pytest.mark.parametrize("kw", [{"freq_sel": "top3"}, {"freq_sel": "mid16"}, {"dct_size": 6}, {"dct_size": 7.0},
                                {"reduction": 0}])
def test_fca_bad_arguments(kw):
    with pytest.raises(ValueError, match="MultiSpectralAttention"):
        attnzoo.create("fca", 64, **kw)


def test_fca_channels_must_split_into_frequencies():
    with pytest.raises(ValueError, match="MultiSpectralAttention.*multiple of the 16"):
        attnzoo.create("fca", 24)
    attnzoo.create("fca", 24, freq_sel="top8")


# ------------------------------------------------------------------------------------------------------ gct


@pytest.mark.faithful("gct")
@pytest.mark.parametrize("mode", ["l2", "l1"])
@pytest.mark.parametrize("size", [(11, 9), (1, 1)])
def test_gct_matches_paper_reference(mode, size):
    m = attnzoo.create("gct", 16, mode=mode).double()
    with torch.no_grad():
        g = torch.Generator().manual_seed(5)
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    x = x_input(16, *size, dtype=torch.float64)
    torch.testing.assert_close(m(x), ref_gct(m, x))


@pytest.mark.faithful("gct")
def test_gct_identity_at_init_and_defaults():
    m = attnzoo.create("gct", 32)
    assert m.mode == "l2" and m.eps == 1e-5
    assert (m.alpha == 1).all() and (m.gamma == 0).all() and (m.beta == 0).all()
    assert m.alpha.shape == (1, 32, 1, 1)
    x = x_input(32, 5, 4)
    assert torch.equal(m(x), x)


def test_gct_zero_input_has_finite_gradients():
    m = randomize(attnzoo.create("gct", 8), scale=0.5)
    x = torch.zeros(2, 8, 4, 4, requires_grad=True)
    m(x).sum().backward()
    assert torch.isfinite(x.grad).all() and all(torch.isfinite(p.grad).all() for p in m.parameters())


@pytest.mark.parametrize("kw", [{"mode": "l3"}, {"eps": -1.0}, {"eps": "x"}])
def test_gct_bad_arguments(kw):
    with pytest.raises(ValueError, match="GatedChannelTransform"):
        attnzoo.create("gct", 8, **kw)


# ----------------------------------------------------------------------------------------------------- scse


def _smp_scse():
    try:
        from segmentation_models_pytorch.base.modules import SCSEModule
    except ImportError:  # the package __init__ pulls optional dependencies: load the module file alone
        import importlib.util
        import pathlib

        spec = importlib.util.find_spec("segmentation_models_pytorch")
        if spec is None or spec.origin is None:
            missing("segmentation_models_pytorch")
        path = pathlib.Path(spec.origin).parent / "base" / "modules.py"
        s = importlib.util.spec_from_file_location("_smp_modules", path)
        mod = importlib.util.module_from_spec(s)
        s.loader.exec_module(mod)
        SCSEModule = mod.SCSEModule
    return SCSEModule


@pytest.mark.faithful("scse")
@pytest.mark.parametrize("size", [(11, 9), (1, 1)])
def test_scse_matches_smp(size):
    m = randomize(attnzoo.create("scse", 64), scale=0.3).eval()
    ref = _smp_scse()(64, reduction=16).eval()
    ref.load_state_dict(m.state_dict())  # same names: cSE.1, cSE.3, sSE.0
    x = x_input(64, *size)
    torch.testing.assert_close(m(x), ref(x))


@pytest.mark.faithful("scse")
def test_scse_max_mode():
    """The official repo's max-out combination: max(x·cSE, x·sSE), elementwise."""
    m = randomize(attnzoo.create("scse", 32, mode="max"), scale=0.3).eval()
    x = x_input(32, 6, 5)
    c = torch.sigmoid(m.cSE[2](torch.relu(m.cSE[0](x.mean((2, 3), keepdim=True)))))
    s = torch.sigmoid(m.sSE[0](x))
    torch.testing.assert_close(m(x), torch.max(x * c, x * s))


@pytest.mark.parametrize("kw", [{"mode": "mul"}, {"reduction": 0}, {"hidden_channels": -2}])
def test_scse_bad_arguments(kw):
    with pytest.raises(ValueError, match="SCSE"):
        attnzoo.create("scse", 32, **kw)
