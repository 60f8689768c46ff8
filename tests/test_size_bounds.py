"""Size arguments that scale an allocation are bounded.

Every registered class declares, in ``size_bounds``, the largest value of each constructor argument that scales
an allocation (kernel sizes, tables, memory units, depths, ratios).  For each declared bound of each module:

- bound + 1 raises a ``ValueError`` naming the class, the argument and the bound, and it does so before any
  ``nn.Module`` is initialised (so nothing is allocated: ``nn.Module.__init__`` is watched) and with under 1 MiB
  of Python allocations (tracemalloc);
- the bound itself is accepted (built on the meta device, random initialisers skipped: no memory, no time).

A sequence argument (``kernels=(3, 5, 7)``) is bounded element by element: its last element is replaced.
"""

from __future__ import annotations

import inspect
import tracemalloc
from typing import Any

import pytest
import torch

import attnzoo
from helpers import channels_for

CASES = [
    (name, arg)
    for name in attnzoo.list_modules()
    for arg in attnzoo.info(name).cls.size_bounds
]


def with_value(name: str, arg: str, value: float) -> tuple[Any, dict]:
    entry = attnzoo.info(name)
    channels = channels_for(name)
    kwargs = dict(entry.test_kwargs)
    current = kwargs.get(arg, inspect.signature(entry.cls.__init__).parameters[arg].default)
    if isinstance(current, (tuple, list)) and current:
        kwargs[arg] = type(current)([*current[:-1], value])
    else:
        kwargs[arg] = value
    return channels, kwargs


def test_bounded_arguments_are_the_documented_ones():
    """Each declared bound names a constructor argument and appears in the class docstring."""
    assert len(CASES) >= 80
    for name, arg in CASES:
        cls = attnzoo.info(name).cls
        assert arg in inspect.signature(cls.__init__).parameters, (name, arg)
        assert f"``{arg}`` ≤" in (cls.__doc__ or ""), (name, arg)


@pytest.mark.parametrize("name,arg", CASES)
def test_bound_plus_one_raises_before_allocating(name, arg, monkeypatch):
    cls = attnzoo.info(name).cls
    channels = channels_for(name)
    bound = cls.size_bounds[arg].value(channels)
    above = bound + 1
    channels, kwargs = with_value(name, arg, above)
    initialised: list[type] = []
    original = torch.nn.Module.__init__

    def watched(self: torch.nn.Module, *a: Any, **kw: Any) -> None:
        initialised.append(type(self))
        original(self, *a, **kw)

    monkeypatch.setattr(torch.nn.Module, "__init__", watched)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as err:
            cls(channels, **kwargs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(err.value)
    assert message.startswith(f"{cls.__name__}: {arg} must be at most"), message
    assert str(bound) in message and repr(kwargs[arg]) in message, message
    assert initialised == [], f"{name}: modules were built before the bound was checked: {initialised}"
    assert peak < 2**20, f"{name}: {peak} bytes allocated before the ValueError"


@pytest.mark.parametrize("name,arg", CASES)
def test_the_bound_itself_is_accepted(name, arg, monkeypatch):
    cls = attnzoo.info(name).cls
    bound = cls.size_bounds[arg].value(channels_for(name))
    value = int(bound) if float(bound).is_integer() else bound
    channels, kwargs = with_value(name, arg, value)
    for method in ("normal_", "uniform_", "trunc_normal_"):  # meta's random decompositions: seconds, needless here
        if hasattr(torch.Tensor, method):
            monkeypatch.setattr(torch.Tensor, method, lambda t, *a, **k: t)
    for init in ("normal_", "uniform_", "trunc_normal_", "orthogonal_", "kaiming_uniform_", "kaiming_normal_",
                 "xavier_uniform_", "xavier_normal_"):
        monkeypatch.setattr(torch.nn.init, init, lambda t, *a, **k: t)
    with torch.device("meta"):
        module = cls(channels, **kwargs)
    assert sum(p.numel() for p in module.parameters()) < 2**26, f"{name}: {arg}={value} builds over 64 M weights"
