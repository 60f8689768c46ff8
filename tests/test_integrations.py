"""Model surgery (``attnzoo.insert``) on torchvision and timm networks, timm's ``attn_layer``, and exports of a
model with inserted modules (the guide in docs/exports.md).

Placement is checked against each block's forward written out by hand with the module where the papers put
it (after the last norm of the residual branch, before the addition); parameter growth against modules built
independently; "outputs unchanged" with gates that are exactly the identity (an SE whose last FC is zero with
bias 100: sigmoid(100) == 1.0 in float32) and with every registered identity-at-init module.
"""

from __future__ import annotations

import copy
import functools
import io
import pickle

import pytest
import torch
import torch.nn as nn

import attnzoo
from attnzoo.integrations import InsertedAttention, Insertion, insert, timm_attn
from helpers import require

torchvision = require("torchvision")
timm = require("timm")



def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@functools.lru_cache(maxsize=None)
def _tv_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return getattr(torchvision.models, name)(weights=None).eval()


def tv_model(name: str) -> nn.Module:
    return copy.deepcopy(_tv_model(name))  # a fresh copy (insert modifies in place); copying beats re-initialising


@functools.lru_cache(maxsize=None)
def _timm_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False).eval()


def timm_model(name: str, **kw) -> nn.Module:
    if kw:
        torch.manual_seed(0)
        return timm.create_model(name, pretrained=False, **kw).eval()
    return copy.deepcopy(_timm_model(name))


@torch.no_grad()
def make_identity_se(model: nn.Module, report: list[Insertion]) -> None:
    """Turn every inserted SE into an exact identity: gate = sigmoid(0·s + 100) == 1.0."""
    for r in report:
        se = model.get_submodule(r.name)
        assert isinstance(se, attnzoo.SqueezeExcite)
        se.fc2.weight.zero_()
        se.fc2.bias.fill_(100.0)


@torch.no_grad()
def perturb_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine weights (random init has gamma=1, and timm zero-inits the last BN)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
            m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(1 + 0.3 * torch.rand(m.running_var.shape, generator=g))
    return model


X = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(3))

# (constructor, expected insertions, where each goes: suffix of Insertion.name / Insertion.after, module tried)
MODELS = {
    "tv_resnet18": (lambda: tv_model("resnet18"), 8, ".bn2.attn", ".bn2", "cbam"),
    "tv_resnet50": (lambda: tv_model("resnet50"), 16, ".bn3.attn", ".bn3", "eca"),
    "timm_resnet26d": (lambda: timm_model("resnet26d"), 8, ".se", ".bn3", "cbam"),
    "timm_mobilenetv3_small_050": (lambda: timm_model("mobilenetv3_small_050"), 11, ".attn", ".bn", "coord"),
    "tv_mobilenet_v3_small": (lambda: tv_model("mobilenet_v3_small"), 11, ".attn", ".block.", "triplet"),
}


def last_norm(module: nn.Module) -> nn.Module:
    if isinstance(module, InsertedAttention):
        module = module.module
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)][-1]


@pytest.mark.parametrize("model_name", list(MODELS))
def test_insert_default_positions_params_forward(model_name):
    build, count, name_suffix, after_suffix, module = MODELS[model_name]
    model = perturb_bn(build())
    before = n_params(model)
    ref = model(X)
    out_model, report = insert(model, module)
    assert out_model is model
    assert len(report) == count, [str(r) for r in report]
    for r in report:
        assert isinstance(r, Insertion)
        assert r.name.endswith(name_suffix) and after_suffix in r.after, r
        attn = model.get_submodule(r.name)
        assert isinstance(attn, attnzoo.info(module).cls) and attn.channels == r.channels
        assert last_norm(model.get_submodule(r.after)).num_features == r.channels  # channels of the norm it follows
        assert r.params == n_params(attn)
    # parameter count grows by exactly the inserted modules, each equal to a freshly built one
    expected = sum(n_params(attnzoo.create(module, r.channels)) for r in report)
    assert n_params(model) - before == expected == sum(r.params for r in report)
    out = model(X)
    assert out.shape == ref.shape and torch.isfinite(out).all()
    assert not torch.allclose(out, ref)  # the modules really are in the forward


@pytest.mark.parametrize("model_name", list(MODELS))
def test_identity_gate_leaves_outputs_unchanged(model_name):
    build, count, _, _, _ = MODELS[model_name]
    model = perturb_bn(build())
    ref = model(X)
    model, report = insert(model, "se")
    assert len(report) == count
    make_identity_se(model, report)
    assert torch.equal(model(X), ref)


IDENTITY_NCHW = [n for n in attnzoo.list_modules() if attnzoo.info(n).layout == "nchw" and attnzoo.info(n).identity_at_init]


@pytest.mark.parametrize("module", IDENTITY_NCHW)
def test_identity_at_init_modules_leave_resnet_outputs_unchanged(module):
    model = perturb_bn(tv_model("resnet18"))
    ref = model(X)
    model, report = insert(model, module, **attnzoo.info(module).test_kwargs)
    assert len(report) == 8
    torch.testing.assert_close(model(X), ref, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# placement: each block's forward written out by hand with the module in the paper's position


def _tv_basic(b, x):
    out = b.relu(b.bn1(b.conv1(x)))
    out = b.bn2.attn(b.bn2.module(b.conv2(out)))
    return b.relu(out + (b.downsample(x) if b.downsample is not None else x))


def _tv_bottleneck(b, x):
    out = b.relu(b.bn1(b.conv1(x)))
    out = b.relu(b.bn2(b.conv2(out)))
    out = b.bn3.attn(b.bn3.module(b.conv3(out)))
    return b.relu(out + (b.downsample(x) if b.downsample is not None else x))


def _timm_bottleneck(b, x):
    out = b.act1(b.bn1(b.conv1(x)))
    out = b.act2(b.bn2(b.conv2(out)))
    out = b.se(b.bn3(b.conv3(out)))
    return b.act3(out + (b.downsample(x) if b.downsample is not None else x))


def _timm_inverted_residual(b, x):
    out = b.bn1(b.conv_pw(x))
    out = b.se(b.bn2(b.conv_dw(out)))
    out = b.bn3.attn(b.bn3.module(b.conv_pwl(out)))
    return out + x if b.has_skip else out


@pytest.mark.parametrize(
    "build, block, manual, size",
    [
        (lambda: tv_model("resnet18"), "layer2.0", _tv_basic, 16),  # with a downsample
        (lambda: tv_model("resnet18"), "layer1.1", _tv_basic, 16),
        (lambda: tv_model("resnet50"), "layer3.0", _tv_bottleneck, 8),
        (lambda: timm_model("resnet26d"), "layer2.1", _timm_bottleneck, 8),
        (lambda: timm_model("mobilenetv3_small_050"), "blocks.2.1", _timm_inverted_residual, 8),
    ],
)
@torch.no_grad()
def test_placement_matches_block_written_out(build, block, manual, size):
    model = perturb_bn(build())
    insert(model, "cbam", zero_init=False)
    b = model.get_submodule(block)
    x = torch.randn(2, b.conv1.in_channels if hasattr(b, "conv1") else b.conv_pw.in_channels, size, size)
    torch.testing.assert_close(b(x), manual(b, x), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------------------
# where= / position= / channels


def test_where_names_patterns_and_callable():
    model = tv_model("resnet18")
    before = n_params(model)
    _, report = insert(model, "eca", where=["layer3", "layer4.*"])
    # "layer3" is a Sequential: after its output; "layer4.*" matches the two blocks (in-block position)
    assert [r.name for r in report] == ["layer3.attn", "layer4.0.bn2.attn", "layer4.1.bn2.attn"]
    layer3 = next(r for r in report if r.name == "layer3.attn")
    assert layer3.channels == 256 and layer3.after == "layer3"
    assert n_params(model) - before == sum(r.params for r in report)
    assert model(X).shape == (2, 1000)

    tv_block = torchvision.models.resnet.BasicBlock
    model = tv_model("resnet18")
    _, report = insert(model, "cbam", where=lambda n, m: isinstance(m, tv_block) and n.startswith("layer4"))
    assert [r.name for r in report] == ["layer4.0.bn2.attn", "layer4.1.bn2.attn"]

    model = tv_model("resnet18")
    _, report = insert(model, "se", where=["layer1.0"], position="after")
    assert [(r.name, r.after, r.channels) for r in report] == [("layer1.0.attn", "layer1.0", 64)]
    assert isinstance(model.layer1[0], InsertedAttention)
    assert model(X).shape == (2, 1000)


def test_where_on_timm_mobilenet_stage_and_example_input():
    model = timm_model("mobilenetv3_small_050")
    ref = timm_model("mobilenetv3_small_050")
    _, by_attr = insert(model, "coord", where=["blocks.1", "blocks.3"])
    _, measured = insert(ref, "coord", where=["blocks.1", "blocks.3"], example_input=X[:1])
    assert [r.channels for r in by_attr] == [r.channels for r in measured] == [16, 24]
    assert model(X).shape == (2, 1000)


def test_explicit_channels_and_factory():
    model = tv_model("resnet18")
    _, report = insert(model, lambda c: nn.BatchNorm2d(c), where=["layer1"])
    assert isinstance(model.layer1.attn, nn.BatchNorm2d) and report[0].channels == 64 and report[0].params == 128
    model = tv_model("resnet18")
    _, report = insert(model, "se", where=["avgpool"], channels=512)
    assert report[0].channels == 512 and model(X).shape == (2, 1000)


def test_insert_errors():
    with pytest.raises(ValueError, match="did you mean"):
        insert(tv_model("resnet18"), "cbma")
    with pytest.raises(ValueError, match="layout 'nchw'"):
        insert(tv_model("resnet18"), "fpn")
    with pytest.raises(TypeError, match="reductoin"):
        insert(tv_model("resnet18"), "se", reductoin=4)
    with pytest.raises(ValueError, match="found no residual block"):
        insert(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()), "se")
    with pytest.raises(ValueError, match="'layer9'.*did you mean"):
        insert(tv_model("resnet18"), "se", where=["layer9"])
    with pytest.raises(ValueError, match="cannot infer the channels"):
        insert(tv_model("resnet18"), "se", where=["relu"])
    with pytest.raises(ValueError, match="position"):
        insert(tv_model("resnet18"), "se", position="before")
    with pytest.raises(ValueError, match="selected no submodule"):
        insert(tv_model("resnet18"), "se", where=lambda n, m: False)


def test_gpu_free_dtype_and_mode_follow_the_host():
    model = tv_model("resnet18").double().train()
    _, report = insert(model, "cbam")
    attn = model.get_submodule(report[0].name)
    assert attn.training and next(attn.parameters()).dtype == torch.float64
    assert model(X.double()).dtype == torch.float64


# ---------------------------------------------------------------------------------------------------------------
# state dicts and serialisation


def test_original_checkpoint_loads_into_modified_model():
    original = perturb_bn(tv_model("resnet18"))
    state = original.state_dict()
    model = tv_model("resnet18")
    _, report = insert(model, "cbam")
    result = model.load_state_dict(state, strict=False)
    assert not result.unexpected_keys
    assert result.missing_keys and all(".attn." in k for k in result.missing_keys)
    new_keys = [k for r in report for k in model.get_submodule(r.name).state_dict() if "num_batches_tracked" not in k]
    assert len(result.missing_keys) == len(new_keys)  # (BN fills a missing num_batches_tracked without a report)
    torch.testing.assert_close(model.layer1[0].bn2.module.running_var, original.layer1[0].bn2.running_var)
    # with identity gates, the modified model now computes exactly what the original does
    model2 = tv_model("resnet18")
    _, report2 = insert(model2, "se")
    model2.load_state_dict(state, strict=False)
    make_identity_se(model2, report2)
    assert torch.equal(model2(X), original(X))
    # its own state dict round-trips strictly, torch.save / deepcopy / pickle work
    fresh = tv_model("resnet18")
    insert(fresh, "cbam")
    fresh.load_state_dict(model.state_dict(), strict=True)
    assert torch.equal(fresh(X), model(X))
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert torch.equal(loaded(X), model(X))
    assert torch.equal(copy.deepcopy(model)(X), model(X))


# ---------------------------------------------------------------------------------------------------------------
# timm attn_layer


def test_timm_attn_layer_matches_insert():
    via_timm = timm_model("resnet26d", block_args=dict(attn_layer=timm_attn("eca")))
    via_insert = timm_model("resnet26d")
    before = n_params(via_insert)
    _, report = insert(via_insert, "eca")
    blocks = [m for m in via_timm.modules() if isinstance(m, timm.models.resnet.Bottleneck)]
    assert len(blocks) == 8
    for b in blocks:
        assert isinstance(b.se, attnzoo.EfficientChannelAttention) and b.se.channels == b.bn3.num_features
    # same keys in the same places: the weights of one load strictly into the other, same outputs
    assert n_params(via_timm) - before == sum(r.params for r in report)
    via_insert.load_state_dict(via_timm.state_dict(), strict=True)
    perturb_bn(via_timm)
    via_insert.load_state_dict(via_timm.state_dict(), strict=True)
    assert torch.equal(via_timm(X), via_insert(X))


def test_timm_attn_arguments_and_other_hosts():
    m = timm_model("resnet26d", block_args=dict(attn_layer=timm_attn("cbam", kernel_size=3)))
    assert m.layer1[0].se.spatial_gate.gate.conv.kernel_size == (3, 3)
    assert m(X).shape == (2, 1000)
    with pytest.raises(TypeError, match="kernal_size"):
        timm_attn("cbam", kernal_size=3)
    with pytest.raises(ValueError, match="layout 'nchw'"):
        timm_attn("asff")
    with pytest.raises(ValueError, match="did you mean"):
        timm_attn("ecaa")
    factory = timm_attn("eca")
    with pytest.raises(TypeError, match="act_layer"):
        factory(32, act_layer=nn.ReLU)
    assert factory(32, device="cpu", dtype=torch.float64).conv.weight.dtype == torch.float64
    assert pickle.loads(pickle.dumps(factory))(16).channels == 16
    assert repr(timm_attn("cbam", ignore=["act_layer"], kernel_size=3)) == "timm_attn('cbam', ignore=['act_layer'], kernel_size=3)"
    # EfficientNet's se_layer slot passes act_layer (and probes rd_ratio): drop the first, the probe fails cleanly
    eff = timm_model("efficientnet_b0", se_layer=timm_attn("eca", ignore=["act_layer"]))
    gates = [m for m in eff.modules() if isinstance(m, attnzoo.EfficientChannelAttention)]
    assert len(gates) == 16 and not any(type(m).__name__ == "SqueezeExcite" and m.__module__.startswith("timm") for m in eff.modules())
    assert eff(X).shape == (2, 1000)


# Every same-shape nchw module through timm's two attention slots, built at the widths timm asks for.
SAME_SHAPE_NCHW = [n for n in attnzoo.list_modules() if attnzoo.info(n).same_shape_nchw(None)]
# host -> its create_model keywords for an attention layer `f`: a ResNet's BasicBlock `se` slot (attn_layer through
# block_args; widths 64..512) and the EfficientNet class's se_layer (the efficientnet_b0 route at timm's test size;
# widths 128, 192)
TIMM_HOSTS = {
    "resnet10t": lambda f: dict(block_args=dict(attn_layer=f)),
    "test_efficientnet": lambda f: dict(se_layer=f),
}


def has_biasless_linear(module: nn.Module) -> bool:
    return any(isinstance(m, nn.Linear) and m.bias is None for m in module.modules())


@functools.lru_cache(maxsize=None)
def timm_slot_widths(host: str) -> tuple[int, ...]:
    """The widths timm builds the host's attention slots at, in order (without EfficientNet's rd_ratio probe)."""
    widths: list[int] = []

    def record(channels, rd_ratio=None, **kw):
        if rd_ratio is not None:
            raise TypeError("probe")  # like a layer without a ratio: timm catches this
        widths.append(channels)
        return nn.Identity()

    timm.create_model(host, pretrained=False, **TIMM_HOSTS[host](record))
    return tuple(widths)


@pytest.mark.parametrize("name", SAME_SHAPE_NCHW)
def test_timm_attn_every_same_shape_module(name):
    """timm builds the module lazily at each block's width (a module that rejects every small width, such as EMA
    or FcaNet, works wherever the host's widths fit it), the network runs with the module in each slot and the
    right width, and a width the module rejects fails with attnzoo's error naming the factory and the width, the
    same error the module gives on its own."""
    entry = attnzoo.info(name)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for host, slot in TIMM_HOSTS.items():
        factory = timm_attn(name, ignore=["act_layer"])
        widths = timm_slot_widths(host)
        torch.manual_seed(0)
        try:
            model = timm.create_model(host, pretrained=False, **slot(factory)).eval()
        except AttributeError as err:
            # timm's EfficientNet re-initialises every layer of the model and zeroes each nn.Linear's bias without
            # checking that there is one (timm.models._efficientnet_builder._init_weight_goog): a timm limitation
            # (docs/integrations.md), met exactly by the modules with a bias-free nn.Linear
            assert host == "test_efficientnet" and "'NoneType' object has no attribute 'zero_'" in str(err)
            assert has_biasless_linear(attnzoo.create(name, widths[0]))
            continue
        except ValueError as err:
            prefix = f"{factory!r} for a "
            assert str(err).startswith(prefix), str(err)
            width, _, own = str(err)[len(prefix) :].partition("-channel block of the host: ")
            assert int(width) in widths
            with pytest.raises(ValueError) as alone:
                attnzoo.create(name, int(width))
            assert str(alone.value) == own
            continue
        slots = [m.se for m in model.modules() if type(m).__module__.startswith("timm") and hasattr(m, "se")]
        slots = [s for s in slots if not isinstance(s, nn.Identity)]  # blocks without an attention slot
        assert [type(s) for s in slots] == [entry.cls] * len(widths)
        seen: list[tuple[int, ...]] = []
        hooks = [s.register_forward_hook(lambda m, i, o: seen.append((i[0].shape[1], *o.shape[1:]))) for s in slots]
        with torch.no_grad():
            out = model(x)
        for h in hooks:
            h.remove()
        assert out.shape == (1, 1000) and torch.isfinite(out).all()
        assert [s[:2] for s in seen] == [(w, w) for w in widths]  # each module built at and fed its block's width
        assert host != "test_efficientnet" or not has_biasless_linear(slots[0])
    if name in ("ema", "fca", "ela", "cgnl"):  # these were once refused by a stand-in 8-channel build
        assert timm_attn(name)(64).__class__ is entry.cls


def test_import_is_light():
    import subprocess
    import sys

    code = (
        "import sys, attnzoo, attnzoo.integrations; attnzoo.insert; attnzoo.timm_attn; "
        "print(sorted(m for m in ('timm', 'torchvision', 'ultralytics', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
    assert attnzoo.insert is insert and attnzoo.timm_attn is timm_attn


# ---------------------------------------------------------------------------------------------------------------
# exports (docs/exports.md)


def _exportable(name: str) -> nn.Module:
    if name == "tv_resnet18_cbam":
        model = perturb_bn(tv_model("resnet18"))
        insert(model, "cbam", zero_init=False)
    else:
        model = perturb_bn(timm_model("resnet26d", block_args=dict(attn_layer=timm_attn("coord"))))
    return model.eval()


# Sizes >= 64 keep the last stage > 1×1: torch.export specialises a size of 1 (the plain networks too).
DYNAMIC = {0: "batch", 2: "height", 3: "width"}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tv_resnet18_cbam", "timm_resnet26d_coord"])
def test_torch_export_of_model_with_inserted_modules(name):
    model = _exportable(name)
    x = torch.randn(2, 3, 64, 64)
    batch = torch.export.Dim("batch", min=1, max=64)
    if name.startswith("timm_resnet26d"):
        # timm's avg-down shortcut (AvgPool2d, ceil_mode) only exports for multiples of 32, as without attnzoo
        h, w = torch.export.Dim("h", min=2, max=32), torch.export.Dim("w", min=2, max=32)
        dims, x2 = {0: batch, 2: 32 * h, 3: 32 * w}, torch.randn(3, 3, 96, 128)
    else:
        dims = {0: batch, 2: torch.export.Dim("height", min=64, max=1024), 3: torch.export.Dim("width", min=64, max=1024)}
        x2 = torch.randn(3, 3, 75, 97)
    ep = torch.export.export(model, (x,), dynamic_shapes={"x": dims})
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x2), model(x2), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tv_resnet18_cbam"])
def test_onnx_export_of_model_with_inserted_modules(name, tmp_path):
    ort = require("onnxruntime")
    require("onnxscript")
    model = _exportable(name)
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(model, (torch.randn(2, 3, 64, 64),), str(path), dynamo=True, input_names=["images"],
                      output_names=["logits"], dynamic_shapes={"x": DYNAMIC})
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 75, 97)  # another batch and size than at export
    got = sess.run(None, {"images": x.numpy()})[0]
    with torch.no_grad():
        ref = model(x).numpy()
    assert abs(got - ref).max() < 1e-4


@pytest.mark.slow
def test_fx_and_jit_trace_of_model_with_inserted_modules():
    model = _exportable("tv_resnet18_cbam")
    x = torch.randn(2, 3, 64, 64)
    gm = torch.fx.symbolic_trace(model)
    assert any(n.op == "call_module" and ".attn." in str(n.target) for n in gm.graph.nodes)
    traced = torch.jit.trace(model, (x,))
    x2 = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x2)
        torch.testing.assert_close(gm(x2), ref, rtol=0, atol=0)
        torch.testing.assert_close(traced(x2), ref, rtol=1e-5, atol=1e-5)


NEW_GATES = ["gc", "ese", "ge", "fca", "gct", "scse", "simam", "ema", "shuffle_attention", "sge", "bam", "polarized",
             "gam", "ela", "caa", "lka", "lska", "lsk", "ceca", "lcbam", "parnet_sse", "splat", "epsa", "bat", "scsa"]


@pytest.mark.parametrize("name", NEW_GATES)
def test_insert_every_new_gate_into_resnet50_and_timm_resnet26d(name):
    """Each gate goes into every bottleneck of torchvision's resnet50 (16) and timm's resnet26d (8), after the
    last norm of the residual branch, and the network still runs."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    for host, count in ((tv_model("resnet50"), 16), (timm_model("resnet26d"), 8)):  # copies of cached builds
        model, where = attnzoo.insert(host, name)
        assert len(where) == count
        with torch.no_grad():
            assert model(x).shape == (1, 1000)


#: The efficient-ViT attentions that keep a map's shape, each inserted into a host network.
EFFICIENT_VIT = ["swin", "cascaded_group_attention", "shsa", "clo_attention", "acmix", "bot_mhsa", "aa_conv",
                 "lambda_layer", "generalized_attention", "lite_mla", "mobilevit", "mobilevit_v2", "agent_attention",
                 "focal_modulation"]  # fmt: skip


@pytest.mark.parametrize("name", [n for n in EFFICIENT_VIT if n in attnzoo.list_modules()])
def test_insert_efficient_vit_attention_into_resnet18(name):
    """Each goes into every basic block of torchvision's resnet18 (8, widths 64–512, maps 8×8 … 1×1 at a 32×32
    input), after the residual branch's last norm, and the network runs (gradients, finiteness: the contract; an
    untrained conv-replacing layer such as lambda_layer after every block can overflow a random network)."""
    torch.manual_seed(0)
    model, where = attnzoo.insert(tv_model("resnet18"), name)
    assert len(where) == 8 and all(attnzoo.info(name).cls is type(model.get_submodule(r.name)) for r in where)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 32))
    assert out.shape == (1, 1000)


#: each pooling gate with the stage it goes into (one host per network: every stage's width inferred)
POOLING_GATES = {"strip_pooling": "layer1", "cpca": "layer2", "mlca": "layer3", "mixed_pooling": "layer4"}


def test_insert_the_pooling_gates_into_resnet50_and_timm_resnet26d():
    """SPNet's strip and mixed pooling, MLCA and CPCA go into the bottlenecks of torchvision's resnet50 and timm's
    resnet26d, one stage each (one host per network, so the test stays cheap), and the network runs."""
    torchvision = require("torchvision")
    timm = require("timm")
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    for host, blocks in ((torchvision.models.resnet50(), (3, 4, 6, 3)), (timm.create_model("resnet26d"), (2, 2, 2, 2))):
        host.eval()
        for (name, stage), count in zip(POOLING_GATES.items(), blocks):
            model, where = attnzoo.insert(host, name, [f"{stage}.*"])
            cls = attnzoo.info(name).cls
            assert len(where) == count and sum(isinstance(m, cls) for m in model.modules()) == count
        with torch.no_grad():
            assert model(x).shape == (1, 1000)
