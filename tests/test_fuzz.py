"""Property-based fuzzing of every registered module: no crash but a clear one.

For each module of ``attnzoo.list_modules()`` (so a module registered later is fuzzed too), hypothesis draws
constructor arguments from the ``__init__`` signature — each argument left at its (test) value or replaced by
its default, 0, a negative number, a huge number, a float, a wrong type (str, None, list) — and an input of
batch 1-2 and H, W in 1..9 from the module's layout.  Every case must either build and run (eval) with finite
output of the documented shape (``helpers.expected_shapes``), or raise ``ValueError``/``TypeError`` whose message
names the module's class.  Never a ZeroDivisionError, IndexError, a RuntimeError from deep inside, an
AssertionError, a bare PyTorch error message or NaN.

Bounded for CI: 15 derandomized examples per module (``ATTNZOO_FUZZ_EXAMPLES=200`` for a deeper local search), no example database, no deadline.  Huge values are first
tried on the ``meta`` device: a module that accepts them and would need more than ``MAX_ELEMENTS`` parameters
or output elements counts as accepted (its output shape is still checked on meta) instead of allocating
gigabytes; construction is also cut after ``TIME_LIMIT_S`` seconds (e.g. ``num_layers=10**6``).

Constructor arguments with a declared size bound (``size_bounds``) are also drawn at the bound and one past it.

Each failure found here is fixed in the module and kept as a plain regression case in tests/test_regressions.py.
"""

from __future__ import annotations

import inspect
import os
import signal
from contextlib import contextmanager
from typing import Any

import pytest
import torch

from helpers import channels_for, expected_shapes, flatten, randomize, require

require("hypothesis")
import torch.fx.experimental.symbolic_shapes  # noqa: E402,F401  (lazy sympy import now, not under the time limit)
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import attnzoo  # noqa: E402
from attnzoo.layouts import example_inputs  # noqa: E402

with torch.device("meta"):  # the meta kernels' lazy imports happen here, not under the time limit's signal
    torch.nn.Conv2d(2, 2, 3)(torch.randn(1, 2, 4, 4)).softmax(-1).amax((2, 3))

NAMES = attnzoo.list_modules()
HUGE = 10**6
MAX_ELEMENTS = 4_000_000
TIME_LIMIT_S = 5.0
FUZZ_SETTINGS = settings(
    max_examples=int(os.environ.get("ATTNZOO_FUZZ_EXAMPLES", "15")),  # raise it locally for a deeper search
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    suppress_health_check=list(HealthCheck),
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
)
ALLOWED = (ValueError, TypeError)


class Inconclusive(BaseException):
    """The case cannot be decided here (too slow to build, or an op the meta device lacks): not a failure."""


@contextmanager
def time_limit(seconds: float):
    def handler(signum, frame):
        raise Inconclusive(f"took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def ctor_params(cls: type) -> list[inspect.Parameter]:
    """Named constructor parameters after ``channels`` (no ``*args``/``**kwargs``)."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p for p in params if p.kind in kinds][1:]


def value_candidates(default: Any) -> list[Any]:
    """Replacement values for an argument whose default is ``default``."""
    if isinstance(default, bool):  # flags: only falsy alternatives (a truthy one may switch on another output form)
        return [default, None, False]
    out: list[Any] = [default, 0, -1, -2.5, HUGE, 17, 2.5, "x", None, [], [1]]
    if isinstance(default, int):
        out += [float(default), default + 1]
    if isinstance(default, float):
        out += [float("nan"), float("inf"), 1e-12]
    if isinstance(default, (tuple, list)) and default:
        out += [tuple(default)[:1], (*tuple(default), 0), (*tuple(default)[:-1], -1), ("x",) * len(default)]
    return out


def bound_candidates(name: str, key: str, start: Any) -> list[Any]:
    """The declared size bound of ``key`` and one past it (``size_bounds``, see tests/test_size_bounds.py), so the
    fuzzing reaches the bounds; in a sequence argument the last element is replaced."""
    bound = attnzoo.info(name).cls.size_bounds.get(key)
    limit = None if bound is None else bound.value(channels_for(name))
    if limit is None:
        return []
    values = [int(limit), int(limit) + 1] if float(limit).is_integer() else [limit, limit + 1]
    if isinstance(start, (tuple, list)) and start:
        return [type(start)([*start[:-1], v]) for v in values]
    return values


def channel_candidates(name: str) -> list[Any]:
    base = channels_for(name)
    if isinstance(base, list):
        return [base, [], [base[0]], [0, *base[1:]], [-1, *base[1:]], [float(c) for c in base], "x", None, base[0],
                [HUGE, *base[1:]], [*base[:-1], 3]]
    return [base, 0, -1, 1, 3, 7, float(base), 2.5, "x", None, [base], HUGE]


def valid_channels(c: Any) -> Any | None:
    """The channel spec the input is made with, or None when ``c`` is not a sensible channel spec at all."""
    def ok(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1

    if ok(c):
        return c
    if isinstance(c, list) and c and all(ok(v) for v in c):
        return c
    return None


def names_module(err: BaseException, cls: type) -> bool:
    return cls.__name__ in str(err)


def involves_huge(channels: Any, kwargs: dict) -> bool:
    def huge(v: Any) -> bool:
        if isinstance(v, (list, tuple)):
            return any(huge(x) for x in v)
        return isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) >= HUGE

    return huge(channels) or any(huge(v) for v in kwargs.values())


def numel(module: torch.nn.Module) -> int:
    return sum(t.numel() for t in module.parameters()) + sum(t.numel() for t in module.buffers())


def check_case(name: str, channels: Any, kwargs: dict, batch: int, size: tuple[int, int]) -> None:
    entry = attnzoo.info(name)
    cls = entry.cls
    what = f"{name}: {cls.__name__}({channels!r}, **{kwargs!r}) on batch {batch}, size {size}"

    def fail(err: BaseException) -> None:
        raise AssertionError(f"{what} raised {type(err).__name__}: {err}") from err

    chans = valid_channels(channels)
    if isinstance(channels, float) and channels.is_integer():
        chans = int(channels)

    def inputs(device: str = "cpu") -> tuple:
        g = torch.Generator().manual_seed(5)
        args = example_inputs(name, batch=batch, channels=chans, size=size, generator=g)
        return tuple([t.to(device) for t in a] if isinstance(a, list) else a.to(device) for a in args)

    # 1. Decide on the meta device first (no memory), within a time limit: huge values must not allocate.
    #    An error the meta device alone raises (RuntimeError/NotImplementedError: autocast or an op without a
    #    meta kernel) leaves the decision to the real run, or, with a huge value, makes the case inconclusive.
    huge = involves_huge(channels, kwargs)
    try:
        with time_limit(TIME_LIMIT_S), torch.device("meta"):
            meta = cls(channels, **kwargs)
    except Inconclusive:
        return
    except ALLOWED as err:
        if not names_module(err, cls):
            fail(err)
        return
    except (NotImplementedError, RuntimeError):
        meta = None
        if huge:
            return
    except Exception as err:  # noqa: BLE001 - any other error type is a finding
        fail(err)
    if meta is not None:
        if chans is None:
            raise AssertionError(f"{what}: accepted channels={channels!r} (expected a ValueError/TypeError naming the module)")
        if numel(meta) > MAX_ELEMENTS:
            return  # accepted; too big to run on this machine
        try:
            with torch.no_grad():
                out = flatten(meta.eval()(*inputs("meta")))
        except ALLOWED as err:
            if not names_module(err, cls):
                fail(err)
            return
        except (NotImplementedError, RuntimeError):
            if huge:
                return
        except Exception as err:  # noqa: BLE001
            fail(err)
        else:
            if sum(t.numel() for t in out) > MAX_ELEMENTS:
                return  # accepted, output too big to compute here (its shape was computed on meta)
    elif huge:
        return

    # 2. Build and run for real.
    try:
        torch.manual_seed(0)
        with time_limit(TIME_LIMIT_S):
            module = cls(channels, **kwargs)
    except Inconclusive:
        return
    except ALLOWED as err:
        if not names_module(err, cls):
            fail(err)
        return
    except Exception as err:  # noqa: BLE001
        fail(err)
    if chans is None:
        raise AssertionError(f"{what}: accepted channels={channels!r} (expected a ValueError/TypeError naming the module)")
    randomize(module).eval()
    args = inputs()
    try:
        with torch.no_grad():
            out = module(*args)
    except ALLOWED as err:
        if not names_module(err, cls):
            fail(err)
        return
    except Exception as err:  # noqa: BLE001
        fail(err)
    got = [tuple(t.shape) for t in flatten(out)]
    assert got == expected_shapes(name, module, args), f"{what}: output shapes {got}"
    assert all(torch.isfinite(t).all() for t in flatten(out)), f"{what}: non-finite output"


@pytest.mark.parametrize("name", NAMES)
def test_fuzz_constructor_and_input(name):
    entry = attnzoo.info(name)
    params = ctor_params(entry.cls)
    base = {p.name: entry.test_kwargs.get(p.name, p.default) for p in params}
    base = {k: v for k, v in base.items() if v is not inspect.Parameter.empty}

    @FUZZ_SETTINGS
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        kwargs = dict(base)
        if params:
            chosen = data.draw(st.lists(st.sampled_from([p.name for p in params]), max_size=2, unique=True), label="args")
            for key in chosen:
                default = next(p.default for p in params if p.name == key)
                start = kwargs.get(key, default)
                cands = value_candidates(start if start is not inspect.Parameter.empty else 1)
                if default is not inspect.Parameter.empty and default is not start:
                    cands.append(default)
                cands += bound_candidates(name, key, start)
                kwargs[key] = data.draw(st.sampled_from(cands), label=key)
        channels = data.draw(st.sampled_from(channel_candidates(name)) if data.draw(st.integers(0, 3)) == 0
                             else st.just(channels_for(name)), label="channels")
        batch = data.draw(st.integers(1, 2), label="batch")
        size = (data.draw(st.integers(1, 9), label="H"), data.draw(st.integers(1, 9), label="W"))
        check_case(name, channels, kwargs, batch, size)

    run()
