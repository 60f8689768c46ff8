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
from .checks import SizeBound, check_size_bounds, check_spatial, describe_size_bounds
from .compat import renamed_args

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

    #: The spatial rank of the maps the module takes (a module registered with ``dims=(1, 2, 3)`` takes the
    #: keyword ``dims`` and stores it here; 2-D only modules keep the class default).
    dims: int = 2

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        bounds = cls.__dict__.get("size_bounds")
        if bounds and cls.__doc__:
            cls.__doc__ = cls.__doc__.rstrip() + "\n\n    " + describe_size_bounds(bounds) + "\n"
        if "__init__" not in cls.__dict__:  # checked by the inherited constructor
            return
        init = cls.__dict__["__init__"]
        sig = inspect.signature(init)
        nd = "dims" in sig.parameters  # an N-d module: record its arguments, accept MONAI's ``spatial_dims``
        if not bounds and not nd:
            return

        @functools.wraps(init)
        def checked_init(self: nn.Module, *args: Any, **kw: Any) -> None:
            bound: inspect.BoundArguments | None = None
            try:
                bound = sig.bind(self, *args, **kw)
            except TypeError:  # the constructor's own error (unknown or missing argument)
                pass
            else:
                bound.apply_defaults()
                if bounds:
                    values = dict(bound.arguments)
                    check_size_bounds(bounds, values, values.get("channels"), type(self).__name__)
            init(self, *args, **kw)
            if nd and bound is not None:
                self.__dict__["_init_args"] = _arguments(sig, bound)

        if nd and "spatial_dims" not in getattr(init, "deprecated_args", {}):
            checked_init = renamed_args(spatial_dims="dims")(checked_init)
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


def _arguments(sig: inspect.Signature, bound: inspect.BoundArguments) -> dict[str, Any]:
    """The constructor's arguments by name (defaults applied, ``**kwargs`` spread), without ``self``."""
    params = list(sig.parameters.values())
    args = {k: v for k, v in bound.arguments.items() if k != params[0].name}
    for p in params:
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            args.update(args.pop(p.name, {}))
    return args


class Gate(AttnModule):
    """``y = x ⊙ g(x)`` for x: B×C×H×W (B×C×L or B×C×D×H×W for ``self.dims`` 1 or 3), with ``g`` broadcastable
    to x and recorded as capture key ``"gate"``.

    Subclasses set ``self.channels`` (and ``self.dims`` when they take ``dims=``) and implement :meth:`gate_map`.
    """

    channels: int

    def gate_map(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_spatial(x, self.channels, self.dims, self.owner)
        gate = self.gate_map(x)
        record(self, "gate", gate)
        return x * gate
