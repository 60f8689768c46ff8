"""The small base classes of registered modules.

:class:`AttnModule` gives every module its error-message owner (the class name, so a subclass or a renamed
class never reports a stale literal) and a generic ``extra_repr`` built from the constructor's arguments.
:class:`Gate` is the whole ``forward`` of a gate that returns ``x ⊙ g(x)``: subclasses write ``gate_map``.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, ClassVar

import torch
import torch.nn as nn

from ..capture import record
from .checks import SizeBound, check_nchw, check_size_bounds, describe_size_bounds

__all__ = ["AttnModule", "Gate"]

_SIMPLE = (int, float, str, bool, tuple, type(None))


class AttnModule(nn.Module):
    """Base class of attnzoo's registered modules.

    ``size_bounds`` (class attribute): the largest value of each constructor argument that scales an allocation
    (kernel sizes, tables, memory units, depths, ratios).  They are checked before the subclass's ``__init__``
    runs, so a typo such as ``kernel_size=10**6`` raises a ``ValueError`` instead of allocating gigabytes, and
    they are appended to the class docstring.  The registry-wide test in tests/test_size_bounds.py passes each
    bound + 1.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        bounds = cls.__dict__.get("size_bounds")
        if not bounds:
            return
        if cls.__doc__:
            cls.__doc__ = cls.__doc__.rstrip() + "\n\n    " + describe_size_bounds(bounds) + "\n"
        if "__init__" not in cls.__dict__:  # checked by the inherited constructor
            return
        init = cls.__dict__["__init__"]
        sig = inspect.signature(init)

        @functools.wraps(init)
        def checked_init(self: nn.Module, *args: Any, **kw: Any) -> None:
            try:
                bound = sig.bind(self, *args, **kw)
            except TypeError:  # the constructor's own error (unknown or missing argument)
                pass
            else:
                bound.apply_defaults()
                values = dict(bound.arguments)
                check_size_bounds(bounds, values, values.get("channels"), type(self).__name__)
            init(self, *args, **kw)

        cls.__init__ = checked_init  # type: ignore[method-assign]

    @property
    def owner(self) -> str:
        """The name errors are reported under: the class name."""
        return type(self).__name__

    def extra_repr(self) -> str:
        """``name=value`` for each constructor argument stored under its own name as a plain value."""
        parts = []
        for name in list(inspect.signature(type(self).__init__).parameters)[1:]:
            value = self.__dict__.get(name, None) if name in self.__dict__ else None
            if name in self.__dict__ and isinstance(value, _SIMPLE):
                parts.append(f"{name}={value!r}")
        return ", ".join(parts)


class Gate(AttnModule):
    """``y = x ⊙ g(x)`` for x: B×C×H×W, with ``g`` broadcastable to x and recorded as capture key ``"gate"``.

    Subclasses set ``self.channels`` and implement :meth:`gate_map`.
    """

    channels: int

    def gate_map(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        gate = self.gate_map(x)
        record(self, "gate", gate)
        return x * gate
