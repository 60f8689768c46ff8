"""The public surface (docs/api.md): every name in a public ``__all__`` exists and is documented, and no tool
reaches into the registry's private dictionary."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import attnzoo

ROOT = Path(__file__).resolve().parents[1]
API = (ROOT / "docs" / "api.md").read_text()
#: The modules whose ``__all__`` is public API besides ``attnzoo`` and its family packages.
PUBLIC = ("registry", "layouts", "capture", "tracing", "testing", "layers", "functional")


def public_names() -> list[tuple[str, str]]:
    pairs = [("attnzoo", n) for n in attnzoo.__all__]
    for sub in (*attnzoo.FAMILIES, *PUBLIC):
        pairs += [(f"attnzoo.{sub}", n) for n in importlib.import_module(f"attnzoo.{sub}").__all__]
    return pairs


@pytest.mark.parametrize("module, name", public_names())
def test_public_names_exist(module, name):
    assert getattr(importlib.import_module(module), name, None) is not None, f"{module}.{name} is in __all__ only"


def test_every_public_name_but_the_module_classes_is_documented():
    module_classes = {cls.__name__ for cls in attnzoo.registry.classes().values()}
    undocumented = sorted(
        f"{module}.{name}"
        for module, name in public_names()
        if name not in module_classes
        and not re.search(rf"(?<![\w.])(attnzoo(\.\w+)*\.)?{re.escape(name)}\b", API)
    )
    assert not undocumented, f"docs/api.md does not mention {undocumented}"


def test_internal_helpers_are_not_public():
    from attnzoo import functional, layers

    for internal in ("spread_count", "z_pool", "fit_to", "zero_bn", "deprecated_args_of"):
        assert hasattr(layers, internal) and internal not in layers.__all__
    for internal in ("gather_shifts", "probabilities", "grid_table"):
        assert hasattr(functional, internal) and internal not in functional.__all__
    assert "eca_kernel_size" not in attnzoo.channel.__all__


def test_no_tool_uses_the_private_registry():
    needle = "_REG" + "ISTRY"
    users = [
        str(p.relative_to(ROOT))
        for top in ("src", "tests", "docs", "benchmarks")
        for p in (ROOT / top).rglob("*")
        if p.suffix in (".py", ".md") and p.name != "registry.py" and needle in p.read_text()
    ]
    assert not users, f"use attnzoo.registry.entries() / classes() / unregister() instead of {needle} in {users}"
