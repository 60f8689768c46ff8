"""Shape semantics in the registry: every module's declared :class:`attnzoo.ShapeRule` against its real output, and
the tools that need a same-shape nchw module (``insert``, ``timm_attn``, ``compare``) refusing the others
before they touch anything.

The rule is checked at two sizes and two argument sets per module: the contract's ``test_kwargs``, and the same
with every shape-relevant argument the constructor takes set away from its default (``out_channels``, ``scale``,
``stride``, ``dilation``, dcnv2's ``padding``), so a rule that ignores an argument fails.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch
import torch.nn as nn

import attnzoo
from attnzoo.integrations import InsertedAttention, insert, timm_attn
from attnzoo.layouts import example_inputs
from helpers import build, channels_for, require

torch.set_num_threads(1)

#: argument -> a non-default value (from the module's input channels c); only for arguments the module takes
NON_DEFAULT = {"out_channels": lambda c: 2 * c, "scale": lambda c: 3, "stride": lambda c: 2}
#: extra non-default arguments of single modules (their shape rules read them)
EXTRA = {"dcnv2": {"padding": 0}, "dilated_inception": {"dilation": 2}, "gated_tcn": {"dilation": 2}}
SIZES = [(13, 17), (16, 16)]

SINGLE_MAP = [n for n in attnzoo.list_modules() if attnzoo.info(n).layout != "pyramid"]


def arg_sets(name: str) -> list[dict[str, Any]]:
    entry = attnzoo.info(name)
    params = inspect.signature(entry.cls.__init__).parameters
    c = channels_for(name)
    changed = {k: f(c) for k, f in NON_DEFAULT.items() if k in params}
    return [dict(entry.test_kwargs), {**entry.test_kwargs, **changed, **EXTRA.get(name, {})}]


def main_map(args: tuple) -> torch.Tensor:
    return args[0][0] if isinstance(args[0], (list, tuple)) else args[0]


@pytest.mark.parametrize("set_index", [0, 1])
@pytest.mark.parametrize("name", SINGLE_MAP)
def test_declared_rule_matches_the_real_output(name, set_index):
    entry = attnzoo.info(name)
    kwargs = arg_sets(name)[set_index]
    c = channels_for(name)
    m = build(name, **kwargs).eval()
    for size in SIZES:
        size = tuple(max(a, b) for a, b in zip(size, entry.min_size))
        args = example_inputs(name, batch=2, channels=c, size=size, generator=torch.Generator().manual_seed(0))
        x = main_map(args)
        with torch.no_grad():
            y = m(*args)
        y = y[0] if isinstance(y, (list, tuple)) else y
        assert entry.output_shape_of(m, *args) == [tuple(y.shape)], f"{name} {kwargs} at {size}"
        if entry.layout == "tokens":  # B×N×C: the rule keeps the tokens
            assert not entry.shape.changes and y.shape == x.shape
            continue
        want = (x.shape[0], entry.output_channels(c, **kwargs), *entry.output_size(*x.shape[2:], c, **kwargs))
        assert tuple(y.shape) == want, f"{name} {kwargs} at {size}: rule says {want}, module gives {tuple(y.shape)}"
        if entry.preserves_shape(c, **kwargs):
            assert y.shape == x.shape, f"{name} {kwargs} claims to keep the shape at {size}"


def test_non_default_arguments_do_change_the_declared_shapes():
    """The second argument set really leaves the defaults (else the test above checks nothing new)."""
    for name, c, kwargs, size, out in [
        ("dysample", 16, {"scale": 3}, (5, 7), (16, 15, 21)),
        ("carafe", 16, {"scale": 3}, (5, 7), (16, 15, 21)),
        ("spd_conv", 16, {"out_channels": 24, "scale": 3}, (5, 7), (24, 2, 3)),
        ("sk", 16, {"out_channels": 32, "stride": 2}, (5, 7), (32, 3, 4)),
        ("dcnv2", 16, {"out_channels": 8, "stride": 2, "padding": 0}, (9, 7), (8, 4, 3)),
        ("efficient_self_attention", 16, {"out_channels": 8}, (5, 7), (8, 5, 7)),
        ("dilated_inception", 8, {"out_channels": 16, "dilation": 2}, (3, 20), (16, 3, 8)),
        ("gated_tcn", 8, {"padding": "causal"}, (3, 20), (8, 3, 20)),
    ]:
        e = attnzoo.info(name)
        assert (e.output_channels(c, **kwargs), *e.output_size(*size, c, **kwargs)) == out, name
        assert not e.preserves_shape(c, **kwargs) or out == (c, *size)


def test_arguments_apply_defaults_and_deprecated_names():
    e = attnzoo.info("sk")
    with pytest.warns(DeprecationWarning):
        attnzoo.create("sk", 16, min_attn_channels=4)  # the alias the registry maps
    args = e.arguments(16, min_attn_channels=4)
    assert args["channels"] == 16 and args["min_hidden"] == 4 and args["stride"] == 1 and args["out_channels"] is None
    assert attnzoo.info("cbam").arguments(16, no_spatial=True)["spatial"] is False  # converted as the class does
    with pytest.raises(TypeError, match="strde"):
        e.output_channels(16, strde=2)
    with pytest.raises(ValueError, match="pyramid"):
        attnzoo.info("fpn").output_channels([8, 16])
    assert not attnzoo.info("fpn").preserves_shape([8, 16])


def test_pair_same_layout_gives_two_maps_of_one_shape():
    x, y = example_inputs("aff", channels=8, size=(7, 5))
    assert x.shape == y.shape == (2, 8, 7, 5)
    q, ctx = example_inputs("cross_layer_nonlocal", channels=8, size=(7, 5))
    assert ctx.shape[2:] == (4, 3)


# ------------------------------------------------------------------------------------------------------------
# the tools that need a same-shape nchw module


def _host() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())


@pytest.mark.parametrize("name", attnzoo.list_modules())
def test_insert_accepts_exactly_the_same_shape_nchw_modules(name):
    """Every registered module either goes in and the host still runs with its shape, or is refused up front."""
    entry = attnzoo.info(name)
    kwargs = dict(entry.test_kwargs)
    host = _host()
    before = {k: v.clone() for k, v in host.state_dict().items()}
    if entry.same_shape_nchw(16, **kwargs):
        model, report = insert(host, name, where=["1"], **kwargs)
        assert len(report) == 1
        side = max(16, *entry.min_size)
        with torch.no_grad():
            assert model.eval()(torch.randn(1, 3, side, side)).shape == (1, 16, side, side)
    else:
        with pytest.raises(ValueError) as err:
            insert(host, name, where=["1"], **kwargs)
        msg = str(err.value)
        assert f"module {name!r} ({entry.cls.__name__})" in msg and "insert needs one B×C×H×W map" in msg
        assert entry.shape_change(16, **kwargs) in msg
        assert not any(isinstance(m, InsertedAttention) for m in host.modules())
        assert host.state_dict().keys() == before.keys()


@pytest.mark.parametrize(
    "name, kwargs, says",
    [
        ("dysample", {}, "turns a B×64×56×56 map into B×64×112×112 (upsamples H×W by `scale`)"),
        ("carafe", {}, "into B×64×112×112"),
        ("spd_conv", {}, "turns a B×64×56×56 map into B×64×28×28"),
        ("sk", {"stride": 2}, "with stride=2 turns a B×64×56×56 map into B×64×28×28"),
        ("dcnv2", {"out_channels": 32}, "into B×32×56×56"),
        ("fpn", {}, "takes a feature pyramid"),
        ("aff", {}, "takes two B×C×H×W maps of one shape"),
        ("mhsa", {}, "takes B×N×C tokens"),
    ],
)
def test_insert_refuses_shape_changing_modules_before_touching_resnet18(name, kwargs, says):
    torchvision = require("torchvision")
    model = torchvision.models.resnet18()
    modules_before = list(model.modules())
    with pytest.raises(ValueError, match=f"^insert: module '{name}'") as err:
        insert(model, name, **kwargs)
    assert says in str(err.value)
    assert list(model.modules()) == modules_before  # nothing wrapped, nothing replaced


def test_insert_checks_every_width_with_the_arguments():
    """out_channels equal to the width keeps the shape: accepted; at another width the same arguments are refused."""
    host = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.Conv2d(16, 32, 1), nn.BatchNorm2d(32))
    insert(host, "sk", where=["1"], out_channels=16)
    with pytest.raises(ValueError, match="B×32×56×56 map into B×16×56×56"):
        insert(host, "sk", where=["3"], out_channels=16)
    assert isinstance(host[1], InsertedAttention) and not isinstance(host[3], InsertedAttention)


def test_timm_attn_asks_the_same_question():
    with pytest.raises(ValueError, match="^timm_attn: module 'dysample'.*timm_attn needs one B×C×H×W map"):
        timm_attn("dysample")
    with pytest.raises(ValueError, match="with stride=2"):
        timm_attn("sk", stride=2)
    factory = timm_attn("sk", out_channels=32)  # keeps the shape of a 32-channel map only: checked per call
    assert factory(32).out_channels == 32
    with pytest.raises(ValueError, match="B×16×56×56 map into B×32×56×56"):
        factory(16)
    with pytest.raises(ValueError, match="turns a B×C×56×56 map into B×C×28×28"):  # the size needs no channels
        timm_attn("dcnv2", stride=2)


def test_compare_asks_the_same_question():
    from attnzoo.compare.config import check_module_names

    check_module_names(["none", "cbam", "sk"])
    for name in ("spd_conv", "asff"):
        with pytest.raises(ValueError, match=f"^compare: module '{name}'.*compare needs"):
            check_module_names(["none", name])


def test_register_validates_the_rule():
    with pytest.raises(ValueError, match="ShapeRule"):
        attnzoo.register("x_bad_rule", family="resample", paper="p", complexity="O(N)", shape=(2,))(nn.Identity)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="output_shape"):
        attnzoo.register(
            "x_bad_rule", family="fusion", paper="p", complexity="O(N)", layout="pyramid", shape=attnzoo.ShapeRule("out_channels")
        )(nn.Identity)
