"""Activation factory: a name, a class / factory, or ``None``."""

from __future__ import annotations

from typing import Callable, Union

import torch
import torch.nn as nn

__all__ = ["ActLayer", "get_act", "HardSigmoid", "HardSwish"]

ActLayer = Union[str, Callable[[], nn.Module], None]


class HardSigmoid(nn.Module):
    """``ReLU6(x + 3) / 6`` as written in the Coordinate Attention / MobileNetV3 code (equals ``F.hardsigmoid``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.hardsigmoid(x)


class HardSwish(nn.Module):
    """``x * ReLU6(x + 3) / 6`` (equals ``F.hardswish``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.hardswish(x)


_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "leaky_relu": lambda: nn.LeakyReLU(0.1),
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "hard_sigmoid": HardSigmoid,
    "hard_swish": HardSwish,
    "identity": nn.Identity,
}


def get_act(act: ActLayer, owner: str = "attnzoo") -> nn.Module:
    """Build an activation from a name (``"relu"``, ``"gelu"``, ``"hard_swish"``, ...), a class/factory or ``None``."""
    if act is None:
        return nn.Identity()
    if isinstance(act, str):
        key = act.lower()
        if key not in _ACTIVATIONS:
            raise ValueError(f"{owner}: unknown activation {act!r}; expected one of {sorted(_ACTIVATIONS)}")
        return _ACTIVATIONS[key]()
    if isinstance(act, nn.Module):
        raise ValueError(f"{owner}: pass an activation name or class, not an instance ({act!r}); it would be shared")
    if callable(act):
        return act()
    raise ValueError(f"{owner}: activation must be a name, a class or None, got {act!r}")
