"""Every registered constructor speaks the glossary of docs/conventions.md; deprecated aliases still work."""

from __future__ import annotations

import inspect
import re
import warnings
from pathlib import Path

import pytest

import attnzoo
from attnzoo.layers import deprecated_args_of

GLOSSARY = Path(__file__).parents[1] / "docs" / "conventions.md"


def glossary_names() -> set[str]:
    names: set[str] = set()
    for line in GLOSSARY.read_text().splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`(\w+)`", line.split("|")[1]))
    return names


@pytest.mark.parametrize("name", attnzoo.list_modules())
def test_constructor_arguments_are_in_the_glossary(name):
    cls = attnzoo.info(name).cls
    params = list(inspect.signature(cls.__init__).parameters)[1:]
    assert params and params[0] == "channels", f"{name}: the first argument must be `channels`, got {params[:1]}"
    unknown = sorted(set(params) - glossary_names())
    assert not unknown, f"{name} ({cls.__name__}): arguments {unknown} are not in docs/conventions.md"


ALIASES = [
    ("cbam", {"no_spatial": True}, lambda m: m.spatial_gate is None),
    ("triplet", {"no_spatial": True}, lambda m: m.hw is None),
    ("sk", {"min_attn_channels": 40}, lambda m: m.fc_reduce.out_channels == 40),
    ("spatial_self_attention", {"reduction_ratio": 4}, lambda m: m.reduced_channels == 16),
    ("efficient_self_attention", {"reduction": "avg"}, lambda m: m.sr_mode == "avg"),
    ("self_attention_block", {"attention": "standard"}, lambda m: m.attention_type == "standard"),
    ("self_attention_block", {"reduction": "avg", "attn_type": "efficient"}, lambda m: m.attention.sr_mode == "avg"),
    ("cgnl", {"kernel": "gaussian"}, lambda m: m.kernel_type == "gaussian"),
    ("cgnl", {"planes": 16}, lambda m: m.planes == 16),
    ("cross_layer_nonlocal", {"planes": 6}, lambda m: m.planes == 6),
    ("cot", {"min_attn_channels": 40}, lambda m: True),
    ("transformer_encoder", {"activation": "gelu"}, lambda m: True),
]


@pytest.mark.parametrize("name, old, check", ALIASES, ids=[f"{n}-{next(iter(o))}" for n, o, _ in ALIASES])
def test_deprecated_names_warn_and_work(name, old, check):
    with pytest.warns(DeprecationWarning, match="deprecated"):
        m = attnzoo.create(name, 64, **old)
    assert check(m)


def test_aliases_are_declared_and_mapped_to_glossary_names():
    for name in attnzoo.list_modules():
        for old, new in deprecated_args_of(attnzoo.info(name).cls).items():
            assert new in glossary_names(), f"{name}: alias {old} -> {new}, which is not in the glossary"


def test_old_and_new_name_together_is_a_type_error():
    with warnings.catch_warnings(), pytest.raises(TypeError, match="deprecated"):
        warnings.simplefilter("ignore")
        attnzoo.create("cbam", 64, no_spatial=True, spatial=True)
