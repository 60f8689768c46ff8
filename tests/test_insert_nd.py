"""``attnzoo.insert`` in video, volume and signal networks: torchvision's video ResNets, MONAI's ``UNet`` /
``BasicUNet``, and a small 1-D ResNet written here.

The rank (``dims``) is inferred from the layer the module follows.  Placement is checked against each block's
forward written out by hand from a copy of the block taken before the insertion (the module between the last
layer of the residual branch and the addition); a 2-D-only module and a contradicting ``dims=`` are refused
before the model is touched; gradients reach every inserted module.  Inputs are tiny (1×3×4×32×32 clips,
16³ and 32³ volumes with 4–16 channels).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import attnzoo
from attnzoo.integrations import InsertedAttention, insert
from attnzoo.integrations.surgery import spatial_rank
from helpers import require

torchvision = require("torchvision")
monai = require("monai")

from monai.networks.nets import BasicUNet, UNet  # noqa: E402
from torchvision.models.resnet import BasicBlock  # noqa: E402
from torchvision.models.video import mc3_18, r2plus1d_18, r3d_18  # noqa: E402

CLIP = (1, 3, 4, 32, 32)


class BasicBlock1d(BasicBlock):
    """torchvision's ``BasicBlock`` with Conv1d / BatchNorm1d layers (its forward is rank-agnostic)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        nn.Module.__init__(self)
        self.conv1 = nn.Conv1d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm1d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv1d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm1d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv1d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm1d(planes))
        self.stride = stride


class ResNet1d(nn.Module):
    """A small ResNet for B×C×L signals (ECG-like): a stem, two stages of two blocks, pooling, a classifier."""

    def __init__(self, in_chans: int = 2, width: int = 8, num_classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(in_chans, width, 7, 2, 3, bias=False), nn.BatchNorm1d(width), nn.ReLU())
        self.layer1 = nn.Sequential(BasicBlock1d(width, width), BasicBlock1d(width, width))
        self.layer2 = nn.Sequential(BasicBlock1d(width, 2 * width, 2), BasicBlock1d(2 * width, 2 * width))
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(x.mean(-1))


def perturb_bn(model: nn.Module) -> nn.Module:
    """Random BN statistics and affine parameters, so that a misplaced module changes the output."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._NormBase) and m.affine:
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
    return model


def unet3d() -> nn.Module:
    return UNet(spatial_dims=3, in_channels=1, out_channels=2, channels=(4, 8, 16), strides=(2, 2), num_res_units=2)


def basic_unet3d() -> nn.Module:
    return BasicUNet(spatial_dims=3, in_channels=1, out_channels=2, features=(4, 4, 8, 8, 16, 4))


def video(build):
    """A torchvision video ResNet's row: one module after conv2.1 (the BatchNorm3d) of each of its 8 blocks."""
    return lambda: build(num_classes=5), CLIP, [f"layer{i}.{j}.conv2.1" for i in range(1, 5) for j in (0, 1)], (1, 5)


# (builder, input shape, expected insertion names (the wrapped layer), output shape)
MODELS = {
    "r3d_18": video(r3d_18),
    "r2plus1d_18": video(r2plus1d_18),
    "mc3_18": video(mc3_18),
    # the output head (the top up-sampling ResidualUnit, last_conv_only) is left alone
    "unet3d": (
        unet3d,
        (1, 1, 16, 16, 16),
        [
            "model.0.conv.unit1",
            "model.1.submodule.0.conv.unit1",
            "model.1.submodule.1.submodule.conv.unit1",
            "model.1.submodule.2.1.conv.unit0",
        ],
        (1, 2, 16, 16, 16),
    ),  # fmt: skip
    "basic_unet3d": (
        basic_unet3d,
        (1, 1, 32, 32, 32),
        [
            "conv_0.conv_1",
            *(f"down_{i}.convs.conv_1" for i in range(1, 5)),
            *(f"upcat_{i}.convs.conv_1" for i in (4, 3, 2, 1)),
        ],
        (1, 2, 32, 32, 32),
    ),  # fmt: skip
    "resnet1d": (ResNet1d, (2, 2, 64), [f"layer{i}.{j}.bn2" for i in (1, 2) for j in (0, 1)], (2, 3)),
}


@pytest.mark.parametrize("model_name", list(MODELS))
def test_insert_infers_dims_places_and_trains(model_name):
    build, shape, expected, out_shape = MODELS[model_name]
    torch.manual_seed(0)
    model = build()
    rank = len(shape) - 2
    module = "se" if "unet" not in model_name else "scse"
    before = sum(p.numel() for p in model.parameters())
    _, report = insert(model, module)
    assert [r.after for r in report] == expected
    assert all(r.dims == rank and r.name == r.after + ".attn" for r in report)
    for r in report:
        wrapper = model.get_submodule(r.after)
        assert isinstance(wrapper, InsertedAttention)
        fresh = attnzoo.create(module, r.channels, dims=rank)
        assert [p.shape for p in wrapper.attn.parameters()] == [p.shape for p in fresh.parameters()]
    assert sum(p.numel() for p in model.parameters()) == before + sum(r.params for r in report)

    x = torch.randn(shape)
    model.train()
    y = model(x)
    assert y.shape == out_shape
    y.square().mean().backward()
    for r in report:
        grads = [p.grad for p in model.get_submodule(r.name).parameters()]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads), r.name
        assert any(g.abs().sum() > 0 for g in grads), r.name


def test_inserted_module_sees_the_expected_rank_and_channels():
    """Each inserted module is called on the activation of the layer it follows: a 5-D clip map with the
    reported channels (a forward hook records what it receives)."""
    model = r3d_18(num_classes=5)
    _, report = insert(model, "eca")
    seen: dict[str, tuple[int, ...]] = {}

    def record(name: str):
        def hook(mod, args, out) -> None:
            seen.setdefault(name, tuple(args[0].shape))

        return hook

    for r in report:
        model.get_submodule(r.name).register_forward_hook(record(r.name))
    model.eval()(torch.randn(CLIP))
    assert {n: (s[1], len(s) - 2) for n, s in seen.items()} == {r.name: (r.channels, 3) for r in report}


# ---------------------------------------------------------------------------------------------------------------
# placement against the block written out by hand


def _video_basic(orig, attn, x):
    out = attn(orig.conv2(orig.conv1(x)))
    return F.relu(out + (orig.downsample(x) if orig.downsample is not None else x))


def _residual_unit(orig, attn, x):
    return attn(orig.conv(x)) + orig.residual(x)


def _two_conv(orig, attn, x):
    return attn(orig(x))


def _basic_1d(orig, attn, x):
    out = attn(orig.bn2(orig.conv2(orig.relu(orig.bn1(orig.conv1(x))))))
    return F.relu(out + (orig.downsample(x) if orig.downsample is not None else x))


@pytest.mark.parametrize(
    "model_name, block, attn_at, manual, in_shape",
    [
        ("r3d_18", "layer2.0", "conv2.1", _video_basic, (1, 64, 4, 8, 8)),
        ("r2plus1d_18", "layer1.1", "conv2.1", _video_basic, (1, 64, 3, 8, 8)),
        ("unet3d", "model.1.submodule.0", "conv.unit1", _residual_unit, (1, 4, 8, 8, 8)),
        ("basic_unet3d", "down_2.convs", "conv_1", _two_conv, (1, 4, 8, 8, 8)),
        ("resnet1d", "layer2.0", "bn2", _basic_1d, (2, 8, 32)),
    ],
)
@torch.no_grad()
def test_placement_matches_block_written_out(model_name, block, attn_at, manual, in_shape):
    torch.manual_seed(0)
    model = perturb_bn(MODELS[model_name][0]()).eval()
    orig = copy.deepcopy(model.get_submodule(block))
    insert(model, "cbam")
    b = model.get_submodule(block)
    attn = b.get_submodule(attn_at).attn
    with torch.no_grad():  # a visible gate: the spatial half's conv is zero-initialised in some modules
        for p in attn.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(in_shape)
    ref = manual(orig, attn, x)
    torch.testing.assert_close(b(x), ref, rtol=1e-5, atol=1e-6)
    assert (ref - manual(orig, nn.Identity(), x)).abs().max() > 1e-3  # the module changes the block's output


# ---------------------------------------------------------------------------------------------------------------
# errors before the model is touched, explicit dims, example_input


def state(model: nn.Module) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_two_d_only_module_is_refused_before_the_model_changes():
    assert attnzoo.info("coord").dims == (2,)
    for build, rank in ((lambda: r3d_18(num_classes=5), 3), (ResNet1d, 1)):
        model = build()
        keys = list(state(model))
        with pytest.raises(ValueError, match=rf"'coord'.*supports dims \(2,\).*is {rank}-D \(dims={rank}\)"):
            insert(model, "coord")
        assert list(state(model)) == keys
        assert not any(isinstance(m, InsertedAttention) for m in model.modules())


def test_explicit_dims_must_agree_and_shape_check_remains():
    model = r3d_18(num_classes=5)
    with pytest.raises(ValueError, match=r"dims=2 was passed, but the output of 'layer1.0.conv2.1'.*3-D"):
        insert(model, "se", dims=2)
    with pytest.raises(ValueError, match=r"spatial_dims|dims=1 was passed"):
        insert(model, "se", spatial_dims=1)
    with pytest.raises(ValueError, match=r"'fpn'.*insert needs one B×C×H×W map"):
        insert(model, "fpn")
    assert not any(isinstance(m, InsertedAttention) for m in model.modules())
    _, report = insert(model, "se", dims=3)
    assert len(report) == 8 and all(r.dims == 3 for r in report)


def test_rank_measured_with_example_input_and_read_from_layers():
    assert [spatial_rank(m) for m in (nn.BatchNorm3d(4), nn.Conv1d(2, 4, 3), nn.InstanceNorm3d(4), nn.ReLU())] == [
        3, 1, 3, None
    ]  # fmt: skip
    model = ResNet1d()
    # where= on plain layers: the rank comes from the measured activation (B×C×L) as well as from the layers
    _, report = insert(model, "eca", where=["layer1.0", "layer2.1"], example_input=torch.randn(2, 2, 64))
    assert [(r.after, r.channels, r.dims) for r in report] == [("layer1.0.bn2", 8, 1), ("layer2.1.bn2", 16, 1)]
    assert model(torch.randn(2, 2, 64)).shape == (2, 3)
