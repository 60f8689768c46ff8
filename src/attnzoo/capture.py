"""Attention-map capture: ``with attnzoo.capture_attention(model) as maps: model(x)``.

Modules record maps through :func:`record`; it costs nothing when no capture is active (one attribute
lookup), and attention modules only build an explicit N×N probability matrix when :func:`is_capturing`
says so — otherwise they stay on the fused ``scaled_dot_product_attention`` path.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn

__all__ = ["capture_attention", "record", "is_capturing"]

_ATTR = "_attnzoo_maps"


def is_capturing(module: nn.Module) -> bool:
    """True while ``module`` is inside an active :func:`capture_attention`."""
    return getattr(module, _ATTR, None) is not None


def record(module: nn.Module, key: str, value: torch.Tensor) -> None:
    """Store ``value`` (detached) as map ``key`` of ``module`` if a capture is active; otherwise do nothing."""
    maps = getattr(module, _ATTR, None)
    if maps is not None:
        maps[key] = value.detach()


@contextmanager
def capture_attention(model: nn.Module) -> Iterator[dict[str, dict[str, torch.Tensor]]]:
    """Record the attention / gate maps of every attnzoo module inside ``model`` during the forwards in the block.

    Yields a dict from each module's qualified name (``""`` for ``model`` itself) to its maps, e.g.
    ``{"layer1.0.se": {"gate": B×C×1×1}}``.  Outputs are unchanged.  Only the last forward's maps are kept.
    """
    from .registry import _REGISTRY

    classes = tuple({entry.cls for entry in _REGISTRY.values()})
    found: dict[str, dict[str, torch.Tensor]] = {}
    modules = [(name, m) for name, m in model.named_modules() if isinstance(m, classes)]
    for name, m in modules:
        found[name] = {}
        object.__setattr__(m, _ATTR, found[name])
    try:
        yield found
    finally:
        for name, m in modules:
            if _ATTR in m.__dict__:
                object.__delattr__(m, _ATTR)
            if not found.get(name):
                found.pop(name, None)
