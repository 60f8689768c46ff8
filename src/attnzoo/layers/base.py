"""The small base classes of registered modules.

:class:`AttnModule` gives every module its error-message owner (the class name, so a subclass or a renamed
class never reports a stale literal) and a generic ``extra_repr`` built from the constructor's arguments.
:class:`Gate` is the whole ``forward`` of a gate that returns ``x ⊙ g(x)``: subclasses write ``gate_map``.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn as nn

from ..capture import record
from .checks import check_nchw

__all__ = ["AttnModule", "Gate"]

_SIMPLE = (int, float, str, bool, tuple, type(None))


class AttnModule(nn.Module):
    """Base class of attnzoo's registered modules."""

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
