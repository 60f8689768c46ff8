"""Shared test helpers: build a registered module small, randomise it, make inputs, flatten outputs."""

from __future__ import annotations

import importlib
from contextlib import contextmanager
from types import ModuleType
from typing import Any, Callable, NoReturn

import pytest
import torch
import torch.nn as nn

import attnzoo
from attnzoo.layouts import example_inputs, pyramid_sizes
from attnzoo.testing import flatten, randomize, tensors_of

#: Channels the contract suite builds modules with (pyramid: per level).
TEST_CHANNELS: dict[str, Any] = {"nchw": 16, "pair": 16, "pair_same": 16, "pyramid": [8, 16, 32], "multi": 16, "tokens": 16, "temporal": 8}


def channels_for(name: str) -> Any:
    return TEST_CHANNELS[attnzoo.info(name).layout]


def build(name: str, channels: Any = None, seed: int = 0, dims: int = 2, **overrides: Any) -> nn.Module:
    """``attnzoo.create`` with the module's ``test_kwargs`` and small test channels, deterministic init (``dims``:
    the spatial rank, for the modules that take ``dims=``)."""
    entry = attnzoo.info(name)
    torch.manual_seed(seed)
    rank = {} if dims == 2 else {"dims": dims}
    return attnzoo.create(name, channels_for(name) if channels is None else channels,
                          **{**entry.test_kwargs, **rank, **overrides})


def nd_size(size: tuple[int, ...], dims: int) -> tuple[int, ...]:
    """The size of rank ``dims`` the suite uses where a 2-D check uses (H, W): (H·W,) in 1-D (the same positions),
    (min(3, H), H, W) in 3-D (a short odd depth; 1×1 stays 1×1×1).  Sizes of other ranks pass through."""
    if dims == 2 or len(size) != 2:
        return tuple(size)
    h, w = size
    return (h * w,) if dims == 1 else (min(3, h), h, w)


def min_size_nd(name: str, dims: int = 2) -> tuple[int, ...]:
    """The module's ``min_size`` for rank ``dims`` (the 2-D value broadcast: the larger side on every axis)."""
    m = attnzoo.info(name).min_size
    return tuple(m) if dims == 2 else (max(m),) * dims


def inputs(name: str, batch: int = 2, size: tuple[int, ...] = (7, 5), dtype: torch.dtype = torch.float32, seed: int = 2,
           channels: Any = None, respect_min_size: bool = True, dims: int = 2) -> tuple:
    """Example inputs at ``size`` (a 2-D size maps to rank ``dims`` by :func:`nd_size`), raised to the module's
    declared ``min_size`` unless ``respect_min_size=False``."""
    size = nd_size(size, dims)
    if respect_min_size:
        size = tuple(max(a, b) for a, b in zip(size, min_size_nd(name, dims)))
    g = torch.Generator().manual_seed(seed)
    ch = channels_for(name) if channels is None else channels
    return example_inputs(name, batch=batch, channels=ch, size=size, dtype=dtype, generator=g, dims=dims)


def rand(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A standard-normal tensor from a generator seeded with ``seed`` (independent of the global RNG)."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def map_args(args: tuple, fn: Callable[[torch.Tensor], torch.Tensor]) -> tuple:
    flat, rebuild = tensors_of(args)
    return rebuild([fn(t) for t in flat])


def expected_shapes(name: str, module: nn.Module, args: tuple) -> list[tuple[int, ...]]:
    entry = attnzoo.info(name)
    if entry.layout == "pyramid" and entry.output_shape is None:
        out_c = getattr(module, "out_channels")
        return [(x.shape[0], out_c, x.shape[2], x.shape[3]) for x in args[0]]
    return entry.output_shape_of(module, *args)


def assert_close(a: Any, b: Any, atol: float = 1e-5, rtol: float = 1e-4, msg: str = "") -> None:
    fa, fb = flatten(a), flatten(b)
    assert len(fa) == len(fb), f"{msg}: {len(fa)} vs {len(fb)} outputs"
    for x, y in zip(fa, fb):
        torch.testing.assert_close(x, y, atol=atol, rtol=rtol, msg=lambda m: f"{msg}: {m}")


@contextmanager
def contract(name: str, check: str, dims: int = 2):
    """Run one contract check; a check the module declares as an exception must fail (else the declaration is stale).
    ``dims``: the spatial rank checked (its declarations: ``ModuleInfo.exceptions_at(dims)``)."""
    reason = attnzoo.info(name).exceptions_at(dims).get(check)
    if reason is None:
        yield
        return
    try:
        yield
    except Exception as err:  # the declared limitation is real
        pytest.xfail(f"{name} declares '{check}' unsupported: {reason} ({type(err).__name__})")
    else:
        pytest.fail(f"{name} declares '{check}' unsupported ({reason}) but the check passes: remove the exception")


def require(module: str, extra: str = "dev") -> ModuleType:
    """Import ``module``, a package of the ``extra`` extra (a peer or a runtime the tests compare against).

    A missing package fails the test (at collection when called at module level) instead of skipping it: a
    parity or faithfulness test that skips silently proves nothing, and CI installs the dev extra.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        missing(f"{module} ({err})", extra)


def missing(what: str, extra: str = "dev") -> NoReturn:
    """Fail the test: ``what`` (a package or runtime of the ``extra`` extra) is not installed."""
    pytest.fail(f"{what} is not installed: install the {extra} extra: pip install -e '.[{extra}]'", pytrace=False)


__all__ = ["channels_for", "build", "randomize", "inputs", "nd_size", "min_size_nd", "flatten", "expected_shapes", "assert_close", "contract",
           "pyramid_sizes", "rand", "require", "missing"]


def ultralytics_offline() -> None:
    """Before ultralytics is first imported (its settings are read then): settings in a temporary folder, no online
    checks or downloads (fonts, assets, weights), no auto-install, quiet.  No effect once it is imported."""
    import atexit
    import os
    import shutil
    import sys
    import tempfile

    if "ultralytics" in sys.modules:
        return
    cfg = tempfile.mkdtemp(prefix="attnzoo-yolo-cfg-")
    atexit.register(shutil.rmtree, cfg, ignore_errors=True)
    os.environ.setdefault("YOLO_CONFIG_DIR", cfg)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    os.environ.setdefault("YOLO_VERBOSE", "False")
